//! Receipt texts from the persisted outbox (claims 8 and 32), for every channel's settlements.
//!
//! The settlement writer puts a `receipt` row in the outbox in the same database transaction as
//! the settlement (or reversal) it reports. This task leases due rows while the SMPP link is
//! bound, submits each as a text to the payer, and only once the SMSC has accepted every part
//! (`submit_sm_resp` with status 0) records the receipt with its message ids and marks the row
//! delivered, in one writer transaction. A refusal, a lost link or a timeout puts the row back
//! with a backoff. Rows wait in the database while the SMSC is away, and across restarts (a lease
//! left by a crash expires after `LEASE_MS`).
//!
//! Deduplication: a receipt id being submitted by this process is never submitted again until
//! its outcome is known, however often its row is leased meanwhile; a receipt id already
//! recorded as sent is never recorded twice. What remains is SMPP's own window of doubt: a part
//! accepted by the SMSC whose response was lost is sent again (at least once, never lost).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use super::link::{LinkHandle, SendError};
use super::receipt::{self, ReceiptFacts};
use super::{SmsError, money};
use crate::settlement::Service;
use crate::store::writer::{HouseReply, Housekeeping, OutboxItem};

/// The outbox channel the settlement writer fills.
pub const CHANNEL: &str = "receipt";
/// Rows leased per round.
const LEASE_BATCH: usize = 64;
/// A leased row goes out again (here or on another node) after this long.
const LEASE_MS: i64 = 30_000;
/// Receipts being submitted at once.
const SENDING_MAX: usize = 512;
/// Longest wait between attempts of one receipt.
const BACKOFF_MAX_MS: i64 = 600_000;
/// How long one round waits for new rows before looking again.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// A receipt row's payload, as `settlement::engine` writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceiptPayload {
    pub receipt_id: String,
    pub msisdn: String,
    pub merchant_name: String,
    pub reference: String,
    pub amount_minor: Option<i64>,
    pub currency: String,
    pub at_ms: i64,
    /// `settled` or `reversed`.
    pub event: String,
}

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at ten minutes.
pub fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(0, 20) as u32;
    1_000i64.saturating_mul(1i64 << exp).min(BACKOFF_MAX_MS)
}

