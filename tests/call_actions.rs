//! The call driver's IVR actions against the settlement core: each core answer becomes the
//! IVR result the dialplan branches on. Runs on SQLite and PostgreSQL.

mod common;

use common::{Env, PAYER, PIN, TERMINAL};
use telepay::settlement::lifecycle::Origin;
use telepay::store::Backend;
use telepay::telephony::driver::actions::{PayerSession, execute};
use telepay::telephony::ivr::{
    ActionRequest, ActionResult, AuthStep, CallerStatus, ClaimResult, ConfirmResult,
    CredentialResult, DeclineReason, EnrolStep, Secret, VoiceAudio, WaitAmountResult,
};

fn session(msisdn: Option<&str>) -> PayerSession {
    PayerSession::new(msisdn.map(str::to_string))
}

async fn payer_actions_follow_the_core(backend: Backend) {
    let env = Env::new(backend, "call_actions").await;
    let svc = &env.svc;
    env.payer("+15550199", 1_000).await;

    // Who calls.
    let r = execute(
        svc,
        None,
        &mut session(Some(PAYER)),
        ActionRequest::Identify,
    )
    .await;
    assert!(
        matches!(r, ActionResult::Identify(CallerStatus::Known)),
        "{r:?}"
    );
    let r = execute(
        svc,
        None,
        &mut session(Some("+15559999")),
        ActionRequest::Identify,
    )
    .await;
    assert!(
        matches!(r, ActionResult::Identify(CallerStatus::Unknown)),
        "{r:?}"
    );
    let r = execute(svc, None, &mut session(None), ActionRequest::Identify).await;
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
        None,
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
        None,
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
        tokio::spawn(async move { execute(&svc, None, &mut call, ActionRequest::WaitAmount).await })
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
    let r = execute(svc, None, &mut call, ActionRequest::AuthNext).await;
    assert!(matches!(r, ActionResult::AuthNext(AuthStep::Pin)), "{r:?}");
    let r = execute(
        svc,
        None,
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
        None,
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
    let r = execute(svc, None, &mut call, ActionRequest::AuthNext).await;
    assert!(matches!(r, ActionResult::AuthNext(AuthStep::Done)), "{r:?}");

    // Settled, with the transaction's reference; the money moved.
    let r = execute(svc, None, &mut call, ActionRequest::Confirm).await;
    match r {
        ActionResult::Confirm(ConfirmResult::Settled { reference }) => {
            assert_eq!(reference, txn.reference)
        }
        other => panic!("expected settled, got {other:?}"),
    }
    match execute(svc, None, &mut call, ActionRequest::AvailableAmount).await {
        ActionResult::AvailableAmount(Ok(a)) => assert_eq!(a.amount_minor, 10_000 - 700),
        other => panic!("expected the available amount, got {other:?}"),
    }
    match execute(
        svc,
        None,
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
        None,
        &mut session(Some(PAYER)),
        ActionRequest::ClaimNumber { number: unknown },
    )
    .await;
    assert_eq!(r.outcome(), "invalid", "{r:?}");
    env.assert_ledger_sound().await;
    env.cleanup().await;
}
on_both_backends!(payer_actions_follow_the_core);

/// The FSDD recordings: `TELEPAY_FSDD_DIR` (set by scripts/test), else `../shared/data/fsdd`.
fn fsdd_dir() -> std::path::PathBuf {
    std::env::var_os("TELEPAY_FSDD_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fsdd")
        })
}

/// `digits` said by one FSDD speaker, take `take` of each digit, 300 ms apart.
fn say(speaker: &str, digits: &str, take: u32) -> VoiceAudio {
    let mut audio = vec![0i16; 8 * 300];
    for (k, d) in digits.chars().enumerate() {
        if k > 0 {
            audio.extend(std::iter::repeat_n(0i16, 8 * 300));
        }
        let path = fsdd_dir().join(format!("{d}_{speaker}_{take}.wav"));
        let samples = telepay::voice::wav::read_wav(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        audio.extend(samples);
    }
    audio.extend(std::iter::repeat_n(0i16, 8 * 300));
    VoiceAudio::new(audio)
}

/// Each digit moved by five: a string with none of the prompted digits where they were asked.
fn other_digits(digits: &str) -> String {
    digits
        .bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 5) % 10))
        .collect()
}

