//! What the link asks of the settlement core, and how the core's answers read on the wire.
//!
//! The sans-IO session ([`crate::merchant::iso8583::session`]) names its needs as
//! [`CoreRequest`]s; [`serve`] carries them out against the one settlement [`Service`] and
//! answers with a [`CoreReply`]. The mappings between the core's outcomes and ISO 8583 response
//! codes, and from an outbox row to the advice it becomes, are plain functions, tested here.

use crate::merchant::iso8583::{
    AdviceBody, AdviceEvent, Amount, AuthId, CoreReply, CoreRequest, Currency, ResponseCode, TxnRef,
};
use crate::settlement::Service;
use crate::settlement::engine::EventRecord;
use crate::settlement::engine::OpError;
use crate::settlement::lifecycle::{DeclineReason, EventKind, Origin, Txn, TxnState};
use crate::settlement::model::MerchantStatus;
use crate::settlement::money;
use crate::store::writer::CoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// The response code for a request the core refused.
pub fn code_for_error(e: &CoreError) -> ResponseCode {
    match e {
        CoreError::Unavailable(_) => ResponseCode::SystemUnavailable,
        CoreError::Op(op) => code_for_op_error(op),
        #[allow(unreachable_patterns)]
        _ => ResponseCode::SystemMalfunction,
    }
}

fn code_for_op_error(e: &OpError) -> ResponseCode {
    match e {
        OpError::UnknownTerminal | OpError::MerchantSuspended => ResponseCode::InvalidMerchant,
        OpError::UnknownTransaction | OpError::TokenInvalid => ResponseCode::InvalidTxnNumber,
        OpError::Amount(_) | OpError::CurrencyMismatch { .. } => ResponseCode::InvalidAmount,
        OpError::Lifecycle(crate::settlement::lifecycle::LifecycleError::AmountFixed(_)) => {
            ResponseCode::InvalidAmount
        }
        OpError::Lifecycle(_) | OpError::NotSettled => ResponseCode::InvalidTransaction,
        OpError::Declined { reason, .. } => code_for_decline(*reason),
        OpError::IdempotencyConflict => ResponseCode::DuplicateTransmission,
        OpError::NumberSpaceExhausted => ResponseCode::SystemUnavailable,
        OpError::Invalid(_) => ResponseCode::FormatError,
        _ => ResponseCode::SystemMalfunction,
    }
}

/// The response code of a declined payment.
pub fn code_for_decline(reason: DeclineReason) -> ResponseCode {
    match reason {
        DeclineReason::InsufficientFunds => ResponseCode::InsufficientFunds,
        DeclineReason::AuthFailed => ResponseCode::IncorrectPin,
        DeclineReason::PayerLocked => ResponseCode::PinTriesExceeded,
        DeclineReason::AuthRefusedByPolicy => ResponseCode::RefusedByPolicy,
        DeclineReason::MerchantSuspended => ResponseCode::InvalidMerchant,
        DeclineReason::PayerUnknown | DeclineReason::PayerSuspended | DeclineReason::Limit => {
            ResponseCode::DoNotHonour
        }
    }
}

/// The `0210` for a transaction in a final state (`None` while it is still open).
pub fn final_reply(t: &Txn) -> Option<CoreReply> {
    Some(match t.state {
        TxnState::Settled => match t.auth_code.as_deref().and_then(AuthId::new) {
            Some(auth_id) => CoreReply::Approved { auth_id },
            None => CoreReply::Refused(ResponseCode::SystemMalfunction),
        },
        TxnState::Declined => CoreReply::Refused(
            t.decline_reason
                .map_or(ResponseCode::DoNotHonour, code_for_decline),
        ),
        TxnState::Expired => CoreReply::Refused(ResponseCode::InvalidTxnNumber),
        TxnState::Cancelled | TxnState::Reversed => CoreReply::Refused(ResponseCode::DoNotHonour),
        _ => return None,
    })
}

