//! The settlement engine: applies requests to a working set of records, in memory.
//!
//! The store's writer gathers a batch of requests, loads every record they touch into a
//! [`WorkingSet`] (locked, on PostgreSQL), calls [`apply`] for each request in arrival order,
//! writes what the working set marked as changed in the same database transaction, commits, and
//! only then answers the callers and publishes the events. `apply` is pure: no IO, no clock
//! (`now_ms` is in the working set), so it is tested without a database.
//!
//! A request that fails leaves the working set as it found it, except where failing is itself
//! recorded (a failed claim counts against the caller; a wrong PIN counts against the payer).

use super::auth_policy::{self, Method};
use super::credentials::{self, SecretDigits, ServerSecret};
use super::ledger::{self, Account, AccountKind, TransferError};
use super::lifecycle::{
    AuthProgress, DeclineReason, EventKind, LifecycleError, Origin, Txn, TxnState,
};
use super::model::{Merchant, MerchantStatus, Payer, PayerStatus};
use super::money::{AmountError, Currency, Money};
use super::rules::Rules;
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Where a channel's request comes from on the payer side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayerChannel {
    Call,
    Sms,
    Sandbox,
}

/// A request to the settlement core. Every channel's action becomes one of these.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Op {
    // The merchant side.
    Open {
        terminal_id: String,
        amount_minor: Option<i64>,
        currency: Option<String>,
        origin: Origin,
        description: Option<String>,
        /// (key, hash of the request body) from an `Idempotency-Key` header.
        idempotency: Option<(String, String)>,
    },
    SetAmount {
        terminal_id: String,
        txn_id: String,
        amount_minor: i64,
        currency: Option<String>,
    },
    Cancel {
        terminal_id: String,
        txn_id: String,
    },
    /// Reverses a settled transaction; with `cancel_if_open` an open one is cancelled instead
    /// (the ISO 8583 `0400` semantics).
    Reverse {
        terminal_id: String,
        txn_id: String,
        cancel_if_open: bool,
    },
    /// The merchant's verdict on the portrait (claims 34–36).
    VisualCheck {
        terminal_id: String,
        txn_id: String,
        matched: bool,
        pin_fallback: bool,
    },
    // The payer side.
    Claim {
        msisdn: String,
        number: String,
        channel: PayerChannel,
    },
    SubmitPin {
        msisdn: String,
        txn_id: String,
        pin: SecretDigits,
    },
    SubmitAnswer {
        msisdn: String,
        txn_id: String,
        answer: SecretDigits,
    },
    SubmitVoice {
        msisdn: String,
        txn_id: String,
        accepted: bool,
    },
    Confirm {
        msisdn: String,
        txn_id: String,
    },
    /// A PIN check outside a payment (before enrolling a voice print by phone); wrong PINs
    /// count toward the same lock as in payments.
    CheckPin {
        msisdn: String,
        pin: SecretDigits,
    },
    PayerCancel {
        msisdn: String,
        txn_id: String,
    },
    // Housekeeping.
    ExpireDue {
        limit: usize,
    },
    UsePortraitToken {
        token: String,
    },
    // Administration.
    AddMerchant(NewMerchant),
    SetMerchantStatus {
        terminal_id: String,
        status: MerchantStatus,
    },
    AddPayer(NewPayer),
    SetPin {
        msisdn: String,
        pin: SecretDigits,
    },
    AddQuestion {
        msisdn: String,
        question: String,
        answer: SecretDigits,
    },
    SetPortrait {
        msisdn: String,
        content_type: String,
        image: Vec<u8>,
    },
    Credit {
        msisdn: String,
        amount_minor: i64,
    },
    SetPayerStatus {
        msisdn: String,
        status: PayerStatus,
    },
    SetPayerDemand {
        msisdn: String,
        demand: auth_policy::PayerDemand,
    },
    SetVoicePrint {
        msisdn: String,
        template: Option<Vec<u8>>,
    },
}

#[derive(Debug, Clone)]
pub struct NewMerchant {
    pub terminal_id: String,
    pub merchant_id: String,
    pub name: String,
    pub currency: String,
    pub api_key: String,
    pub demand: auth_policy::MerchantDemand,
    pub visible_attributes: Vec<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    /// Share another terminal's settlement account; a new one is made when absent.
    pub account_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewPayer {
    pub msisdn: String,
    pub display_name: String,
    pub currency: String,
    pub attributes: BTreeMap<String, String>,
    pub credit_limit_minor: i64,
    pub txn_limit_minor: Option<i64>,
    pub demand: auth_policy::PayerDemand,
}

impl Op {
    /// A short name for metrics and logs (never the arguments: they may hold secrets).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Open { .. } => "open",
            Op::SetAmount { .. } => "set_amount",
            Op::Cancel { .. } => "cancel",
            Op::Reverse { .. } => "reverse",
            Op::VisualCheck { .. } => "visual_check",
            Op::Claim { .. } => "claim",
            Op::SubmitPin { .. } => "submit_pin",
            Op::SubmitAnswer { .. } => "submit_answer",
            Op::SubmitVoice { .. } => "submit_voice",
            Op::Confirm { .. } => "confirm",
            Op::CheckPin { .. } => "check_pin",
            Op::PayerCancel { .. } => "payer_cancel",
            Op::ExpireDue { .. } => "expire_due",
            Op::UsePortraitToken { .. } => "use_portrait_token",
            Op::AddMerchant(_) => "add_merchant",
            Op::SetMerchantStatus { .. } => "set_merchant_status",
            Op::AddPayer(_) => "add_payer",
            Op::SetPin { .. } => "set_pin",
            Op::AddQuestion { .. } => "add_question",
            Op::SetPortrait { .. } => "set_portrait",
            Op::Credit { .. } => "credit",
            Op::SetPayerStatus { .. } => "set_payer_status",
            Op::SetPayerDemand { .. } => "set_payer_demand",
            Op::SetVoicePrint { .. } => "set_voice_print",
        }
    }

    /// True for the requests that may need fresh transaction numbers.
    pub fn opens(&self) -> bool {
        matches!(self, Op::Open { .. })
    }
}

/// Why a claim did not pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    #[error("too many failed attempts; try again later")]
    Blocked { until_ms: i64 },
    #[error("this number is not a live transaction number")]
    UnknownNumber,
    #[error("this number has expired")]
    Expired,
    #[error("this number is already in use")]
    InUse,
}

