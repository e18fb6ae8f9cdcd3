//! Any sequence of call events on the default dialplan: never a panic, always a deadline.
#![no_main]
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use telepay::telephony::ivr::*;
use telepay::telephony::prompts::PromptLibrary;
use libfuzzer_sys::fuzz_target;

fn plan() -> Arc<Dialplan> {
    static PLAN: OnceLock<Arc<Dialplan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let lib = Arc::new(PromptLibrary::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts/en"))).unwrap());
        Arc::new(Dialplan::load_dir(Path::new("/work/main/dialplan"), lib).unwrap())
    })
    .clone()
}

fn result(b: u8) -> ActionResult {
    match b % 12 {
        0 => ActionResult::Identify(CallerStatus::Known),
        1 => ActionResult::Claim(ClaimResult::Paired {
            merchant: Merchant { name: "Acme".into(), voice: None },
            amount: Some(Amount { amount_minor: 1250, currency: "USD".into(), minor_digits: 2 }),
        }),
        2 => ActionResult::Claim(ClaimResult::Paired {
            merchant: Merchant { name: "x".repeat(b as usize), voice: None },
            amount: None,
        }),
        3 => ActionResult::WaitAmount(WaitAmountResult::Amount(Amount {
            amount_minor: i64::MIN,
            currency: "ZZZ".into(),
            minor_digits: b,
        })),
        4 => ActionResult::AuthNext(AuthStep::Pin),
        5 => ActionResult::AuthNext(AuthStep::Challenge { question_number: b, question_voice: None }),
        6 => ActionResult::AuthNext(AuthStep::Done),
        7 => ActionResult::SubmitPin(CredentialResult::Wrong { tries_left: b }),
        8 => ActionResult::SubmitPin(CredentialResult::Accepted),
        9 => ActionResult::Confirm(ConfirmResult::Settled { reference: format!("{b}x\u{0}") }),
        10 => ActionResult::RecentPurchases(Ok(vec![])),
        _ => ActionResult::Unavailable,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let user = if data.first().is_some_and(|b| b & 1 == 0) { "pay" } else { "menu" };
    let mut ivr = Ivr::new(plan(), user, now);
    let mut play = None;
    let mut action = None;
    let mut speech = None;
    let mut deadline = None;
    for pair in data.chunks(2) {
        let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
        loop {
            match ivr.poll_output() {
                Some(Output::Play { id, .. }) => play = Some(id),
                Some(Output::Action(id, _)) => action = Some(id),
                Some(Output::SpeechStart { id, .. }) => speech = Some(id),
                Some(Output::Timeout(t)) => {
                    deadline = Some(t);
                    break;
                }
                Some(_) => {}
                None => return,
            }
        }
        now += Duration::from_millis(u64::from(arg) * 10);
        let input = match op % 7 {
            0 | 1 => Input::Digit(char::from(arg)),
            2 => match play {
                Some(id) => Input::PlaybackFinished(id),
                None => Input::Timeout,
            },
            3 => match action {
                Some(id) => Input::ActionResult(id, result(arg)),
                None => Input::Timeout,
            },
            4 => {
                now = now.max(deadline.unwrap_or(now));
                Input::Timeout
            }
            5 => match speech {
                Some(id) => Input::SpeechResult(id, SpeechResult::Digits { digits: format!("{arg}"), confidence: 0.9 }),
                None => Input::Timeout,
            },
            _ => Input::Timeout,
        };
        ivr.handle_input(now, input);
    }
});