/// The receipt's text: `Paid 12.50 USD to Demo Shop. Ref …` or, for a reversal,
/// `Refunded 12.50 USD from Demo Shop. Ref …`.
pub fn render(p: &ReceiptPayload, brand: &str) -> String {
    let settled_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(p.at_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let facts = ReceiptFacts {
        merchant_name: p.merchant_name.clone(),
        amount_minor: p.amount_minor.unwrap_or(0),
        currency: p.currency.clone(),
        reference: p.reference.clone(),
        settled_at,
        brand: brand.to_owned(),
    };
    let text = receipt::render(&facts);
    if p.event == "reversed" {
        let name = receipt::display_name(&p.merchant_name, receipt::MERCHANT_NAME_CHARS_MAX);
        let paid = format!(
            "Paid {} to {name}",
            money::format_amount(facts.amount_minor, &facts.currency)
        );
        let refunded = format!(
            "Refunded {} from {name}",
            money::format_amount(facts.amount_minor, &facts.currency)
        );
        return text.replacen(&paid, &refunded, 1);
    }
    text
}

/// Starts the receipts sender.
pub fn spawn(svc: Service, link: LinkHandle, brand: String) {
    tokio::spawn(async move {
        let sending: Arc<Mutex<HashSet<String>>> = Arc::default();
        let ready = svc.writer().outbox_ready.clone();
        loop {
            if !link.bound() {
                link.wait_bound(IDLE_WAIT).await;
                continue;
            }
            let notified = ready.notified();
            let n = round(&svc, &link, &brand, &sending).await;
            if n < LEASE_BATCH {
                let _ = tokio::time::timeout(IDLE_WAIT, notified).await;
            }
        }
    });
}

fn sending_len(sending: &Mutex<HashSet<String>>) -> usize {
    sending.lock().map(|s| s.len()).unwrap_or(usize::MAX)
}

/// One round: lease, start a submit for each receipt not already being sent. Returns how many
/// submits it started (rows whose submit is still under way do not count, so a round that finds
/// only those waits before the next).
async fn round(
    svc: &Service,
    link: &LinkHandle,
    brand: &str,
    sending: &Arc<Mutex<HashSet<String>>>,
) -> usize {
    let room = SENDING_MAX.saturating_sub(sending_len(sending));
    if room == 0 {
        return 0;
    }
    let items = match svc
        .writer()
        .house(Housekeeping::LeaseOutbox {
            channel: CHANNEL,
            target: None,
            limit: LEASE_BATCH.min(room),
            lease_ms: LEASE_MS,
            head_only: false,
        })
        .await
    {
        Ok(HouseReply::Leased(items)) => items,
        Ok(_) => return 0,
        Err(e) => {
            tracing::warn!(error = %e, "leasing receipts failed");
            return 0;
        }
    };
    let mut started = 0;
    for item in items {
        let payload = match serde_json::from_str::<ReceiptPayload>(&item.payload) {
            Ok(p) => p,
            Err(e) => {
                // It will not parse any better later; keep it for a human, out of the way.
                tracing::error!(id = item.id, error = %e, "unreadable receipt row");
                retry(
                    svc,
                    &item,
                    BACKOFF_MAX_MS,
                    format!("unreadable payload: {e}"),
                )
                .await;
                continue;
            }
        };
        let fresh = sending
            .lock()
            .map(|mut s| s.insert(payload.receipt_id.clone()))
            .unwrap_or(false);
        if !fresh {
            // Its submit is still under way; the outcome decides.
            continue;
        }
        started += 1;
        let (svc, link, sending) = (svc.clone(), link.clone(), sending.clone());
        let text = render(&payload, brand);
        tokio::spawn(async move {
            send(&svc, &link, &item, &payload, &text).await;
            if let Ok(mut s) = sending.lock() {
                s.remove(&payload.receipt_id);
            }
        });
    }
    started
}

async fn retry(svc: &Service, item: &OutboxItem, delay_ms: i64, error: String) {
    let _ = svc
        .writer()
        .house(Housekeeping::OutboxRetry {
            id: item.id,
            next_ms: svc.now_ms() + delay_ms,
            error,
        })
        .await;
}

async fn send(
    svc: &Service,
    link: &LinkHandle,
    item: &OutboxItem,
    payload: &ReceiptPayload,
    text: &str,
) {
    match link.submit(&payload.msisdn, text).await {
        Ok(message_ids) => {
            let job = Housekeeping::SmsReceiptSent {
                outbox_id: item.id,
                receipt_id: payload.receipt_id.clone(),
                msisdn: payload.msisdn.clone(),
                message_ids,
            };
            match svc.writer().house(job).await {
                Ok(_) => tracing::info!(receipt_id = %payload.receipt_id, "receipt text sent"),
                Err(e) => {
                    tracing::warn!(receipt_id = %payload.receipt_id, error = %e, "receipt sent but not recorded")
                }
            }
        }
        Err(SendError::Rejected(e @ (SmsError::InvalidAddress | SmsError::TextTooLong { .. }))) => {
            tracing::warn!(receipt_id = %payload.receipt_id, error = %e, "receipt cannot be sent");
            retry(svc, item, BACKOFF_MAX_MS, e.to_string()).await;
        }
        Err(e) => {
            tracing::info!(receipt_id = %payload.receipt_id, attempts = item.attempts, error = %e, "receipt not sent; will retry");
            retry(svc, item, backoff_ms(item.attempts - 1), e.to_string()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(event: &str) -> ReceiptPayload {
        ReceiptPayload {
            receipt_id: "tx_1:5".into(),
            msisdn: "+15550100".into(),
            merchant_name: "Demo Shop".into(),
            reference: "K7Q2M9".into(),
            amount_minor: Some(1250),
            currency: "USD".into(),
            at_ms: 1_714_572_180_000,
            event: event.into(),
        }
    }

    #[test]
    fn receipts_name_amount_merchant_reference_and_time() {
        assert_eq!(
            render(&payload("settled"), "telepay"),
            "Paid 12.50 USD to Demo Shop. Ref K7Q2M9. 2024-05-01 14:03 UTC. telepay"
        );
        assert_eq!(
            render(&payload("reversed"), "telepay"),
            "Refunded 12.50 USD from Demo Shop. Ref K7Q2M9. 2024-05-01 14:03 UTC. telepay"
        );
    }

    #[test]
    fn the_engine_payload_parses() {
        let json = r#"{"receipt_id":"tx_a:7","msisdn":"+15550100","merchant_name":"Demo Shop","reference":"R1","amount_minor":500,"currency":"USD","auth_code":"123456","at_ms":1,"event":"settled"}"#;
        let p: ReceiptPayload = serde_json::from_str(json).unwrap();
        assert_eq!(p.receipt_id, "tx_a:7");
        assert_eq!(p.amount_minor, Some(500));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(3), 8_000);
        assert_eq!(backoff_ms(50), BACKOFF_MAX_MS);
    }
}
