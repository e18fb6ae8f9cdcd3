//! The IVR's requests, executed against the settlement core's payer API for one caller.
//!
//! Each request becomes one or two calls on [`Service`]; every answer the core gives maps onto
//! the IVR's typed result. The core replies only after its write is durable, so a `settled`
//! outcome spoken to the caller is on disk. Nothing here logs PIN or answer digits.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;

use crate::settlement::Service;
use crate::settlement::auth_policy::Method;
use crate::settlement::credentials::SecretDigits;
use crate::settlement::engine::{ClaimError, OpError, PayerChannel, StepOutcome};
use crate::settlement::lifecycle::{DeclineReason as CoreDecline, Txn, TxnState};
use crate::settlement::model::PayerStatus;
use crate::settlement::money::Currency;
use crate::settlement::service::WaitError;
use crate::store::writer::CoreError;
use crate::telephony::ivr::{
    ActionRequest, ActionResult, Amount, AuthStep, CallerStatus, ClaimResult, ConfirmResult,
    CredentialResult, DeclineReason, EnrolStep, Merchant, PolicyRefusal, Purchase, VoiceAudio,
    WaitAmountResult,
};
use crate::voice::Template;

use super::speech::SpeechService;
use super::stats;

/// How long the core is waited on for the merchant's amount. The IVR's own step timeout
/// (3 minutes in the default dialplan) normally ends the wait first.
const WAIT_AMOUNT_MAX: Duration = Duration::from_secs(600);
/// How long a visual check by the merchant is waited for.
const WAIT_VISUAL_MAX: Duration = Duration::from_secs(120);

/// Digits in a voice-print verification prompt.
pub const VOICE_PROMPT_DIGITS: usize = 4;
/// Enrolment prompts and their length: every digit is said twice.
pub const ENROL_PROMPTS: usize = 4;
pub const ENROL_PROMPT_DIGITS: usize = 5;
/// Unclear enrolment answers tolerated before the enrolment is refused.
pub const ENROL_UNCLEAR_MAX: u8 = 3;

/// The payer side of one call: who calls, which transaction the call has paired with, and
/// where a voice-print check or enrolment stands.
#[derive(Debug, Clone, Default)]
pub struct PayerSession {
    /// The caller's E.164 number, `None` when withheld or unusable.
    pub msisdn: Option<String>,
    /// The transaction paired by `claim_number`.
    pub txn_id: Option<String>,
    /// The digits the caller was last asked to say (verification or enrolment). A
    /// verification prompt is used once.
    pub voice_prompt: Option<String>,
    /// `check_pin` passed on this call.
    pub pin_checked: bool,
    /// Enrolment prompts still to be said after the current one.
    pub enrol_prompts: Vec<String>,
    /// Answers taken so far, with their prompts; dropped once the template is built.
    pub enrolment: Vec<(VoiceAudio, String)>,
    pub enrol_unclear: u8,
}

impl PayerSession {
    pub fn new(msisdn: Option<String>) -> PayerSession {
        PayerSession {
            msisdn,
            ..PayerSession::default()
        }
    }
}

/// A random prompt of `n` digits with no digit twice in a row (clearer word boundaries).
fn random_digits(n: usize) -> String {
    let mut rng = rand::rng();
    let mut out = String::with_capacity(n);
    let mut last = None;
    while out.len() < n {
        let d: u8 = rng.random_range(0..10);
        if Some(d) != last {
            out.push(char::from(b'0' + d));
            last = Some(d);
        }
    }
    out
}

/// Enrolment prompts: two shuffled rounds of the ten digits, cut into prompts of five.
fn enrol_prompts() -> Vec<String> {
    let mut rng = rand::rng();
    let mut digits: Vec<u8> = Vec::with_capacity(ENROL_PROMPTS * ENROL_PROMPT_DIGITS);
    while digits.len() < ENROL_PROMPTS * ENROL_PROMPT_DIGITS {
        let mut round: Vec<u8> = (0..10).collect();
        round.shuffle(&mut rng);
        if digits.last() == round.first() {
            round.swap(0, 9);
        }
        digits.extend(round);
    }
    digits
        .chunks(ENROL_PROMPT_DIGITS)
        .map(|c| c.iter().map(|d| char::from(b'0' + d)).collect())
        .collect()
}

