//! The SMS channel in the running gateway: the SMPP link ([`super::link`]), the paying-by-text
//! dialogues ([`super::dialogue`]) run against the settlement [`Service`], and the receipts
//! outbox ([`super::outbox`]).
//!
//! The dialogue driver is one task that owns the [`Dialogues`] table. A payer's text goes in,
//! the dialogue's [`Action`]s come out: replies go to the link without waiting, and each
//! [`CoreRequest`] becomes a short task calling the service, whose answer comes back to the
//! driver as a [`CoreResult`] with the request's ticket. When a claimed transaction has no amount
//! yet, a task waits for it (as the IVR does) and reports `AmountArrived`. Dialogues expire at
//! the table's deadline. PINs and answers pass through as [`super::dialogue::Secret`]s and are
//! never logged; neither are texts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::SmsError;
use super::dialogue::{
    Action, Amount, AuthStep, CoreRequest, CoreResult, DialogueConfig, Dialogues, HistoryEntry,
    Ticket,
};
use super::link::{self, Inbound, LinkConfig, LinkHandle};
use super::session::{BindMode, EsmeConfig};
use crate::config::SmsConfig;
use crate::settlement::Service;
use crate::settlement::auth_policy::Method;
use crate::settlement::credentials::SecretDigits;
use crate::settlement::engine::{ClaimError, OpError, PayerChannel, StepOutcome};
use crate::settlement::lifecycle::{DeclineReason, EventKind, Party, Txn, TxnState};
use crate::settlement::service::WaitError;
use crate::store::writer::{CoreError, Housekeeping};

/// Core requests in progress at once; further texts wait (and so does the SMSC).
const CORE_TASKS_MAX: usize = 256;

/// The session settings for a `[sms]` section.
pub fn esme_config(c: &SmsConfig) -> EsmeConfig {
    EsmeConfig {
        system_id: c.system_id.clone(),
        password: c.password.clone(),
        system_type: c.system_type.clone(),
        address_range: c.address_range.clone(),
        bind_mode: BindMode::Transceiver,
        source_addr: c.source_addr.clone(),
        source_addr_ton: c.source_addr_ton,
        source_addr_npi: c.source_addr_npi,
        registered_delivery: c.registered_delivery,
        window_size: c.window,
        enquire_link_interval_ms: c.enquire_link_s.saturating_mul(1000),
        reconnect_backoff_ms: c.reconnect_min_ms,
        reconnect_backoff_max_ms: c.reconnect_max_ms,
        response_timeout_ms: c.response_timeout_ms,
        ..EsmeConfig::default()
    }
}

/// The dialogue settings for a `[sms]` section and the core's rules.
pub fn dialogue_config(c: &SmsConfig, number_digits: usize) -> DialogueConfig {
    DialogueConfig {
        dialogue_ttl_ms: c.dialogue_ttl_s.saturating_mul(1000),
        dialogues_max: c.dialogues_max.max(1),
        // The check digit comes on top of the payload digits.
        number_digits: number_digits + 1,
        call_number: c.call_number.clone(),
        brand: c.brand.clone(),
        ..DialogueConfig::default()
    }
}

/// Starts the SMS channel: the link, the dialogue driver and the receipts outbox.
pub fn start(svc: Service, c: &SmsConfig) -> Result<LinkHandle, SmsError> {
    let (link, inbound) = link::spawn(LinkConfig {
        address: format!("{}:{}", c.host, c.port),
        esme: esme_config(c),
    })?;
    let dialogues = Dialogues::new(dialogue_config(c, svc.rules().number_digits));
    tokio::spawn(run_dialogues(
        svc.clone(),
        link.clone(),
        inbound,
        dialogues,
        Duration::from_secs(c.dialogue_ttl_s),
    ));
    super::outbox::spawn(svc, link.clone(), c.brand.clone());
    tracing::info!(smsc = %format!("{}:{}", c.host, c.port), system_id = %c.system_id, "SMS channel started");
    Ok(link)
}

/// The payer's number as the core knows it: E.164 with `+`. Alphanumeric senders cannot pay.
pub fn msisdn_of(source_addr: &str) -> Option<String> {
    let digits = source_addr.strip_prefix('+').unwrap_or(source_addr);
    let digits = digits.strip_prefix("00").unwrap_or(digits);
    (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("+{digits}"))
}

