//! The IVR's requests, executed against the settlement core's payer API for one caller.
//!
//! Each request becomes one or two calls on [`Service`]; every answer the core gives maps onto
//! the IVR's typed result. The core replies only after its write is durable, so a `settled`
//! outcome spoken to the caller is on disk. Nothing here logs PIN or answer digits.

use std::time::Duration;

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
    CredentialResult, DeclineReason, Merchant, PolicyRefusal, Purchase, WaitAmountResult,
};

/// How long the core is waited on for the merchant's amount. The IVR's own step timeout
/// (3 minutes in the default dialplan) normally ends the wait first.
const WAIT_AMOUNT_MAX: Duration = Duration::from_secs(600);
/// How long a visual check by the merchant is waited for.
const WAIT_VISUAL_MAX: Duration = Duration::from_secs(120);

/// The payer side of one call: who calls and which transaction the call has paired with.
#[derive(Debug, Clone)]
pub struct PayerSession {
    /// The caller's E.164 number, `None` when withheld or unusable.
    pub msisdn: Option<String>,
    /// The transaction paired by `claim_number`.
    pub txn_id: Option<String>,
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

/// Runs one request. The session's transaction is set by a successful claim.
pub async fn execute(
    svc: &Service,
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
        ActionRequest::AuthNext => auth_next(svc, &msisdn, session.txn_id.as_deref()).await,
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

async fn auth_next(svc: &Service, msisdn: &str, txn_id: Option<&str>) -> ActionResult {
    let Some(txn_id) = txn_id else {
        return ActionResult::Unavailable;
    };
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
                return ActionResult::AuthNext(AuthStep::Refused(DeclineReason::Policy(
                    PolicyRefusal::VoiceRequired,
                )));
            }
        }
    }
}