/// A business outcome other than success. Nothing here is a fault of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    #[error("unknown merchant terminal")]
    UnknownTerminal,
    #[error("the merchant is suspended")]
    MerchantSuspended,
    #[error("unknown transaction")]
    UnknownTransaction,
    #[error("unknown payer")]
    UnknownPayer,
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Amount(#[from] AmountError),
    #[error("the currency must be {expected}")]
    CurrencyMismatch { expected: String },
    #[error("this idempotency key was used with a different request")]
    IdempotencyConflict,
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Number(#[from] super::txn_number::NumberError),
    #[error("declined: {}", reason.explain())]
    Declined {
        txn_id: String,
        reason: DeclineReason,
        detail: Option<String>,
    },
    #[error("the transaction is not settled, so it cannot be reversed")]
    NotSettled,
    #[error("no free transaction number could be found; try again")]
    NumberSpaceExhausted,
    #[error("this link is unknown, used or expired")]
    TokenInvalid,
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("ledger: {0}")]
    Ledger(TransferError),
}

/// How a PIN, answer or voice step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step passed; these remain.
    Passed { remaining: Vec<Method> },
    /// Wrong; the payer may try again this many times.
    Wrong { tries_left: i64 },
    /// Wrong, and the payer is now locked; the transaction is declined.
    Locked,
}

/// A successful claim: the payer's session is bound to the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub txn: Txn,
    pub merchant_name: String,
    /// The caller had already claimed this number (a retry).
    pub again: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The transaction after the request; `replayed` when an idempotency key matched.
    Txn {
        txn: Txn,
        replayed: bool,
    },
    Claimed(Claimed),
    Step {
        txn: Txn,
        outcome: StepOutcome,
    },
    Expired(usize),
    Portrait {
        msisdn: String,
    },
    /// The result of a PIN check outside a payment.
    Checked(StepOutcome),
    Done,
}

/// An event as persisted and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub txn_id: String,
    pub terminal_id: String,
    pub seq: i64,
    pub at_ms: i64,
    pub kind: EventKind,
}

/// A notice to deliver later (webhook, link advice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    pub channel: &'static str,
    pub target: String,
    pub txn_id: String,
    pub seq: i64,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    pub id: String,
    pub txn_id: Option<String>,
    pub kind: &'static str,
    pub debit_account: String,
    pub credit_account: String,
    pub amount_minor: i64,
    pub currency: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortraitToken {
    pub token: String,
    pub txn_id: String,
    pub msisdn: String,
    pub expires_ms: i64,
    pub used: bool,
}

/// Everything a batch reads and writes. Loaded by the store, changed by [`apply`], written
/// back by the store.
#[derive(Debug, Default)]
pub struct WorkingSet {
    pub now_ms: i64,
    pub txns: HashMap<String, Txn>,
    /// Rows of the number table: number → (transaction id, reusable from).
    pub numbers: HashMap<String, (String, i64)>,
    pub merchants: HashMap<String, Merchant>,
    pub payers: HashMap<String, Payer>,
    /// Keyed hashes of answers: (msisdn, question id) → hash.
    pub answers: HashMap<(String, i64), String>,
    pub accounts: HashMap<String, Account>,
    /// Failed claims per caller within the window.
    pub claim_failures: HashMap<String, i64>,
    pub blocked_until: HashMap<String, i64>,
    pub global_claim_failures: i64,
    /// (terminal, key) → (request hash, transaction id).
    pub idempotency: HashMap<(String, String), (String, String)>,
    pub portrait_tokens: HashMap<String, PortraitToken>,
    /// Fresh numbers known to be free, for `Open`.
    pub number_candidates: Vec<String>,
    /// Transactions whose expiry is due, for `ExpireDue`.
    pub due: Vec<String>,

    pub dirty_txns: BTreeSet<String>,
    pub dirty_merchants: BTreeSet<String>,
    pub dirty_payers: BTreeSet<String>,
    /// Accounts written whole: payer accounts (locked when loaded) and accounts created here.
    pub dirty_accounts: BTreeSet<String>,
    /// Changes to accounts that may go below zero without limit (merchants, funding): written
    /// as `balance + delta`, so those hot accounts need no lock while a batch runs.
    pub account_deltas: BTreeMap<String, i64>,
    /// Such accounts this batch may be the first to use: created at zero if absent.
    pub ensure_accounts: BTreeSet<String>,
    pub new_numbers: Vec<(String, String, i64)>,
    pub events: Vec<EventRecord>,
    pub outbox: Vec<OutboxRecord>,
    pub transfers: Vec<TransferRecord>,
    pub new_claim_failures: Vec<(String, i64)>,
    pub new_blocks: Vec<(String, i64)>,
    pub new_idempotency: Vec<(String, String, String, String)>,
    pub dirty_tokens: BTreeSet<String>,
    pub new_questions: Vec<(String, i64, String, String)>,
    pub new_portraits: Vec<(String, String, Vec<u8>)>,
    pub new_voice_prints: Vec<(String, Option<Vec<u8>>)>,
}

/// What `apply` needs besides the working set.
pub struct Ctx<'a> {
    pub rules: &'a Rules,
    pub secret: &'a ServerSecret,
}

fn random_digits(n: usize) -> String {
    let mut rng = OsRng.unwrap_err();
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    OsRng.unwrap_err().fill(&mut b[..]);
    hex::encode(b)
}

/// An id that sorts by creation time: the millisecond in 11 hex digits, then 40 random bits.
/// Rows made at about the same time share index pages, so a batch of payments in flight writes
/// a few pages, not one per payment.
pub fn time_ordered_id(prefix: &str, now_ms: i64) -> String {
    format!("{prefix}_{:011x}{}", now_ms.max(0), random_hex(5))
}

/// The funding account of a currency: the counterpart of money paid in.
pub fn funding_account_id(currency: &str) -> String {
    format!("funding:{currency}")
}

pub fn payer_account_id(msisdn: &str) -> String {
    format!("payer:{msisdn}")
}

pub fn merchant_account_id(merchant_id: &str) -> String {
    format!("merchant:{merchant_id}")
}

impl WorkingSet {
    pub fn new(now_ms: i64) -> WorkingSet {
        WorkingSet {
            now_ms,
            ..Default::default()
        }
    }

    fn txn(&self, id: &str) -> Result<&Txn, OpError> {
        self.txns.get(id).ok_or(OpError::UnknownTransaction)
    }

    /// The transaction if it belongs to this terminal; another terminal's is "unknown" so its
    /// existence is not revealed.
    fn merchant_txn(&self, terminal_id: &str, txn_id: &str) -> Result<&Txn, OpError> {
        let t = self.txn(txn_id)?;
        if t.terminal_id != terminal_id {
            return Err(OpError::UnknownTransaction);
        }
        Ok(t)
    }