/// What a core task reports to the driver.
enum Done {
    /// A result for the dialogue holding `ticket`; `claimed` names the transaction it claimed.
    Result {
        ticket: Ticket,
        result: CoreResult,
        claimed: Option<String>,
    },
    /// A reply the dialogue does not need to know about.
    Reply { to: String, text: String },
    /// The ticket's transaction needs no more requests.
    Forget(Ticket),
}

/// Runs the dialogues until the link's inbound stream ends.
pub async fn run_dialogues(
    svc: Service,
    link: LinkHandle,
    mut inbound: mpsc::Receiver<Inbound>,
    mut dialogues: Dialogues,
    amount_wait: Duration,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let permits = Arc::new(Semaphore::new(CORE_TASKS_MAX));
    // The transaction each ticket claimed, and back.
    let mut txns: HashMap<Ticket, String> = HashMap::new();
    let mut tickets: HashMap<String, Ticket> = HashMap::new();
    // What the merchant or the clock does to a claimed transaction reaches its dialogue.
    let mut events = svc.subscribe();
    let far = Duration::from_secs(3600);
    loop {
        let deadline = dialogues
            .next_deadline()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + far);
        let actions = tokio::select! {
            m = inbound.recv() => match m {
                None => break,
                Some(Inbound::Text(d)) => {
                    let Some(msisdn) = msisdn_of(&d.from) else {
                        tracing::info!(from = %d.from, "text from a sender that cannot pay; ignored");
                        continue;
                    };
                    dialogues.handle_text(Instant::now().into_std(), &msisdn, &d.text)
                }
                Some(Inbound::Receipt(r)) => {
                    // Bounded like core requests: a flood of receipts slows the SMSC down.
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    let svc = svc.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        let job = Housekeeping::SmsDeliveryReceipt {
                            message_id: r.message_id.clone(),
                            state: r.state.text().to_owned(),
                            error: r.error.clone(),
                        };
                        if let Err(e) = svc.writer().house(job).await {
                            tracing::warn!(error = %e, "recording a delivery receipt failed");
                        }
                    });
                    continue;
                }
            },
            Some(done) = done_rx.recv() => match done {
                Done::Result { ticket, result, claimed } => {
                    if let Some(txn_id) = claimed {
                        tickets.insert(txn_id.clone(), ticket.clone());
                        txns.insert(ticket.clone(), txn_id.clone());
                        if let CoreResult::Claimed { amount: None, .. } = &result {
                            spawn_amount_wait(&svc, &done_tx, ticket.clone(), txn_id, amount_wait);
                        }
                    }
                    if ends(&result) && let Some(txn_id) = txns.remove(&ticket) {
                        tickets.remove(&txn_id);
                    }
                    dialogues.handle_result(Instant::now().into_std(), ticket, result)
                }
                Done::Reply { to, text } => {
                    link.send(&to, &text);
                    continue;
                }
                Done::Forget(ticket) => {
                    if let Some(txn_id) = txns.remove(&ticket) {
                        tickets.remove(&txn_id);
                    }
                    continue;
                }
            },
            e = events.recv() => match e {
                Ok(e) => {
                    let Some(result) = event_result(&e.kind) else { continue };
                    let Some(ticket) = tickets.remove(&e.txn_id) else { continue };
                    txns.remove(&ticket);
                    dialogues.handle_result(Instant::now().into_std(), ticket, result)
                }
                // Missed events: the dialogue learns at the payer's next step instead.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::time::sleep_until(deadline) => {
                dialogues.handle_timeout(Instant::now().into_std())
            }
        };
        for action in actions {
            match action {
                Action::Reply { to, text } => link.send(&to, &text),
                Action::Core(request) => {
                    let txn_id = txns.get(request_ticket(&request)).cloned();
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    let svc = svc.clone();
                    let done_tx = done_tx.clone();
                    tokio::spawn(async move {
                        let done = perform(&svc, request, txn_id, amount_wait).await;
                        drop(permit);
                        let _ = done_tx.send(done);
                    });
                }
            }
        }
    }
}

/// What an event of a claimed transaction, made by someone other than this dialogue, means to
/// it: the merchant cancelled, the transaction expired or was declined.
fn event_result(kind: &EventKind) -> Option<CoreResult> {
    match kind {
        EventKind::Cancelled {
            by: Party::Merchant,
        } => Some(CoreResult::Cancelled),
        EventKind::Expired => Some(CoreResult::Expired),
        EventKind::Declined { reason, detail } => Some(declined(Some(*reason), detail.clone())),
        _ => None,
    }
}

