//! API errors: JSON with a stable code, the right status, and no internals.

use crate::settlement::engine::{ClaimError, OpError};
use crate::settlement::lifecycle::LifecycleError;
use crate::settlement::money::AmountError;
use crate::store::writer::CoreError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send your API key as `Authorization: Bearer KEY`",
        )
    }

    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "transaction_not_found",
            "no such transaction",
        )
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            CoreError::Unavailable(_) => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "the gateway cannot reach its database; retry with the same Idempotency-Key",
            ),
            CoreError::Op(op) => match op {
                OpError::UnknownTerminal => ApiError::unauthorized(),
                OpError::MerchantSuspended => {
                    ApiError::new(S::FORBIDDEN, "merchant_suspended", msg)
                }
                OpError::UnknownTransaction => ApiError::not_found(),
                OpError::UnknownPayer => ApiError::new(S::NOT_FOUND, "payer_not_found", msg),
                OpError::Lifecycle(LifecycleError::AmountFixed(_)) => {
                    ApiError::new(S::CONFLICT, "amount_fixed", msg)
                }
                OpError::Lifecycle(LifecycleError::AmountUnknown) => {
                    ApiError::new(S::CONFLICT, "amount_unknown", msg)
                }
                OpError::Lifecycle(LifecycleError::AuthIncomplete) => {
                    ApiError::new(S::CONFLICT, "authentication_incomplete", msg)
                }
                OpError::Lifecycle(LifecycleError::NotAStep(_)) => {
                    ApiError::new(S::CONFLICT, "not_an_authentication_step", msg)
                }
                OpError::Lifecycle(_) => ApiError::new(S::CONFLICT, "invalid_state", msg),
                OpError::Amount(AmountError::UnknownCurrency(_)) => {
                    ApiError::new(S::BAD_REQUEST, "unknown_currency", msg)
                }
                OpError::Amount(AmountError::TooLarge { .. }) => {
                    ApiError::new(S::BAD_REQUEST, "amount_too_large", msg)
                }
                OpError::Amount(_) => ApiError::new(S::BAD_REQUEST, "invalid_amount", msg),
                OpError::CurrencyMismatch { .. } => {
                    ApiError::new(S::BAD_REQUEST, "currency_mismatch", msg)
                }
                OpError::IdempotencyConflict => {
                    ApiError::new(S::CONFLICT, "idempotency_key_reused", msg)
                }
                OpError::Claim(ClaimError::Blocked { .. }) => {
                    ApiError::new(S::TOO_MANY_REQUESTS, "caller_blocked", msg)
                }
                OpError::Claim(ClaimError::UnknownNumber) => {
                    ApiError::new(S::NOT_FOUND, "number_unknown", msg)
                }
                OpError::Claim(ClaimError::Expired) => {
                    ApiError::new(S::GONE, "number_expired", msg)
                }
                OpError::Claim(ClaimError::InUse) => {
                    ApiError::new(S::CONFLICT, "number_in_use", msg)
                }
                OpError::Number(_) => ApiError::new(S::BAD_REQUEST, "invalid_number", msg),
                OpError::Declined { .. } => ApiError::new(S::CONFLICT, "declined", msg),
                OpError::NotSettled => ApiError::new(S::CONFLICT, "not_settled", msg),
                OpError::NumberSpaceExhausted => {
                    ApiError::new(S::SERVICE_UNAVAILABLE, "number_space_exhausted", msg)
                }
                OpError::TokenInvalid => ApiError::new(S::GONE, "link_invalid", msg),
                OpError::Exists(_) => ApiError::new(S::CONFLICT, "exists", msg),
                OpError::Invalid(_) => ApiError::new(S::BAD_REQUEST, "invalid_request", msg),
                OpError::Ledger(_) => ApiError::new(S::CONFLICT, "ledger_refused", msg),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