fn decline(reason: Option<CoreDecline>) -> DeclineReason {
    match reason {
        Some(CoreDecline::PayerUnknown) => DeclineReason::PayerUnknown,
        Some(CoreDecline::PayerSuspended) => DeclineReason::PayerSuspended,
        Some(CoreDecline::PayerLocked) => DeclineReason::PayerLocked,
        Some(CoreDecline::MerchantSuspended) => DeclineReason::MerchantSuspended,
        Some(CoreDecline::InsufficientFunds) => DeclineReason::InsufficientFunds,
        Some(CoreDecline::AuthFailed) => DeclineReason::AuthenticationFailed,
        Some(CoreDecline::AuthRefusedByPolicy) => {
            DeclineReason::Policy(PolicyRefusal::NoCommonMethod)
        }
        Some(CoreDecline::Limit) => DeclineReason::LimitExceeded,
        None => DeclineReason::Other,
    }
}

fn decline_of_state(txn: &Txn) -> DeclineReason {
    match txn.state {
        TxnState::Expired => DeclineReason::TransactionExpired,
        TxnState::Cancelled => DeclineReason::MerchantCancelled,
        _ => decline(txn.decline_reason),
    }
}

fn decline_of_error(e: &OpError) -> DeclineReason {
    match e {
        OpError::Declined { reason, .. } => decline(Some(*reason)),
        OpError::UnknownPayer => DeclineReason::PayerUnknown,
        OpError::MerchantSuspended => DeclineReason::MerchantSuspended,
        _ => DeclineReason::Other,
    }
}

fn amount(amount_minor: i64, currency: &str) -> Amount {
    Amount {
        amount_minor,
        currency: currency.to_string(),
        minor_digits: Currency::from_code(currency).map_or(2, |c| c.exponent),
    }
}

fn txn_amount(txn: &Txn) -> Option<Amount> {
    txn.amount_minor.map(|a| amount(a, &txn.currency))
}

fn unavailable(e: &CoreError) -> ActionResult {
    tracing::warn!(error = %e, "the settlement core could not serve a call's request");
    ActionResult::Unavailable
}

