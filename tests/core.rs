//! The settlement core against a real database: every test runs on SQLite and on PostgreSQL
//! (`NAME::sqlite`, `NAME::postgres`).

mod common;

use common::*;
use std::time::Duration;
use telepay::settlement::CoreError;
use telepay::settlement::auth_policy::{Method, PayerDemand};
use telepay::settlement::credentials::SecretDigits;
use telepay::settlement::engine::{ClaimError, OpError, PayerChannel, StepOutcome};
use telepay::settlement::lifecycle::{DeclineReason, EventKind, LifecycleError, Origin, TxnState};
use telepay::settlement::money::AmountError;
use telepay::settlement::txn_number::NumberError;
use telepay::store::Backend;

fn pin(p: &str) -> SecretDigits {
    SecretDigits::pin(p).unwrap()
}

fn op_err(e: CoreError) -> OpError {
    match e {
        CoreError::Op(o) => o,
        other => panic!("expected a business error, got {other:?}"),
    }
}

async fn full_flow_amount_after_pairing(b: Backend) {
    let env = Env::new(b, "flow").await;
    let svc = &env.svc;
    let mut events = svc.subscribe();
    let (txn, replayed) = svc
        .open(TERMINAL, None, None, Origin::Http, None, None)
        .await
        .unwrap();
    assert!(!replayed);
    assert_eq!(txn.state, TxnState::Issued);
    assert_eq!(txn.number.len(), 9);
    assert_eq!(txn.expires_ms, T0_MS + 300_000);

    let c = svc
        .claim(PAYER, &txn.number, PayerChannel::Call)
        .await
        .unwrap();
    assert_eq!(c.txn.state, TxnState::Paired);
    assert_eq!(c.merchant_name, format!("Shop {TERMINAL}"));
    assert_eq!(c.txn.auth.steps, vec![Method::Pin]);

    let t = svc
        .set_amount(TERMINAL, &txn.id, 1_250, None)
        .await
        .unwrap();
    assert_eq!(t.state, TxnState::Authenticating);
    // Once authentication starts the amount is fixed.
    let e = op_err(
        svc.set_amount(TERMINAL, &txn.id, 999, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(e, OpError::Lifecycle(LifecycleError::AmountFixed(1_250)));

    let (_, out) = svc.submit_pin(PAYER, &txn.id, pin("0000")).await.unwrap();
    assert_eq!(out, StepOutcome::Wrong { tries_left: 2 });
    let (_, out) = svc.submit_pin(PAYER, &txn.id, pin(PIN)).await.unwrap();
    assert_eq!(out, StepOutcome::Passed { remaining: vec![] });
    let t = svc.confirm(PAYER, &txn.id).await.unwrap();
    assert_eq!(t.state, TxnState::Settled);
    assert_eq!(t.auth_code.as_deref().map(str::len), Some(6));

    assert_eq!(env.balance("payer:+15550100").await, 10_000 - 1_250);
    assert_eq!(env.balance(&format!("merchant:{MERCHANT}")).await, 1_250);
    env.assert_ledger_sound().await;

    // Every transition is an event: persisted and published, in the same order.
    let stored: Vec<&'static str> = svc
        .store()
        .events(&t, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(
        stored,
        vec![
            "ISSUED",
            "PAIRED",
            "AMOUNT_SET",
            "AUTHENTICATING",
            "AUTH_STEP_FAILED",
            "AUTH_STEP_PASSED",
            "CONFIRMED",
            "SETTLED"
        ]
    );
    let mut published = Vec::new();
    while let Ok(e) = events.try_recv() {
        if e.txn_id == txn.id {
            published.push(e.kind.name());
        }
    }
    assert_eq!(published, stored);
    // The payer's history and available amount (claims 11, 13).
    let h = svc.purchases(PAYER, 5).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].amount_minor, h[0].merchant_name.as_str()),
        (1_250, "Shop SHOP0001")
    );
    assert_eq!(
        svc.available(PAYER).await.unwrap().unwrap().available_minor,
        8_750
    );
    env.cleanup().await;
}
on_both_backends!(full_flow_amount_after_pairing);

