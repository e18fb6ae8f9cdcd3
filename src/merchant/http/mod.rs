//! The HTTP merchant API (web shops, claims 38–41), on the settlement service.
//!
//! Routes: `POST /v1/transactions`, `GET /v1/transactions/{id}`, `PUT …/amount`, `POST …/cancel`,
//! `POST …/reverse`, `POST …/visual-check`, `GET …/events` (server-sent events),
//! `GET /v1/portraits/{token}` (one-time portrait links), `GET /openapi.json`, `GET /metrics`,
//! `GET /healthz`, and in demo mode only `POST /sandbox/pay`.

pub mod body;
pub mod error;
pub mod openapi;
pub mod sandbox;
pub mod view;

use crate::metrics::Metrics;
use crate::settlement::Service;
use crate::settlement::lifecycle::Origin;
use crate::settlement::model::Merchant;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use body::JsonBody;
use error::ApiError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct AppState {
    pub svc: Service,
    pub metrics: Arc<Metrics>,
    pub demo: bool,
}

pub fn router(state: AppState) -> Router {
    let mut r = Router::new()
        .route("/v1/transactions", post(create))
        .route("/v1/transactions/{id}", get(show))
        .route("/v1/transactions/{id}/amount", put(set_amount))
        .route("/v1/transactions/{id}/cancel", post(cancel))
        .route("/v1/transactions/{id}/reverse", post(reverse))
        .route("/v1/transactions/{id}/visual-check", post(visual_check))
        .route("/v1/transactions/{id}/events", get(events))
        .route("/v1/portraits/{token}", get(portrait))
        .route("/openapi.json", get(openapi_doc))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    if state.demo {
        r = r.route("/sandbox/pay", post(sandbox::pay));
    }
    r.fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .layer(axum::extract::DefaultBodyLimit::max(body::BODY_BYTES_MAX))
        .with_state(state)
}

async fn count(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    st.metrics
        .http_requests
        .inc(&[&route, resp.status().as_str()]);
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The merchant terminal behind the request's API key.
async fn merchant(st: &AppState, headers: &HeaderMap) -> Result<Merchant, ApiError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or_else(ApiError::unauthorized)?;
    st.svc
        .merchant_by_key(key)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// Reads `amount_minor` from any JSON value so that fractions, strings and numbers beyond
/// 64 bits all get the same stable `invalid_amount` error.
fn amount(v: Option<&serde_json::Value>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_amount",
                "amount_minor is a positive integer of minor units (e.g. 1250 for 12.50 USD)",
            )
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    amount_minor: Option<serde_json::Value>,
    currency: Option<String>,
    description: Option<String>,
}

async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    JsonBody(b, raw): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let m = merchant(&st, &headers).await?;
    let idem = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_idempotency_key",
                        "an Idempotency-Key is 1 to 255 visible characters",
                    )
                })?;
            // The request is identified by its body's meaning, not its bytes' spacing.
            let canonical = serde_json::from_slice::<serde_json::Value>(&raw)
                .map(|v| v.to_string())
                .unwrap_or_default();
            Some((
                key.to_string(),
                hex::encode(Sha256::digest(canonical.as_bytes())),
            ))
        }
    };
    if let Some(c) = &b.currency {
        if c.len() != 3 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_currency",
                "currency is an ISO 4217 code such as USD",
            ));
        }
    }
    let (txn, replayed) = st
        .svc
        .open(
            &m.terminal_id,
            amount(b.amount_minor.as_ref())?,
            b.currency,
            Origin::Http,
            b.description,
            idem,
        )
        .await?;
    let v = view::txn_view(&st.svc, &m, &txn).await?;
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut resp = (status, Json(v)).into_response();
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ApiError::not_found());
    }
    Ok(())
}