/// Runs one request. The session's transaction is set by a successful claim. `speech` is
/// `None` when the gateway runs without voice.
pub async fn execute(
    svc: &Service,
    speech: Option<&Arc<SpeechService>>,
    session: &mut PayerSession,
    request: ActionRequest,
) -> ActionResult {
    let Some(msisdn) = session.msisdn.clone() else {
        return match request {
            ActionRequest::Identify => ActionResult::Identify(CallerStatus::Withheld),
            _ => ActionResult::Unavailable,
        };
    };
    match request {
        ActionRequest::Identify => match svc.store().payer(&msisdn).await {
            Ok(None) => ActionResult::Identify(CallerStatus::Unknown),
            Ok(Some(p)) => ActionResult::Identify(match p.status {
                PayerStatus::Active => CallerStatus::Known,
                PayerStatus::Suspended => CallerStatus::Suspended,
                PayerStatus::Locked => CallerStatus::Locked,
            }),
            Err(e) => unavailable(&CoreError::from(e)),
        },
        ActionRequest::ClaimNumber { number } => {
            match svc.claim(&msisdn, &number, PayerChannel::Call).await {
                Ok(c) => {
                    session.txn_id = Some(c.txn.id.clone());
                    if c.txn.state == TxnState::Declined {
                        return ActionResult::Claim(ClaimResult::Declined(decline(
                            c.txn.decline_reason,
                        )));
                    }
                    ActionResult::Claim(ClaimResult::Paired {
                        merchant: Merchant {
                            name: c.merchant_name.clone(),
                            voice: None,
                        },
                        amount: txn_amount(&c.txn),
                    })
                }
                Err(CoreError::Op(e)) => ActionResult::Claim(match e {
                    OpError::Claim(ClaimError::Blocked { .. }) => ClaimResult::RateLimited,
                    OpError::Claim(ClaimError::UnknownNumber) | OpError::Number(_) => {
                        ClaimResult::InvalidNumber
                    }
                    OpError::Claim(ClaimError::Expired) => ClaimResult::NumberExpired,
                    OpError::Claim(ClaimError::InUse) => ClaimResult::NumberInUse,
                    OpError::UnknownTransaction => ClaimResult::InvalidNumber,
                    other => ClaimResult::Declined(decline_of_error(&other)),
                }),
                Err(e) => unavailable(&e),
            }
        }
        ActionRequest::WaitAmount => {
            let Some(txn_id) = session.txn_id.clone() else {
                return ActionResult::Unavailable;
            };
            match svc.wait_amount(&txn_id, WAIT_AMOUNT_MAX).await {
                Ok(t) => match txn_amount(&t) {
                    // A declined transaction (funds, limit) still has its amount: the flow
                    // announces it and `auth_next` speaks the reason.
                    Some(a) => ActionResult::WaitAmount(WaitAmountResult::Amount(a)),
                    None => ActionResult::WaitAmount(WaitAmountResult::Cancelled),
                },
                Err(WaitError::Ended("expired")) => {
                    ActionResult::WaitAmount(WaitAmountResult::Expired)
                }
                Err(WaitError::Ended(_)) => ActionResult::WaitAmount(WaitAmountResult::Cancelled),
                Err(WaitError::TimedOut) => ActionResult::WaitAmount(WaitAmountResult::Expired),
                Err(WaitError::Core(e)) => unavailable(&e),
            }
        }
        ActionRequest::AuthNext => auth_next(svc, speech, &msisdn, session).await,
        ActionRequest::SubmitPin { pin } => {
            let Some(txn_id) = session.txn_id.clone() else {
                return ActionResult::Unavailable;
            };
            let Ok(pin) = SecretDigits::pin(pin.expose()) else {
                return ActionResult::SubmitPin(CredentialResult::Wrong { tries_left: 0 });
            };
            match svc.submit_pin(&msisdn, &txn_id, pin).await {
                Ok((_, out)) => ActionResult::SubmitPin(credential(out)),
                Err(e) => credential_error(e, ActionResult::SubmitPin),
            }
        }
        ActionRequest::SubmitAnswer { answer } => {
            let Some(txn_id) = session.txn_id.clone() else {
                return ActionResult::Unavailable;
            };
            let Ok(answer) = SecretDigits::answer(answer.expose()) else {
                return ActionResult::SubmitAnswer(CredentialResult::Wrong { tries_left: 0 });
            };
            match svc.submit_answer(&msisdn, &txn_id, answer).await {
                Ok((_, out)) => ActionResult::SubmitAnswer(credential(out)),
                Err(e) => credential_error(e, ActionResult::SubmitAnswer),
            }
        }
        ActionRequest::Confirm => {
            let Some(txn_id) = session.txn_id.clone() else {
                return ActionResult::Unavailable;
            };
            match svc.confirm(&msisdn, &txn_id).await {
                Ok(t) if t.state == TxnState::Settled => {
                    ActionResult::Confirm(ConfirmResult::Settled {
                        reference: t.reference,
                    })
                }
                Ok(t) => ActionResult::Confirm(ConfirmResult::Declined(decline_of_state(&t))),
                Err(CoreError::Op(e)) => {
                    ActionResult::Confirm(ConfirmResult::Declined(decline_of_error(&e)))
                }
                Err(e) => unavailable(&e),
            }
        }
        ActionRequest::Cancel => {
            if let Some(txn_id) = session.txn_id.clone() {
                match svc.payer_cancel(&msisdn, &txn_id).await {
                    Ok(_) | Err(CoreError::Op(_)) => {}
                    Err(e) => return unavailable(&e),
                }
            }
            ActionResult::Cancelled
        }
        ActionRequest::AvailableAmount => match svc.available(&msisdn).await {
            Ok(Some(a)) => {
                ActionResult::AvailableAmount(Ok(amount(a.available_minor, &a.currency)))
            }
            Ok(None) => ActionResult::AvailableAmount(Err(DeclineReason::PayerUnknown)),
            Err(e) => unavailable(&e),
        },
        ActionRequest::RecentPurchases { count_max } => {
            match svc.purchases(&msisdn, usize::from(count_max)).await {
                Ok(list) => ActionResult::RecentPurchases(Ok(list
                    .into_iter()
                    .filter_map(|p| {
                        let date =
                            time::OffsetDateTime::from_unix_timestamp(p.at_ms / 1000).ok()?;
                        Some(Purchase {
                            year: date.year(),
                            month: u32::from(u8::from(date.month())),
                            day: u32::from(date.day()),
                            merchant: Merchant {
                                name: p.merchant_name,
                                voice: None,
                            },
                            amount: amount(p.amount_minor, &p.currency),
                        })
                    })
                    .collect())),
                Err(e) => unavailable(&e),
            }
        }
        ActionRequest::CheckPin { pin } => {
            let Ok(pin) = SecretDigits::pin(pin.expose()) else {
                return ActionResult::CheckPin(CredentialResult::Wrong { tries_left: 0 });
            };
            match svc.check_pin(&msisdn, pin).await {
                Ok(out) => {
                    session.pin_checked = matches!(out, StepOutcome::Passed { .. });
                    ActionResult::CheckPin(credential(out))
                }
                Err(e) => credential_error(e, ActionResult::CheckPin),
            }
        }
        ActionRequest::VoiceVerify { audio } => {
            voice_verify(svc, speech, &msisdn, session, audio).await
        }
        ActionRequest::VoiceEnrolStart => {
            if !session.pin_checked {
                return ActionResult::VoiceEnrolStart(Err(DeclineReason::AuthenticationFailed));
            }
            if speech.is_none() {
                return ActionResult::VoiceEnrolStart(Err(DeclineReason::Policy(
                    PolicyRefusal::MethodUnavailable,
                )));
            }
            let mut prompts = enrol_prompts();
            let first = prompts.remove(0);
            session.enrol_prompts = prompts;
            session.enrolment.clear();
            session.enrol_unclear = 0;
            session.voice_prompt = Some(first.clone());
            ActionResult::VoiceEnrolStart(Ok(first))
        }
        ActionRequest::VoiceEnrol { audio } => {
            voice_enrol(svc, speech, &msisdn, session, audio).await
        }
    }
}

