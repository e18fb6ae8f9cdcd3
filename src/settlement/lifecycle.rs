//! The life of a transaction as a pure state machine.
//!
//! ```text
//! issued ──claim──▶ paired ──amount known──▶ authenticating ──steps passed, payer confirms──▶ confirmed ──▶ settled ──▶ reversed
//!   │                 │                         │                                              │
//!   ├─▶ expired       ├─▶ expired/cancelled     ├─▶ expired/cancelled/declined                 └─▶ declined (funds)
//!   ├─▶ cancelled     └─▶ declined
//!   └─▶ declined (payer unknown, suspended, locked; merchant suspended)
//! ```
//!
//! The amount may arrive in `issued` or `paired` (a vending machine learns it after pairing,
//! claim 37); once authentication starts it is fixed, because the payer confirms that amount.
//! Every method here checks the state it is called in, changes the record, and returns the
//! events it caused; it performs no IO and reads no clock (`now_ms` comes in).

use super::auth_policy::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnState {
    Issued,
    Paired,
    Authenticating,
    Confirmed,
    Settled,
    Expired,
    Cancelled,
    Declined,
    Reversed,
}

impl TxnState {
    pub const ALL: [TxnState; 9] = [
        TxnState::Issued,
        TxnState::Paired,
        TxnState::Authenticating,
        TxnState::Confirmed,
        TxnState::Settled,
        TxnState::Expired,
        TxnState::Cancelled,
        TxnState::Declined,
        TxnState::Reversed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Issued => "issued",
            TxnState::Paired => "paired",
            TxnState::Authenticating => "authenticating",
            TxnState::Confirmed => "confirmed",
            TxnState::Settled => "settled",
            TxnState::Expired => "expired",
            TxnState::Cancelled => "cancelled",
            TxnState::Declined => "declined",
            TxnState::Reversed => "reversed",
        }
    }

    pub fn parse(s: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// No further transition except a reversal of a settled transaction.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TxnState::Settled
                | TxnState::Expired
                | TxnState::Cancelled
                | TxnState::Declined
                | TxnState::Reversed
        )
    }

    /// Still waiting for the payer or the merchant.
    pub fn is_open(self) -> bool {
        !self.is_final() && self != TxnState::Confirmed
    }
}

/// Why a transaction was declined; each has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    PayerUnknown,
    PayerSuspended,
    PayerLocked,
    MerchantSuspended,
    InsufficientFunds,
    AuthFailed,
    AuthRefusedByPolicy,
    Limit,
}

impl DeclineReason {
    pub const ALL: [DeclineReason; 8] = [
        DeclineReason::PayerUnknown,
        DeclineReason::PayerSuspended,
        DeclineReason::PayerLocked,
        DeclineReason::MerchantSuspended,
        DeclineReason::InsufficientFunds,
        DeclineReason::AuthFailed,
        DeclineReason::AuthRefusedByPolicy,
        DeclineReason::Limit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeclineReason::PayerUnknown => "payer_unknown",
            DeclineReason::PayerSuspended => "payer_suspended",
            DeclineReason::PayerLocked => "payer_locked",
            DeclineReason::MerchantSuspended => "merchant_suspended",
            DeclineReason::InsufficientFunds => "insufficient_funds",
            DeclineReason::AuthFailed => "auth_failed",
            DeclineReason::AuthRefusedByPolicy => "auth_refused_by_policy",
            DeclineReason::Limit => "limit",
        }
    }

    pub fn parse(s: &str) -> Option<DeclineReason> {
        DeclineReason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// A sentence for the payer.
    pub fn explain(self) -> &'static str {
        match self {
            DeclineReason::PayerUnknown => "This phone number is not registered for payments.",
            DeclineReason::PayerSuspended => "Your account is suspended.",
            DeclineReason::PayerLocked => {
                "Your account is locked after too many wrong attempts. Please contact support."
            }
            DeclineReason::MerchantSuspended => "This merchant cannot take payments at the moment.",
            DeclineReason::InsufficientFunds => {
                "Your available amount is not enough for this payment."
            }
            DeclineReason::AuthFailed => "You could not be authenticated.",
            DeclineReason::AuthRefusedByPolicy => {
                "No authentication method could be agreed for this payment."
            }
            DeclineReason::Limit => "This payment is above your limit.",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Merchant,
    Payer,
}

/// The channel a transaction was opened on; it decides where its notices go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The HTTP API (web shops): webhooks and server-sent events.
    Http,
    /// The ISO 8583 merchant link: advices, stored and forwarded.
    Link,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Http => "http",
            Origin::Link => "link",
        }
    }
    pub fn parse(s: &str) -> Option<Origin> {
        match s {
            "http" => Some(Origin::Http),
            "link" => Some(Origin::Link),
            _ => None,
        }
    }
}