    /// The transaction if this payer claimed it.
    fn payer_txn(&self, msisdn: &str, txn_id: &str) -> Result<&Txn, OpError> {
        let t = self.txn(txn_id)?;
        if t.payer_msisdn.as_deref() != Some(msisdn) {
            return Err(OpError::UnknownTransaction);
        }
        Ok(t)
    }

    fn merchant(&self, terminal_id: &str) -> Result<&Merchant, OpError> {
        self.merchants
            .get(terminal_id)
            .ok_or(OpError::UnknownTerminal)
    }

    fn payer(&self, msisdn: &str) -> Result<&Payer, OpError> {
        self.payers.get(msisdn).ok_or(OpError::UnknownPayer)
    }

    /// Replaces a transaction record and records the events its change caused.
    fn commit_txn(&mut self, mut txn: Txn, kinds: Vec<EventKind>) {
        for kind in kinds {
            txn.seq += 1;
            let rec = EventRecord {
                txn_id: txn.id.clone(),
                terminal_id: txn.terminal_id.clone(),
                seq: txn.seq,
                at_ms: self.now_ms,
                kind,
            };
            self.notices_for(&txn, &rec);
            self.events.push(rec);
        }
        self.dirty_txns.insert(txn.id.clone());
        self.txns.insert(txn.id.clone(), txn);
    }

    /// Turns an event into the notices its merchant should get.
    fn notices_for(&mut self, txn: &Txn, ev: &EventRecord) {
        let Some(m) = self.merchants.get(&txn.terminal_id) else {
            return;
        };
        if m.webhook_url.is_some() {
            let payload = serde_json::json!({
                "id": format!("{}:{}", txn.id, ev.seq),
                "type": ev.kind.name(),
                "created_ms": ev.at_ms,
                "transaction": {
                    "id": txn.id,
                    "number": txn.number,
                    "reference": txn.reference,
                    "state": txn.state.as_str(),
                    "amount_minor": txn.amount_minor,
                    "currency": txn.currency,
                },
                "data": ev.kind,
            });
            self.outbox.push(OutboxRecord {
                channel: "webhook",
                target: txn.terminal_id.clone(),
                txn_id: txn.id.clone(),
                seq: ev.seq,
                payload: payload.to_string(),
            });
        }
        if txn.origin == Origin::Link && ev.kind.is_advised() {
            let payload = serde_json::json!({
                "txn_id": txn.id,
                "reference": txn.reference,
                "number": txn.number,
                "amount_minor": txn.amount_minor,
                "currency": txn.currency,
                "auth_code": txn.auth_code,
                "event": ev.kind,
            });
            self.outbox.push(OutboxRecord {
                channel: "advice",
                target: txn.terminal_id.clone(),
                txn_id: txn.id.clone(),
                seq: ev.seq,
                payload: payload.to_string(),
            });
        }
        // The payer's receipt (claim 8), whatever channel they paid on; the SMS channel sends
        // it from the outbox. A reversal gets one too.
        if matches!(
            ev.kind,
            EventKind::Settled { .. } | EventKind::Reversed { .. }
        ) {
            if let Some(msisdn) = &txn.payer_msisdn {
                let payload = serde_json::json!({
                    "receipt_id": format!("{}:{}", txn.id, ev.seq),
                    "msisdn": msisdn,
                    "merchant_name": m.name,
                    "reference": txn.reference,
                    "amount_minor": txn.amount_minor,
                    "currency": txn.currency,
                    "auth_code": txn.auth_code,
                    "at_ms": ev.at_ms,
                    "event": ev.kind.name(),
                });
                self.outbox.push(OutboxRecord {
                    channel: "receipt",
                    target: msisdn.clone(),
                    txn_id: txn.id.clone(),
                    seq: ev.seq,
                    payload: payload.to_string(),
                });
            }
        }
    }

    fn touch_payer(&mut self, p: Payer) {
        self.dirty_payers.insert(p.msisdn.clone());
        self.payers.insert(p.msisdn.clone(), p);
    }

    /// Records a new or changed account. `delta` is the change of balance this makes.
    fn touch_account(&mut self, a: Account, delta: i64) {
        if a.overdraft_unlimited {
            if !self.accounts.contains_key(&a.id) {
                self.ensure_accounts.insert(a.id.clone());
            }
            *self.account_deltas.entry(a.id.clone()).or_insert(0) += delta;
        } else {
            self.dirty_accounts.insert(a.id.clone());
        }
        self.accounts.insert(a.id.clone(), a);
    }

    /// A failed claim counts against the caller (and everyone, for the global limit).
    fn record_claim_failure(&mut self, rules: &Rules, msisdn: &str) {
        let now = self.now_ms;
        let n = self.claim_failures.entry(msisdn.to_string()).or_insert(0);
        *n += 1;
        let n = *n;
        self.global_claim_failures += 1;
        self.new_claim_failures.push((msisdn.to_string(), now));
        let under_attack = self.global_claim_failures > rules.claim_global_failures_max;
        if n >= rules.claim_failures_max || under_attack {
            let until = now + rules.claim_block_ms;
            self.blocked_until.insert(msisdn.to_string(), until);
            self.new_blocks.push((msisdn.to_string(), until));
        }
    }

    /// The live owner of a number, if any.
    fn number_owner(&self, number: &str) -> Option<&str> {
        self.numbers
            .get(number)
            .filter(|(_, reusable)| *reusable > self.now_ms)
            .map(|(id, _)| id.as_str())
    }
}