async fn amount_before_pairing_goes_straight_to_authentication(b: Backend) {
    let env = Env::new(b, "amtfirst").await;
    let svc = &env.svc;
    let (txn, _) = svc
        .open(
            TERMINAL,
            Some(500),
            Some("USD".into()),
            Origin::Http,
            Some("coffee".into()),
            None,
        )
        .await
        .unwrap();
    let c = svc
        .claim(PAYER, &txn.number, PayerChannel::Sms)
        .await
        .unwrap();
    assert_eq!(c.txn.state, TxnState::Authenticating);
    assert_eq!(c.txn.amount_minor, Some(500));
    // wait_amount returns at once when the amount is known.
    let t = svc
        .wait_amount(&txn.id, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(t.amount_minor, Some(500));
    env.cleanup().await;
}
on_both_backends!(amount_before_pairing_goes_straight_to_authentication);

async fn fifty_concurrent_claims_pair_exactly_one(b: Backend) {
    let env = Env::new(b, "race").await;
    let payers: Vec<String> = (0..50).map(|i| format!("+1555020{i:02}")).collect();
    for p in &payers {
        env.payer(p, 1_000).await;
    }
    let (txn, _) = env
        .svc
        .open(TERMINAL, Some(100), None, Origin::Http, None, None)
        .await
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(payers.len()));
    for p in payers.clone() {
        let svc = env.svc.clone();
        let number = txn.number.clone();
        let barrier = barrier.clone();
        set.spawn(async move {
            barrier.wait().await;
            svc.claim(&p, &number, PayerChannel::Call)
                .await
                .map(|c| (p, c))
        });
    }
    let mut won = Vec::new();
    let mut in_use = 0;
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok((p, c)) => won.push((p, c.txn.payer_msisdn)),
            Err(CoreError::Op(OpError::Claim(ClaimError::InUse))) => in_use += 1,
            Err(e) => panic!("unexpected claim result {e:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one claim pairs");
    assert_eq!(in_use, 49, "the rest are told the number is in use");
    assert_eq!(Some(won[0].0.clone()), won[0].1);
    let t = env.svc.store().txn(&txn.id).await.unwrap().unwrap();
    assert_eq!(t.payer_msisdn.as_deref(), Some(won[0].0.as_str()));
    let paired = env
        .svc
        .store()
        .events(&t, 0)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind.name() == "PAIRED")
        .count();
    assert_eq!(paired, 1);
    env.cleanup().await;
}
on_both_backends!(fifty_concurrent_claims_pair_exactly_one);

async fn bad_check_digit_is_refused_before_the_store(b: Backend) {
    let env = Env::new(b, "check").await;
    let (txn, _) = env
        .svc
        .open(TERMINAL, None, None, Origin::Http, None, None)
        .await
        .unwrap();
    let mut wrong = txn.number.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'9' {
        b'0'
    } else {
        wrong[last] + 1
    };
    let wrong = String::from_utf8(wrong).unwrap();
    for _ in 0..10 {
        let e = op_err(
            env.svc
                .claim(PAYER, &wrong, PayerChannel::Call)
                .await
                .unwrap_err(),
        );
        assert_eq!(e, OpError::Number(NumberError::BadCheckDigit));
    }
    // Nothing reached the store: no failed claim was recorded, and the caller is not blocked.
    assert_eq!(
        env.count("SELECT CAST(COUNT(*) AS BIGINT) FROM claim_failures")
            .await,
        0
    );
    env.svc
        .claim(PAYER, &txn.number, PayerChannel::Call)
        .await
        .unwrap();
    env.cleanup().await;
}
on_both_backends!(bad_check_digit_is_refused_before_the_store);

/// Numbers with a valid check digit that were never issued.
fn unissued_numbers(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let base = format!("{:08}", 10_000_000 + i * 7_919);
            let c = telepay::settlement::txn_number::damm_check_digit(&base).unwrap();
            format!("{base}{c}")
        })
        .collect()
}

