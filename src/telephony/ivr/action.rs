//! Requests the IVR makes of the settlement core, and their typed results.
//!
//! The interpreter emits an [`ActionRequest`] and waits for the matching [`ActionResult`]; the
//! driver maps both onto the core's payer API for the caller of this call (the request does not
//! repeat the calling number: the driver knows it). Each result has an *outcome*, a short name
//! the dialplan branches on (`paired`, `wrong`, `declined` …), and sets the variables the dialplan
//! can play (`${amount}`, `${reason}` …).

use std::fmt;

use super::super::prompts::PromptRef;

/// A PIN or challenge answer. Its `Debug` never shows the digits, it has no `Display`, and the
/// digits are overwritten when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps digits that must never be logged.
    pub fn new(digits: String) -> Secret {
        Secret(digits)
    }

    /// The digits, for the credential check only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// How many characters it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: the digits should not linger in freed memory.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// A spoken answer's audio (8 kHz linear), for voice verification or enrolment. Its `Debug`
/// shows only its length; it lives no longer than the step that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct VoiceAudio(std::sync::Arc<[i16]>);

impl VoiceAudio {
    pub fn new(samples: Vec<i16>) -> VoiceAudio {
        VoiceAudio(samples.into())
    }

    pub fn samples(&self) -> &[i16] {
        &self.0
    }

    /// Its length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.0.len() as u64 / 8
    }
}

impl fmt::Debug for VoiceAudio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VoiceAudio({} ms)", self.duration_ms())
    }
}

/// The kinds of request, as named in the dialplan (`action = "claim_number"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActionKind {
    /// Look the caller up by calling number: registered, suspended, locked, withheld, unknown.
    Identify,
    /// Present a transaction number (pairing).
    ClaimNumber,
    /// Wait until the merchant has sent the amount.
    WaitAmount,
    /// Ask which authentication step comes next under the agreed method.
    AuthNext,
    /// Check a PIN.
    SubmitPin,
    /// Check the answer to the challenge question the core picked.
    SubmitAnswer,
    /// The payer's final purchase confirmation: settle.
    Confirm,
    /// The payer cancels the transaction.
    Cancel,
    /// The payer's available amount.
    AvailableAmount,
    /// The payer's recent purchases.
    RecentPurchases,
    /// Check the payer's PIN outside a payment (before enrolling a voice print).
    CheckPin,
    /// Check a spoken answer to the voice-print prompt (text-prompted verification).
    VoiceVerify,
    /// Begin enrolling a voice print (after `check_pin`): sets the first prompt.
    VoiceEnrolStart,
    /// Add a spoken answer to the enrolment; the last one stores the voice print.
    VoiceEnrol,
}

/// Outcomes every action can have besides its own: the core could not serve the request, or
/// no result came within the step's `timeout_ms`.
pub const COMMON_OUTCOMES: [&str; 2] = ["unavailable", "timeout"];

impl ActionKind {
    /// Every kind.
    pub const ALL: [ActionKind; 14] = [
        ActionKind::Identify,
        ActionKind::ClaimNumber,
        ActionKind::WaitAmount,
        ActionKind::AuthNext,
        ActionKind::SubmitPin,
        ActionKind::SubmitAnswer,
        ActionKind::Confirm,
        ActionKind::Cancel,
        ActionKind::AvailableAmount,
        ActionKind::RecentPurchases,
        ActionKind::CheckPin,
        ActionKind::VoiceVerify,
        ActionKind::VoiceEnrolStart,
        ActionKind::VoiceEnrol,
    ];