/// True when the result ends the dialogue's business with its transaction.
fn ends(result: &CoreResult) -> bool {
    !matches!(
        result,
        CoreResult::Claimed { .. }
            | CoreResult::AmountArrived(_)
            | CoreResult::StepAccepted
            | CoreResult::PinWrong { .. }
            | CoreResult::AnswerWrong { .. }
    )
}

fn request_ticket(r: &CoreRequest) -> &Ticket {
    match r {
        CoreRequest::Claim { ticket, .. }
        | CoreRequest::SubmitPin { ticket, .. }
        | CoreRequest::SubmitAnswer { ticket, .. }
        | CoreRequest::Confirm { ticket }
        | CoreRequest::Cancel { ticket }
        | CoreRequest::Release { ticket }
        | CoreRequest::Balance { ticket }
        | CoreRequest::History { ticket, .. } => ticket,
    }
}

fn spawn_amount_wait(
    svc: &Service,
    done_tx: &mpsc::UnboundedSender<Done>,
    ticket: Ticket,
    txn_id: String,
    wait: Duration,
) {
    let svc = svc.clone();
    let done_tx = done_tx.clone();
    tokio::spawn(async move {
        let result = match svc.wait_amount(&txn_id, wait).await {
            Ok(t) => match amount_of(&t) {
                Some(a) => CoreResult::AmountArrived(a),
                None => return,
            },
            Err(WaitError::Ended(_)) => match ended(&svc, &txn_id).await {
                Some(r) => r,
                None => return,
            },
            // The dialogue expires on its own.
            Err(WaitError::TimedOut) => return,
            Err(WaitError::Core(_)) => CoreResult::Unavailable,
        };
        let _ = done_tx.send(Done::Result {
            ticket,
            result,
            claimed: None,
        });
    });
}

fn amount_of(t: &Txn) -> Option<Amount> {
    t.amount_minor.map(|amount_minor| Amount {
        amount_minor,
        currency: t.currency.clone(),
    })
}

/// What a transaction that has ended means for its dialogue.
async fn ended(svc: &Service, txn_id: &str) -> Option<CoreResult> {
    let t = svc.store().txn(txn_id).await.ok()??;
    Some(match t.state {
        TxnState::Cancelled => CoreResult::Cancelled,
        TxnState::Expired => CoreResult::Expired,
        TxnState::Settled => CoreResult::Settled {
            reference: t.reference.clone(),
        },
        TxnState::Declined => declined(t.decline_reason, None),
        _ => return None,
    })
}

fn declined(reason: Option<DeclineReason>, detail: Option<String>) -> CoreResult {
    match reason {
        Some(DeclineReason::AuthRefusedByPolicy) => CoreResult::RefusedByPolicy {
            reason: sentence(
                detail.unwrap_or_else(|| DeclineReason::AuthRefusedByPolicy.explain().into()),
            ),
        },
        Some(DeclineReason::PayerLocked) => CoreResult::Locked,
        Some(r) => CoreResult::Declined {
            reason: sentence(detail.unwrap_or_else(|| r.explain().into())),
        },
        None => CoreResult::Declined {
            reason: sentence(detail.unwrap_or_else(|| "declined".into())),
        },
    }
}

/// A reason as the dialogue quotes it inside its own sentence: without the closing full stop.
fn sentence(reason: String) -> String {
    reason.trim_end().trim_end_matches('.').to_owned()
}

/// A core error as the dialogue understands it.
async fn error_result(svc: &Service, e: CoreError, txn_id: Option<&str>) -> CoreResult {
    match e {
        CoreError::Unavailable(_) => CoreResult::Unavailable,
        CoreError::Op(op) => match op {
            OpError::Claim(ClaimError::Blocked { .. }) => CoreResult::Blocked,
            OpError::Claim(ClaimError::InUse) => CoreResult::InUse,
            OpError::Claim(_) | OpError::Number(_) | OpError::UnknownTransaction => {
                CoreResult::InvalidNumber
            }
            OpError::Declined { reason, detail, .. } => declined(Some(reason), detail),
            OpError::UnknownPayer => declined(Some(DeclineReason::PayerUnknown), None),
            other => {
                // A request that no longer fits the transaction: it has usually ended.
                if let Some(id) = txn_id
                    && let Some(r) = ended(svc, id).await
                {
                    return r;
                }
                CoreResult::Declined {
                    reason: other.to_string(),
                }
            }
        },
    }
}

fn auth_steps(t: &Txn) -> Vec<AuthStep> {
    t.auth
        .remaining()
        .into_iter()
        .map(|m| match m {
            Method::Pin => AuthStep::Pin,
            Method::Challenge => AuthStep::Challenge {
                question: t.auth.question_text.clone().unwrap_or_default(),
            },
            Method::Voice => AuthStep::VoicePrint,
            Method::Visual => AuthStep::MerchantVisualCheck,
        })
        .collect()
}