/// Applies one request. See the module docs for the contract.
pub fn apply(ws: &mut WorkingSet, ctx: &Ctx<'_>, op: Op) -> Result<Reply, OpError> {
    match op {
        Op::Open {
            terminal_id,
            amount_minor,
            currency,
            origin,
            description,
            idempotency,
        } => open(
            ws,
            ctx,
            terminal_id,
            amount_minor,
            currency,
            origin,
            description,
            idempotency,
        ),
        Op::SetAmount {
            terminal_id,
            txn_id,
            amount_minor,
            currency,
        } => set_amount(ws, ctx, &terminal_id, &txn_id, amount_minor, currency),
        Op::Cancel {
            terminal_id,
            txn_id,
        } => {
            let mut t = ws.merchant_txn(&terminal_id, &txn_id)?.clone();
            if t.state == TxnState::Cancelled {
                return Ok(Reply::Txn {
                    txn: t,
                    replayed: true,
                });
            }
            t.cancel(ws.now_ms)?;
            ws.commit_txn(
                t.clone(),
                vec![EventKind::Cancelled {
                    by: super::lifecycle::Party::Merchant,
                }],
            );
            Ok(Reply::Txn {
                txn: t,
                replayed: false,
            })
        }
        Op::Reverse {
            terminal_id,
            txn_id,
            cancel_if_open,
        } => reverse(ws, &terminal_id, &txn_id, cancel_if_open),
        Op::VisualCheck {
            terminal_id,
            txn_id,
            matched,
            pin_fallback,
        } => visual_check(ws, ctx, &terminal_id, &txn_id, matched, pin_fallback),
        Op::Claim { msisdn, number, .. } => claim(ws, ctx, &msisdn, &number),
        Op::SubmitPin {
            msisdn,
            txn_id,
            pin,
        } => {
            let ok = pin_matches(ws.payer(&msisdn)?, ctx, &msisdn, &pin);
            step(ws, ctx, &msisdn, &txn_id, Method::Pin, ok)
        }
        Op::SubmitAnswer {
            msisdn,
            txn_id,
            answer,
        } => {
            let t = ws.payer_txn(&msisdn, &txn_id)?;
            let qid = t.auth.question_id;
            let ok = qid.is_some_and(|q| {
                ws.answers.get(&(msisdn.clone(), q)).is_some_and(|h| {
                    credentials::hashes_equal(h, &ctx.secret.answer_hash(&msisdn, q, &answer))
                })
            });
            step(ws, ctx, &msisdn, &txn_id, Method::Challenge, ok)
        }
        Op::SubmitVoice {
            msisdn,
            txn_id,
            accepted,
        } => step(ws, ctx, &msisdn, &txn_id, Method::Voice, accepted),
        Op::Confirm { msisdn, txn_id } => confirm(ws, &msisdn, &txn_id),
        Op::PayerCancel { msisdn, txn_id } => {
            let mut t = ws.payer_txn(&msisdn, &txn_id)?.clone();
            t.cancel(ws.now_ms)?;
            ws.commit_txn(
                t.clone(),
                vec![EventKind::Cancelled {
                    by: super::lifecycle::Party::Payer,
                }],
            );
            Ok(Reply::Txn {
                txn: t,
                replayed: false,
            })
        }
        Op::ExpireDue { limit } => {
            let due: Vec<String> = ws.due.drain(..).take(limit).collect();
            let mut n = 0;
            for id in due {
                let Some(t) = ws.txns.get(&id) else { continue };
                let mut t = t.clone();
                if t.expire(ws.now_ms).is_ok() {
                    ws.commit_txn(t, vec![EventKind::Expired]);
                    n += 1;
                }
            }
            Ok(Reply::Expired(n))
        }
        Op::UsePortraitToken { token } => {
            let now = ws.now_ms;
            let tok = ws
                .portrait_tokens
                .get_mut(&token)
                .filter(|t| !t.used && t.expires_ms > now)
                .ok_or(OpError::TokenInvalid)?;
            tok.used = true;
            let msisdn = tok.msisdn.clone();
            ws.dirty_tokens.insert(token);
            Ok(Reply::Portrait { msisdn })
        }
        Op::AddMerchant(m) => add_merchant(ws, ctx, m),
        Op::SetMerchantStatus {
            terminal_id,
            status,
        } => {
            let mut m = ws.merchant(&terminal_id)?.clone();
            m.status = status;
            ws.dirty_merchants.insert(terminal_id.clone());
            ws.merchants.insert(terminal_id, m);
            Ok(Reply::Done)
        }
        Op::AddPayer(p) => add_payer(ws, p),
        Op::CheckPin { msisdn, pin } => {
            let mut p = ws.payer(&msisdn)?.clone();
            if p.status != PayerStatus::Active {
                return Ok(Reply::Checked(StepOutcome::Locked));
            }
            if pin_matches(&p, ctx, &msisdn, &pin) {
                if p.auth_failures != 0 {
                    p.auth_failures = 0;
                    ws.touch_payer(p);
                }
                return Ok(Reply::Checked(StepOutcome::Passed {
                    remaining: Vec::new(),
                }));
            }
            let tries_left = count_auth_failure(&mut p, ctx.rules);
            ws.touch_payer(p);
            Ok(Reply::Checked(if tries_left == 0 {
                StepOutcome::Locked
            } else {
                StepOutcome::Wrong { tries_left }
            }))
        }
        Op::SetPin { msisdn, pin } => {
            let mut p = ws.payer(&msisdn)?.clone();
            p.pin_hash = Some(ctx.secret.pin_hash(&msisdn, &pin));
            ws.touch_payer(p);
            Ok(Reply::Done)
        }
        Op::AddQuestion {
            msisdn,
            question,
            answer,
        } => {
            let question = question.trim().to_string();
            if question.is_empty() || question.len() > 200 {
                return Err(OpError::Invalid("a question is 1 to 200 characters".into()));
            }
            let mut p = ws.payer(&msisdn)?.clone();
            if p.questions.len() >= 10 {
                return Err(OpError::Invalid("a payer has at most 10 questions".into()));
            }
            let id = p.questions.iter().map(|(id, _)| *id).max().unwrap_or(0) + 1;
            let hash = ctx.secret.answer_hash(&msisdn, id, &answer);
            p.questions.push((id, question.clone()));
            ws.answers.insert((msisdn.clone(), id), hash.clone());
            ws.new_questions.push((msisdn, id, question, hash));
            ws.touch_payer(p);
            Ok(Reply::Done)
        }
        Op::SetPortrait {
            msisdn,
            content_type,
            image,
        } => {
            if !matches!(
                content_type.as_str(),
                "image/jpeg" | "image/png" | "image/webp"
            ) {
                return Err(OpError::Invalid(
                    "a portrait is image/jpeg, image/png or image/webp".into(),
                ));
            }
            if image.is_empty() || image.len() > 512 * 1024 {
                return Err(OpError::Invalid("a portrait is 1 byte to 512 KiB".into()));
            }
            let mut p = ws.payer(&msisdn)?.clone();
            p.has_portrait = true;
            ws.new_portraits.push((msisdn, content_type, image));
            ws.touch_payer(p);
            Ok(Reply::Done)
        }
        Op::Credit {
            msisdn,
            amount_minor,
        } => {
            let p = ws.payer(&msisdn)?;
            let payer_acct = ws
                .accounts
                .get(&p.account_id)
                .cloned()
                .ok_or(OpError::UnknownPayer)?;
            let fund_id = funding_account_id(&payer_acct.currency);
            let fund = ws.accounts.get(&fund_id).cloned().unwrap_or(Account {
                id: fund_id,
                kind: AccountKind::Funding,
                currency: payer_acct.currency.clone(),
                balance_minor: 0,
                credit_limit_minor: 0,
                overdraft_unlimited: true,
            });
            transfer(ws, None, "funding", fund, payer_acct, amount_minor)
                .map_err(OpError::Ledger)?;
            Ok(Reply::Done)
        }
        Op::SetPayerStatus { msisdn, status } => {
            let mut p = ws.payer(&msisdn)?.clone();
            p.status = status;
            if status == PayerStatus::Active {
                p.auth_failures = 0;
            }
            ws.touch_payer(p);
            Ok(Reply::Done)
        }
        Op::SetPayerDemand { msisdn, demand } => {
            let mut p = ws.payer(&msisdn)?.clone();
            p.demand = demand;
            ws.touch_payer(p);
            Ok(Reply::Done)
        }
        Op::SetVoicePrint { msisdn, template } => {
            let mut p = ws.payer(&msisdn)?.clone();
            p.has_voice_print = template.is_some();
            ws.new_voice_prints.push((msisdn, template));
            ws.touch_payer(p);
            Ok(Reply::Done)
        }
    }
}