async fn voice_print_enrolled_by_phone_then_text_prompted(backend: Backend) {
    use std::sync::Arc;
    use telepay::settlement::auth_policy::{Method, PayerDemand};
    use telepay::telephony::driver::speech::SpeechService;

    let env = Env::new(backend, "call_voice").await;
    let svc = &env.svc;
    let caller = "+15550177";
    env.payer_with(
        caller,
        10_000,
        PayerDemand {
            preferred: Some(Method::Voice),
            ..PayerDemand::default()
        },
    )
    .await;
    let model = Arc::new(telepay::voice::VoiceModel::embedded().expect("voice model"));
    let speech = Arc::new(
        SpeechService::start(model, 1, telepay::voice::collector::DEFAULT_THRESHOLD)
            .expect("speech workers"),
    );
    let sp = Some(&speech);

    // Enrolment needs the PIN first; a wrong PIN counts and says so.
    let mut call = session(Some(caller));
    let r = execute(svc, sp, &mut call, ActionRequest::VoiceEnrolStart).await;
    assert!(
        matches!(
            r,
            ActionResult::VoiceEnrolStart(Err(DeclineReason::AuthenticationFailed))
        ),
        "{r:?}"
    );
    let r = execute(
        svc,
        sp,
        &mut call,
        ActionRequest::CheckPin {
            pin: Secret::new("0000".into()),
        },
    )
    .await;
    assert!(
        matches!(
            r,
            ActionResult::CheckPin(CredentialResult::Wrong { tries_left: 2 })
        ),
        "{r:?}"
    );
    let r = execute(
        svc,
        sp,
        &mut call,
        ActionRequest::CheckPin {
            pin: Secret::new(PIN.into()),
        },
    )
    .await;
    assert!(
        matches!(r, ActionResult::CheckPin(CredentialResult::Accepted)),
        "{r:?}"
    );
    let mut prompt = match execute(svc, sp, &mut call, ActionRequest::VoiceEnrolStart).await {
        ActionResult::VoiceEnrolStart(Ok(p)) => p,
        other => panic!("{other:?}"),
    };
    // Four prompts of five digits; every digit twice across them.
    let mut said = String::new();
    let mut prompts = 0;
    loop {
        assert_eq!(prompt.len(), 5, "{prompt}");
        prompts += 1;
        if prompts == 2 {
            // Other digits than the prompt's are not taken.
            let r = execute(
                svc,
                sp,
                &mut call,
                ActionRequest::VoiceEnrol {
                    audio: say("george", &other_digits(&prompt), 1),
                },
            )
            .await;
            match r {
                ActionResult::VoiceEnrol(EnrolStep::Unclear { digits }) => {
                    assert_eq!(digits, prompt);
                }
                other => panic!("{other:?}"),
            }
        }
        // Takes 0 and 1 of george: the first prompts take 0, the later ones 1.
        let take = u32::from(prompts > 2);
        said.push_str(&prompt);
        let r = execute(
            svc,
            sp,
            &mut call,
            ActionRequest::VoiceEnrol {
                audio: say("george", &prompt, take),
            },
        )
        .await;
        match r {
            ActionResult::VoiceEnrol(EnrolStep::More { digits }) => prompt = digits,
            ActionResult::VoiceEnrol(EnrolStep::Enrolled) => break,
            other => panic!("enrolment step {prompts}: {other:?}"),
        }
    }
    assert_eq!(prompts, 4);
    let mut counts = [0; 10];
    for b in said.bytes() {
        counts[usize::from(b - b'0')] += 1;
    }
    assert_eq!(counts, [2; 10], "{said}");
    let template = svc
        .store()
        .voice_print(caller)
        .await
        .expect("reading the voice print")
        .expect("a voice print is stored");
    assert!(template.len() <= 16 * 1024, "{} bytes", template.len());

    // A payment: the policy asks for the voice print, with fresh digits each time.
    let pay = |amount: i64| async move {
        let (txn, _) = svc
            .open(TERMINAL, Some(amount), None, Origin::Http, None, None)
            .await
            .expect("open");
        let mut call = session(Some(caller));
        let r = execute(
            svc,
            sp,
            &mut call,
            ActionRequest::ClaimNumber {
                number: txn.number.clone(),
            },
        )
        .await;
        assert_eq!(r.outcome(), "paired", "{r:?}");
        call
    };
    let mut call = pay(700).await;
    let mut accepted = false;
    let mut previous = String::new();
    for attempt in 0..2u32 {
        let digits = match execute(svc, sp, &mut call, ActionRequest::AuthNext).await {
            ActionResult::AuthNext(AuthStep::Voice { digits }) => digits,
            other => panic!("{other:?}"),
        };
        assert_eq!(digits.len(), 4);
        assert_ne!(digits, previous, "a prompt is never repeated");
        previous = digits.clone();
        // The genuine payer, on takes the enrolment did not use.
        let r = execute(
            svc,
            sp,
            &mut call,
            ActionRequest::VoiceVerify {
                audio: say("george", &digits, 5 + attempt),
            },
        )
        .await;
        match r {
            ActionResult::VoiceVerify(CredentialResult::Accepted) => {
                accepted = true;
                break;
            }
            ActionResult::VoiceVerify(CredentialResult::Wrong { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(
        accepted,
        "the enrolled payer was not accepted in two answers"
    );
    let r = execute(svc, sp, &mut call, ActionRequest::AuthNext).await;
    assert!(matches!(r, ActionResult::AuthNext(AuthStep::Done)), "{r:?}");
    let r = execute(svc, sp, &mut call, ActionRequest::Confirm).await;
    assert_eq!(r.outcome(), "settled", "{r:?}");

    // A replay: the payer's own voice, saying the digits of the earlier prompt.
    let mut call = pay(300).await;
    let digits = match execute(svc, sp, &mut call, ActionRequest::AuthNext).await {
        ActionResult::AuthNext(AuthStep::Voice { digits }) => digits,
        other => panic!("{other:?}"),
    };
    let replayed = if digits == previous {
        other_digits(&digits)
    } else {
        previous.clone()
    };
    let r = execute(
        svc,
        sp,
        &mut call,
        ActionRequest::VoiceVerify {
            audio: say("george", &replayed, 5),
        },
    )
    .await;
    assert!(
        matches!(r, ActionResult::VoiceVerify(CredentialResult::Wrong { .. })),
        "a replayed answer passed: {r:?}"
    );
    // The prompt was used: answering it again is not possible.
    let r = execute(
        svc,
        sp,
        &mut call,
        ActionRequest::VoiceVerify {
            audio: say("george", &digits, 6),
        },
    )
    .await;
    assert!(matches!(r, ActionResult::Unavailable), "{r:?}");
    env.assert_ledger_sound().await;
    env.cleanup().await;
}
on_both_backends!(voice_print_enrolled_by_phone_then_text_prompted);