    /// The dialplan name.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Identify => "identify",
            ActionKind::ClaimNumber => "claim_number",
            ActionKind::WaitAmount => "wait_amount",
            ActionKind::AuthNext => "auth_next",
            ActionKind::SubmitPin => "submit_pin",
            ActionKind::SubmitAnswer => "submit_answer",
            ActionKind::Confirm => "confirm",
            ActionKind::Cancel => "cancel",
            ActionKind::AvailableAmount => "available_amount",
            ActionKind::RecentPurchases => "recent_purchases",
            ActionKind::CheckPin => "check_pin",
            ActionKind::VoiceVerify => "voice_verify",
            ActionKind::VoiceEnrolStart => "voice_enrol_start",
            ActionKind::VoiceEnrol => "voice_enrol",
        }
    }

    /// The kind of a dialplan name.
    pub fn from_name(name: &str) -> Option<ActionKind> {
        ActionKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The outcomes of this kind's results, without [`COMMON_OUTCOMES`].
    pub fn outcomes(self) -> &'static [&'static str] {
        match self {
            ActionKind::Identify => &["known", "withheld", "unknown", "suspended", "locked"],
            ActionKind::ClaimNumber => &[
                "paired",
                "paired_no_amount",
                "invalid",
                "in_use",
                "expired",
                "declined",
                "rate_limited",
            ],
            ActionKind::WaitAmount => &["amount", "cancelled", "expired"],
            ActionKind::AuthNext => &["pin", "challenge", "voice", "done", "refused"],
            ActionKind::SubmitPin
            | ActionKind::SubmitAnswer
            | ActionKind::CheckPin
            | ActionKind::VoiceVerify => &["accepted", "wrong", "locked"],
            ActionKind::VoiceEnrolStart => &["prompt", "declined"],
            ActionKind::VoiceEnrol => &["more", "enrolled", "unclear", "declined"],
            ActionKind::Confirm => &["settled", "declined"],
            ActionKind::Cancel => &["cancelled"],
            ActionKind::AvailableAmount => &["amount", "declined"],
            ActionKind::RecentPurchases => &["purchases", "none", "declined"],
        }
    }

    /// Whether the request carries digits the caller keyed (`input = "var"` in the dialplan),
    /// and whether those digits are secret.
    pub fn input(self) -> Option<InputKind> {
        match self {
            ActionKind::ClaimNumber => Some(InputKind::Plain),
            ActionKind::SubmitPin | ActionKind::SubmitAnswer | ActionKind::CheckPin => {
                Some(InputKind::Secret)
            }
            ActionKind::VoiceVerify | ActionKind::VoiceEnrol => Some(InputKind::Audio),
            _ => None,
        }
    }

    /// How long the interpreter waits for a result when the step does not say.
    pub fn default_timeout_ms(self) -> u64 {
        match self {
            // The merchant may still be choosing: a vending machine waits for the payer's pick.
            ActionKind::WaitAmount => 180_000,
            _ => 15_000,
        }
    }
}

/// What kind of digits an action takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// May be logged (a transaction number).
    Plain,
    /// Must come from a `secret = true` collect (PIN, answer).
    Secret,
    /// A spoken answer's audio, from an `audio = true` collect.
    Audio,
}

/// A request into the settlement core, for the caller of this call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionRequest {
    Identify,
    /// The transaction number as keyed, check digit included and already verified.
    ClaimNumber {
        number: String,
    },
    WaitAmount,
    AuthNext,
    SubmitPin {
        pin: Secret,
    },
    SubmitAnswer {
        answer: Secret,
    },
    Confirm,
    Cancel,
    AvailableAmount,
    /// At most `count_max` purchases, newest first.
    RecentPurchases {
        count_max: u8,
    },
    CheckPin {
        pin: Secret,
    },
    /// The answer to the voice-print prompt the core chose (`${voice_digits}`).
    VoiceVerify {
        audio: VoiceAudio,
    },
    VoiceEnrolStart,
    /// The answer to the current enrolment prompt (`${voice_digits}`).
    VoiceEnrol {
        audio: VoiceAudio,
    },
}

/// How many recent purchases the IVR asks for and reads out.
pub const RECENT_PURCHASES_MAX: u8 = 5;

impl ActionRequest {
    /// The request's kind.
    pub fn kind(&self) -> ActionKind {
        match self {
            ActionRequest::Identify => ActionKind::Identify,
            ActionRequest::ClaimNumber { .. } => ActionKind::ClaimNumber,
            ActionRequest::WaitAmount => ActionKind::WaitAmount,
            ActionRequest::AuthNext => ActionKind::AuthNext,
            ActionRequest::SubmitPin { .. } => ActionKind::SubmitPin,
            ActionRequest::SubmitAnswer { .. } => ActionKind::SubmitAnswer,
            ActionRequest::Confirm => ActionKind::Confirm,
            ActionRequest::Cancel => ActionKind::Cancel,
            ActionRequest::AvailableAmount => ActionKind::AvailableAmount,
            ActionRequest::RecentPurchases { .. } => ActionKind::RecentPurchases,
            ActionRequest::CheckPin { .. } => ActionKind::CheckPin,
            ActionRequest::VoiceVerify { .. } => ActionKind::VoiceVerify,
            ActionRequest::VoiceEnrolStart => ActionKind::VoiceEnrolStart,
            ActionRequest::VoiceEnrol { .. } => ActionKind::VoiceEnrol,
        }
    }
}

