//! Rows to records and back.

use super::sql::{RowExt, Val, corrupt};
use crate::settlement::auth_policy::{MerchantDemand, Method, PayerDemand};
use crate::settlement::ledger::{Account, AccountKind};
use crate::settlement::lifecycle::{AuthProgress, DeclineReason, Origin, Txn, TxnState};
use crate::settlement::model::{Merchant, MerchantStatus, Payer, PayerStatus};

pub const TXN_COLS: &[&str] = &[
    "id",
    "number",
    "reference",
    "terminal_id",
    "origin",
    "state",
    "currency",
    "amount_minor",
    "payer_msisdn",
    "auth",
    "decline_reason",
    "auth_code",
    "description",
    "created_ms",
    "expires_ms",
    "deadline_ms",
    "updated_ms",
    "seq",
];

pub fn txn_from_row<R: RowExt>(r: &R) -> Result<Txn, sqlx::Error> {
    let state = r.t("state")?;
    let origin = r.t("origin")?;
    let auth = r.t("auth")?;
    let decline = r.ot("decline_reason")?;
    Ok(Txn {
        id: r.t("id")?,
        number: r.t("number")?,
        reference: r.t("reference")?,
        terminal_id: r.t("terminal_id")?,
        origin: Origin::parse(&origin).ok_or_else(|| corrupt("origin", &origin))?,
        state: TxnState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        currency: r.t("currency")?,
        amount_minor: r.oi("amount_minor")?,
        payer_msisdn: r.ot("payer_msisdn")?,
        auth: serde_json::from_str::<AuthProgress>(&auth).map_err(|_| corrupt("auth", &auth))?,
        decline_reason: match decline {
            Some(d) => Some(DeclineReason::parse(&d).ok_or_else(|| corrupt("decline reason", &d))?),
            None => None,
        },
        auth_code: r.ot("auth_code")?,
        description: r.ot("description")?,
        created_ms: r.i("created_ms")?,
        expires_ms: r.i("expires_ms")?,
        deadline_ms: r.oi("deadline_ms")?,
        updated_ms: r.i("updated_ms")?,
        seq: r.i("seq")?,
    })
}

pub fn txn_to_row(t: &Txn) -> Vec<Val> {
    vec![
        Val::from(&t.id),
        Val::from(&t.number),
        Val::from(&t.reference),
        Val::from(&t.terminal_id),
        Val::from(t.origin.as_str()),
        Val::from(t.state.as_str()),
        Val::from(&t.currency),
        Val::from(t.amount_minor),
        Val::from(t.payer_msisdn.clone()),
        Val::from(serde_json::to_string(&t.auth).unwrap_or_else(|_| "{}".into())),
        Val::from(t.decline_reason.map(|d| d.as_str())),
        Val::from(t.auth_code.clone()),
        Val::from(t.description.clone()),
        Val::from(t.created_ms),
        Val::from(t.expires_ms),
        Val::from(t.deadline_ms),
        Val::from(t.updated_ms),
        Val::from(t.seq),
    ]
}

pub const MERCHANT_COLS: &[&str] = &[
    "terminal_id",
    "merchant_id",
    "name",
    "status",
    "currency",
    "api_key_hash",
    "auth_method",
    "auth_strict",
    "visible_attributes",
    "account_id",
    "webhook_url",
    "webhook_secret",
    "created_ms",
];

pub fn merchant_from_row<R: RowExt>(r: &R) -> Result<Merchant, sqlx::Error> {
    let status = r.t("status")?;
    let method = r.t("auth_method")?;
    let visible = r.t("visible_attributes")?;
    Ok(Merchant {
        terminal_id: r.t("terminal_id")?,
        merchant_id: r.t("merchant_id")?,
        name: r.t("name")?,
        status: MerchantStatus::parse(&status)
            .ok_or_else(|| corrupt("merchant status", &status))?,
        currency: r.t("currency")?,
        api_key_hash: r.t("api_key_hash")?,
        demand: MerchantDemand {
            method: Method::parse(&method).ok_or_else(|| corrupt("auth method", &method))?,
            strict: r.i("auth_strict")? != 0,
        },
        visible_attributes: serde_json::from_str(&visible)
            .map_err(|_| corrupt("visible attributes", &visible))?,
        account_id: r.t("account_id")?,
        webhook_url: r.ot("webhook_url")?,
        webhook_secret: r.ot("webhook_secret")?,
        created_ms: r.i("created_ms")?,
    })
}

