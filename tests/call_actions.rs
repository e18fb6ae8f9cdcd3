//! The call driver's IVR actions against the settlement core: each core answer becomes the
//! IVR result the dialplan branches on. Runs on SQLite and PostgreSQL.

mod common;

use common::{Env, PAYER, PIN, TERMINAL};
use telepay::settlement::lifecycle::Origin;
use telepay::store::Backend;
use telepay::telephony::driver::actions::{PayerSession, execute};
use telepay::telephony::ivr::{
    ActionRequest, ActionResult, AuthStep, CallerStatus, ClaimResult, ConfirmResult,
    CredentialResult, Secret, WaitAmountResult,
};

fn session(msisdn: Option<&str>) -> PayerSession {
    PayerSession {
        msisdn: msisdn.map(str::to_string),
        txn_id: None,
    }
}

async fn payer_actions_follow_the_core(backend: Backend) {
    let env = Env::new(backend, "call_actions").await;
    let svc = &env.svc;
    env.payer("+15550199", 1_000).await;

    // Who calls.
    let r = execute(svc, &mut session(Some(PAYER)), ActionRequest::Identify).await;
    assert!(
        matches!(r, ActionResult::Identify(CallerStatus::Known)),
        "{r:?}"
    );
    let r = execute(
        svc,
        &mut session(Some("+15559999")),
        ActionRequest::Identify,
    )
    .await;
    assert!(
        matches!(r, ActionResult::Identify(CallerStatus::Unknown)),
        "{r:?}"
    );
    let r = execute(svc, &mut session(None), ActionRequest::Identify).await;
    assert!(
        matches!(r, ActionResult::Identify(CallerStatus::Withheld)),
        "{r:?}"
    );

    // Pairing before the amount is known.
    let (txn, _) = svc
        .open(TERMINAL, None, None, Origin::Http, None, None)
        .await
        .expect("open");
    let mut call = session(Some(PAYER));
    let r = execute(
        svc,
        &mut call,
        ActionRequest::ClaimNumber {
            number: txn.number.clone(),
        },
    )
    .await;
    match &r {
        ActionResult::Claim(ClaimResult::Paired { merchant, amount }) => {
            assert_eq!(merchant.name, format!("Shop {TERMINAL}"));
            assert!(amount.is_none());
        }
        other => panic!("expected paired without amount, got {other:?}"),
    }
    assert_eq!(r.outcome(), "paired_no_amount");
    assert_eq!(call.txn_id.as_deref(), Some(txn.id.as_str()));

    // Another caller presenting the same number.
    let r = execute(
        svc,
        &mut session(Some("+15550199")),
        ActionRequest::ClaimNumber {
            number: txn.number.clone(),
        },
    )
    .await;
    assert_eq!(r.outcome(), "in_use", "{r:?}");

    // The merchant sends the amount while the caller holds.
    let waiting = {
        let svc = svc.clone();
        let mut call = call.clone();
        tokio::spawn(async move { execute(&svc, &mut call, ActionRequest::WaitAmount).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    svc.set_amount(TERMINAL, &txn.id, 700, None)
        .await
        .expect("amount");
    match waiting.await.expect("the waiting task") {
        ActionResult::WaitAmount(WaitAmountResult::Amount(a)) => {
            assert_eq!(
                (a.amount_minor, a.currency.as_str(), a.minor_digits),
                (700, "USD", 2)
            );
        }
        other => panic!("expected the amount, got {other:?}"),
    }

    // PIN: wrong, then right; then nothing remains.
    let r = execute(svc, &mut call, ActionRequest::AuthNext).await;
    assert!(matches!(r, ActionResult::AuthNext(AuthStep::Pin)), "{r:?}");
    let r = execute(
        svc,
        &mut call,
        ActionRequest::SubmitPin {
            pin: Secret::new("9999".into()),
        },
    )
    .await;
    match r {
        ActionResult::SubmitPin(CredentialResult::Wrong { tries_left }) => {
            assert!(tries_left >= 1, "{tries_left}")
        }
        other => panic!("expected a wrong PIN, got {other:?}"),
    }
    let r = execute(
        svc,
        &mut call,
        ActionRequest::SubmitPin {
            pin: Secret::new(PIN.into()),
        },
    )
    .await;
    assert!(
        matches!(r, ActionResult::SubmitPin(CredentialResult::Accepted)),
        "{r:?}"
    );
    let r = execute(svc, &mut call, ActionRequest::AuthNext).await;
    assert!(matches!(r, ActionResult::AuthNext(AuthStep::Done)), "{r:?}");

    // Settled, with the transaction's reference; the money moved.
    let r = execute(svc, &mut call, ActionRequest::Confirm).await;
    match r {
        ActionResult::Confirm(ConfirmResult::Settled { reference }) => {
            assert_eq!(reference, txn.reference)
        }
        other => panic!("expected settled, got {other:?}"),
    }
    match execute(svc, &mut call, ActionRequest::AvailableAmount).await {
        ActionResult::AvailableAmount(Ok(a)) => assert_eq!(a.amount_minor, 10_000 - 700),
        other => panic!("expected the available amount, got {other:?}"),
    }
    match execute(
        svc,
        &mut call,
        ActionRequest::RecentPurchases { count_max: 5 },
    )
    .await
    {
        ActionResult::RecentPurchases(Ok(list)) => {
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].amount.amount_minor, 700);
        }
        other => panic!("expected one purchase, got {other:?}"),
    }

    // A number nobody issued (with a valid check digit) is invalid; a paid one is no longer
    // claimable.
    let payload = "12345678";
    let check = telepay::telephony::ivr::damm_check_digit(payload).expect("digits");
    let unknown = format!("{payload}{check}");
    let r = execute(
        svc,
        &mut session(Some(PAYER)),
        ActionRequest::ClaimNumber { number: unknown },
    )
    .await;
    assert_eq!(r.outcome(), "invalid", "{r:?}");
    env.assert_ledger_sound().await;
    env.cleanup().await;
}
on_both_backends!(payer_actions_follow_the_core);