/// An amount of money in minor units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amount {
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The currency's ISO 4217 exponent, used to speak currencies that have no spoken names.
    pub minor_digits: u8,
}

/// A merchant as the payer hears it.
#[derive(Clone, Debug)]
pub struct Merchant {
    pub name: String,
    /// The name rendered at registration (`scripts/make-prompts --say`), if there is one.
    pub voice: Option<PromptRef>,
}

/// One purchase of the payer's history.
#[derive(Clone, Debug)]
pub struct Purchase {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub merchant: Merchant,
    pub amount: Amount,
}

/// Why the core refuses; each has a spoken reason (`reason_*` prompts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeclineReason {
    PayerUnknown,
    PayerSuspended,
    PayerLocked,
    MerchantSuspended,
    InsufficientFunds,
    AuthenticationFailed,
    LimitExceeded,
    TransactionExpired,
    MerchantCancelled,
    /// The authentication policy could not agree a method (claims 22, 25).
    Policy(PolicyRefusal),
    Other,
}

/// Why no authentication method could be agreed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// The merchant strictly requires a visual check, which the payer refuses (claim 25).
    VisualCheckRefused,
    /// The merchant's and the payer's demands have no method in common (claim 22).
    NoCommonMethod,
    /// A voice print is required and the payer has none enrolled.
    VoiceRequired,
    /// The agreed method cannot be performed on a phone call.
    MethodUnavailable,
}

impl DeclineReason {
    /// The prompt that speaks this reason.
    pub fn prompt_name(self) -> &'static str {
        match self {
            DeclineReason::PayerUnknown => "reason_payer_unknown",
            DeclineReason::PayerSuspended => "reason_payer_suspended",
            DeclineReason::PayerLocked => "reason_payer_locked",
            DeclineReason::MerchantSuspended => "reason_merchant_suspended",
            DeclineReason::InsufficientFunds => "reason_insufficient_funds",
            DeclineReason::AuthenticationFailed => "reason_authentication_failed",
            DeclineReason::LimitExceeded => "reason_limit_exceeded",
            DeclineReason::TransactionExpired => "reason_transaction_expired",
            DeclineReason::MerchantCancelled => "reason_merchant_cancelled",
            DeclineReason::Policy(PolicyRefusal::VisualCheckRefused) => {
                "reason_policy_visual_check_refused"
            }
            DeclineReason::Policy(PolicyRefusal::NoCommonMethod) => {
                "reason_policy_no_common_method"
            }
            DeclineReason::Policy(PolicyRefusal::VoiceRequired) => "reason_policy_voice_required",
            DeclineReason::Policy(PolicyRefusal::MethodUnavailable) => {
                "reason_policy_method_unavailable"
            }
            DeclineReason::Other => "reason_other",
        }
    }

    /// Every reason, for checks that each has a prompt.
    pub const ALL: [DeclineReason; 14] = [
        DeclineReason::PayerUnknown,
        DeclineReason::PayerSuspended,
        DeclineReason::PayerLocked,
        DeclineReason::MerchantSuspended,
        DeclineReason::InsufficientFunds,
        DeclineReason::AuthenticationFailed,
        DeclineReason::LimitExceeded,
        DeclineReason::TransactionExpired,
        DeclineReason::MerchantCancelled,
        DeclineReason::Policy(PolicyRefusal::VisualCheckRefused),
        DeclineReason::Policy(PolicyRefusal::NoCommonMethod),
        DeclineReason::Policy(PolicyRefusal::VoiceRequired),
        DeclineReason::Policy(PolicyRefusal::MethodUnavailable),
        DeclineReason::Other,
    ];
}

/// Who is calling, as far as the core knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerStatus {
    /// A registered payer in good standing.
    Known,
    /// No calling number was presented.
    Withheld,
    /// The number is not registered.
    Unknown,
    Suspended,
    Locked,
}

/// The result of presenting a transaction number.
#[derive(Clone, Debug)]
pub enum ClaimResult {
    /// Paired; `amount` is `None` while the merchant has not sent it yet.
    Paired {
        merchant: Merchant,
        amount: Option<Amount>,
    },
    /// No live transaction has this number.
    InvalidNumber,
    /// Another payer has already claimed it.
    NumberInUse,
    NumberExpired,
    Declined(DeclineReason),
    /// Too many wrong numbers from this caller.
    RateLimited,
}

/// The result of waiting for the merchant's amount.
#[derive(Clone, Debug)]
pub enum WaitAmountResult {
    Amount(Amount),
    /// The merchant cancelled the transaction.
    Cancelled,
    /// The transaction expired before an amount came.
    Expired,
}