async fn guessing_callers_are_blocked_then_released(b: Backend) {
    let env = Env::new(b, "guess").await;
    let (txn, _) = env
        .svc
        .open(TERMINAL, None, None, Origin::Http, None, None)
        .await
        .unwrap();
    for n in unissued_numbers(5) {
        let e = op_err(
            env.svc
                .claim(PAYER, &n, PayerChannel::Call)
                .await
                .unwrap_err(),
        );
        assert_eq!(e, OpError::Claim(ClaimError::UnknownNumber));
    }
    // Blocked now, even for a live number.
    let e = op_err(
        env.svc
            .claim(PAYER, &txn.number, PayerChannel::Call)
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(e, OpError::Claim(ClaimError::Blocked { until_ms }) if until_ms == T0_MS + 900_000)
    );
    // Another caller is not affected.
    env.payer("+15550199", 0).await;
    let e = op_err(
        env.svc
            .claim("+15550199", &unissued_numbers(6)[5], PayerChannel::Call)
            .await
            .unwrap_err(),
    );
    assert_eq!(e, OpError::Claim(ClaimError::UnknownNumber));
    // After 15 minutes the block is over (the number expired meanwhile: a new one).
    env.clock.advance_ms(900_001);
    let (txn2, _) = env
        .svc
        .open(TERMINAL, None, None, Origin::Http, None, None)
        .await
        .unwrap();
    env.svc
        .claim(PAYER, &txn2.number, PayerChannel::Call)
        .await
        .unwrap();
    env.cleanup().await;
}
on_both_backends!(guessing_callers_are_blocked_then_released);

async fn global_limit_blocks_at_the_first_failure(b: Backend) {
    let rules = telepay::settlement::rules::Rules {
        claim_global_failures_max: 3,
        ..rules()
    };
    let env = Env::with_rules(b, "global", rules).await;
    let guesses = unissued_numbers(8);
    for (i, n) in guesses.iter().take(3).enumerate() {
        let m = format!("+1555030{i:02}");
        env.payer(&m, 0).await;
        env.svc.claim(&m, n, PayerChannel::Call).await.unwrap_err();
    }
    // Above the global limit one failure blocks the caller.
    env.payer("+15550399", 0).await;
    env.svc
        .claim("+15550399", &guesses[4], PayerChannel::Call)
        .await
        .unwrap_err();
    let e = op_err(
        env.svc
            .claim("+15550399", &guesses[5], PayerChannel::Call)
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(e, OpError::Claim(ClaimError::Blocked { .. })),
        "{e:?}"
    );
    env.cleanup().await;
}
on_both_backends!(global_limit_blocks_at_the_first_failure);

async fn numbers_expire_and_are_single_use(b: Backend) {
    let env = Env::new(b, "expiry").await;
    let svc = &env.svc;
    let (a, _) = svc
        .open(TERMINAL, Some(100), None, Origin::Http, None, None)
        .await
        .unwrap();
    let (c, _) = svc
        .open(TERMINAL, Some(100), None, Origin::Http, None, None)
        .await
        .unwrap();
    env.clock.advance_ms(299_000);
    svc.claim(PAYER, &c.number, PayerChannel::Call)
        .await
        .unwrap();
    env.clock.advance_ms(1_000);
    // At 300 s the unclaimed number is expired; the sweeper marks it.
    let e = op_err(
        svc.claim(PAYER, &a.number, PayerChannel::Call)
            .await
            .unwrap_err(),
    );
    assert_eq!(e, OpError::Claim(ClaimError::Expired));
    assert_eq!(svc.expire_due().await.unwrap(), 1);
    assert_eq!(
        svc.store().txn(&a.id).await.unwrap().unwrap().state,
        TxnState::Expired
    );
    // The paired one is not expired by the number's TTL but by its session deadline.
    assert_eq!(
        svc.store().txn(&c.id).await.unwrap().unwrap().state,
        TxnState::Authenticating
    );
    env.clock.advance_ms(600_000);
    assert_eq!(svc.expire_due().await.unwrap(), 1);
    assert_eq!(
        svc.store().txn(&c.id).await.unwrap().unwrap().state,
        TxnState::Expired
    );
    // A used number cannot be claimed again, by anyone.
    let (d, _) = svc
        .open(TERMINAL, Some(100), None, Origin::Http, None, None)
        .await
        .unwrap();
    svc.claim(PAYER, &d.number, PayerChannel::Call)
        .await
        .unwrap();
    svc.submit_pin(PAYER, &d.id, pin(PIN)).await.unwrap();
    svc.confirm(PAYER, &d.id).await.unwrap();
    env.payer("+15550177", 1_000).await;
    let e = op_err(
        svc.claim("+15550177", &d.number, PayerChannel::Call)
            .await
            .unwrap_err(),
    );
    assert_eq!(e, OpError::Claim(ClaimError::InUse));
    env.cleanup().await;
}
on_both_backends!(numbers_expire_and_are_single_use);