/// The agreed authentication and how far the payer has got.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuthProgress {
    pub method: Option<Method>,
    pub steps: Vec<Method>,
    pub passed: Vec<Method>,
    /// The question picked at random at pairing (claim 19).
    pub question_id: Option<i64>,
    pub question_text: Option<String>,
}

impl AuthProgress {
    pub fn remaining(&self) -> Vec<Method> {
        self.steps
            .iter()
            .copied()
            .filter(|m| !self.passed.contains(m))
            .collect()
    }
    pub fn complete(&self) -> bool {
        !self.steps.is_empty() && self.remaining().is_empty()
    }
}

/// What happened to a transaction; persisted, published, and turned into notices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Issued {
        number: String,
        expires_ms: i64,
    },
    /// The synchronization confirmation (claim 5), with what the merchant may see of the payer
    /// (claim 12) and, for a visual check, a one-time portrait link (claims 14–15).
    Paired {
        payer_name: String,
        attributes: BTreeMap<String, String>,
        auth_method: Option<Method>,
        auth_steps: Vec<Method>,
        portrait_url: Option<String>,
    },
    AmountSet {
        amount_minor: i64,
        currency: String,
    },
    Authenticating {
        steps: Vec<Method>,
    },
    AuthStepPassed {
        method: Method,
    },
    AuthStepFailed {
        method: Method,
        tries_left: i64,
    },
    Confirmed,
    Settled {
        amount_minor: i64,
        currency: String,
        auth_code: String,
    },
    Declined {
        reason: DeclineReason,
        detail: Option<String>,
    },
    Expired,
    Cancelled {
        by: Party,
    },
    Reversed {
        amount_minor: i64,
        currency: String,
    },
}

impl EventKind {
    /// The upper-case name used on the merchant link and in webhooks.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Issued { .. } => "ISSUED",
            EventKind::Paired { .. } => "PAIRED",
            EventKind::AmountSet { .. } => "AMOUNT_SET",
            EventKind::Authenticating { .. } => "AUTHENTICATING",
            EventKind::AuthStepPassed { .. } => "AUTH_STEP_PASSED",
            EventKind::AuthStepFailed { .. } => "AUTH_STEP_FAILED",
            EventKind::Confirmed => "CONFIRMED",
            EventKind::Settled { .. } => "SETTLED",
            EventKind::Declined { .. } => "DECLINED",
            EventKind::Expired => "EXPIRED",
            EventKind::Cancelled { .. } => "CANCELLED",
            EventKind::Reversed { .. } => "REVERSED",
        }
    }

    /// Events a merchant terminal on the link is told about by advice.
    pub fn is_advised(&self) -> bool {
        matches!(
            self,
            EventKind::Paired { .. }
                | EventKind::Settled { .. }
                | EventKind::Declined { .. }
                | EventKind::Expired
                | EventKind::Cancelled { .. }
                | EventKind::Reversed { .. }
        )
    }
}

/// A transition asked for in a state that does not allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    #[error("the transaction is {state}, which does not allow {action}")]
    WrongState {
        state: &'static str,
        action: &'static str,
    },
    #[error("the amount is already fixed at {0} minor units")]
    AmountFixed(i64),
    #[error("the amount is not known yet")]
    AmountUnknown,
    #[error("authentication is not complete")]
    AuthIncomplete,
    #[error("{0} is not a step of this transaction's authentication")]
    NotAStep(Method),
}

/// One transaction's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub id: String,
    pub number: String,
    /// The gateway's reference (ISO 8583 field 37 and the spoken receipt reference).
    pub reference: String,
    pub terminal_id: String,
    pub origin: Origin,
    pub state: TxnState,
    pub currency: String,
    pub amount_minor: Option<i64>,
    pub payer_msisdn: Option<String>,
    pub auth: AuthProgress,
    pub decline_reason: Option<DeclineReason>,
    pub auth_code: Option<String>,
    pub description: Option<String>,
    pub created_ms: i64,
    /// The number may be claimed until then.
    pub expires_ms: i64,
    /// Once paired, the payment must finish by then.
    pub deadline_ms: Option<i64>,
    pub updated_ms: i64,
    /// Sequence number of the last event.
    pub seq: i64,
}

fn wrong(state: TxnState, action: &'static str) -> LifecycleError {
    LifecycleError::WrongState {
        state: state.as_str(),
        action,
    }
}

