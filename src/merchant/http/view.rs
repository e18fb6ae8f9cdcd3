//! The JSON a merchant sees of a transaction.

use super::error::ApiError;
use crate::clock::rfc3339;
use crate::settlement::Service;
use crate::settlement::lifecycle::Txn;
use crate::settlement::model::Merchant;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub async fn txn_view(svc: &Service, m: &Merchant, t: &Txn) -> Result<Value, ApiError> {
    let payer = match &t.payer_msisdn {
        Some(msisdn) => svc
            .store()
            .payer(msisdn)
            .await
            .map_err(crate::store::writer::CoreError::from)?
            .map(|p| {
                // Claim 12: only the attributes this merchant may see.
                let attrs: BTreeMap<&String, &String> = p
                    .attributes
                    .iter()
                    .filter(|(k, _)| m.visible_attributes.contains(k))
                    .collect();
                json!({ "name": p.display_name, "attributes": attrs })
            }),
        None => None,
    };
    Ok(json!({
        "id": t.id,
        "number": t.number,
        "reference": t.reference,
        "state": t.state.as_str(),
        "amount_minor": t.amount_minor,
        "currency": t.currency,
        "description": t.description,
        "created_at": rfc3339(t.created_ms),
        "expires_at": rfc3339(t.expires_ms),
        "updated_at": rfc3339(t.updated_ms),
        "payer": payer,
        "authentication": {
            "method": t.auth.method,
            "steps": t.auth.steps,
            "passed": t.auth.passed,
        },
        "decline_reason": t.decline_reason.map(|r| r.as_str()),
        "auth_code": t.auth_code,
    }))
}