/// Carries out one request of a terminal's session. `hold` bounds the wait for a payment's
/// final result; the session answers `09` itself when its hold time passes first.
pub async fn serve(svc: &Service, request: CoreRequest, hold: Duration) -> CoreReply {
    match request {
        CoreRequest::SignOn {
            terminal_id,
            merchant_id,
            key,
        } => match svc
            .sign_on(terminal_id.as_str(), merchant_id.as_str(), key.expose())
            .await
        {
            Ok(Some(m)) if m.status == MerchantStatus::Active => CoreReply::SignedOn,
            Ok(_) => CoreReply::Refused(ResponseCode::InvalidMerchant),
            Err(e) => CoreReply::Refused(code_for_error(&e)),
        },
        CoreRequest::Open {
            terminal_id,
            amount,
            ..
        } => {
            let (minor, currency) = match amount.map(split_amount).transpose() {
                Ok(Some((m, c))) => (Some(m), Some(c)),
                Ok(None) => (None, None),
                Err(code) => return CoreReply::Refused(code),
            };
            match svc
                .open(
                    terminal_id.as_str(),
                    minor,
                    currency,
                    Origin::Link,
                    None,
                    None,
                )
                .await
            {
                Ok((t, _)) => {
                    let Some(txn_ref) = TxnRef::new(&t.reference) else {
                        return CoreReply::Refused(ResponseCode::SystemMalfunction);
                    };
                    let left_ms = (t.expires_ms - svc.now_ms()).max(0);
                    CoreReply::Opened {
                        txn_ref,
                        txn_number: t.number,
                        expires_in_s: u32::try_from(left_ms / 1000).unwrap_or(u32::MAX),
                    }
                }
                Err(e) => CoreReply::Refused(code_for_error(&e)),
            }
        }
        CoreRequest::SetAmount {
            terminal_id,
            txn_ref,
            amount,
            ..
        } => {
            let (minor, currency) = match split_amount(amount) {
                Ok(x) => x,
                Err(code) => return CoreReply::Refused(code),
            };
            let t = match own_txn(svc, terminal_id.as_str(), &txn_ref).await {
                Ok(t) => t,
                Err(code) => return CoreReply::Refused(code),
            };
            // Subscribed before the amount goes in, so that no event of the outcome is missed.
            let events = svc.subscribe();
            match svc
                .set_amount(terminal_id.as_str(), &t.id, minor, Some(currency))
                .await
            {
                Ok(now) => final_result(svc, events, &now, hold).await,
                Err(e) => CoreReply::Refused(code_for_error(&e)),
            }
        }
        CoreRequest::Reverse {
            terminal_id,
            txn_ref,
            ..
        } => {
            let t = match own_txn(svc, terminal_id.as_str(), &txn_ref).await {
                Ok(t) => t,
                Err(code) => return CoreReply::Refused(code),
            };
            match svc.reverse(terminal_id.as_str(), &t.id, true).await {
                Ok(_) => CoreReply::Reversed,
                Err(e) => CoreReply::Refused(code_for_error(&e)),
            }
        }
    }
}

/// How often a waiting `0200` reads its transaction even without an event (a change made by
/// another process on the same SQLite file publishes none here).
const RESULT_POLL: Duration = Duration::from_secs(1);

/// Waits for the payment's final state and answers it; `09` when `hold` passes first. Reads
/// the transaction only when one of its final events arrives (or on the poll), so that many
/// waiting terminals cost the store little.
async fn final_result(
    svc: &Service,
    mut events: broadcast::Receiver<Arc<EventRecord>>,
    txn: &Txn,
    hold: Duration,
) -> CoreReply {
    if let Some(reply) = final_reply(txn) {
        return reply;
    }
    let deadline = tokio::time::Instant::now() + hold;
    let mut next_poll = tokio::time::Instant::now() + RESULT_POLL;
    loop {
        let look = match tokio::time::timeout_at(deadline.min(next_poll), events.recv()).await {
            Ok(Ok(e)) => e.txn_id == txn.id && ends(&e.kind),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => true,
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                return CoreReply::Refused(ResponseCode::SystemUnavailable);
            }
            Err(_) => {
                if tokio::time::Instant::now() >= deadline {
                    // Still open after the hold: the result goes out as an advice.
                    return CoreReply::Refused(ResponseCode::InProgress);
                }
                next_poll = tokio::time::Instant::now() + RESULT_POLL;
                true
            }
        };
        if look {
            match svc.store().txn(&txn.id).await {
                Ok(Some(t)) => {
                    if let Some(reply) = final_reply(&t) {
                        return reply;
                    }
                }
                Ok(None) => return CoreReply::Refused(ResponseCode::InvalidTxnNumber),
                Err(_) => {}
            }
        }
    }
}

