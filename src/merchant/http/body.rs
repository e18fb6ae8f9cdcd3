//! A JSON body extractor whose errors are API errors with stable codes.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// Largest request body accepted.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

pub struct JsonBody<T>(pub T, pub Bytes);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a request body is at most {BODY_BYTES_MAX} bytes"),
            )
        })?;
        parse(&bytes).map(|v| JsonBody(v, bytes))
    }
}

/// Parses a body; an empty body reads as `{}`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        let code = if msg.contains("unknown field") {
            "unknown_field"
        } else if e.is_syntax() || e.is_eof() {
            "malformed_json"
        } else {
            "invalid_field"
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, msg)
    })
}