/// The next authentication step under the agreed method.
#[derive(Clone, Debug)]
pub enum AuthStep {
    Pin,
    /// A registered question, picked at random by the core (claims 17-19).
    Challenge {
        /// The question's number among the payer's registered questions (1-based).
        question_number: u8,
        /// The question rendered at registration, if there is one.
        question_voice: Option<PromptRef>,
    },
    /// The voice print: the caller must say these digits (claims 23, 43; text-prompted, so
    /// a recording of an earlier call does not pass).
    Voice {
        digits: String,
    },
    /// Every step has passed.
    Done,
    /// No method could be agreed, or the payer may not authenticate.
    Refused(DeclineReason),
}

/// The result of checking a PIN or an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialResult {
    Accepted,
    Wrong {
        tries_left: u8,
    },
    /// Too many wrong tries: the payer is now locked.
    Locked,
}

/// The result of the final confirmation.
#[derive(Clone, Debug)]
pub enum ConfirmResult {
    /// Settled; the receipt reference (digits, letters are spelled).
    Settled {
        reference: String,
    },
    Declined(DeclineReason),
}

/// Where a voice-print enrolment stands after an answer.
#[derive(Clone, Debug)]
pub enum EnrolStep {
    /// The answer was taken; say these digits next.
    More {
        digits: String,
    },
    /// The voice print is stored.
    Enrolled,
    /// The prompted digits were not heard; say them again.
    Unclear {
        digits: String,
    },
    Declined(DeclineReason),
}

/// The result of a request, fed back with the request's id.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ActionResult {
    Identify(CallerStatus),
    Claim(ClaimResult),
    WaitAmount(WaitAmountResult),
    AuthNext(AuthStep),
    SubmitPin(CredentialResult),
    SubmitAnswer(CredentialResult),
    Confirm(ConfirmResult),
    Cancelled,
    AvailableAmount(Result<Amount, DeclineReason>),
    RecentPurchases(Result<Vec<Purchase>, DeclineReason>),
    CheckPin(CredentialResult),
    VoiceVerify(CredentialResult),
    /// The first enrolment prompt's digits.
    VoiceEnrolStart(Result<String, DeclineReason>),
    VoiceEnrol(EnrolStep),
    /// The core could not serve the request (overloaded, storage down). Valid for any request.
    Unavailable,
}

impl ActionResult {
    /// The kind of request this result answers; `None` for [`ActionResult::Unavailable`].
    pub fn kind(&self) -> Option<ActionKind> {
        Some(match self {
            ActionResult::Identify(_) => ActionKind::Identify,
            ActionResult::Claim(_) => ActionKind::ClaimNumber,
            ActionResult::WaitAmount(_) => ActionKind::WaitAmount,
            ActionResult::AuthNext(_) => ActionKind::AuthNext,
            ActionResult::SubmitPin(_) => ActionKind::SubmitPin,
            ActionResult::SubmitAnswer(_) => ActionKind::SubmitAnswer,
            ActionResult::Confirm(_) => ActionKind::Confirm,
            ActionResult::Cancelled => ActionKind::Cancel,
            ActionResult::AvailableAmount(_) => ActionKind::AvailableAmount,
            ActionResult::RecentPurchases(_) => ActionKind::RecentPurchases,
            ActionResult::CheckPin(_) => ActionKind::CheckPin,
            ActionResult::VoiceVerify(_) => ActionKind::VoiceVerify,
            ActionResult::VoiceEnrolStart(_) => ActionKind::VoiceEnrolStart,
            ActionResult::VoiceEnrol(_) => ActionKind::VoiceEnrol,
            ActionResult::Unavailable => return None,
        })
    }

