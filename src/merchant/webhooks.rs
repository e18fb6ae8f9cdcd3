//! Webhook delivery from the persisted outbox: signed, retried with backoff, at least once.
//!
//! The settlement writer puts a webhook row in the outbox in the same database transaction as
//! the event it reports, so a notice can neither get ahead of its write nor be lost with a
//! crash. This task leases due rows, POSTs them, and marks them delivered on a 2xx; anything
//! else is retried with exponential backoff. A lease that outlives a crashed delivery expires,
//! and the row goes out again after a restart.

use crate::metrics::Metrics;
use crate::settlement::Service;
use crate::store::writer::{HouseReply, Housekeeping, OutboxItem};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// Rows leased per round.
const LEASE_BATCH: usize = 64;
/// A leased row is retried by anyone after this long (longer than a delivery may take).
const LEASE_MS: i64 = 15_000;
/// Longest wait between attempts.
const BACKOFF_MAX_MS: i64 = 3_600_000;

/// The `Telepay-Signature` header value for a body sent at `t_s`.
pub fn signature(secret: &str, t_s: i64, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(t_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t_s},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at an hour.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(0, 30) as u32;
    1_000i64
        .saturating_mul(1i64 << exp.min(22))
        .min(BACKOFF_MAX_MS)
}

pub fn spawn(svc: Service, metrics: Arc<Metrics>, timeout: Duration) {
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhook client could not be built; webhooks disabled");
                return;
            }
        };
        let ready = svc.writer().outbox_ready.clone();
        loop {
            let notified = ready.notified();
            let n = round(&svc, &client, &metrics).await;
            if n < LEASE_BATCH {
                let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            }
        }
    });
}

/// One round: lease, deliver concurrently, record. Returns how many were leased.
async fn round(svc: &Service, client: &reqwest::Client, metrics: &Metrics) -> usize {
    let items = match svc
        .writer()
        .house(Housekeeping::LeaseOutbox {
            channel: "webhook",
            target: None,
            limit: LEASE_BATCH,
            lease_ms: LEASE_MS,
            head_only: false,
        })
        .await
    {
        Ok(HouseReply::Leased(items)) => items,
        Ok(_) => return 0,
        Err(e) => {
            tracing::warn!(error = %e, "leasing webhooks failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return 0;
        }
    };
    let n = items.len();
    let mut set = tokio::task::JoinSet::new();
    for item in items {
        let svc = svc.clone();
        let client = client.clone();
        set.spawn(async move {
            let res = deliver(&svc, &client, &item).await;
            (item, res)
        });
    }
    let mut delivered = Vec::new();
    while let Some(Ok((item, res))) = set.join_next().await {
        match res {
            Ok(()) => {
                metrics.webhooks.inc(&["delivered"]);
                delivered.push(item.id);
            }
            Err(e) => {
                metrics.webhooks.inc(&["failed"]);
                tracing::info!(id = item.id, attempts = item.attempts, error = %e, "webhook delivery failed; will retry");
                let next = svc.now_ms() + backoff_ms(item.attempts - 1);
                let _ = svc
                    .writer()
                    .house(Housekeeping::OutboxRetry {
                        id: item.id,
                        next_ms: next,
                        error: e,
                    })
                    .await;
            }
        }
    }
    if !delivered.is_empty() {
        let _ = svc
            .writer()
            .house(Housekeeping::OutboxDelivered { ids: delivered })
            .await;
    }
    n
}

async fn deliver(svc: &Service, client: &reqwest::Client, item: &OutboxItem) -> Result<(), String> {
    let m = svc
        .store()
        .merchant(&item.target)
        .await
        .map_err(|e| e.to_string())?;
    let Some(m) = m else {
        return Ok(()); // The terminal is gone: nobody to tell.
    };
    let Some(url) = m.webhook_url else {
        return Ok(()); // The merchant turned webhooks off since.
    };
    let t_s = svc.now_ms() / 1000;
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("telepay-event-id", format!("{}:{}", item.txn_id, item.seq));
    if let Some(secret) = &m.webhook_secret {
        req = req.header("telepay-signature", signature(secret, t_s, &item.payload));
    }
    let resp = req
        .body(item.payload.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", resp.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(3), 8_000);
        assert_eq!(backoff_ms(40), BACKOFF_MAX_MS);
    }

    #[test]
    fn signature_is_hmac_of_time_and_body() {
        let s = signature("whsec", 1_700_000_000, "{}");
        assert!(s.starts_with("t=1700000000,v1="));
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(s, signature("whsec", 1_700_000_001, "{}"));
    }
}