async fn settlement_happens_once_whatever_is_retried(b: Backend) {
    let env = Env::new(b, "once").await;
    let svc = &env.svc;
    let (txn, _) = svc
        .open(TERMINAL, Some(700), None, Origin::Http, None, None)
        .await
        .unwrap();
    svc.claim(PAYER, &txn.number, PayerChannel::Call)
        .await
        .unwrap();
    // The same caller claiming again gets the same session.
    let again = svc
        .claim(PAYER, &txn.number, PayerChannel::Sms)
        .await
        .unwrap();
    assert!(again.again);
    svc.submit_pin(PAYER, &txn.id, pin(PIN)).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let svc = svc.clone();
        let id = txn.id.clone();
        set.spawn(async move { svc.confirm(PAYER, &id).await });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap().unwrap().state, TxnState::Settled);
    }
    assert_eq!(
        env.count(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM transfers WHERE txn_id = '{}'",
            txn.id
        ))
        .await,
        1
    );
    assert_eq!(env.balance("payer:+15550100").await, 9_300);
    // Reversal: a compensating transfer, once.
    for _ in 0..3 {
        let t = svc.reverse(TERMINAL, &txn.id, false).await.unwrap();
        assert_eq!(t.state, TxnState::Reversed);
    }
    assert_eq!(env.balance("payer:+15550100").await, 10_000);
    assert_eq!(env.balance(&format!("merchant:{MERCHANT}")).await, 0);
    assert_eq!(
        env.count(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM transfers WHERE txn_id = '{}'",
            txn.id
        ))
        .await,
        2
    );
    env.assert_ledger_sound().await;
    env.cleanup().await;
}
on_both_backends!(settlement_happens_once_whatever_is_retried);