/// Events after which a transaction is final.
fn ends(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Settled { .. }
            | EventKind::Declined { .. }
            | EventKind::Expired
            | EventKind::Cancelled { .. }
            | EventKind::Reversed { .. }
    )
}

/// The terminal's own transaction with this reference (`14` for anyone else's).
async fn own_txn(svc: &Service, terminal_id: &str, txn_ref: &TxnRef) -> Result<Txn, ResponseCode> {
    match svc.store().txn_by_reference(txn_ref.as_str()).await {
        Ok(Some(t)) if t.terminal_id == terminal_id => Ok(t),
        Ok(_) => Err(ResponseCode::InvalidTxnNumber),
        Err(_) => Err(ResponseCode::SystemUnavailable),
    }
}

/// Minor units and the alphabetic currency code of a field 4 + 49 pair.
fn split_amount(a: Amount) -> Result<(i64, String), ResponseCode> {
    let currency =
        money::Currency::from_numeric(a.currency().code()).ok_or(ResponseCode::InvalidAmount)?;
    let minor = i64::try_from(a.minor()).map_err(|_| ResponseCode::InvalidAmount)?;
    Ok((minor, currency.code.to_string()))
}

/// An advice outbox row that does not read as an advice (a bug, never the terminal's doing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdvicePayloadError {
    #[error("unreadable advice payload: {0}")]
    Json(#[from] serde_json::Error),
    #[error("reference {0:?} is not 12 letters and digits")]
    Reference(String),
    #[error("event {0} is not advised on the link")]
    NotAdvised(&'static str),
}

#[derive(serde::Deserialize)]
struct AdvicePayload {
    reference: String,
    number: Option<String>,
    amount_minor: Option<i64>,
    currency: Option<String>,
    event: EventKind,
}

/// The `0620` body of an advice outbox row (written by the core in `notices_for`).
pub fn advice_body(payload: &str) -> Result<AdviceBody, AdvicePayloadError> {
    let p: AdvicePayload = serde_json::from_str(payload)?;
    let txn_ref = TxnRef::new(&p.reference)
        .ok_or_else(|| AdvicePayloadError::Reference(p.reference.clone()))?;
    let wire_amount = |minor: Option<i64>, code: Option<&str>| -> Option<Amount> {
        let c = money::Currency::from_code(code?)?;
        Amount::new(u64::try_from(minor?).ok()?, Currency::new(c.numeric)?)
    };
    let event = match &p.event {
        EventKind::Paired { .. } => AdviceEvent::Paired,
        EventKind::Settled { .. } => AdviceEvent::Settled,
        EventKind::Declined { .. } => AdviceEvent::Declined,
        EventKind::Expired => AdviceEvent::Expired,
        EventKind::Cancelled { .. } => AdviceEvent::Cancelled,
        EventKind::Reversed { .. } => AdviceEvent::Reversed,
        other => return Err(AdvicePayloadError::NotAdvised(other.name())),
    };
    let mut body = AdviceBody::new(txn_ref, event);
    body.txn_number = p.number.clone();
    body.amount = wire_amount(p.amount_minor, p.currency.as_deref());
    match p.event {
        EventKind::Paired {
            payer_name,
            attributes,
            auth_method,
            portrait_url,
            ..
        } => {
            body.payer = Some(payer_name);
            body.attributes = attributes.into_iter().collect();
            body.auth = auth_method.map(|m| m.as_str().to_string());
            body.portrait = portrait_url;
        }
        EventKind::Settled {
            amount_minor,
            currency,
            ..
        }
        | EventKind::Reversed {
            amount_minor,
            currency,
        } => {
            body.amount = wire_amount(Some(amount_minor), Some(&currency));
        }
        EventKind::Declined { reason, .. } => body.reason = Some(reason.as_str().to_string()),
        _ => {}
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settlement::auth_policy::Method;
    use std::collections::BTreeMap;

    #[test]
    fn declines_read_as_the_profiles_codes() {
        let cases = [
            (DeclineReason::InsufficientFunds, "51"),
            (DeclineReason::AuthFailed, "55"),
            (DeclineReason::PayerLocked, "75"),
            (DeclineReason::AuthRefusedByPolicy, "57"),
            (DeclineReason::MerchantSuspended, "03"),
            (DeclineReason::PayerUnknown, "05"),
            (DeclineReason::PayerSuspended, "05"),
            (DeclineReason::Limit, "05"),
        ];
        for (reason, code) in cases {
            assert_eq!(code_for_decline(reason).as_str(), code, "{reason:?}");
        }
    }

    #[test]
    fn core_errors_read_as_the_profiles_codes() {
        let cases: [(CoreError, &str); 6] = [
            (CoreError::Unavailable("db down".into()), "91"),
            (CoreError::Op(OpError::UnknownTransaction), "14"),
            (CoreError::Op(OpError::UnknownTerminal), "03"),
            (CoreError::Op(OpError::NotSettled), "12"),
            (
                CoreError::Op(OpError::Amount(money::AmountError::NotPositive)),
                "13",
            ),
            (
                CoreError::Op(OpError::CurrencyMismatch {
                    expected: "USD".into(),
                }),
                "13",
            ),
        ];
        for (e, code) in cases {
            assert_eq!(code_for_error(&e).as_str(), code, "{e}");
        }
    }

    #[test]
    fn a_paired_advice_carries_payer_attributes_auth_and_portrait() {
        let event = EventKind::Paired {
            payer_name: "Ann Example".into(),
            attributes: BTreeMap::from([("age_over_18".to_string(), "yes".to_string())]),
            auth_method: Some(Method::Visual),
            auth_steps: vec![Method::Visual],
            portrait_url: Some("http://127.0.0.1:8080/v1/portraits/abc".into()),
        };
        let payload = serde_json::json!({
            "txn_id": "tx_1", "reference": "250314000731", "number": "123456785",
            "amount_minor": null, "currency": "USD", "auth_code": null, "event": event,
        });
        let body = advice_body(&payload.to_string()).unwrap();
        assert_eq!(body.event, AdviceEvent::Paired);
        assert_eq!(body.txn_ref.as_str(), "250314000731");
        assert_eq!(body.txn_number.as_deref(), Some("123456785"));
        assert_eq!(body.payer.as_deref(), Some("Ann Example"));
        assert_eq!(body.attributes, vec![("age_over_18".into(), "yes".into())]);
        assert_eq!(body.auth.as_deref(), Some("visual"));
        assert!(body.portrait.as_deref().unwrap().ends_with("/abc"));
        assert_eq!(body.amount, None);
        // It encodes as field 48 of a 0620.
        let f48 = body.additional_data().unwrap().to_field().unwrap();
        assert!(
            f48.starts_with("EVENT=PAIRED;TXN=123456785;PAYER=Ann Example"),
            "{f48}"
        );
    }

    #[test]
    fn settled_and_declined_advices_carry_amount_and_reason() {
        let settled = serde_json::json!({
            "reference": "000000000042", "number": "123456785", "amount_minor": 1250,
            "currency": "EUR",
            "event": EventKind::Settled { amount_minor: 1250, currency: "EUR".into(), auth_code: "A1B2C3".into() },
        });
        let body = advice_body(&settled.to_string()).unwrap();
        assert_eq!(body.event, AdviceEvent::Settled);
        let amount = body.amount.unwrap();
        assert_eq!((amount.minor(), amount.currency().code()), (1250, 978));

        let declined = serde_json::json!({
            "reference": "000000000042", "number": null, "amount_minor": 1250, "currency": "USD",
            "event": EventKind::Declined { reason: DeclineReason::InsufficientFunds, detail: None },
        });
        let body = advice_body(&declined.to_string()).unwrap();
        assert_eq!(body.reason.as_deref(), Some("insufficient_funds"));
    }

    #[test]
    fn rows_that_are_not_advices_are_errors_not_panics() {
        assert!(advice_body("{").is_err());
        assert!(advice_body("{\"reference\":\"x\",\"event\":{\"type\":\"expired\"}}").is_err());
        let issued = serde_json::json!({
            "reference": "000000000042",
            "event": EventKind::Issued { number: "1".into(), expires_ms: 0 },
        });
        assert!(matches!(
            advice_body(&issued.to_string()),
            Err(AdvicePayloadError::NotAdvised("ISSUED"))
        ));
    }
}