/// Validates and applies a transfer, recording it and the two balances.
fn transfer(
    ws: &mut WorkingSet,
    txn_id: Option<&str>,
    kind: &'static str,
    mut debit: Account,
    mut credit: Account,
    amount_minor: i64,
) -> Result<(), TransferError> {
    let currency = debit.currency.clone();
    ledger::validate(&debit, &credit, amount_minor, &currency)?;
    ledger::apply(&mut debit, &mut credit, amount_minor);
    ws.transfers.push(TransferRecord {
        id: time_ordered_id("tr", ws.now_ms),
        txn_id: txn_id.map(str::to_string),
        kind,
        debit_account: debit.id.clone(),
        credit_account: credit.id.clone(),
        amount_minor,
        currency,
        created_ms: ws.now_ms,
    });
    ws.touch_account(debit, -amount_minor);
    ws.touch_account(credit, amount_minor);
    Ok(())
}

fn resolve_currency(
    merchant: &Merchant,
    currency: Option<&str>,
) -> Result<&'static Currency, OpError> {
    let code = currency.unwrap_or(&merchant.currency);
    let cur = Currency::from_code(code).ok_or_else(|| AmountError::UnknownCurrency(code.into()))?;
    if cur.code != merchant.currency {
        return Err(OpError::CurrencyMismatch {
            expected: merchant.currency.clone(),
        });
    }
    Ok(cur)
}

fn check_amount(
    rules: &Rules,
    amount_minor: i64,
    cur: &'static Currency,
) -> Result<Money, OpError> {
    let m = Money::positive(amount_minor, cur)?;
    if amount_minor > rules.amount_max_minor {
        return Err(AmountError::TooLarge {
            max: rules.amount_max_minor,
        }
        .into());
    }
    Ok(m)
}

fn active_merchant<'a>(ws: &'a WorkingSet, terminal_id: &str) -> Result<&'a Merchant, OpError> {
    let m = ws.merchant(terminal_id)?;
    if m.status != MerchantStatus::Active {
        return Err(OpError::MerchantSuspended);
    }
    Ok(m)
}

#[allow(clippy::too_many_arguments)]
fn open(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    terminal_id: String,
    amount_minor: Option<i64>,
    currency: Option<String>,
    origin: Origin,
    description: Option<String>,
    idempotency: Option<(String, String)>,
) -> Result<Reply, OpError> {
    let m = active_merchant(ws, &terminal_id)?;
    if let Some((key, hash)) = &idempotency {
        if let Some((stored, txn_id)) = ws.idempotency.get(&(terminal_id.clone(), key.clone())) {
            if stored != hash {
                return Err(OpError::IdempotencyConflict);
            }
            let txn = ws.txn(txn_id)?.clone();
            return Ok(Reply::Txn {
                txn,
                replayed: true,
            });
        }
    }
    let cur = resolve_currency(m, currency.as_deref())?;
    if let Some(a) = amount_minor {
        check_amount(ctx.rules, a, cur)?;
    }
    if let Some(d) = &description {
        if d.chars().count() > 140 {
            return Err(OpError::Invalid(
                "a description is at most 140 characters".into(),
            ));
        }
    }
    let number = loop {
        let Some(n) = ws.number_candidates.pop() else {
            return Err(OpError::NumberSpaceExhausted);
        };
        if ws.number_owner(&n).is_none() {
            break n;
        }
    };
    let id = time_ordered_id("tx", ws.now_ms);
    let (txn, ev) = Txn::issue(
        id.clone(),
        number.clone(),
        random_digits(12),
        terminal_id.clone(),
        origin,
        cur.code.to_string(),
        amount_minor,
        description,
        ws.now_ms,
        ctx.rules.number_ttl_ms,
    );
    // The number stays reserved until `number_reuse_after_ms` after its last possible use, the
    // end of its claim window.
    let reusable = txn.expires_ms + ctx.rules.number_reuse_after_ms;
    ws.numbers.insert(number.clone(), (id.clone(), reusable));
    ws.new_numbers.push((number, id.clone(), reusable));
    if let Some((key, hash)) = idempotency {
        ws.idempotency.insert(
            (terminal_id.clone(), key.clone()),
            (hash.clone(), id.clone()),
        );
        ws.new_idempotency.push((terminal_id, key, hash, id));
    }
    let mut kinds = vec![ev];
    if let Some(a) = amount_minor {
        kinds.push(EventKind::AmountSet {
            amount_minor: a,
            currency: cur.code.to_string(),
        });
    }
    ws.commit_txn(txn.clone(), kinds);
    Ok(Reply::Txn {
        txn: ws.txns.get(&txn.id).cloned().unwrap_or(txn),
        replayed: false,
    })
}

fn set_amount(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    terminal_id: &str,
    txn_id: &str,
    amount_minor: i64,
    currency: Option<String>,
) -> Result<Reply, OpError> {
    let m = ws.merchant(terminal_id)?;
    let cur = resolve_currency(m, currency.as_deref())?;
    check_amount(ctx.rules, amount_minor, cur)?;
    let mut t = ws.merchant_txn(terminal_id, txn_id)?.clone();
    let changed = t.set_amount(amount_minor, ws.now_ms)?;
    if !changed {
        return Ok(Reply::Txn {
            txn: t,
            replayed: true,
        });
    }
    let mut kinds = vec![EventKind::AmountSet {
        amount_minor,
        currency: cur.code.to_string(),
    }];
    if t.state == TxnState::Paired {
        // The vending-machine order (claim 37): the payer is waiting; authentication starts.
        start_auth(ws, &mut t, &mut kinds);
    }
    ws.commit_txn(t.clone(), kinds);
    Ok(Reply::Txn {
        txn: ws.txns.get(txn_id).cloned().unwrap_or(t),
        replayed: false,
    })
}

