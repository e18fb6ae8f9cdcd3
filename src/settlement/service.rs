//! The settlement service: the one API every channel calls.
//!
//! Merchant channels (the HTTP API, the ISO 8583 link) open transactions, set amounts, cancel and
//! reverse; payer channels (calls, texts, the demo sandbox) claim numbers, authenticate, confirm.
//! Every change goes through the store's group-commit writer, so an answer from this service
//! means the change is on disk. Everyone subscribes to the same event stream.

use super::credentials::{SecretDigits, ServerSecret};
use super::engine::{
    Claimed, EventRecord, NewMerchant, NewPayer, Op, OpError, PayerChannel, Reply, StepOutcome,
};
use super::lifecycle::{Origin, Txn, TxnState};
use super::model::Merchant;
use super::rules::Rules;
use super::txn_number;
use crate::clock::Clock;
use crate::store::reads::Purchase;
use crate::store::writer::{CoreError, Housekeeping, Writer};
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// How often a waiter reads the store even without an event.
const WAIT_POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    writer: Writer,
    rules: Arc<Rules>,
    secret: Arc<ServerSecret>,
    clock: Arc<dyn Clock>,
    node_id: String,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("node_id", &self.inner.node_id)
            .finish()
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> CoreError {
        CoreError::Unavailable(e.to_string())
    }
}

/// A payer's available amount (claim 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    pub balance_minor: i64,
    pub available_minor: i64,
    pub currency: String,
}