pub fn merchant_to_row(m: &Merchant) -> Vec<Val> {
    vec![
        Val::from(&m.terminal_id),
        Val::from(&m.merchant_id),
        Val::from(&m.name),
        Val::from(m.status.as_str()),
        Val::from(&m.currency),
        Val::from(&m.api_key_hash),
        Val::from(m.demand.method.as_str()),
        Val::from(m.demand.strict),
        Val::from(serde_json::to_string(&m.visible_attributes).unwrap_or_else(|_| "[]".into())),
        Val::from(&m.account_id),
        Val::from(m.webhook_url.clone()),
        Val::from(m.webhook_secret.clone()),
        Val::from(m.created_ms),
    ]
}

pub const PAYER_COLS: &[&str] = &[
    "msisdn",
    "display_name",
    "attributes",
    "status",
    "pin_hash",
    "auth_failures",
    "preferred_method",
    "refuses_visual",
    "adds_pin",
    "account_id",
    "txn_limit_minor",
    "has_portrait",
    "has_voice_print",
    "created_ms",
];

/// A payer without questions (they come from their own table).
pub fn payer_from_row<R: RowExt>(r: &R) -> Result<Payer, sqlx::Error> {
    let status = r.t("status")?;
    let attrs = r.t("attributes")?;
    let preferred = r.ot("preferred_method")?;
    Ok(Payer {
        msisdn: r.t("msisdn")?,
        display_name: r.t("display_name")?,
        attributes: serde_json::from_str(&attrs).map_err(|_| corrupt("attributes", &attrs))?,
        status: PayerStatus::parse(&status).ok_or_else(|| corrupt("payer status", &status))?,
        pin_hash: r.ot("pin_hash")?,
        auth_failures: r.i("auth_failures")?,
        demand: PayerDemand {
            preferred: match preferred {
                Some(p) => Some(Method::parse(&p).ok_or_else(|| corrupt("auth method", &p))?),
                None => None,
            },
            refuses_visual: r.i("refuses_visual")? != 0,
            adds_pin: r.i("adds_pin")? != 0,
        },
        account_id: r.t("account_id")?,
        txn_limit_minor: r.oi("txn_limit_minor")?,
        has_portrait: r.i("has_portrait")? != 0,
        has_voice_print: r.i("has_voice_print")? != 0,
        questions: Vec::new(),
        created_ms: r.i("created_ms")?,
    })
}

pub fn payer_to_row(p: &Payer) -> Vec<Val> {
    vec![
        Val::from(&p.msisdn),
        Val::from(&p.display_name),
        Val::from(serde_json::to_string(&p.attributes).unwrap_or_else(|_| "{}".into())),
        Val::from(p.status.as_str()),
        Val::from(p.pin_hash.clone()),
        Val::from(p.auth_failures),
        Val::from(p.demand.preferred.map(|m| m.as_str())),
        Val::from(p.demand.refuses_visual),
        Val::from(p.demand.adds_pin),
        Val::from(&p.account_id),
        Val::from(p.txn_limit_minor),
        Val::from(p.has_portrait),
        Val::from(p.has_voice_print),
        Val::from(p.created_ms),
    ]
}

pub const ACCOUNT_COLS: &[&str] = &[
    "id",
    "kind",
    "currency",
    "balance_minor",
    "credit_limit_minor",
    "overdraft_unlimited",
];

pub fn account_from_row<R: RowExt>(r: &R) -> Result<Account, sqlx::Error> {
    let kind = r.t("kind")?;
    Ok(Account {
        id: r.t("id")?,
        kind: AccountKind::parse(&kind).ok_or_else(|| corrupt("account kind", &kind))?,
        currency: r.t("currency")?,
        balance_minor: r.i("balance_minor")?,
        credit_limit_minor: r.i("credit_limit_minor")?,
        overdraft_unlimited: r.i("overdraft_unlimited")? != 0,
    })
}

pub fn account_to_row(a: &Account) -> Vec<Val> {
    vec![
        Val::from(&a.id),
        Val::from(a.kind.as_str()),
        Val::from(&a.currency),
        Val::from(a.balance_minor),
        Val::from(a.credit_limit_minor),
        Val::from(a.overdraft_unlimited),
    ]
}