async fn declines_carry_their_reasons(b: Backend) {
    let env = Env::new(b, "declines").await;
    let svc = &env.svc;
    let open = |amount: Option<i64>| async move {
        svc.open(TERMINAL, amount, None, Origin::Http, None, None)
            .await
            .unwrap()
            .0
    };
    let declined = |e: CoreError| match op_err(e) {
        OpError::Declined { reason, .. } => reason,
        other => panic!("expected a decline, got {other:?}"),
    };
    // An unregistered caller.
    let t = open(Some(100)).await;
    assert_eq!(
        declined(
            svc.claim("+15559999", &t.number, PayerChannel::Call)
                .await
                .unwrap_err()
        ),
        DeclineReason::PayerUnknown
    );
    // Insufficient funds: known when the amount is (claim 11), before any PIN.
    let t = open(Some(20_000)).await;
    assert_eq!(
        declined(
            svc.claim(PAYER, &t.number, PayerChannel::Call)
                .await
                .unwrap_err()
        ),
        DeclineReason::InsufficientFunds
    );
    // Above the payer's own limit.
    env.payer("+15550111", 1_000_000).await;
    let t = open(Some(60_000)).await;
    assert_eq!(
        declined(
            svc.claim("+15550111", &t.number, PayerChannel::Call)
                .await
                .unwrap_err()
        ),
        DeclineReason::Limit
    );
    // Suspended payer.
    env.payer("+15550112", 1_000).await;
    svc.submit(telepay::settlement::Op::SetPayerStatus {
        msisdn: "+15550112".into(),
        status: telepay::settlement::model::PayerStatus::Suspended,
    })
    .await
    .unwrap();
    let t = open(Some(100)).await;
    assert_eq!(
        declined(
            svc.claim("+15550112", &t.number, PayerChannel::Call)
                .await
                .unwrap_err()
        ),
        DeclineReason::PayerSuspended
    );
    // Three wrong PINs across two transactions (and channels) lock the payer.
    let a = open(Some(100)).await;
    let bb = open(Some(100)).await;
    svc.claim(PAYER, &a.number, PayerChannel::Call)
        .await
        .unwrap();
    svc.claim(PAYER, &bb.number, PayerChannel::Sms)
        .await
        .unwrap();
    assert_eq!(
        svc.submit_pin(PAYER, &a.id, pin("1111")).await.unwrap().1,
        StepOutcome::Wrong { tries_left: 2 }
    );
    assert_eq!(
        svc.submit_pin(PAYER, &bb.id, pin("2222")).await.unwrap().1,
        StepOutcome::Wrong { tries_left: 1 }
    );
    let (t, out) = svc.submit_pin(PAYER, &a.id, pin("3333")).await.unwrap();
    assert_eq!(out, StepOutcome::Locked);
    assert_eq!(
        (t.state, t.decline_reason),
        (TxnState::Declined, Some(DeclineReason::AuthFailed))
    );
    // Locked everywhere now, even with the right PIN.
    let (t, out) = svc.submit_pin(PAYER, &bb.id, pin(PIN)).await.unwrap();
    assert_eq!(
        (out, t.decline_reason),
        (StepOutcome::Locked, Some(DeclineReason::PayerLocked))
    );
    let t = open(Some(100)).await;
    assert_eq!(
        declined(
            svc.claim(PAYER, &t.number, PayerChannel::Call)
                .await
                .unwrap_err()
        ),
        DeclineReason::PayerLocked
    );
    // Unlocked by the admin.
    svc.submit(telepay::settlement::Op::SetPayerStatus {
        msisdn: PAYER.into(),
        status: telepay::settlement::model::PayerStatus::Active,
    })
    .await
    .unwrap();
    let t = open(Some(100)).await;
    svc.claim(PAYER, &t.number, PayerChannel::Call)
        .await
        .unwrap();
    assert_eq!(
        svc.submit_pin(PAYER, &t.id, pin(PIN)).await.unwrap().1,
        StepOutcome::Passed { remaining: vec![] }
    );
    // A suspended merchant: cannot open, and a live number of it cannot be paid.
    let t = open(Some(100)).await;
    svc.submit(telepay::settlement::Op::SetMerchantStatus {
        terminal_id: TERMINAL.into(),
        status: telepay::settlement::model::MerchantStatus::Suspended,
    })
    .await
    .unwrap();
    assert_eq!(
        op_err(
            svc.open(TERMINAL, None, None, Origin::Http, None, None)
                .await
                .unwrap_err()
        ),
        OpError::MerchantSuspended
    );
    env.payer("+15550113", 1_000).await;
    assert_eq!(
        declined(
            svc.claim("+15550113", &t.number, PayerChannel::Call)
                .await
                .unwrap_err()
        ),
        DeclineReason::MerchantSuspended
    );
    env.assert_ledger_sound().await;
    env.cleanup().await;
}
on_both_backends!(declines_carry_their_reasons);