/// Moves a paired transaction with a known amount into authentication, or declines it when
/// the amount is above the payer's limit or their available amount (claim 11).
fn start_auth(ws: &WorkingSet, t: &mut Txn, kinds: &mut Vec<EventKind>) {
    let now = ws.now_ms;
    let Some(amount) = t.amount_minor else { return };
    let payer = t.payer_msisdn.as_deref().and_then(|m| ws.payers.get(m));
    let available = payer
        .and_then(|p| ws.accounts.get(&p.account_id))
        .map(|a| a.available_minor());
    let over_limit = payer
        .and_then(|p| p.txn_limit_minor)
        .is_some_and(|l| amount > l);
    let reason = if over_limit {
        Some(DeclineReason::Limit)
    } else if available.is_none_or(|a| a < amount) {
        Some(DeclineReason::InsufficientFunds)
    } else {
        None
    };
    if let Some(reason) = reason {
        if t.decline(reason, now).is_ok() {
            kinds.push(EventKind::Declined {
                reason,
                detail: None,
            });
        }
        return;
    }
    if t.begin_auth(now).is_ok() {
        kinds.push(EventKind::Authenticating {
            steps: t.auth.steps.clone(),
        });
    }
}

fn claim(ws: &mut WorkingSet, ctx: &Ctx<'_>, msisdn: &str, number: &str) -> Result<Reply, OpError> {
    let now = ws.now_ms;
    if let Some(until) = ws.blocked_until.get(msisdn).copied().filter(|u| *u > now) {
        return Err(ClaimError::Blocked { until_ms: until }.into());
    }
    let Some(txn_id) = ws.number_owner(number).map(str::to_string) else {
        ws.record_claim_failure(ctx.rules, msisdn);
        return Err(ClaimError::UnknownNumber.into());
    };
    let Some(t) = ws.txns.get(&txn_id).cloned() else {
        ws.record_claim_failure(ctx.rules, msisdn);
        return Err(ClaimError::UnknownNumber.into());
    };
    let merchant = ws.merchant(&t.terminal_id)?.clone();
    if t.payer_msisdn.as_deref() == Some(msisdn) && !t.state.is_final() {
        // The same caller again (a retried text, a second call): the same session.
        return Ok(Reply::Claimed(Claimed {
            txn: t,
            merchant_name: merchant.name,
            again: true,
        }));
    }
    if t.state != TxnState::Issued {
        ws.record_claim_failure(ctx.rules, msisdn);
        return Err(ClaimError::InUse.into());
    }
    if !t.claimable(now) {
        ws.record_claim_failure(ctx.rules, msisdn);
        return Err(ClaimError::Expired.into());
    }
    let mut t = t;
    let decline =
        |ws: &mut WorkingSet, mut t: Txn, reason: DeclineReason, detail: Option<String>| {
            let _ = t.decline(reason, now);
            let id = t.id.clone();
            ws.commit_txn(
                t,
                vec![EventKind::Declined {
                    reason,
                    detail: detail.clone(),
                }],
            );
            Err(OpError::Declined {
                txn_id: id,
                reason,
                detail,
            })
        };
    if merchant.status != MerchantStatus::Active {
        return decline(ws, t, DeclineReason::MerchantSuspended, None);
    }
    let Some(payer) = ws.payers.get(msisdn).cloned() else {
        return decline(ws, t, DeclineReason::PayerUnknown, None);
    };
    match payer.status {
        PayerStatus::Active => {}
        PayerStatus::Suspended => return decline(ws, t, DeclineReason::PayerSuspended, None),
        PayerStatus::Locked => return decline(ws, t, DeclineReason::PayerLocked, None),
    }
    let agreement = auth_policy::agree(merchant.demand, payer.demand, payer.enrolment());
    let mut auth = AuthProgress::default();
    let mut portrait_url = None;
    if let Ok(a) = &agreement {
        auth.method = Some(a.method);
        auth.steps = a.steps.clone();
        if a.steps.contains(&Method::Challenge) && !payer.questions.is_empty() {
            // Claim 19: one of several registered questions, picked at random.
            let i = OsRng.unwrap_err().random_range(0..payer.questions.len());
            if let Some((id, text)) = payer.questions.get(i) {
                auth.question_id = Some(*id);
                auth.question_text = Some(text.clone());
            }
        }
        if a.steps.contains(&Method::Visual) {
            let token = random_hex(24);
            portrait_url = Some(format!(
                "{}/v1/portraits/{token}",
                ctx.rules.public_base_url.trim_end_matches('/')
            ));
            ws.portrait_tokens.insert(
                token.clone(),
                PortraitToken {
                    token: token.clone(),
                    txn_id: t.id.clone(),
                    msisdn: msisdn.to_string(),
                    expires_ms: now + ctx.rules.portrait_ttl_ms,
                    used: false,
                },
            );
            ws.dirty_tokens.insert(token);
        }
    }
    t.pair(msisdn, auth, ctx.rules.session_ms, now)?;
    // Claim 12: only the attributes this merchant may see.
    let attributes: BTreeMap<String, String> = payer
        .attributes
        .iter()
        .filter(|(k, _)| merchant.visible_attributes.iter().any(|v| v == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut kinds = vec![EventKind::Paired {
        payer_name: payer.display_name.clone(),
        attributes,
        auth_method: t.auth.method,
        auth_steps: t.auth.steps.clone(),
        portrait_url,
    }];
    if let Err(refusal) = agreement {
        // Claims 22 and 25: the payer is told why; the merchant learns the payment is off.
        let _ = t.decline(DeclineReason::AuthRefusedByPolicy, now);
        let detail = Some(refusal.explain());
        kinds.push(EventKind::Declined {
            reason: DeclineReason::AuthRefusedByPolicy,
            detail: detail.clone(),
        });
        let id = t.id.clone();
        ws.commit_txn(t, kinds);
        return Err(OpError::Declined {
            txn_id: id,
            reason: DeclineReason::AuthRefusedByPolicy,
            detail,
        });
    }
    start_auth(ws, &mut t, &mut kinds);
    let declined = t.decline_reason.filter(|_| t.state == TxnState::Declined);
    let id = t.id.clone();
    ws.commit_txn(t.clone(), kinds);
    if let Some(reason) = declined {
        return Err(OpError::Declined {
            txn_id: id,
            reason,
            detail: None,
        });
    }
    Ok(Reply::Claimed(Claimed {
        txn: t,
        merchant_name: merchant.name,
        again: false,
    }))
}

/// One authentication step's verdict, with the shared attempt counter.
/// Whether `pin` is the payer's PIN.
fn pin_matches(p: &Payer, ctx: &Ctx<'_>, msisdn: &str, pin: &SecretDigits) -> bool {
    p.pin_hash
        .as_deref()
        .is_some_and(|h| credentials::hashes_equal(h, &ctx.secret.pin_hash(msisdn, pin)))
}

/// Counts a wrong credential (PIN, answer, voice) toward the payer's lock; returns the tries
/// left, and locks the payer when none is.
fn count_auth_failure(p: &mut Payer, rules: &Rules) -> i64 {
    p.auth_failures += 1;
    let tries_left = (rules.auth_tries_max - p.auth_failures).max(0);
    if tries_left == 0 {
        p.status = PayerStatus::Locked;
    }
    tries_left
}

fn step(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    msisdn: &str,
    txn_id: &str,
    method: Method,
    ok: bool,
) -> Result<Reply, OpError> {
    let now = ws.now_ms;
    let mut t = ws.payer_txn(msisdn, txn_id)?.clone();
    t.expect_step(method)?;
    let mut p = ws.payer(msisdn)?.clone();
    if p.status != PayerStatus::Active {
        let reason = if p.status == PayerStatus::Locked {
            DeclineReason::PayerLocked
        } else {
            DeclineReason::PayerSuspended
        };
        t.decline(reason, now)?;
        ws.commit_txn(
            t.clone(),
            vec![EventKind::Declined {
                reason,
                detail: None,
            }],
        );
        return Ok(Reply::Step {
            txn: t,
            outcome: StepOutcome::Locked,
        });
    }
    if ok {
        t.pass_step(method, now)?;
        if p.auth_failures != 0 {
            p.auth_failures = 0;
            ws.touch_payer(p);
        }
        let remaining = t.auth.remaining();
        ws.commit_txn(t.clone(), vec![EventKind::AuthStepPassed { method }]);
        return Ok(Reply::Step {
            txn: t,
            outcome: StepOutcome::Passed { remaining },
        });
    }
    let tries_left = count_auth_failure(&mut p, ctx.rules);
    let mut kinds = vec![EventKind::AuthStepFailed { method, tries_left }];
    let outcome = if tries_left == 0 {
        t.decline(DeclineReason::AuthFailed, now)?;
        kinds.push(EventKind::Declined {
            reason: DeclineReason::AuthFailed,
            detail: Some("too many wrong attempts; the payer is locked".into()),
        });
        StepOutcome::Locked
    } else {
        StepOutcome::Wrong { tries_left }
    };
    ws.touch_payer(p);
    ws.commit_txn(t.clone(), kinds);
    Ok(Reply::Step { txn: t, outcome })
}

fn visual_check(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    terminal_id: &str,
    txn_id: &str,
    matched: bool,
    pin_fallback: bool,
) -> Result<Reply, OpError> {
    let now = ws.now_ms;
    let mut t = ws.merchant_txn(terminal_id, txn_id)?.clone();
    t.expect_step(Method::Visual)?;
    if matched {
        t.pass_step(Method::Visual, now)?;
        let remaining = t.auth.remaining();
        ws.commit_txn(
            t.clone(),
            vec![EventKind::AuthStepPassed {
                method: Method::Visual,
            }],
        );
        return Ok(Reply::Step {
            txn: t,
            outcome: StepOutcome::Passed { remaining },
        });
    }
    let has_pin = t
        .payer_msisdn
        .as_deref()
        .and_then(|m| ws.payers.get(m))
        .is_some_and(|p| p.pin_hash.is_some());
    if pin_fallback && has_pin {
        // Claim 36: the merchant could not tell from the portrait and asks for the PIN.
        t.replace_visual_with_pin(now)?;
        let steps = t.auth.steps.clone();
        ws.commit_txn(t.clone(), vec![EventKind::Authenticating { steps }]);
        let remaining = t.auth.remaining();
        return Ok(Reply::Step {
            txn: t,
            outcome: StepOutcome::Passed { remaining },
        });
    }
    let _ = ctx;
    t.decline(DeclineReason::AuthFailed, now)?;
    ws.commit_txn(
        t.clone(),
        vec![
            EventKind::AuthStepFailed {
                method: Method::Visual,
                tries_left: 0,
            },
            EventKind::Declined {
                reason: DeclineReason::AuthFailed,
                detail: Some("the merchant did not recognise the payer".into()),
            },
        ],
    );
    Ok(Reply::Step {
        txn: t,
        outcome: StepOutcome::Locked,
    })
}

/// The final purchase confirmation and the settlement, in one request (claim 8).
fn confirm(ws: &mut WorkingSet, msisdn: &str, txn_id: &str) -> Result<Reply, OpError> {
    let now = ws.now_ms;
    let t = ws.payer_txn(msisdn, txn_id)?.clone();
    if t.state == TxnState::Settled {
        // A retried confirmation: the settlement happened once; say so again.
        return Ok(Reply::Txn {
            txn: t,
            replayed: true,
        });
    }
    let mut t = t;
    t.confirm(now)?;
    let amount = t.amount_minor.ok_or(LifecycleError::AmountUnknown)?;
    let payer = ws.payer(msisdn)?;
    let merchant = ws.merchant(&t.terminal_id)?;
    let debit = ws
        .accounts
        .get(&payer.account_id)
        .cloned()
        .ok_or(OpError::UnknownPayer)?;
    let credit = ws
        .accounts
        .get(&merchant.account_id)
        .cloned()
        .ok_or(OpError::UnknownTerminal)?;
    if debit.currency != t.currency {
        return Err(OpError::CurrencyMismatch {
            expected: debit.currency,
        });
    }
    let mut kinds = vec![EventKind::Confirmed];
    match transfer(ws, Some(&t.id), "settlement", debit, credit, amount) {
        Ok(()) => {
            let code = random_digits(6);
            t.settle(code.clone(), now)?;
            kinds.push(EventKind::Settled {
                amount_minor: amount,
                currency: t.currency.clone(),
                auth_code: code,
            });
        }
        Err(TransferError::InsufficientFunds) => {
            t.decline(DeclineReason::InsufficientFunds, now)?;
            kinds.push(EventKind::Declined {
                reason: DeclineReason::InsufficientFunds,
                detail: None,
            });
        }
        Err(e) => return Err(OpError::Ledger(e)),
    }
    ws.commit_txn(t.clone(), kinds);
    if t.state == TxnState::Declined {
        return Err(OpError::Declined {
            txn_id: t.id,
            reason: DeclineReason::InsufficientFunds,
            detail: None,
        });
    }
    Ok(Reply::Txn {
        txn: t,
        replayed: false,
    })
}

fn reverse(
    ws: &mut WorkingSet,
    terminal_id: &str,
    txn_id: &str,
    cancel_if_open: bool,
) -> Result<Reply, OpError> {
    let now = ws.now_ms;
    let mut t = ws.merchant_txn(terminal_id, txn_id)?.clone();
    match t.state {
        TxnState::Reversed => {
            return Ok(Reply::Txn {
                txn: t,
                replayed: true,
            });
        }
        TxnState::Cancelled if cancel_if_open => {
            return Ok(Reply::Txn {
                txn: t,
                replayed: true,
            });
        }
        TxnState::Settled => {}
        s if s.is_open() && cancel_if_open => {
            t.cancel(now)?;
            ws.commit_txn(
                t.clone(),
                vec![EventKind::Cancelled {
                    by: super::lifecycle::Party::Merchant,
                }],
            );
            return Ok(Reply::Txn {
                txn: t,
                replayed: false,
            });
        }
        _ => return Err(OpError::NotSettled),
    }
    let amount = t.amount_minor.ok_or(LifecycleError::AmountUnknown)?;
    let merchant = ws.merchant(terminal_id)?;
    let payer_msisdn = t.payer_msisdn.clone().ok_or(OpError::UnknownPayer)?;
    let payer = ws.payer(&payer_msisdn)?;
    let debit = ws
        .accounts
        .get(&merchant.account_id)
        .cloned()
        .ok_or(OpError::UnknownTerminal)?;
    let credit = ws
        .accounts
        .get(&payer.account_id)
        .cloned()
        .ok_or(OpError::UnknownPayer)?;
    // The compensating transfer: merchant back to payer.
    transfer(ws, Some(&t.id), "reversal", debit, credit, amount).map_err(OpError::Ledger)?;
    t.reverse(now)?;
    let currency = t.currency.clone();
    ws.commit_txn(
        t.clone(),
        vec![EventKind::Reversed {
            amount_minor: amount,
            currency,
        }],
    );
    Ok(Reply::Txn {
        txn: t,
        replayed: false,
    })
}

fn add_merchant(ws: &mut WorkingSet, ctx: &Ctx<'_>, m: NewMerchant) -> Result<Reply, OpError> {
    use super::model::{valid_merchant_id, valid_terminal_id};
    if !valid_terminal_id(&m.terminal_id) {
        return Err(OpError::Invalid(
            "a terminal id is 8 printable characters".into(),
        ));
    }
    if !valid_merchant_id(&m.merchant_id) {
        return Err(OpError::Invalid(
            "a merchant id is 15 printable characters".into(),
        ));
    }
    let name = m.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 60 {
        return Err(OpError::Invalid(
            "a merchant name is 1 to 60 characters".into(),
        ));
    }
    let cur = Currency::from_code(&m.currency)
        .ok_or_else(|| AmountError::UnknownCurrency(m.currency.clone()))?;
    if m.api_key.len() < 12 || m.api_key.len() > 128 {
        return Err(OpError::Invalid(
            "an API key is 12 to 128 characters".into(),
        ));
    }
    if let Some(url) = &m.webhook_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(OpError::Invalid(
                "a webhook URL starts with http:// or https://".into(),
            ));
        }
    }
    if ws.merchants.contains_key(&m.terminal_id) {
        return Err(OpError::Exists(format!("terminal {}", m.terminal_id)));
    }
    let account_id = m
        .account_id
        .unwrap_or_else(|| merchant_account_id(&m.merchant_id));
    if !ws.accounts.contains_key(&account_id) {
        ws.touch_account(
            Account {
                id: account_id.clone(),
                kind: AccountKind::Merchant,
                currency: cur.code.to_string(),
                balance_minor: 0,
                credit_limit_minor: 0,
                overdraft_unlimited: true,
            },
            0,
        );
    }
    let merchant = Merchant {
        terminal_id: m.terminal_id.clone(),
        merchant_id: m.merchant_id,
        name,
        status: MerchantStatus::Active,
        currency: cur.code.to_string(),
        api_key_hash: ctx.secret.api_key_hash(&m.api_key),
        demand: m.demand,
        visible_attributes: m.visible_attributes,
        account_id,
        webhook_url: m.webhook_url,
        webhook_secret: m.webhook_secret,
        created_ms: ws.now_ms,
    };
    ws.dirty_merchants.insert(m.terminal_id.clone());
    ws.merchants.insert(m.terminal_id, merchant);
    Ok(Reply::Done)
}