async fn voice_verify(
    svc: &Service,
    speech: Option<&Arc<SpeechService>>,
    msisdn: &str,
    session: &mut PayerSession,
    audio: VoiceAudio,
) -> ActionResult {
    // The prompt is used once: a second answer to it is a replay.
    let (Some(txn_id), Some(prompt), Some(speech)) =
        (session.txn_id.clone(), session.voice_prompt.take(), speech)
    else {
        return ActionResult::Unavailable;
    };
    let template = match svc.store().voice_print(msisdn).await {
        Ok(t) => t,
        Err(e) => return unavailable(&CoreError::from(e)),
    };
    let verifier = speech.verifier();
    let verdict = tokio::task::spawn_blocking(move || {
        let template = Template::from_bytes(&template?).ok()?;
        Some(verifier.verify(audio.samples(), &prompt, &template))
    })
    .await;
    let accepted = match verdict {
        Ok(Some(v)) => {
            tracing::info!(
                digits_ok = v.digits_ok,
                score = v.score,
                accepted = v.accepted,
                "voice print checked"
            );
            stats::record_voice_check(v.accepted);
            v.accepted
        }
        Ok(None) => {
            stats::record_voice_check(false);
            tracing::warn!("the payer's voice print is missing or unusable; the answer fails");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "voice verification failed");
            return ActionResult::Unavailable;
        }
    };
    match svc.submit_voice(msisdn, &txn_id, accepted).await {
        Ok((_, out)) => ActionResult::VoiceVerify(credential(out)),
        Err(e) => credential_error(e, ActionResult::VoiceVerify),
    }
}

async fn voice_enrol(
    svc: &Service,
    speech: Option<&Arc<SpeechService>>,
    msisdn: &str,
    session: &mut PayerSession,
    audio: VoiceAudio,
) -> ActionResult {
    let (Some(prompt), Some(speech), true) =
        (session.voice_prompt.clone(), speech, session.pin_checked)
    else {
        return ActionResult::VoiceEnrol(EnrolStep::Declined(DeclineReason::AuthenticationFailed));
    };
    let verifier = speech.verifier();
    let check = {
        let (audio, prompt) = (audio.clone(), prompt.clone());
        let verifier = verifier.clone();
        tokio::task::spawn_blocking(move || verifier.prompt_heard(audio.samples(), &prompt)).await
    };
    match check {
        Ok(true) => {}
        Ok(false) => {
            session.enrol_unclear = session.enrol_unclear.saturating_add(1);
            if session.enrol_unclear >= ENROL_UNCLEAR_MAX {
                session.enrolment.clear();
                session.voice_prompt = None;
                return ActionResult::VoiceEnrol(EnrolStep::Declined(
                    DeclineReason::AuthenticationFailed,
                ));
            }
            return ActionResult::VoiceEnrol(EnrolStep::Unclear { digits: prompt });
        }
        Err(e) => {
            tracing::error!(error = %e, "enrolment check failed");
            return ActionResult::Unavailable;
        }
    }
    session.enrolment.push((audio, prompt));
    if !session.enrol_prompts.is_empty() {
        let next = session.enrol_prompts.remove(0);
        session.voice_prompt = Some(next.clone());
        return ActionResult::VoiceEnrol(EnrolStep::More { digits: next });
    }
    session.voice_prompt = None;
    let answers = std::mem::take(&mut session.enrolment);
    let built = tokio::task::spawn_blocking(move || {
        let utterances: Vec<(&[i16], Option<&str>)> = answers
            .iter()
            .map(|(a, p)| (a.samples(), Some(p.as_str())))
            .collect();
        verifier.enrol(&utterances).map(|t| t.to_bytes())
    })
    .await;
    let bytes = match built {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "voice print could not be built");
            return ActionResult::VoiceEnrol(EnrolStep::Declined(DeclineReason::Other));
        }
        Err(e) => {
            tracing::error!(error = %e, "voice print could not be built");
            return ActionResult::Unavailable;
        }
    };
    match svc.set_voice_print(msisdn, Some(bytes)).await {
        Ok(()) => {
            stats::record_voice_enrolment();
            tracing::info!("voice print enrolled by phone");
            ActionResult::VoiceEnrol(EnrolStep::Enrolled)
        }
        Err(e) => unavailable(&e),
    }
}