async fn policy_refusal_and_visual_check_with_pin_fallback(b: Backend) {
    let env = Env::new(b, "policy").await;
    let svc = &env.svc;
    // Claim 25 end to end: strict visual merchant, payer refusing visual checks.
    env.merchant(
        "STRICTV1",
        "STRICTMERCHANT1",
        "strict-key-0123456",
        Method::Visual,
        true,
    )
    .await;
    env.payer_with(
        "+15550121",
        5_000,
        PayerDemand {
            refuses_visual: true,
            ..Default::default()
        },
    )
    .await;
    let (t, _) = svc
        .open("STRICTV1", Some(100), None, Origin::Http, None, None)
        .await
        .unwrap();
    match op_err(
        svc.claim("+15550121", &t.number, PayerChannel::Call)
            .await
            .unwrap_err(),
    ) {
        OpError::Declined { reason, detail, .. } => {
            assert_eq!(reason, DeclineReason::AuthRefusedByPolicy);
            assert!(detail.unwrap().contains("photo check"));
        }
        other => panic!("{other:?}"),
    }
    // A payer with a portrait: the merchant gets a one-time link on pairing (claims 14-15).
    env.payer("+15550122", 5_000).await;
    svc.submit(telepay::settlement::Op::SetPortrait {
        msisdn: "+15550122".into(),
        content_type: "image/png".into(),
        image: vec![0x89, b'P', b'N', b'G', 1, 2, 3],
    })
    .await
    .unwrap();
    let (t, _) = svc
        .open("STRICTV1", Some(100), None, Origin::Http, None, None)
        .await
        .unwrap();
    let c = svc
        .claim("+15550122", &t.number, PayerChannel::Call)
        .await
        .unwrap();
    assert_eq!(c.txn.auth.steps, vec![Method::Visual]);
    let events = svc.store().events(&c.txn, 0).await.unwrap();
    let url = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Paired {
                portrait_url,
                attributes,
                ..
            } => {
                // Claim 12: only what this merchant may see.
                assert_eq!(attributes.keys().collect::<Vec<_>>(), vec!["age_over_18"]);
                portrait_url.clone()
            }
            _ => None,
        })
        .expect("a portrait link");
    assert!(url.starts_with("http://gw.test/v1/portraits/"));
    let token = url.rsplit('/').next().unwrap();
    let (ct, img) = svc.fetch_portrait(token).await.unwrap();
    assert_eq!((ct.as_str(), img.len()), ("image/png", 7));
    assert_eq!(
        op_err(svc.fetch_portrait(token).await.unwrap_err()),
        OpError::TokenInvalid
    );
    // The merchant cannot tell and asks for the PIN (claim 36).
    let (t2, _) = svc
        .visual_check("STRICTV1", &t.id, false, true)
        .await
        .unwrap();
    assert_eq!(t2.auth.remaining(), vec![Method::Pin]);
    svc.submit_pin("+15550122", &t.id, pin(PIN)).await.unwrap();
    assert_eq!(
        svc.confirm("+15550122", &t.id).await.unwrap().state,
        TxnState::Settled
    );
    env.cleanup().await;
}
on_both_backends!(policy_refusal_and_visual_check_with_pin_fallback);

async fn challenge_question_is_picked_and_verified(b: Backend) {
    let env = Env::new(b, "challenge").await;
    let svc = &env.svc;
    env.payer_with(
        "+15550131",
        5_000,
        PayerDemand {
            preferred: Some(Method::Challenge),
            ..Default::default()
        },
    )
    .await;
    env.merchant(
        "CHALL001",
        "CHALLMERCHANT01",
        "chall-key-0123456",
        Method::Challenge,
        false,
    )
    .await;
    let (t, _) = svc
        .open("CHALL001", Some(100), None, Origin::Http, None, None)
        .await
        .unwrap();
    let c = svc
        .claim("+15550131", &t.number, PayerChannel::Call)
        .await
        .unwrap();
    assert_eq!(c.txn.auth.steps, vec![Method::Challenge]);
    let q = c.txn.auth.question_text.clone().unwrap();
    let right = if q.starts_with("Year") { "1984" } else { "42" };
    let (_, out) = svc
        .submit_answer("+15550131", &t.id, SecretDigits::answer("7").unwrap())
        .await
        .unwrap();
    assert_eq!(out, StepOutcome::Wrong { tries_left: 2 });
    let (_, out) = svc
        .submit_answer("+15550131", &t.id, SecretDigits::answer(right).unwrap())
        .await
        .unwrap();
    assert_eq!(out, StepOutcome::Passed { remaining: vec![] });
    // A PIN is not a step of this transaction.
    assert_eq!(
        op_err(
            svc.submit_pin("+15550131", &t.id, pin(PIN))
                .await
                .unwrap_err()
        ),
        OpError::Lifecycle(LifecycleError::NotAStep(Method::Pin))
    );
    assert_eq!(
        svc.confirm("+15550131", &t.id).await.unwrap().state,
        TxnState::Settled
    );
    env.cleanup().await;
}
on_both_backends!(challenge_question_is_picked_and_verified);