async fn show(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = merchant(&st, &headers).await?;
    check_id(&id)?;
    let t = st
        .svc
        .merchant_txn(&m.terminal_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(view::txn_view(&st.svc, &m, &t).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    amount_minor: serde_json::Value,
    currency: Option<String>,
}

async fn set_amount(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(b, _): JsonBody<AmountBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = merchant(&st, &headers).await?;
    check_id(&id)?;
    let a = amount(Some(&b.amount_minor))?.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_amount",
            "amount_minor is required",
        )
    })?;
    let t = st
        .svc
        .set_amount(&m.terminal_id, &id, a, b.currency)
        .await?;
    Ok(Json(view::txn_view(&st.svc, &m, &t).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

async fn cancel(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(_, _): JsonBody<Empty>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = merchant(&st, &headers).await?;
    check_id(&id)?;
    let t = st.svc.cancel(&m.terminal_id, &id).await?;
    Ok(Json(view::txn_view(&st.svc, &m, &t).await?))
}

async fn reverse(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(_, _): JsonBody<Empty>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = merchant(&st, &headers).await?;
    check_id(&id)?;
    let t = st.svc.reverse(&m.terminal_id, &id, false).await?;
    Ok(Json(view::txn_view(&st.svc, &m, &t).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VisualBody {
    /// The payer in front of the terminal matches the portrait.
    matched: bool,
    /// When not matched: ask the payer for their PIN instead (claim 36).
    #[serde(default)]
    pin_fallback: bool,
}

async fn visual_check(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(b, _): JsonBody<VisualBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let m = merchant(&st, &headers).await?;
    check_id(&id)?;
    let (t, _) = st
        .svc
        .visual_check(&m.terminal_id, &id, b.matched, b.pin_fallback)
        .await?;
    Ok(Json(view::txn_view(&st.svc, &m, &t).await?))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    after: Option<i64>,
}

/// Server-sent events: the stored history after `Last-Event-ID` (or `?after=`), then live
/// events, each once, in order. The stream ends after an event that leaves the transaction
/// final.
async fn events(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let m = merchant(&st, &headers).await?;
    check_id(&id)?;
    let t = st
        .svc
        .merchant_txn(&m.terminal_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .or(q.after)
        .unwrap_or(0);
    // Subscribe before reading history so nothing falls between the two.
    let mut rx = st.svc.subscribe();
    let svc = st.svc.clone();
    let stream = async_stream(move |tx| async move {
        let mut last = after;
        // Sends the event unless already sent; returns false when the stream should end.
        async fn send(
            tx: &tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>,
            last: &mut i64,
            e: &crate::settlement::engine::EventRecord,
        ) -> bool {
            if e.seq <= *last {
                return true;
            }
            *last = e.seq;
            let data = serde_json::json!({
                "seq": e.seq,
                "type": e.kind.name(),
                "at": crate::clock::rfc3339(e.at_ms),
                "data": e.kind,
            });
            let ev = SseEvent::default()
                .id(e.seq.to_string())
                .event(e.kind.name())
                .data(data.to_string());
            tx.send(Ok(ev)).await.is_ok() && !ends_stream(&e.kind)
        }
        let Ok(history) = svc.store().events(&t, after).await else {
            return;
        };
        for e in &history {
            if !send(&tx, &mut last, e).await {
                return;
            }
        }
        loop {
            match rx.recv().await {
                Ok(e) if e.txn_id == t.id => {
                    if !send(&tx, &mut last, &e).await {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let Ok(h) = svc.store().events(&t, last).await else {
                        return;
                    };
                    for e in &h {
                        if !send(&tx, &mut last, e).await {
                            return;
                        }
                    }
                }
                Err(_) => return,
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Events after which nothing more happens, except a reversal (which webhooks carry).
fn ends_stream(k: &crate::settlement::lifecycle::EventKind) -> bool {
    use crate::settlement::lifecycle::EventKind as K;
    matches!(
        k,
        K::Settled { .. }
            | K::Declined { .. }
            | K::Expired
            | K::Cancelled { .. }
            | K::Reversed { .. }
    )
}

/// A stream fed by a task through a channel; the task stops when the client goes away.
fn async_stream<F, Fut>(
    f: F,
) -> impl futures::Stream<Item = Result<SseEvent, Infallible>> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn portrait(
    State(st): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let (content_type, bytes) = st.svc.fetch_portrait(&token).await?;
    let mut resp = bytes.into_response();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn openapi_doc() -> Json<serde_json::Value> {
    Json(openapi::document())
}

async fn metrics(State(st): State<AppState>) -> Response {
    let body = st.metrics.render(&st.svc.writer().stats);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn healthz(State(st): State<AppState>) -> Response {
    match sqlx::query("SELECT 1").execute(&st.svc.store().pool).await {
        Ok(_) => {
            Json(serde_json::json!({"status": "ok", "backend": st.svc.store().backend.as_str()}))
                .into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable"})),
        )
            .into_response(),
    }
}