/// Why waiting for a transaction ended without what was waited for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    #[error("timed out")]
    TimedOut,
    #[error("the transaction ended ({0})")]
    Ended(&'static str),
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl Service {
    /// Starts the writer and the background housekeeping (expiry, pruning).
    pub async fn start(
        store: Store,
        rules: Rules,
        secret: ServerSecret,
        clock: Arc<dyn Clock>,
        node_id: String,
    ) -> Result<Service, StoreError> {
        let rules = Arc::new(rules);
        let secret = Arc::new(secret);
        let writer = Writer::start(
            store.clone(),
            rules.clone(),
            secret.clone(),
            clock.clone(),
            node_id.clone(),
        )
        .await?;
        if store.backend == crate::store::Backend::Postgres {
            crate::store::notify::spawn(store.url().to_string(), node_id.clone(), writer.clone());
        }
        Ok(Service {
            inner: Arc::new(Inner {
                store,
                writer,
                rules,
                secret,
                clock,
                node_id,
            }),
        })
    }

    /// Runs expiry and pruning every `period` until the process ends.
    pub fn spawn_housekeeping(&self, period: Duration) {
        let svc = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                if let Err(e) = svc.expire_due().await {
                    tracing::warn!(error = %e, "expiry sweep failed");
                }
                n += 1;
                if n % 60 == 0 {
                    let before = svc.now_ms() - svc.inner.rules.claim_window_ms;
                    let _ = svc
                        .inner
                        .writer
                        .house(Housekeeping::Prune { before_ms: before })
                        .await;
                }
            }
        });
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }
    pub fn rules(&self) -> &Rules {
        &self.inner.rules
    }
    pub fn secret(&self) -> &ServerSecret {
        &self.inner.secret
    }
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Every event of every transaction, as it is committed (here or on another node).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventRecord>> {
        self.inner.writer.events.subscribe()
    }

    pub async fn submit(&self, op: Op) -> Result<Reply, CoreError> {
        self.inner.writer.submit(op).await
    }

    async fn submit_txn(&self, op: Op) -> Result<(Txn, bool), CoreError> {
        match self.submit(op).await? {
            Reply::Txn { txn, replayed } => Ok((txn, replayed)),
            Reply::Step { txn, .. } => Ok((txn, false)),
            Reply::Claimed(c) => Ok((c.txn, c.again)),
            other => Err(CoreError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    // ---- The merchant side ----

    /// The merchant terminal holding this API key (also its link credential), if any.
    pub async fn merchant_by_key(&self, api_key: &str) -> Result<Option<Merchant>, CoreError> {
        let hash = self.inner.secret.api_key_hash(api_key);
        Ok(self.inner.store.merchant_by_key_hash(&hash).await?)
    }

    /// Checks a terminal's sign-on: registered terminal, its merchant id, its credential (claim 9).
    pub async fn sign_on(
        &self,
        terminal_id: &str,
        merchant_id: &str,
        key: &str,
    ) -> Result<Option<Merchant>, CoreError> {
        let m = self.merchant_by_key(key).await?;
        Ok(m.filter(|m| m.terminal_id == terminal_id && m.merchant_id == merchant_id))
    }

    pub async fn open(
        &self,
        terminal_id: &str,
        amount_minor: Option<i64>,
        currency: Option<String>,
        origin: Origin,
        description: Option<String>,
        idempotency: Option<(String, String)>,
    ) -> Result<(Txn, bool), CoreError> {
        self.submit_txn(Op::Open {
            terminal_id: terminal_id.to_string(),
            amount_minor,
            currency,
            origin,
            description,
            idempotency,
        })
        .await
    }

    pub async fn set_amount(
        &self,
        terminal_id: &str,
        txn_id: &str,
        amount_minor: i64,
        currency: Option<String>,
    ) -> Result<Txn, CoreError> {
        Ok(self
            .submit_txn(Op::SetAmount {
                terminal_id: terminal_id.into(),
                txn_id: txn_id.into(),
                amount_minor,
                currency,
            })
            .await?
            .0)
    }

    pub async fn cancel(&self, terminal_id: &str, txn_id: &str) -> Result<Txn, CoreError> {
        Ok(self
            .submit_txn(Op::Cancel {
                terminal_id: terminal_id.into(),
                txn_id: txn_id.into(),
            })
            .await?
            .0)
    }

    pub async fn reverse(
        &self,
        terminal_id: &str,
        txn_id: &str,
        cancel_if_open: bool,
    ) -> Result<Txn, CoreError> {
        Ok(self
            .submit_txn(Op::Reverse {
                terminal_id: terminal_id.into(),
                txn_id: txn_id.into(),
                cancel_if_open,
            })
            .await?
            .0)
    }

    pub async fn visual_check(
        &self,
        terminal_id: &str,
        txn_id: &str,
        matched: bool,
        pin_fallback: bool,
    ) -> Result<(Txn, StepOutcome), CoreError> {
        match self
            .submit(Op::VisualCheck {
                terminal_id: terminal_id.into(),
                txn_id: txn_id.into(),
                matched,
                pin_fallback,
            })
            .await?
        {
            Reply::Step { txn, outcome } => Ok((txn, outcome)),
            other => Err(CoreError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// A merchant's own transaction; another terminal's reads as absent.
    pub async fn merchant_txn(
        &self,
        terminal_id: &str,
        txn_id: &str,
    ) -> Result<Option<Txn>, CoreError> {
        Ok(self
            .inner
            .store
            .txn(txn_id)
            .await?
            .filter(|t| t.terminal_id == terminal_id))
    }

    /// Marks a one-time portrait link used and returns the image (claims 14–15).
    pub async fn fetch_portrait(&self, token: &str) -> Result<(String, Vec<u8>), CoreError> {
        if token.len() > 128 || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(OpError::TokenInvalid.into());
        }
        let msisdn = match self
            .submit(Op::UsePortraitToken {
                token: token.into(),
            })
            .await?
        {
            Reply::Portrait { msisdn } => msisdn,
            other => {
                return Err(CoreError::Unavailable(format!(
                    "unexpected reply {other:?}"
                )));
            }
        };
        self.inner
            .store
            .portrait(&msisdn)
            .await?
            .ok_or(CoreError::Op(OpError::TokenInvalid))
    }

    // ---- The payer side (the API the IVR, SMS and the sandbox call) ----

    /// Claims a number for the calling MSISDN: pairing. The check digit is verified before any
    /// store access.
    pub async fn claim(
        &self,
        msisdn: &str,
        number: &str,
        channel: PayerChannel,
    ) -> Result<Claimed, CoreError> {
        txn_number::validate(number, self.inner.rules.number_digits).map_err(OpError::from)?;
        match self
            .submit(Op::Claim {
                msisdn: msisdn.into(),
                number: number.into(),
                channel,
            })
            .await?
        {
            Reply::Claimed(c) => Ok(c),
            other => Err(CoreError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Reads a transaction as the payer who claimed it.
    pub async fn payer_txn(&self, msisdn: &str, txn_id: &str) -> Result<Option<Txn>, CoreError> {
        Ok(self
            .inner
            .store
            .txn(txn_id)
            .await?
            .filter(|t| t.payer_msisdn.as_deref() == Some(msisdn)))
    }

    /// Waits until `done` holds for the transaction, or it reaches a final state, or time runs
    /// out. Events from every node wake it; a lagging subscription falls back to the store.
    pub async fn wait_for(
        &self,
        txn_id: &str,
        timeout: Duration,
        done: impl Fn(&Txn) -> bool,
    ) -> Result<Txn, WaitError> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let t = self
                .inner
                .store
                .txn(txn_id)
                .await
                .map_err(CoreError::from)?
                .ok_or(CoreError::Op(OpError::UnknownTransaction))?;
            if done(&t) {
                return Ok(t);
            }
            if t.state.is_final() {
                return Err(WaitError::Ended(t.state.as_str()));
            }
            // Wait for an event of this transaction (or a lag, which means: look again). Look
            // again every so often anyway: a change made by a process that shares a SQLite file
            // publishes no event here.
            let look_again = tokio::time::Instant::now() + WAIT_POLL;
            loop {
                if tokio::time::Instant::now() >= deadline {
                    return Err(WaitError::TimedOut);
                }
                match tokio::time::timeout_at(deadline.min(look_again), rx.recv()).await {
                    Err(_) => break,
                    Ok(Ok(e)) if e.txn_id == txn_id => break,
                    Ok(Ok(_)) => continue,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Err(CoreError::Unavailable("event stream closed".into()).into());
                    }
                }
            }
        }
    }

    /// Waits for the merchant's amount (the vending-machine order, claim 37).
    pub async fn wait_amount(&self, txn_id: &str, timeout: Duration) -> Result<Txn, WaitError> {
        self.wait_for(txn_id, timeout, |t| {
            t.amount_minor.is_some() && t.state != TxnState::Paired
        })
        .await
    }

    async fn step(&self, op: Op) -> Result<(Txn, StepOutcome), CoreError> {
        match self.submit(op).await? {
            Reply::Step { txn, outcome } => Ok((txn, outcome)),
            other => Err(CoreError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    pub async fn submit_pin(
        &self,
        msisdn: &str,
        txn_id: &str,
        pin: SecretDigits,
    ) -> Result<(Txn, StepOutcome), CoreError> {
        self.step(Op::SubmitPin {
            msisdn: msisdn.into(),
            txn_id: txn_id.into(),
            pin,
        })
        .await
    }

    pub async fn submit_answer(
        &self,
        msisdn: &str,
        txn_id: &str,
        answer: SecretDigits,
    ) -> Result<(Txn, StepOutcome), CoreError> {
        self.step(Op::SubmitAnswer {
            msisdn: msisdn.into(),
            txn_id: txn_id.into(),
            answer,
        })
        .await
    }

    pub async fn submit_voice(
        &self,
        msisdn: &str,
        txn_id: &str,
        accepted: bool,
    ) -> Result<(Txn, StepOutcome), CoreError> {
        self.step(Op::SubmitVoice {
            msisdn: msisdn.into(),
            txn_id: txn_id.into(),
            accepted,
        })
        .await
    }

    /// Checks the payer's PIN outside a payment; wrong PINs count toward the lock.
    pub async fn check_pin(
        &self,
        msisdn: &str,
        pin: SecretDigits,
    ) -> Result<StepOutcome, CoreError> {
        match self
            .submit(Op::CheckPin {
                msisdn: msisdn.into(),
                pin,
            })
            .await?
        {
            Reply::Checked(outcome) => Ok(outcome),
            other => Err(CoreError::Unavailable(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Stores (or with `None` removes) the payer's voice-print template.
    pub async fn set_voice_print(
        &self,
        msisdn: &str,
        template: Option<Vec<u8>>,
    ) -> Result<(), CoreError> {
        self.submit(Op::SetVoicePrint {
            msisdn: msisdn.into(),
            template,
        })
        .await
        .map(|_| ())
    }

    /// The final purchase confirmation; returns when the settlement is on disk.
    pub async fn confirm(&self, msisdn: &str, txn_id: &str) -> Result<Txn, CoreError> {
        Ok(self
            .submit_txn(Op::Confirm {
                msisdn: msisdn.into(),
                txn_id: txn_id.into(),
            })
            .await?
            .0)
    }

    pub async fn payer_cancel(&self, msisdn: &str, txn_id: &str) -> Result<Txn, CoreError> {
        Ok(self
            .submit_txn(Op::PayerCancel {
                msisdn: msisdn.into(),
                txn_id: txn_id.into(),
            })
            .await?
            .0)
    }

    /// The payer's available amount (claim 11).
    pub async fn available(&self, msisdn: &str) -> Result<Option<Available>, CoreError> {
        let Some(p) = self.inner.store.payer(msisdn).await? else {
            return Ok(None);
        };
        let Some(a) = self.inner.store.account(&p.account_id).await? else {
            return Ok(None);
        };
        Ok(Some(Available {
            balance_minor: a.balance_minor,
            available_minor: a.available_minor(),
            currency: a.currency,
        }))
    }

    /// The payer's last `n` purchases (claim 13).
    pub async fn purchases(&self, msisdn: &str, n: usize) -> Result<Vec<Purchase>, CoreError> {
        Ok(self.inner.store.purchases(msisdn, n).await?)
    }

    // ---- Housekeeping and administration ----

    pub async fn expire_due(&self) -> Result<usize, CoreError> {
        match self.submit(Op::ExpireDue { limit: 1000 }).await? {
            Reply::Expired(n) => Ok(n),
            _ => Ok(0),
        }
    }

    pub async fn add_merchant(&self, m: NewMerchant) -> Result<(), CoreError> {
        self.submit(Op::AddMerchant(m)).await.map(|_| ())
    }

    pub async fn add_payer(&self, p: NewPayer) -> Result<(), CoreError> {
        self.submit(Op::AddPayer(p)).await.map(|_| ())
    }
}