fn add_payer(ws: &mut WorkingSet, p: NewPayer) -> Result<Reply, OpError> {
    if !super::model::valid_msisdn(&p.msisdn) {
        return Err(OpError::Invalid(
            "an MSISDN is in E.164 form, e.g. +15550100".into(),
        ));
    }
    let name = p.display_name.trim().to_string();
    if name.is_empty() || name.chars().count() > 60 {
        return Err(OpError::Invalid(
            "a display name is 1 to 60 characters".into(),
        ));
    }
    let cur = Currency::from_code(&p.currency)
        .ok_or_else(|| AmountError::UnknownCurrency(p.currency.clone()))?;
    if p.credit_limit_minor < 0 {
        return Err(OpError::Invalid("a credit limit is zero or more".into()));
    }
    if p.attributes.len() > 20
        || p.attributes
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 40 || v.len() > 100)
    {
        return Err(OpError::Invalid(
            "at most 20 attributes, names up to 40 and values up to 100 characters".into(),
        ));
    }
    if ws.payers.contains_key(&p.msisdn) {
        return Err(OpError::Exists(format!("payer {}", p.msisdn)));
    }
    let account_id = payer_account_id(&p.msisdn);
    ws.touch_account(
        Account {
            id: account_id.clone(),
            kind: AccountKind::Payer,
            currency: cur.code.to_string(),
            balance_minor: 0,
            credit_limit_minor: p.credit_limit_minor,
            overdraft_unlimited: false,
        },
        0,
    );
    ws.touch_payer(Payer {
        msisdn: p.msisdn,
        display_name: name,
        attributes: p.attributes,
        status: PayerStatus::Active,
        pin_hash: None,
        auth_failures: 0,
        demand: p.demand,
        account_id,
        txn_limit_minor: p.txn_limit_minor,
        has_portrait: false,
        has_voice_print: false,
        questions: vec![],
        created_ms: ws.now_ms,
    });
    Ok(Reply::Done)
}

#[cfg(test)]
mod tests;