async fn idempotency_keys_replay_or_conflict(b: Backend) {
    let env = Env::new(b, "idem").await;
    let svc = &env.svc;
    let key = Some(("order-42".to_string(), "hash-a".to_string()));
    let (a, r1) = svc
        .open(TERMINAL, Some(100), None, Origin::Http, None, key.clone())
        .await
        .unwrap();
    let (b2, r2) = svc
        .open(TERMINAL, Some(100), None, Origin::Http, None, key)
        .await
        .unwrap();
    assert!(!r1 && r2);
    assert_eq!(a.id, b2.id);
    let e = op_err(
        svc.open(
            TERMINAL,
            Some(200),
            None,
            Origin::Http,
            None,
            Some(("order-42".into(), "hash-b".into())),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e, OpError::IdempotencyConflict);
    assert_eq!(
        env.count("SELECT CAST(COUNT(*) AS BIGINT) FROM transactions")
            .await,
        1
    );
    env.cleanup().await;
}
on_both_backends!(idempotency_keys_replay_or_conflict);

async fn bad_amounts_write_nothing(b: Backend) {
    let env = Env::new(b, "amounts").await;
    let svc = &env.svc;
    for (amount, cur) in [
        (0, None),
        (-5, None),
        (1_000_000_000_000, None),
        (100, Some("XXX")),
        (100, Some("EUR")),
    ] {
        let e = op_err(
            svc.open(
                TERMINAL,
                Some(amount),
                cur.map(String::from),
                Origin::Http,
                None,
                None,
            )
            .await
            .unwrap_err(),
        );
        match e {
            OpError::Amount(AmountError::NotPositive)
            | OpError::Amount(AmountError::TooLarge { .. })
            | OpError::Amount(AmountError::UnknownCurrency(_))
            | OpError::CurrencyMismatch { .. } => {}
            other => panic!("amount {amount} {cur:?}: {other:?}"),
        }
    }
    let (t, _) = svc
        .open(TERMINAL, None, None, Origin::Http, None, None)
        .await
        .unwrap();
    assert!(svc.set_amount(TERMINAL, &t.id, 0, None).await.is_err());
    assert!(svc.set_amount("OTHER001", &t.id, 10, None).await.is_err());
    assert_eq!(
        env.count("SELECT CAST(COUNT(*) AS BIGINT) FROM transactions")
            .await,
        1
    );
    assert_eq!(
        env.count("SELECT CAST(COUNT(*) AS BIGINT) FROM events")
            .await,
        1
    );
    // Another terminal's transaction reads as unknown.
    env.merchant(
        "OTHER001",
        "OTHERMERCHANT01",
        "other-key-0123456",
        Method::Pin,
        false,
    )
    .await;
    assert_eq!(
        op_err(svc.cancel("OTHER001", &t.id).await.unwrap_err()),
        OpError::UnknownTransaction
    );
    env.cleanup().await;
}
on_both_backends!(bad_amounts_write_nothing);

async fn waiting_for_the_amount_across_nodes(b: Backend) {
    let env = Env::new(b, "nodes").await;
    // On SQLite the second "node" is a second service on the same file in this process; on
    // PostgreSQL its events reach the first through LISTEN/NOTIFY.
    let other = env.second_node().await;
    let (t, _) = env
        .svc
        .open(TERMINAL, None, None, Origin::Http, None, None)
        .await
        .unwrap();
    let c = other
        .claim(PAYER, &t.number, PayerChannel::Call)
        .await
        .unwrap();
    let id = c.txn.id.clone();
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move { other.wait_amount(&id, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut rx = env.svc.subscribe();
    env.svc
        .set_amount(TERMINAL, &t.id, 300, None)
        .await
        .unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.amount_minor, Some(300));
    assert_eq!(got.state, TxnState::Authenticating);
    // The merchant's node sees the payer node's events too.
    other.submit_pin(PAYER, &t.id, pin(PIN)).await.unwrap();
    other.confirm(PAYER, &t.id).await.unwrap();
    if b == Backend::Postgres {
        let mut names = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !names.contains(&"SETTLED") {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Ok(e)) if e.txn_id == t.id => names.push(e.kind.name()),
                Ok(Ok(_)) => {}
                other => panic!("no SETTLED event from the other node: {other:?} after {names:?}"),
            }
        }
    }
    env.cleanup().await;
}
on_both_backends!(waiting_for_the_amount_across_nodes);