fn credential(out: StepOutcome) -> CredentialResult {
    match out {
        StepOutcome::Passed { .. } => CredentialResult::Accepted,
        StepOutcome::Wrong { tries_left } => CredentialResult::Wrong {
            tries_left: u8::try_from(tries_left.max(0)).unwrap_or(u8::MAX),
        },
        StepOutcome::Locked => CredentialResult::Locked,
    }
}

fn credential_error(e: CoreError, wrap: fn(CredentialResult) -> ActionResult) -> ActionResult {
    match e {
        CoreError::Op(OpError::Declined {
            reason: CoreDecline::PayerLocked,
            ..
        }) => wrap(CredentialResult::Locked),
        CoreError::Op(_) => wrap(CredentialResult::Wrong { tries_left: 0 }),
        e => unavailable(&e),
    }
}

async fn auth_next(
    svc: &Service,
    speech: Option<&Arc<SpeechService>>,
    msisdn: &str,
    session: &mut PayerSession,
) -> ActionResult {
    let Some(txn_id) = session.txn_id.clone() else {
        return ActionResult::Unavailable;
    };
    let txn_id = txn_id.as_str();
    let mut txn = match svc.payer_txn(msisdn, txn_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return ActionResult::AuthNext(AuthStep::Refused(DeclineReason::Other)),
        Err(e) => return unavailable(&e),
    };
    loop {
        if txn.state.is_final() {
            return ActionResult::AuthNext(AuthStep::Refused(decline_of_state(&txn)));
        }
        match txn.auth.remaining().first().copied() {
            None => return ActionResult::AuthNext(AuthStep::Done),
            Some(Method::Pin) => return ActionResult::AuthNext(AuthStep::Pin),
            Some(Method::Challenge) => {
                let number = match svc.store().payer(msisdn).await {
                    Ok(Some(p)) => p
                        .questions
                        .iter()
                        .position(|(id, _)| Some(*id) == txn.auth.question_id)
                        .map_or(1, |i| i + 1),
                    Ok(None) => 1,
                    Err(e) => return unavailable(&CoreError::from(e)),
                };
                return ActionResult::AuthNext(AuthStep::Challenge {
                    question_number: u8::try_from(number).unwrap_or(u8::MAX),
                    question_voice: None,
                });
            }
            Some(Method::Visual) => {
                // The merchant compares the portrait and answers on its own channel.
                match svc
                    .wait_for(txn_id, WAIT_VISUAL_MAX, |t| {
                        !t.auth.remaining().contains(&Method::Visual)
                    })
                    .await
                {
                    Ok(t) => txn = t,
                    Err(WaitError::Core(e)) => return unavailable(&e),
                    Err(_) => {
                        return ActionResult::AuthNext(AuthStep::Refused(
                            DeclineReason::AuthenticationFailed,
                        ));
                    }
                }
            }
            Some(Method::Voice) => {
                if speech.is_none() {
                    return ActionResult::AuthNext(AuthStep::Refused(DeclineReason::Policy(
                        PolicyRefusal::MethodUnavailable,
                    )));
                }
                match svc.store().voice_print(msisdn).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return ActionResult::AuthNext(AuthStep::Refused(DeclineReason::Policy(
                            PolicyRefusal::VoiceRequired,
                        )));
                    }
                    Err(e) => return unavailable(&CoreError::from(e)),
                }
                // A fresh prompt for every answer: a recording of an earlier call says the
                // wrong digits.
                let digits = random_digits(VOICE_PROMPT_DIGITS);
                session.voice_prompt = Some(digits.clone());
                return ActionResult::AuthNext(AuthStep::Voice { digits });
            }
        }
    }
}