impl Txn {
    /// A fresh transaction and its first event.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        id: String,
        number: String,
        reference: String,
        terminal_id: String,
        origin: Origin,
        currency: String,
        amount_minor: Option<i64>,
        description: Option<String>,
        now_ms: i64,
        ttl_ms: i64,
    ) -> (Txn, EventKind) {
        let txn = Txn {
            id,
            number: number.clone(),
            reference,
            terminal_id,
            origin,
            state: TxnState::Issued,
            currency,
            amount_minor,
            payer_msisdn: None,
            auth: AuthProgress::default(),
            decline_reason: None,
            auth_code: None,
            description,
            created_ms: now_ms,
            expires_ms: now_ms + ttl_ms,
            deadline_ms: None,
            updated_ms: now_ms,
            seq: 0,
        };
        let ev = EventKind::Issued {
            number,
            expires_ms: txn.expires_ms,
        };
        (txn, ev)
    }

    /// The number can be claimed now.
    pub fn claimable(&self, now_ms: i64) -> bool {
        self.state == TxnState::Issued && now_ms < self.expires_ms
    }

    /// Binds the payer (pairing, the synchronization of claim 1).
    pub fn pair(
        &mut self,
        msisdn: &str,
        auth: AuthProgress,
        session_ms: i64,
        now_ms: i64,
    ) -> Result<(), LifecycleError> {
        if !self.claimable(now_ms) {
            return Err(wrong(self.state, "pairing"));
        }
        self.state = TxnState::Paired;
        self.payer_msisdn = Some(msisdn.to_string());
        self.auth = auth;
        self.deadline_ms = Some(now_ms + session_ms);
        self.updated_ms = now_ms;
        Ok(())
    }

    /// Sets the purchase amount (claim 7). Setting the same amount again is a no-op.
    pub fn set_amount(&mut self, amount_minor: i64, now_ms: i64) -> Result<bool, LifecycleError> {
        match (self.state, self.amount_minor) {
            (_, Some(a)) if a == amount_minor && !self.state.is_final() => Ok(false),
            (TxnState::Issued | TxnState::Paired, _) => {
                self.amount_minor = Some(amount_minor);
                self.updated_ms = now_ms;
                Ok(true)
            }
            (_, Some(a)) if !self.state.is_final() => Err(LifecycleError::AmountFixed(a)),
            (s, _) => Err(wrong(s, "setting the amount")),
        }
    }

    /// Starts authenticating: paired and the amount known.
    pub fn begin_auth(&mut self, now_ms: i64) -> Result<(), LifecycleError> {
        if self.state != TxnState::Paired {
            return Err(wrong(self.state, "authentication"));
        }
        if self.amount_minor.is_none() {
            return Err(LifecycleError::AmountUnknown);
        }
        self.state = TxnState::Authenticating;
        self.updated_ms = now_ms;
        Ok(())
    }

    /// Checks that `method` can be attempted now.
    pub fn expect_step(&self, method: Method) -> Result<(), LifecycleError> {
        if self.state != TxnState::Authenticating {
            return Err(wrong(self.state, "authentication"));
        }
        if !self.auth.remaining().contains(&method) {
            return Err(LifecycleError::NotAStep(method));
        }
        Ok(())
    }

    pub fn pass_step(&mut self, method: Method, now_ms: i64) -> Result<(), LifecycleError> {
        self.expect_step(method)?;
        self.auth.passed.push(method);
        self.updated_ms = now_ms;
        Ok(())
    }

    /// The merchant could not authenticate from the portrait and asks for a PIN instead
    /// (claim 36): the visual step is replaced by a PIN step.
    pub fn replace_visual_with_pin(&mut self, now_ms: i64) -> Result<(), LifecycleError> {
        self.expect_step(Method::Visual)?;
        self.auth.steps.retain(|m| *m != Method::Visual);
        if !self.auth.steps.contains(&Method::Pin) {
            self.auth.steps.push(Method::Pin);
        }
        self.updated_ms = now_ms;
        Ok(())
    }

    /// The payer's final purchase confirmation (claim 8).
    pub fn confirm(&mut self, now_ms: i64) -> Result<(), LifecycleError> {
        if self.state != TxnState::Authenticating {
            return Err(wrong(self.state, "confirmation"));
        }
        if !self.auth.complete() {
            return Err(LifecycleError::AuthIncomplete);
        }
        self.state = TxnState::Confirmed;
        self.updated_ms = now_ms;
        Ok(())
    }

    pub fn settle(&mut self, auth_code: String, now_ms: i64) -> Result<(), LifecycleError> {
        if self.state != TxnState::Confirmed {
            return Err(wrong(self.state, "settlement"));
        }
        self.state = TxnState::Settled;
        self.auth_code = Some(auth_code);
        self.updated_ms = now_ms;
        Ok(())
    }

    pub fn decline(&mut self, reason: DeclineReason, now_ms: i64) -> Result<(), LifecycleError> {
        if self.state.is_final() {
            return Err(wrong(self.state, "declining"));
        }
        self.state = TxnState::Declined;
        self.decline_reason = Some(reason);
        self.updated_ms = now_ms;
        Ok(())
    }

    pub fn cancel(&mut self, now_ms: i64) -> Result<(), LifecycleError> {
        if !self.state.is_open() {
            return Err(wrong(self.state, "cancelling"));
        }
        self.state = TxnState::Cancelled;
        self.updated_ms = now_ms;
        Ok(())
    }

    /// Expires a number nobody claimed in time, or a payment that did not finish in time.
    pub fn expire(&mut self, now_ms: i64) -> Result<(), LifecycleError> {
        let due = match self.state {
            TxnState::Issued => now_ms >= self.expires_ms,
            TxnState::Paired | TxnState::Authenticating => {
                self.deadline_ms.is_some_and(|d| now_ms >= d)
            }
            _ => false,
        };
        if !due {
            return Err(wrong(self.state, "expiry"));
        }
        self.state = TxnState::Expired;
        self.updated_ms = now_ms;
        Ok(())
    }

    pub fn reverse(&mut self, now_ms: i64) -> Result<(), LifecycleError> {
        if self.state != TxnState::Settled {
            return Err(wrong(self.state, "reversal"));
        }
        self.state = TxnState::Reversed;
        self.updated_ms = now_ms;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Txn {
        Txn::issue(
            "t1".into(),
            "123456785".into(),
            "000000000001".into(),
            "DEMO0001".into(),
            Origin::Http,
            "USD".into(),
            None,
            None,
            1_000,
            300_000,
        )
        .0
    }

    fn pin_only() -> AuthProgress {
        AuthProgress {
            method: Some(Method::Pin),
            steps: vec![Method::Pin],
            ..Default::default()
        }
    }

    #[test]
    fn forward_flow_with_amount_after_pairing() {
        let mut t = fresh();
        t.pair("+15550100", pin_only(), 600_000, 2_000).unwrap();
        assert_eq!(t.begin_auth(2_001), Err(LifecycleError::AmountUnknown));
        assert!(t.set_amount(1_250, 2_002).unwrap());
        t.begin_auth(2_003).unwrap();
        assert_eq!(
            t.set_amount(999, 2_004),
            Err(LifecycleError::AmountFixed(1_250))
        );
        assert_eq!(t.confirm(2_005), Err(LifecycleError::AuthIncomplete));
        t.pass_step(Method::Pin, 2_006).unwrap();
        t.confirm(2_007).unwrap();
        t.settle("123456".into(), 2_008).unwrap();
        assert_eq!(t.state, TxnState::Settled);
        assert!(t.cancel(2_009).is_err());
        t.reverse(2_010).unwrap();
        assert!(t.reverse(2_011).is_err());
    }

    #[test]
    fn expired_numbers_cannot_be_paired_and_expire_only_when_due() {
        let mut t = fresh();
        assert!(t.expire(300_999).is_err(), "not due yet");
        assert!(t.pair("+15550100", pin_only(), 600_000, 301_000).is_err());
        t.expire(301_000).unwrap();
        assert_eq!(t.state, TxnState::Expired);
    }

    #[test]
    fn final_states_take_no_transition_but_reversal_of_settled() {
        for s in TxnState::ALL {
            let mut t = fresh();
            t.state = s;
            t.amount_minor = Some(10);
            if s.is_final() {
                assert!(t.decline(DeclineReason::Limit, 5).is_err(), "{s:?}");
                assert!(t.cancel(5).is_err(), "{s:?}");
                assert!(t.set_amount(11, 5).is_err(), "{s:?}");
            }
            assert_eq!(t.reverse(5).is_ok(), s == TxnState::Settled, "{s:?}");
        }
    }

    #[test]
    fn visual_step_can_fall_back_to_pin() {
        let mut t = fresh();
        t.amount_minor = Some(100);
        let auth = AuthProgress {
            method: Some(Method::Visual),
            steps: vec![Method::Visual],
            ..Default::default()
        };
        t.pair("+1", auth, 600_000, 2_000).unwrap();
        t.begin_auth(2_000).unwrap();
        t.replace_visual_with_pin(2_001).unwrap();
        assert_eq!(t.auth.remaining(), vec![Method::Pin]);
        assert_eq!(
            t.pass_step(Method::Visual, 2_002),
            Err(LifecycleError::NotAStep(Method::Visual))
        );
    }

    #[test]
    fn names_round_trip() {
        for s in TxnState::ALL {
            assert_eq!(TxnState::parse(s.as_str()), Some(s));
        }
        for r in DeclineReason::ALL {
            assert_eq!(DeclineReason::parse(r.as_str()), Some(r));
        }
    }
}