    /// The outcome name the dialplan branches on.
    pub fn outcome(&self) -> &'static str {
        match self {
            ActionResult::Identify(s) => match s {
                CallerStatus::Known => "known",
                CallerStatus::Withheld => "withheld",
                CallerStatus::Unknown => "unknown",
                CallerStatus::Suspended => "suspended",
                CallerStatus::Locked => "locked",
            },
            ActionResult::Claim(c) => match c {
                ClaimResult::Paired {
                    amount: Some(_), ..
                } => "paired",
                ClaimResult::Paired { amount: None, .. } => "paired_no_amount",
                ClaimResult::InvalidNumber => "invalid",
                ClaimResult::NumberInUse => "in_use",
                ClaimResult::NumberExpired => "expired",
                ClaimResult::Declined(_) => "declined",
                ClaimResult::RateLimited => "rate_limited",
            },
            ActionResult::WaitAmount(w) => match w {
                WaitAmountResult::Amount(_) => "amount",
                WaitAmountResult::Cancelled => "cancelled",
                WaitAmountResult::Expired => "expired",
            },
            ActionResult::AuthNext(a) => match a {
                AuthStep::Pin => "pin",
                AuthStep::Challenge { .. } => "challenge",
                AuthStep::Voice { .. } => "voice",
                AuthStep::Done => "done",
                AuthStep::Refused(_) => "refused",
            },
            ActionResult::SubmitPin(c)
            | ActionResult::SubmitAnswer(c)
            | ActionResult::CheckPin(c)
            | ActionResult::VoiceVerify(c) => match c {
                CredentialResult::Accepted => "accepted",
                CredentialResult::Wrong { .. } => "wrong",
                CredentialResult::Locked => "locked",
            },
            ActionResult::Confirm(c) => match c {
                ConfirmResult::Settled { .. } => "settled",
                ConfirmResult::Declined(_) => "declined",
            },
            ActionResult::Cancelled => "cancelled",
            ActionResult::AvailableAmount(r) => match r {
                Ok(_) => "amount",
                Err(_) => "declined",
            },
            ActionResult::RecentPurchases(r) => match r {
                Ok(list) if list.is_empty() => "none",
                Ok(_) => "purchases",
                Err(_) => "declined",
            },
            ActionResult::VoiceEnrolStart(r) => match r {
                Ok(_) => "prompt",
                Err(_) => "declined",
            },
            ActionResult::VoiceEnrol(e) => match e {
                EnrolStep::More { .. } => "more",
                EnrolStep::Enrolled => "enrolled",
                EnrolStep::Unclear { .. } => "unclear",
                EnrolStep::Declined(_) => "declined",
            },
            ActionResult::Unavailable => "unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("4711".into());
        let req = ActionRequest::SubmitPin { pin: s.clone() };
        let text = format!("{req:?} {s:?}");
        assert!(!text.contains("4711"), "{text}");
        assert!(text.contains("redacted"));
        assert_eq!(s.expose(), "4711");
        let audio = VoiceAudio::new(vec![1234; 800]);
        let text = format!("{:?}", ActionRequest::VoiceVerify { audio });
        assert_eq!(text, "VoiceVerify { audio: VoiceAudio(100 ms) }");
    }

    #[test]
    fn names_round_trip_and_outcomes_are_declared() {
        for k in ActionKind::ALL {
            assert_eq!(ActionKind::from_name(k.name()), Some(k));
        }
        assert_eq!(ActionKind::from_name("pay_now"), None);
        // Every outcome a result can produce is declared for its kind.
        let samples = [
            ActionResult::Identify(CallerStatus::Locked),
            ActionResult::Claim(ClaimResult::RateLimited),
            ActionResult::WaitAmount(WaitAmountResult::Expired),
            ActionResult::AuthNext(AuthStep::Done),
            ActionResult::SubmitAnswer(CredentialResult::Wrong { tries_left: 1 }),
            ActionResult::Confirm(ConfirmResult::Declined(DeclineReason::Other)),
            ActionResult::Cancelled,
            ActionResult::AvailableAmount(Err(DeclineReason::PayerSuspended)),
            ActionResult::RecentPurchases(Ok(vec![])),
            ActionResult::AuthNext(AuthStep::Voice {
                digits: "4711".into(),
            }),
            ActionResult::CheckPin(CredentialResult::Locked),
            ActionResult::VoiceVerify(CredentialResult::Accepted),
            ActionResult::VoiceEnrolStart(Ok("12345".into())),
            ActionResult::VoiceEnrolStart(Err(DeclineReason::AuthenticationFailed)),
            ActionResult::VoiceEnrol(EnrolStep::More {
                digits: "67890".into(),
            }),
            ActionResult::VoiceEnrol(EnrolStep::Unclear {
                digits: "67890".into(),
            }),
            ActionResult::VoiceEnrol(EnrolStep::Enrolled),
            ActionResult::VoiceEnrol(EnrolStep::Declined(DeclineReason::Other)),
        ];
        for r in samples {
            let kind = r.kind().unwrap();
            assert!(
                kind.outcomes().contains(&r.outcome()),
                "{kind:?} {}",
                r.outcome()
            );
        }
        assert_eq!(ActionResult::Unavailable.outcome(), COMMON_OUTCOMES[0]);
    }
}
