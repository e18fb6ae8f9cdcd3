//! The demo sandbox: plays the payer's handset over HTTP, as payment providers' sandboxes do.
//! Mounted only by `telepay serve --demo`.

use super::AppState;
use super::body::JsonBody;
use super::error::ApiError;
use crate::settlement::auth_policy::Method;
use crate::settlement::credentials::SecretDigits;
use crate::settlement::engine::{OpError, PayerChannel, StepOutcome};
use crate::settlement::service::WaitError;
use crate::store::writer::CoreError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::time::Duration;

/// How long the sandbox waits for the merchant's amount or visual check.
const WAIT_S: u64 = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayBody {
    msisdn: String,
    number: String,
    pin: Option<String>,
    answer: Option<String>,
    #[serde(default = "yes")]
    confirm: bool,
}

fn yes() -> bool {
    true
}

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn outcome(state: &str, txn_id: &str, extra: serde_json::Value) -> Json<serde_json::Value> {
    let mut v = serde_json::json!({ "outcome": state, "transaction_id": txn_id });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    Json(v)
}

pub async fn pay(
    State(st): State<AppState>,
    JsonBody(b, _): JsonBody<PayBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let svc = &st.svc;
    let claimed = match svc
        .claim(&b.msisdn, b.number.trim(), PayerChannel::Sandbox)
        .await
    {
        Ok(c) => c,
        Err(CoreError::Op(OpError::Declined {
            txn_id,
            reason,
            detail,
        })) => {
            return Ok(outcome(
                "declined",
                &txn_id,
                serde_json::json!({"reason": reason.as_str(), "message": detail.unwrap_or_else(|| reason.explain().to_string())}),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let id = claimed.txn.id.clone();
    let wait = |e: WaitError| -> Result<Json<serde_json::Value>, ApiError> {
        match e {
            WaitError::TimedOut => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timed_out",
                "the merchant did not act within 60 seconds",
            )),
            WaitError::Ended(state) => Ok(outcome(state, &id, serde_json::json!({}))),
            WaitError::Core(c) => Err(c.into()),
        }
    };
    let mut txn = match svc.wait_amount(&id, Duration::from_secs(WAIT_S)).await {
        Ok(t) => t,
        Err(e) => return wait(e),
    };
    if !b.confirm {
        let t = svc.payer_cancel(&b.msisdn, &id).await?;
        return Ok(outcome(t.state.as_str(), &id, serde_json::json!({})));
    }
    while let Some(step) = txn.auth.remaining().first().copied() {
        let (t, out) = match step {
            Method::Pin => {
                let pin = b
                    .pin
                    .as_deref()
                    .ok_or_else(|| bad("pin_required", "this payment asks for the PIN"))?;
                let pin = SecretDigits::pin(pin).map_err(|e| bad("invalid_pin", e.to_string()))?;
                svc.submit_pin(&b.msisdn, &id, pin).await?
            }
            Method::Challenge => {
                let a = b.answer.as_deref().ok_or_else(|| {
                    bad(
                        "answer_required",
                        format!(
                            "this payment asks: {}",
                            txn.auth.question_text.clone().unwrap_or_default()
                        ),
                    )
                })?;
                let a =
                    SecretDigits::answer(a).map_err(|e| bad("invalid_answer", e.to_string()))?;
                svc.submit_answer(&b.msisdn, &id, a).await?
            }
            Method::Visual => {
                // The merchant looks at the portrait and answers on its own API.
                match svc
                    .wait_for(&id, Duration::from_secs(WAIT_S), |t| {
                        !t.auth.remaining().contains(&Method::Visual)
                    })
                    .await
                {
                    Ok(t) => {
                        txn = t;
                        continue;
                    }
                    Err(e) => return wait(e),
                }
            }
            Method::Voice => {
                return Err(bad(
                    "voice_required",
                    "this payment needs a voice print; call the gateway to pay",
                ));
            }
        };
        match out {
            StepOutcome::Passed { .. } => txn = t,
            StepOutcome::Wrong { tries_left } => {
                return Ok(outcome(
                    "authentication_failed",
                    &id,
                    serde_json::json!({"tries_left": tries_left}),
                ));
            }
            StepOutcome::Locked => {
                return Ok(outcome(
                    t.state.as_str(),
                    &id,
                    serde_json::json!({"reason": "auth_failed"}),
                ));
            }
        }
    }
    match svc.confirm(&b.msisdn, &id).await {
        Ok(t) => Ok(outcome(
            t.state.as_str(),
            &id,
            serde_json::json!({"reference": t.reference, "auth_code": t.auth_code, "amount_minor": t.amount_minor, "currency": t.currency}),
        )),
        Err(CoreError::Op(OpError::Declined { reason, .. })) => Ok(outcome(
            "declined",
            &id,
            serde_json::json!({"reason": reason.as_str(), "message": reason.explain()}),
        )),
        Err(e) => Err(e.into()),
    }
}