fn step_result(outcome: StepOutcome, answer: bool) -> CoreResult {
    let tries = |n: i64| u32::try_from(n.max(0)).unwrap_or(0);
    match outcome {
        StepOutcome::Passed { .. } => CoreResult::StepAccepted,
        StepOutcome::Wrong { tries_left } if answer => CoreResult::AnswerWrong {
            tries_left: tries(tries_left),
        },
        StepOutcome::Wrong { tries_left } => CoreResult::PinWrong {
            tries_left: tries(tries_left),
        },
        StepOutcome::Locked => CoreResult::Locked,
    }
}

/// Makes one request of the core.
async fn perform(
    svc: &Service,
    request: CoreRequest,
    txn_id: Option<String>,
    wait: Duration,
) -> Done {
    let result = |ticket: Ticket, result: CoreResult| Done::Result {
        ticket,
        result,
        claimed: None,
    };
    let no_txn = |ticket: Ticket| Done::Result {
        ticket,
        result: CoreResult::Expired,
        claimed: None,
    };
    match request {
        CoreRequest::Claim { ticket, number } => {
            match svc.claim(&ticket.msisdn, &number, PayerChannel::Sms).await {
                Ok(c) => {
                    let t = &c.txn;
                    let amount = amount_of(t).filter(|_| t.state != TxnState::Paired);
                    Done::Result {
                        result: CoreResult::Claimed {
                            merchant_name: c.merchant_name.clone(),
                            amount,
                            auth_steps: auth_steps(t),
                        },
                        claimed: Some(t.id.clone()),
                        ticket,
                    }
                }
                Err(e) => {
                    let r = error_result(svc, e, None).await;
                    result(ticket, r)
                }
            }
        }
        CoreRequest::SubmitPin { ticket, pin } => {
            let Some(id) = txn_id else {
                return no_txn(ticket);
            };
            let r = match SecretDigits::pin(pin.expose()) {
                Err(_) => CoreResult::PinWrong { tries_left: 1 },
                Ok(pin) => match svc.submit_pin(&ticket.msisdn, &id, pin).await {
                    Ok((_, outcome)) => step_result(outcome, false),
                    Err(e) => error_result(svc, e, Some(&id)).await,
                },
            };
            result(ticket, r)
        }
        CoreRequest::SubmitAnswer { ticket, answer } => {
            let Some(id) = txn_id else {
                return no_txn(ticket);
            };
            let r = match SecretDigits::answer(answer.expose()) {
                Err(_) => CoreResult::AnswerWrong { tries_left: 1 },
                Ok(a) => match svc.submit_answer(&ticket.msisdn, &id, a).await {
                    Ok((_, outcome)) => step_result(outcome, true),
                    Err(e) => error_result(svc, e, Some(&id)).await,
                },
            };
            result(ticket, r)
        }
        CoreRequest::Confirm { ticket } => {
            let Some(id) = txn_id else {
                return no_txn(ticket);
            };
            // A merchant-side visual check is the merchant's to finish first.
            if let Ok(Some(t)) = svc.payer_txn(&ticket.msisdn, &id).await
                && t.auth.remaining().contains(&Method::Visual)
                && let Err(e) = svc
                    .wait_for(&id, wait, |t| !t.auth.remaining().contains(&Method::Visual))
                    .await
            {
                let r = match e {
                    WaitError::Core(e) => error_result(svc, e, Some(&id)).await,
                    _ => ended(svc, &id).await.unwrap_or(CoreResult::Expired),
                };
                return result(ticket, r);
            }
            let r = match svc.confirm(&ticket.msisdn, &id).await {
                Ok(t) if t.state == TxnState::Settled => CoreResult::Settled {
                    reference: t.reference.clone(),
                },
                Ok(t) if t.state == TxnState::Declined => declined(t.decline_reason, None),
                Ok(_) => ended(svc, &id).await.unwrap_or(CoreResult::Unavailable),
                Err(e) => error_result(svc, e, Some(&id)).await,
            };
            result(ticket, r)
        }
        CoreRequest::Cancel { ticket } => {
            if let Some(id) = txn_id {
                if let Err(e) = svc.payer_cancel(&ticket.msisdn, &id).await {
                    tracing::debug!(error = %e, "cancelling for a text dialogue");
                }
            }
            // Whatever became of it, the dialogue is over.
            result(ticket, CoreResult::Cancelled)
        }
        CoreRequest::Release { ticket } => {
            // The claim stays with this payer: calling in with the same number claims it again.
            Done::Forget(ticket)
        }
        CoreRequest::Balance { ticket } => match svc.available(&ticket.msisdn).await {
            Ok(Some(a)) => result(
                ticket,
                CoreResult::Balance(Amount {
                    amount_minor: a.available_minor,
                    currency: a.currency,
                }),
            ),
            Ok(None) => Done::Reply {
                to: ticket.msisdn,
                text: DeclineReason::PayerUnknown.explain().into(),
            },
            Err(_) => result(ticket, CoreResult::Unavailable),
        },
        CoreRequest::History { ticket, n } => {
            match svc.purchases(&ticket.msisdn, usize::from(n)).await {
                Ok(list) => {
                    let entries = list
                        .into_iter()
                        .map(|p| HistoryEntry {
                            merchant_name: p.merchant_name,
                            amount: Amount {
                                amount_minor: p.amount_minor,
                                currency: p.currency,
                            },
                            at: time::OffsetDateTime::from_unix_timestamp_nanos(
                                i128::from(p.at_ms) * 1_000_000,
                            )
                            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                        })
                        .collect();
                    result(ticket, CoreResult::History(entries))
                }
                Err(_) => result(ticket, CoreResult::Unavailable),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_become_e164_numbers_and_alphanumeric_senders_cannot_pay() {
        assert_eq!(msisdn_of("15550100").as_deref(), Some("+15550100"));
        assert_eq!(msisdn_of("+15550100").as_deref(), Some("+15550100"));
        assert_eq!(msisdn_of("0015550100").as_deref(), Some("+15550100"));
        assert_eq!(msisdn_of("BANK"), None);
        assert_eq!(msisdn_of(""), None);
        assert_eq!(msisdn_of("1234567890123456"), None);
    }

    #[test]
    fn the_sms_section_maps_onto_the_session_and_dialogue_settings() {
        let c = SmsConfig {
            window: 25,
            enquire_link_s: 7,
            reconnect_min_ms: 200,
            reconnect_max_ms: 3_000,
            dialogue_ttl_s: 120,
            call_number: "+1 555 0199".into(),
            ..SmsConfig::default()
        };
        let e = esme_config(&c);
        assert_eq!(e.window_size, 25);
        assert_eq!(e.enquire_link_interval_ms, 7_000);
        assert_eq!(
            (e.reconnect_backoff_ms, e.reconnect_backoff_max_ms),
            (200, 3_000)
        );
        assert!(e.validate().is_ok());
        let d = dialogue_config(&c, 8);
        assert_eq!(d.number_digits, 9);
        assert_eq!(d.dialogue_ttl_ms, 120_000);
        assert_eq!(d.call_number, "+1 555 0199");
    }

    #[test]
    fn core_outcomes_become_dialogue_results() {
        assert_eq!(
            declined(Some(DeclineReason::PayerLocked), None),
            CoreResult::Locked
        );
        assert_eq!(
            declined(
                Some(DeclineReason::AuthRefusedByPolicy),
                Some("This payment needs voice, which you have not set up.".into())
            ),
            CoreResult::RefusedByPolicy {
                reason: "This payment needs voice, which you have not set up".into()
            }
        );
        assert_eq!(
            declined(Some(DeclineReason::InsufficientFunds), None),
            CoreResult::Declined {
                reason: "Your available amount is not enough for this payment".into()
            }
        );
        assert_eq!(
            event_result(&EventKind::Cancelled {
                by: Party::Merchant
            }),
            Some(CoreResult::Cancelled)
        );
        // The payer's own cancel is answered by the request that made it.
        assert_eq!(
            event_result(&EventKind::Cancelled { by: Party::Payer }),
            None
        );
        assert_eq!(event_result(&EventKind::Expired), Some(CoreResult::Expired));
        assert_eq!(event_result(&EventKind::Confirmed), None);
        assert_eq!(
            step_result(StepOutcome::Wrong { tries_left: 2 }, false),
            CoreResult::PinWrong { tries_left: 2 }
        );
        assert_eq!(
            step_result(StepOutcome::Wrong { tries_left: -1 }, true),
            CoreResult::AnswerWrong { tries_left: 0 }
        );
        assert!(ends(&CoreResult::Settled {
            reference: "R".into()
        }));
        assert!(!ends(&CoreResult::StepAccepted));
    }
}
