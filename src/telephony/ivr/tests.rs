//! Whole-call tests of the interpreter on the committed dialplan and prompts, in virtual time.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::super::prompts::{PromptLibrary, PromptRef, repo_prompts_dir};
use super::dialplan::repo_dialplan_dir;
use super::*;

fn library() -> Arc<PromptLibrary> {
    static LIB: OnceLock<Arc<PromptLibrary>> = OnceLock::new();
    LIB.get_or_init(|| Arc::new(PromptLibrary::load_dir(&repo_prompts_dir().join("en")).unwrap()))
        .clone()
}

fn default_plan() -> Arc<Dialplan> {
    static PLAN: OnceLock<Arc<Dialplan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        Arc::new(
            Dialplan::load_dir(&repo_dialplan_dir(), library()).unwrap_or_else(|e| panic!("{e}")),
        )
    })
    .clone()
}

fn plan_from(name: &str, text: &str) -> Result<Dialplan, DialplanError> {
    Dialplan::from_sources(vec![(PathBuf::from(name), text.to_string())], library())
}

/// A valid transaction number: eight digits and their Damm check digit.
fn number(base: &str) -> String {
    format!("{base}{}", damm_check_digit(base).unwrap())
}

fn usd(amount_minor: i64) -> Amount {
    Amount {
        amount_minor,
        currency: "USD".into(),
        minor_digits: 2,
    }
}

fn acme() -> Merchant {
    Merchant {
        name: "Acme".into(),
        voice: None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Play(Vec<String>),
    Stop,
    Action(ActionKind),
    SpeechStart(SpeechGrammar),
    SpeechStop,
    Hangup,
}

fn play(names: &[&str]) -> Ev {
    Ev::Play(names.iter().map(|n| n.to_string()).collect())
}

/// A call in virtual time: inputs go in, outputs are recorded as simple events.
struct Call {
    ivr: Ivr,
    now: Instant,
    deadline: Option<Instant>,
    playing: Option<(PlayId, u64)>,
    action: Option<(ActionId, ActionRequest)>,
    speech: Option<SpeechId>,
    /// Record `SpeechStart`/`SpeechStop` as events. Off for the keyed-digit tests of the
    /// default dialplan, whose number collect also listens for speech (`mode = "both"`).
    record_speech: bool,
    events: Vec<Ev>,
    logs: Vec<LogLine>,
    /// `Debug` of every output but `Timeout` (whose `Instant` holds arbitrary digits).
    transcript: Vec<String>,
}

impl Call {
    fn new(user: &str) -> Call {
        Call::start(default_plan(), user, false)
    }

    /// A call on the default dialplan that also records speech events.
    fn new_hearing_speech(user: &str) -> Call {
        Call::start(default_plan(), user, true)
    }

    fn with_plan(plan: Arc<Dialplan>, user: &str) -> Call {
        Call::start(plan, user, true)
    }

    fn start(plan: Arc<Dialplan>, user: &str, record_speech: bool) -> Call {
        let now = Instant::now();
        let mut call = Call {
            ivr: Ivr::new(plan, user, now),
            now,
            deadline: None,
            playing: None,
            action: None,
            speech: None,
            record_speech,
            events: Vec::new(),
            logs: Vec::new(),
            transcript: Vec::new(),
        };
        call.pump();
        call
    }

    fn pump(&mut self) {
        self.deadline = None;
        while let Some(out) = self.ivr.poll_output() {
            if !matches!(out, Output::Timeout(_)) {
                self.transcript.push(format!("{out:?}"));
            }
            match out {
                Output::Play { id, prompts } => {
                    let ms = prompts.iter().map(PromptRef::duration_ms).sum();
                    self.playing = Some((id, ms));
                    self.events.push(Ev::Play(
                        prompts.iter().map(|p| p.name().to_string()).collect(),
                    ));
                }
                Output::StopPlayback(id) => {
                    assert_eq!(
                        self.playing.map(|p| p.0),
                        Some(id),
                        "stopped a playback not playing"
                    );
                    self.playing = None;
                    self.events.push(Ev::Stop);
                }
                Output::Action(id, request) => {
                    self.events.push(Ev::Action(request.kind()));
                    self.action = Some((id, request));
                }
                Output::SpeechStart { id, grammar } => {
                    self.speech = Some(id);
                    if self.record_speech {
                        self.events.push(Ev::SpeechStart(grammar));
                    }
                }
                Output::SpeechStop(id) => {
                    assert_eq!(self.speech, Some(id));
                    self.speech = None;
                    if self.record_speech {
                        self.events.push(Ev::SpeechStop);
                    }
                }
                Output::Log(line) => self.logs.push(line),
                Output::Hangup => self.events.push(Ev::Hangup),
                Output::Timeout(t) => {
                    assert!(t >= self.now, "deadline in the past");
                    self.deadline = Some(t);
                    break;
                }
            }
        }
    }

    fn take(&mut self) -> Vec<Ev> {
        std::mem::take(&mut self.events)
    }

    fn input(&mut self, input: Input) {
        self.ivr.handle_input(self.now, input);
        self.pump();
    }

    /// Keys digits 100 ms apart.
    fn key(&mut self, digits: &str) {
        for d in digits.chars() {
            self.now += Duration::from_millis(100);
            self.input(Input::Digit(d));
        }
    }

    /// Lets the current playback run to its end.
    fn finish_play(&mut self) {
        let (id, ms) = self.playing.take().expect("nothing is playing");
        self.now += Duration::from_millis(ms);
        self.input(Input::PlaybackFinished(id));
    }

    fn respond(&mut self, result: ActionResult) {
        let (id, _) = self.action.take().expect("no action pending");
        self.now += Duration::from_millis(20);
        self.input(Input::ActionResult(id, result));
    }

    fn request(&self) -> &ActionRequest {
        &self.action.as_ref().expect("no action pending").1
    }

    /// Jumps to the deadline the interpreter asked for and feeds `Timeout`.
    fn wait(&mut self) {
        self.now = self.now.max(self.deadline.expect("no deadline"));
        self.input(Input::Timeout);
    }

    fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

const ANNOUNCE_ACME_12_50: [&str; 11] = [
    "you_are_paying",
    "letter_a",
    "letter_c",
    "letter_m",
    "letter_e",
    "the_amount_is",
    "num_12",
    "cur_dollars",
    "word_and",
    "num_50",
    "cur_cents",
];

#[test]
fn default_dialplan_loads_against_the_committed_prompts() {
    let plan = default_plan();
    let mut flows: Vec<&str> = plan.flow_names().collect();
    flows.sort_unstable();
    assert_eq!(flows, ["end", "enrol", "menu", "pay"]);
    assert_eq!(plan.settings().type_ahead_max, 32);
    assert_ne!(plan.entry_for("pay"), plan.entry_for("anyone"));
}

#[test]
fn pays_step_by_step() {
    let n = number("31415926");
    let mut c = Call::new("pay");
    assert_eq!(c.take(), [Ev::Action(ActionKind::Identify)]);
    c.respond(ActionResult::Identify(CallerStatus::Known));
    assert_eq!(c.take(), [play(&["enter_transaction_number"])]);
    c.finish_play();
    assert_eq!(c.take(), []);
    assert_eq!(c.deadline, Some(c.now + Duration::from_millis(8000)));
    c.key(&n);
    assert_eq!(c.take(), [Ev::Action(ActionKind::ClaimNumber)]);
    assert_eq!(
        c.request(),
        &ActionRequest::ClaimNumber { number: n.clone() }
    );
    c.respond(ActionResult::Claim(ClaimResult::Paired {
        merchant: acme(),
        amount: Some(usd(1250)),
    }));
    assert_eq!(c.take(), [play(&ANNOUNCE_ACME_12_50)]);
    c.finish_play();
    assert_eq!(c.take(), [Ev::Action(ActionKind::AuthNext)]);
    c.respond(ActionResult::AuthNext(AuthStep::Pin));
    assert_eq!(c.take(), [play(&["enter_pin"])]);
    c.finish_play();
    c.key("4711");
    assert_eq!(c.take(), [Ev::Action(ActionKind::SubmitPin)]);
    match c.request() {
        ActionRequest::SubmitPin { pin } => assert_eq!(pin.expose(), "4711"),
        other => panic!("{other:?}"),
    }
    c.respond(ActionResult::SubmitPin(CredentialResult::Accepted));
    assert_eq!(c.take(), [Ev::Action(ActionKind::AuthNext)]);
    c.respond(ActionResult::AuthNext(AuthStep::Done));
    assert_eq!(c.take(), [play(&["press_1_to_pay"])]);
    c.finish_play();
    c.key("1");
    assert_eq!(c.take(), [Ev::Action(ActionKind::Confirm)]);
    c.respond(ActionResult::Confirm(ConfirmResult::Settled {
        reference: "40213".into(),
    }));
    assert_eq!(
        c.take(),
        [play(&[
            "payment_complete",
            "your_reference_is",
            "num_4",
            "num_0",
            "num_2",
            "num_1",
            "num_3",
            "goodbye"
        ])]
    );
    c.finish_play();
    assert_eq!(c.take(), [Ev::Hangup]);
    assert!(c.ivr.is_ended());
    assert!(c.ivr.poll_output().is_none());
}

/// The caller keys number, PIN and 1 in one go while the first prompt plays.
#[test]
fn keys_number_pin_and_1_in_one_go() {
    let n = number("27182818");
    let mut c = Call::new("pay");
    c.take();
    c.respond(ActionResult::Identify(CallerStatus::Known));
    assert_eq!(c.take(), [play(&["enter_transaction_number"])]);
    c.key(&format!("{n}47111"));
    // The first digit cut the prompt; the ninth completed the number; the rest wait.
    assert_eq!(c.take(), [Ev::Stop, Ev::Action(ActionKind::ClaimNumber)]);
    assert_eq!(c.request(), &ActionRequest::ClaimNumber { number: n });
    c.respond(ActionResult::Claim(ClaimResult::Paired {
        merchant: acme(),
        amount: Some(usd(1250)),
    }));
    // Whom and how much is always heard in full.
    assert_eq!(c.take(), [play(&ANNOUNCE_ACME_12_50)]);
    c.finish_play();
    assert_eq!(c.take(), [Ev::Action(ActionKind::AuthNext)]);
    c.respond(ActionResult::AuthNext(AuthStep::Pin));
    // No PIN prompt: the PIN was keyed already.
    assert_eq!(c.take(), [Ev::Action(ActionKind::SubmitPin)]);
    match c.request() {
        ActionRequest::SubmitPin { pin } => assert_eq!(pin.expose(), "4711"),
        other => panic!("{other:?}"),
    }
    c.respond(ActionResult::SubmitPin(CredentialResult::Accepted));
    c.take();
    c.respond(ActionResult::AuthNext(AuthStep::Done));
    // No "press 1" prompt: the 1 was keyed already.
    assert_eq!(c.take(), [Ev::Action(ActionKind::Confirm)]);
    c.respond(ActionResult::Confirm(ConfirmResult::Settled {
        reference: "7".into(),
    }));
    assert_eq!(
        c.take(),
        [play(&[
            "payment_complete",
            "your_reference_is",
            "num_7",
            "goodbye"
        ])]
    );
}

/// Keyed before any prompt, with the optional `#` after the number and the PIN.
#[test]
fn keys_everything_before_the_first_prompt_with_terminators() {
    let n = number("16180339");
    let mut c = Call::new("pay");
    assert_eq!(c.take(), [Ev::Action(ActionKind::Identify)]);
    c.key(&format!("{n}#4711#1"));
    assert_eq!(c.take(), []);
    c.respond(ActionResult::Identify(CallerStatus::Known));
    assert_eq!(c.take(), [Ev::Action(ActionKind::ClaimNumber)]);
    c.respond(ActionResult::Claim(ClaimResult::Paired {
        merchant: acme(),
        amount: Some(usd(1250)),
    }));
    c.take();
    c.finish_play();
    assert_eq!(c.take(), [Ev::Action(ActionKind::AuthNext)]);
    c.respond(ActionResult::AuthNext(AuthStep::Pin));
    assert_eq!(c.take(), [Ev::Action(ActionKind::SubmitPin)]);
    c.respond(ActionResult::SubmitPin(CredentialResult::Accepted));
    c.take();
    c.respond(ActionResult::AuthNext(AuthStep::Done));
    assert_eq!(c.take(), [Ev::Action(ActionKind::Confirm)]);
}

/// A `#` keyed live right after a full number is swallowed, not left for the PIN.
#[test]
fn terminator_after_a_full_entry_is_swallowed() {
    let mut c = Call::new("pay");
    c.take();
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.finish_play();
    c.take();
    c.key(&number("11111111"));
    c.key("#");
    assert_eq!(c.take(), [Ev::Action(ActionKind::ClaimNumber)]);
    c.respond(ActionResult::Claim(ClaimResult::Paired {
        merchant: acme(),
        amount: Some(usd(100)),
    }));
    c.take();
    c.finish_play();
    assert_eq!(c.take(), [Ev::Action(ActionKind::AuthNext)]);
    c.respond(ActionResult::AuthNext(AuthStep::Pin));
    // Had the `#` been kept, the PIN entry would have failed at once.
    assert_eq!(c.take(), [play(&["enter_pin"])]);
}

#[test]
fn barge_in_stops_the_prompt_and_the_digit_drives_the_menu() {
    let mut c = Call::new("4420");
    assert_eq!(c.take(), [Ev::Action(ActionKind::Identify)]);
    c.respond(ActionResult::Identify(CallerStatus::Known));
    assert_eq!(c.take(), [play(&["welcome"])]);
    let welcome = c.playing.unwrap().0;
    c.key("2");
    // The welcome stops, the menu prompt is skipped, and the 2 is the choice.
    assert_eq!(
        c.take(),
        [Ev::Stop, Ev::Action(ActionKind::AvailableAmount)]
    );
    c.respond(ActionResult::AvailableAmount(Ok(Amount {
        amount_minor: 199_999,
        currency: "EUR".into(),
        minor_digits: 2,
    })));
    assert_eq!(
        c.take(),
        [play(&[
            "available_amount_is",
            "num_1",
            "num_thousand",
            "num_9",
            "num_hundred",
            "num_90",
            "num_9",
            "cur_euros",
            "word_and",
            "num_90",
            "num_9",
            "cur_cents"
        ])]
    );
    // A stale PlaybackFinished (for the stopped welcome) changes nothing.
    c.input(Input::PlaybackFinished(welcome));
    assert_eq!(c.take(), []);
    c.finish_play();
    assert_eq!(c.take(), [play(&["main_menu"])]);
    c.key("7");
    assert_eq!(
        c.take(),
        [Ev::Stop, play(&["sorry_not_understood", "main_menu"])]
    );
}

#[test]
fn main_menu_recent_purchases_and_pay() {
    let voice = PromptRef::from_samples("merchant_42", vec![0; 400]).unwrap();
    let mut c = Call::new("menu");
    c.take();
    c.respond(ActionResult::Identify(CallerStatus::Known));
    assert_eq!(c.take(), [play(&["welcome"])]);
    c.finish_play();
    assert_eq!(c.take(), [play(&["main_menu"])]);
    c.finish_play();
    c.key("3");
    assert_eq!(c.take(), [Ev::Action(ActionKind::RecentPurchases)]);
    assert_eq!(
        c.request(),
        &ActionRequest::RecentPurchases {
            count_max: RECENT_PURCHASES_MAX
        }
    );
    c.respond(ActionResult::RecentPurchases(Ok(vec![
        Purchase {
            year: 2025,
            month: 3,
            day: 3,
            merchant: acme(),
            amount: usd(1250),
        },
        Purchase {
            year: 2024,
            month: 12,
            day: 31,
            merchant: Merchant {
                name: "Corner Coffee Company".into(),
                voice: Some(voice),
            },
            amount: Amount {
                amount_minor: 500,
                currency: "JPY".into(),
                minor_digits: 0,
            },
        },
    ])));
    assert_eq!(
        c.take(),
        [play(&[
            "recent_purchases",
            "purchase_on",
            "month_3",
            "ord_3",
            "num_20",
            "num_20",
            "num_5",
            "letter_a",
            "letter_c",
            "letter_m",
            "letter_e",
            "num_12",
            "cur_dollars",
            "word_and",
            "num_50",
            "cur_cents",
            "purchase_on",
            "month_12",
            "ord_31",
            "num_20",
            "num_20",
            "num_4",
            "merchant_42",
            "num_5",
            "num_hundred",
            "cur_yen"
        ])]
    );
    c.finish_play();
    assert_eq!(c.take(), [play(&["main_menu"])]);
    c.key("3");
    c.respond(ActionResult::RecentPurchases(Ok(vec![])));
    assert_eq!(
        c.take(),
        [
            Ev::Stop,
            Ev::Action(ActionKind::RecentPurchases),
            play(&["recent_purchases", "no_recent_purchases"])
        ]
    );
    c.finish_play();
    c.take();
    // 1 goes to paying, without identifying the caller again.
    c.key("1");
    assert_eq!(c.take(), [Ev::Stop, play(&["enter_transaction_number"])]);
}

#[test]
fn menu_refuses_a_suspended_payer_with_the_reason() {
    let mut c = Call::new("menu");
    c.respond(ActionResult::Identify(CallerStatus::Suspended));
    assert_eq!(
        c.take(),
        [
            Ev::Action(ActionKind::Identify),
            play(&["reason_payer_suspended", "goodbye"])
        ]
    );
    c.finish_play();
    assert_eq!(c.take(), [Ev::Hangup]);
}

#[test]
fn timeouts_and_retries_then_failure() {
    let mut c = Call::new("pay");
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.take();
    c.finish_play();
    let t = c.now;
    assert_eq!(c.deadline, Some(t + Duration::from_millis(8000)));
    c.wait();
    assert_eq!(
        c.take(),
        [play(&["sorry_not_understood", "enter_transaction_number"])]
    );
    c.finish_play();
    c.key("12345");
    // Five digits, then silence: the inter-digit timeout ends an entry that is too short.
    assert_eq!(c.deadline, Some(c.now + Duration::from_millis(4000)));
    c.wait();
    assert_eq!(
        c.take(),
        [play(&["invalid_number", "enter_transaction_number"])]
    );
    c.finish_play();
    // A lone `#` on the third and last attempt.
    c.key("#");
    assert_eq!(c.take(), [play(&["too_many_attempts", "goodbye"])]);
    c.finish_play();
    assert_eq!(c.take(), [Ev::Hangup]);
    assert!(c.log_text().contains("attempt 3 of 3"), "{}", c.log_text());
}

#[test]
fn bad_check_digit_never_reaches_the_core() {
    let good = number("98765432");
    let last = good.as_bytes()[8] - b'0';
    let bad = format!("{}{}", &good[..8], (last + 1) % 10);
    let mut c = Call::new("pay");
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.take();
    c.finish_play();
    c.key(&bad);
    assert_eq!(
        c.take(),
        [play(&["invalid_number", "enter_transaction_number"])]
    );
    assert!(c.action.is_none());
    assert!(c.log_text().contains("check digit wrong"));
    c.key(&good);
    assert_eq!(c.take(), [Ev::Stop, Ev::Action(ActionKind::ClaimNumber)]);
}

#[test]
fn claim_failures_ask_again_and_rate_limit_ends() {
    let mut c = Call::new("pay");
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.take();
    c.key(&number("12121212"));
    c.take();
    c.respond(ActionResult::Claim(ClaimResult::NumberExpired));
    assert_eq!(c.take(), [play(&["number_expired"])]);
    c.finish_play();
    assert_eq!(c.take(), [play(&["enter_transaction_number"])]);
    c.key(&number("12121213"));
    c.take();
    c.respond(ActionResult::Claim(ClaimResult::RateLimited));
    assert_eq!(c.take(), [play(&["too_many_attempts", "goodbye"])]);
}

#[test]
fn waits_for_the_amount_with_a_repeating_hold_prompt() {
    let mut c = Call::new("pay");
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.take();
    c.key(&number("55555555"));
    c.take();
    c.respond(ActionResult::Claim(ClaimResult::Paired {
        merchant: acme(),
        amount: None,
    }));
    assert_eq!(
        c.take(),
        [
            Ev::Action(ActionKind::WaitAmount),
            play(&["waiting_for_amount"])
        ]
    );
    c.finish_play();
    assert_eq!(c.take(), [play(&["waiting_for_amount"])]);
    c.respond(ActionResult::WaitAmount(WaitAmountResult::Amount(usd(
        1250,
    ))));
    assert_eq!(c.take(), [Ev::Stop, play(&ANNOUNCE_ACME_12_50)]);
}

#[test]
fn amount_never_comes_the_transaction_is_cancelled() {
    let mut c = Call::new("pay");
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.take();
    c.key(&number("55555555"));
    c.respond(ActionResult::Claim(ClaimResult::Paired {
        merchant: acme(),
        amount: None,
    }));
    c.take();
    let asked = c.now;
    // Let the hold prompt loop until the step's timeout.
    while c.deadline != Some(asked + Duration::from_millis(180_000)) {
        c.finish_play();
    }
    c.take();
    c.wait();
    assert_eq!(c.take(), [Ev::Stop, Ev::Action(ActionKind::Cancel)]);
    c.respond(ActionResult::Cancelled);
    assert_eq!(
        c.take(),
        [play(&["amount_timeout", "payment_cancelled", "goodbye"])]
    );
}

#[test]
fn challenge_question_answered_by_digits() {
    let mut c = Call::new("pay");
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.take();
    c.key(&number("24681357"));
    c.respond(ActionResult::Claim(ClaimResult::Paired {
        merchant: acme(),
        amount: Some(usd(1250)),
    }));
    c.finish_play();
    c.take();
    c.respond(ActionResult::AuthNext(AuthStep::Challenge {
        question_number: 2,
        question_voice: None,
    }));
    assert_eq!(
        c.take(),
        [play(&[
            "challenge_intro",
            "security_question_number",
            "num_2"
        ])]
    );
    c.finish_play();
    assert_eq!(c.take(), [play(&["enter_answer"])]);
    c.finish_play();
    c.key("1984#");
    match c.request() {
        ActionRequest::SubmitAnswer { answer } => assert_eq!(answer.expose(), "1984"),
        other => panic!("{other:?}"),
    }
    c.respond(ActionResult::SubmitAnswer(CredentialResult::Wrong {
        tries_left: 1,
    }));
    assert_eq!(
        c.take(),
        [
            Ev::Action(ActionKind::SubmitAnswer),
            play(&[
                "wrong_answer",
                "attempts_remaining",
                "num_1",
                "security_question_number",
                "num_2"
            ])
        ]
    );
    c.finish_play();
    c.key("1985#");
    c.respond(ActionResult::SubmitAnswer(CredentialResult::Accepted));
    assert_eq!(
        c.take(),
        [
            play(&["enter_answer"]),
            Ev::Stop,
            Ev::Action(ActionKind::SubmitAnswer),
            Ev::Action(ActionKind::AuthNext)
        ]
    );
}

#[test]
fn wrong_pin_flushes_type_ahead_then_locked_ends_the_call() {
    let mut c = Call::new("pay");
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.take();
    c.key(&format!("{}00001", number("13579135")));
    c.respond(ActionResult::Claim(ClaimResult::Paired {
        merchant: acme(),
        amount: Some(usd(1250)),
    }));
    c.finish_play();
    c.respond(ActionResult::AuthNext(AuthStep::Pin));
    c.take();
    c.respond(ActionResult::SubmitPin(CredentialResult::Wrong {
        tries_left: 2,
    }));
    assert_eq!(
        c.take(),
        [play(&["wrong_pin", "attempts_remaining", "num_2"])]
    );
    c.finish_play();
    // The 1 keyed ahead was dropped with the wrong PIN: the PIN is asked for again.
    assert_eq!(c.take(), [play(&["enter_pin"])]);
    c.key("0002");
    c.respond(ActionResult::SubmitPin(CredentialResult::Locked));
    assert_eq!(
        c.take(),
        [
            Ev::Stop,
            Ev::Action(ActionKind::SubmitPin),
            play(&["payer_locked", "goodbye"])
        ]
    );
    c.finish_play();
    assert_eq!(c.take(), [Ev::Hangup]);
}

#[test]
fn a_refusal_is_spoken_with_its_reason() {
    for (reason, prompt) in [
        (
            DeclineReason::Policy(PolicyRefusal::VisualCheckRefused),
            "reason_policy_visual_check_refused",
        ),
        (
            DeclineReason::Policy(PolicyRefusal::NoCommonMethod),
            "reason_policy_no_common_method",
        ),
        (
            DeclineReason::Policy(PolicyRefusal::VoiceRequired),
            "reason_policy_voice_required",
        ),
        (
            DeclineReason::InsufficientFunds,
            "reason_insufficient_funds",
        ),
    ] {
        let mut c = Call::new("pay");
        c.respond(ActionResult::Identify(CallerStatus::Known));
        c.key(&number("86420864"));
        c.respond(ActionResult::Claim(ClaimResult::Paired {
            merchant: acme(),
            amount: Some(usd(1250)),
        }));
        c.finish_play();
        c.take();
        c.respond(ActionResult::AuthNext(AuthStep::Refused(reason)));
        assert_eq!(c.take(), [play(&["payment_declined", prompt, "goodbye"])]);
        c.finish_play();
        assert_eq!(c.take(), [Ev::Hangup]);
    }
}

#[test]
fn withheld_and_unknown_callers_hear_why_and_are_released() {
    for (status, first) in [
        (CallerStatus::Withheld, "caller_withheld"),
        (CallerStatus::Unknown, "reason_payer_unknown"),
    ] {
        for user in ["pay", "menu"] {
            let mut c = Call::new(user);
            c.take();
            c.respond(ActionResult::Identify(status));
            assert_eq!(c.take(), [play(&[first, "goodbye"])], "{user}");
            // Not skippable: keys do not cut the explanation.
            c.key("5");
            assert_eq!(c.take(), []);
            c.finish_play();
            assert_eq!(c.take(), [Ev::Hangup]);
        }
    }
}

#[test]
fn a_core_that_does_not_answer_leads_to_the_error_flow_and_late_results_are_ignored() {
    let mut c = Call::new("pay");
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.key(&number("10101010"));
    c.take();
    let asked = c.now;
    assert_eq!(c.deadline, Some(asked + Duration::from_millis(15_000)));
    c.wait();
    assert_eq!(c.take(), [play(&["system_busy", "goodbye"])]);
    c.respond(ActionResult::Claim(ClaimResult::InvalidNumber));
    assert_eq!(c.take(), []);
    assert!(c.log_text().contains("no longer waited for"));

    let mut c = Call::new("pay");
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.key(&number("10101010"));
    c.take();
    // A result of the wrong kind is a driver bug; the call treats it as unavailable.
    c.respond(ActionResult::Cancelled);
    assert_eq!(c.take(), [play(&["system_busy", "goodbye"])]);
}

#[test]
fn type_ahead_is_bounded() {
    let mut c = Call::new("pay");
    c.key(&"1".repeat(40));
    let dropped = c
        .logs
        .iter()
        .filter(|l| l.level == LogLevel::Warn && l.message.contains("type-ahead buffer full"))
        .count();
    assert_eq!(dropped, 8);
}

#[test]
fn caller_hang_up_ends_without_a_bye() {
    let mut c = Call::new("pay");
    c.take();
    c.input(Input::CallerHungUp);
    assert_eq!(c.take(), []);
    assert!(c.ivr.is_ended());
    c.input(Input::Digit('1'));
    assert!(c.ivr.poll_output().is_none());
}

/// PIN and answer digits appear in no log line and no output but the request that carries them
/// (whose `Debug` is redacted too).
#[test]
fn no_pin_or_answer_digits_in_any_log_or_output() {
    let secrets = ["9382", "9383", "6071"];
    let mut c = Call::new("pay");
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.key(&number("20202020"));
    c.respond(ActionResult::Claim(ClaimResult::Paired {
        merchant: acme(),
        amount: Some(usd(1250)),
    }));
    c.finish_play();
    c.respond(ActionResult::AuthNext(AuthStep::Pin));
    c.finish_play();
    c.key("9383");
    c.respond(ActionResult::SubmitPin(CredentialResult::Wrong {
        tries_left: 2,
    }));
    c.finish_play();
    c.key("9382#");
    c.respond(ActionResult::SubmitPin(CredentialResult::Accepted));
    c.respond(ActionResult::AuthNext(AuthStep::Challenge {
        question_number: 1,
        question_voice: None,
    }));
    c.key("60");
    c.wait(); // too short? no: digits_min is 1, so the inter-digit timeout completes "60"
    c.respond(ActionResult::SubmitAnswer(CredentialResult::Wrong {
        tries_left: 1,
    }));
    c.finish_play();
    c.key("6071#");
    c.respond(ActionResult::SubmitAnswer(CredentialResult::Accepted));
    c.respond(ActionResult::AuthNext(AuthStep::Done));
    c.key("1");
    c.respond(ActionResult::Confirm(ConfirmResult::Settled {
        reference: "555".into(),
    }));
    c.finish_play();
    assert!(c.ivr.is_ended(), "the scripted call did not reach its end");
    let submitted = c
        .transcript
        .iter()
        .filter(|t| t.contains("SubmitPin") || t.contains("SubmitAnswer"))
        .count();
    assert_eq!(submitted, 4);
    for line in c.transcript.iter().chain(c.logs.iter().map(|l| &l.message)) {
        for secret in secrets {
            assert!(!line.contains(secret), "`{secret}` leaked: {line}");
        }
    }
    assert!(c.log_text().contains("collect `pin`: 4 digit(s) (secret)"));
}

#[test]
fn reload_keeps_a_call_in_progress_on_its_old_dialplan() {
    let old = default_plan();
    let mut current = Arc::clone(&old);
    let mut in_progress = Call::start(Arc::clone(&current), "pay", false);
    assert_eq!(in_progress.take(), [Ev::Action(ActionKind::Identify)]);

    // SIGHUP: a new dialplan in which paying is closed.
    let closed = r#"
[settings]
on_error = "closed"
[entry]
"*" = "closed"
[[flow.closed]]
play = ["system_busy", "goodbye"]
[[flow.closed]]
hangup = true
"#;
    current = Arc::new(plan_from("dialplan/closed.toml", closed).unwrap());
    let mut new_call = Call::with_plan(Arc::clone(&current), "pay");
    assert_eq!(new_call.take(), [play(&["system_busy", "goodbye"])]);

    // The call in progress goes on with the flows it started with.
    in_progress.respond(ActionResult::Identify(CallerStatus::Known));
    assert_eq!(in_progress.take(), [play(&["enter_transaction_number"])]);
    in_progress.key(&number("31313131"));
    assert_eq!(
        in_progress.take(),
        [Ev::Stop, Ev::Action(ActionKind::ClaimNumber)]
    );
    assert!(Arc::ptr_eq(in_progress.ivr.dialplan(), &old));
    assert!(Arc::ptr_eq(new_call.ivr.dialplan(), &current));
}

/// Random inputs in random order, as a hostile or broken peer might send them: the interpreter
/// never panics, never stops a playback that is not playing, and always names its next deadline.
#[test]
fn random_inputs_never_break_the_interpreter() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let results = || {
        vec![
            ActionResult::Identify(CallerStatus::Known),
            ActionResult::Identify(CallerStatus::Withheld),
            ActionResult::Claim(ClaimResult::Paired {
                merchant: acme(),
                amount: Some(usd(1250)),
            }),
            ActionResult::Claim(ClaimResult::Paired {
                merchant: acme(),
                amount: None,
            }),
            ActionResult::Claim(ClaimResult::InvalidNumber),
            ActionResult::WaitAmount(WaitAmountResult::Amount(Amount {
                amount_minor: i64::MIN,
                currency: "???".into(),
                minor_digits: 200,
            })),
            ActionResult::AuthNext(AuthStep::Pin),
            ActionResult::AuthNext(AuthStep::Challenge {
                question_number: 255,
                question_voice: None,
            }),
            ActionResult::AuthNext(AuthStep::Done),
            ActionResult::SubmitPin(CredentialResult::Wrong { tries_left: 9 }),
            ActionResult::SubmitPin(CredentialResult::Accepted),
            ActionResult::SubmitAnswer(CredentialResult::Locked),
            ActionResult::Confirm(ConfirmResult::Settled {
                reference: "\u{202e}ref-\n9".repeat(50),
            }),
            ActionResult::AvailableAmount(Ok(usd(i64::MAX))),
            ActionResult::RecentPurchases(Ok(vec![
                Purchase {
                    year: 2023,
                    month: 2,
                    day: 30,
                    merchant: Merchant {
                        name: String::new(),
                        voice: None,
                    },
                    amount: usd(-5),
                };
                20
            ])),
            ActionResult::Cancelled,
            ActionResult::Unavailable,
        ]
    };
    let keys: Vec<char> = "0123456789*#ABCDx\u{0}".chars().collect();
    let plan = default_plan();
    let mut ended = 0;
    for call_no in 0..300 {
        let user = ["pay", "menu", "", "\u{0}\n"][call_no % 4];
        let mut c = Call::with_plan(Arc::clone(&plan), user);
        for _ in 0..400 {
            if c.ivr.is_ended() {
                ended += 1;
                break;
            }
            if c.deadline.is_some_and(|d| c.now >= d) {
                c.wait();
                continue;
            }
            let r = next();
            match r % 9 {
                0..=2 => {
                    let k = keys[(r >> 8) as usize % keys.len()];
                    c.input(Input::Digit(k));
                }
                3 if c.playing.is_some() => c.finish_play(),
                4 if c.action.is_some() => {
                    let list = results();
                    let pick = list[(r >> 8) as usize % list.len()].clone();
                    c.respond(pick);
                }
                5 => c.wait(),
                6 => c.now += Duration::from_millis(r >> 52),
                7 if c.speech.is_some() => {
                    let id = c.speech.unwrap_or_else(|| unreachable!());
                    let result = match (r >> 8) % 3 {
                        0 => SpeechResult::NoInput,
                        1 => SpeechResult::NoMatch,
                        _ => SpeechResult::Digits {
                            digits: "12x".into(),
                            confidence: f32::NAN,
                        },
                    };
                    c.input(Input::SpeechResult(id, result));
                }
                8 if r % 97 == 0 => c.input(Input::CallerHungUp),
                _ => {}
            }
            assert!(c.ivr.is_ended() || c.deadline.is_some());
        }
    }
    // The walk reaches the ends of calls, not only their beginnings.
    assert!(ended > 100, "only {ended} calls ended");
}

// -- speech hook ----------------------------------------------------------------------------

const SPEECH_PLAN: &str = r#"
[settings]
on_error = "main:bye"
[entry]
"*" = "main"
[[flow.main]]
collect = "number"
prompts = ["enter_transaction_number"]
digits_min = 9
digits_max = 9
check = "damm"
mode = "MODE"
speech_confidence_min = 0.6
on_failure = "bye"
[[flow.main]]
action = "claim_number"
input = "number"
[[flow.main]]
label = "bye"
play = ["goodbye"]
[[flow.main]]
hangup = true
"#;

#[test]
fn speech_collect_yields_to_a_speech_collector() {
    let plan = Arc::new(plan_from("speech.toml", &SPEECH_PLAN.replace("MODE", "both")).unwrap());
    let grammar = SpeechGrammar {
        digits_min: 9,
        digits_max: 9,
        secret: false,
        audio: false,
        check: Some(CheckDigit::Damm),
    };
    let n = number("43214321");

    // Spoken digits complete the collect, and speech barges in on the prompt.
    let mut c = Call::with_plan(Arc::clone(&plan), "x");
    assert_eq!(
        c.take(),
        [
            Ev::SpeechStart(grammar),
            play(&["enter_transaction_number"])
        ]
    );
    let id = c.speech.unwrap();
    c.input(Input::SpeechStarted(id));
    assert_eq!(c.take(), [Ev::Stop]);
    c.input(Input::SpeechResult(
        id,
        SpeechResult::Digits {
            digits: n.clone(),
            confidence: 0.9,
        },
    ));
    assert_eq!(c.take(), [Ev::Action(ActionKind::ClaimNumber)]);
    assert_eq!(
        c.request(),
        &ActionRequest::ClaimNumber { number: n.clone() }
    );

    // Low confidence is an invalid attempt: ask again, listening again.
    let mut c = Call::with_plan(Arc::clone(&plan), "x");
    c.take();
    let id = c.speech.unwrap();
    c.input(Input::SpeechResult(
        id,
        SpeechResult::Digits {
            digits: n.clone(),
            confidence: 0.3,
        },
    ));
    assert_eq!(
        c.take(),
        [
            Ev::Stop,
            Ev::SpeechStart(grammar),
            play(&["enter_transaction_number"])
        ]
    );

    // In `both` mode a keyed digit wins and stops listening.
    let mut c = Call::with_plan(Arc::clone(&plan), "x");
    c.take();
    c.key(&n);
    assert_eq!(
        c.take(),
        [
            Ev::Stop,
            Ev::SpeechStop,
            Ev::Action(ActionKind::ClaimNumber)
        ]
    );

    // In `speech` mode keyed digits are ignored.
    let plan = Arc::new(plan_from("speech.toml", &SPEECH_PLAN.replace("MODE", "speech")).unwrap());
    let mut c = Call::with_plan(plan, "x");
    c.take();
    c.key("123");
    assert_eq!(c.take(), []);
    c.finish_play();
    c.wait();
    // No input: asked again (attempts default to 3).
    assert_eq!(
        c.take(),
        [
            Ev::SpeechStop,
            Ev::SpeechStart(grammar),
            play(&["enter_transaction_number"])
        ]
    );
}

// -- limits ---------------------------------------------------------------------------------

#[test]
fn a_goto_loop_is_cut_off() {
    let text = r#"
[settings]
on_error = "main:a"
[entry]
"*" = "main"
[[flow.main]]
label = "a"
goto = "b"
[[flow.main]]
label = "b"
goto = "a"
"#;
    let plan = Arc::new(plan_from("loop.toml", text).unwrap());
    let c = Call::with_plan(plan, "x");
    assert_eq!(c.events, [Ev::Hangup]);
    assert!(
        c.log_text().contains("a loop in the dialplan"),
        "{}",
        c.log_text()
    );
}

#[test]
fn a_lost_playback_finished_does_not_freeze_the_call() {
    let mut c = Call::new("pay");
    c.take();
    c.respond(ActionResult::Identify(CallerStatus::Known));
    assert_eq!(c.take(), [play(&["enter_transaction_number"])]);
    let length_ms = library()
        .get("enter_transaction_number")
        .map(PromptRef::duration_ms)
        .unwrap();
    assert_eq!(
        c.deadline,
        Some(c.now + Duration::from_millis(length_ms + PLAYBACK_SLACK_MS))
    );
    c.wait();
    // Stopped for good measure, then the collect listens as if the prompt had ended.
    assert_eq!(c.take(), [Ev::Stop]);
    assert_eq!(c.deadline, Some(c.now + Duration::from_millis(8000)));
    c.key(&number("31415926"));
    assert_eq!(c.take(), [Ev::Action(ActionKind::ClaimNumber)]);
}

#[test]
fn the_call_duration_is_bounded() {
    let text = r#"
[settings]
on_error = "main:start"
call_duration_max_ms = 10000
[entry]
"*" = "main"
[[flow.main]]
collect = "x"
digits_max = 4
first_digit_timeout_ms = 60000
on_failure = "start"
[[flow.main]]
goto = "start"
"#;
    let plan = Arc::new(plan_from("short.toml", text).unwrap());
    let mut c = Call::with_plan(plan, "x");
    let start = c.now;
    assert_eq!(c.deadline, Some(start + Duration::from_millis(10_000)));
    c.wait();
    assert_eq!(c.take(), [Ev::Hangup]);
}

// -- validation -----------------------------------------------------------------------------

fn diagnostics(err: &DialplanError) -> Vec<(usize, String)> {
    err.diagnostics()
        .iter()
        .map(|d| (d.line, d.message.clone()))
        .collect()
}

#[test]
fn broken_toml_is_reported_at_its_line() {
    let text = "[settings]\non_error = \"main\"\n\n[[flow.main]]\nplay = [\"welcome\" \"goodbye\"]\nhangup = true\n";
    let err = plan_from("dialplan/broken.toml", text).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("dialplan/broken.toml:5: "), "{message}");

    let text = "[entry]\n\"*\" = \"main\"\n[[flow.main]]\nplay = [\"welcome\"]\n[[flow.main]]\nhangup = \n";
    let err = plan_from("dialplan/broken.toml", text).unwrap_err();
    assert!(
        err.to_string().starts_with("dialplan/broken.toml:6: "),
        "{err}"
    );

    let text = "[settings]\non_error = \"main\"\n[entries]\n\"*\" = \"main\"\n";
    let err = plan_from("dialplan/broken.toml", text).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("dialplan/broken.toml:3: unknown field `entries`"),
        "{message}"
    );
}

#[test]
fn broken_file_in_a_folder_names_the_file() {
    let dir = std::env::temp_dir().join(format!("telepay-dialplan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(repo_dialplan_dir().join("default.toml")).unwrap();
    std::fs::write(dir.join("default.toml"), &good).unwrap();
    std::fs::write(
        dir.join("extra.toml"),
        "[[flow.extra]]\nplay = [\"welcome\"]\n\n[[flow.extra]]\ngoto = \"menu:nowhere\"\n",
    )
    .unwrap();
    let err = Dialplan::load_dir(&dir, library()).unwrap_err();
    let expected = format!(
        "{}:5: goto to unknown label `nowhere` in flow `menu`",
        dir.join("extra.toml").display()
    );
    assert_eq!(err.to_string(), expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn semantic_errors_are_reported_at_their_lines() {
    let text = r#"[settings]
on_error = "main:oops"

[entry]
"*" = "main"

[[flow.main]]
play = ["welcome", "no_such_prompt"]

[[flow.main]]
collect = "pin"
secret = true
digits_min = 6
digits_max = 4
on_failure = "nowhere"

[[flow.main]]
play = ["${pin}"]

[[flow.main]]
speak = ["welcome"]

[[flow.main]]
action = "pay_now"

[[flow.main]]
goto = "other:start"

[[flow.main]]
hangup = true
colour = "red"

[[flow.main]]
action = "identify"

[[flow.main]]
branch = "outcome"
cases = { payed = "start" }

[[flow.main]]
action = "submit_pin"
input = "number"

[[flow.main]]
collect = "amount"
digits_max = 40
"#;
    let err = plan_from("dialplan/bad.toml", text).unwrap_err();
    let found = diagnostics(&err);
    let expected: &[(usize, &str)] = &[
        (2, "goto to unknown label `oops` in flow `main`"),
        (8, "unknown prompt `no_such_prompt`"),
        (14, "digits_min 6 is more than digits_max 4"),
        (15, "goto to unknown label `nowhere` in flow `main`"),
        (18, "`${pin}` is secret and cannot be played"),
        (21, "unknown step kind `speak`"),
        (24, "unknown action `pay_now`"),
        (27, "goto to unknown flow `other`"),
        (31, "unknown field `colour` in a `hangup` step"),
        (38, "action `identify` has no outcome `payed`"),
        (42, "unknown variable `number`"),
        (45, "collect variable `amount` must be"),
        (46, "`digits_max` = 40 is out of range 1..=32"),
        (45, "collect needs `on_failure`"),
    ];
    for (line, text) in expected {
        assert!(
            found.iter().any(|(l, m)| l == line && m.contains(text)),
            "missing {line}: {text}\nfound:\n{err}"
        );
    }
    for d in err.diagnostics() {
        assert_eq!(d.file, PathBuf::from("dialplan/bad.toml"));
    }
    assert!(
        err.to_string().starts_with("dialplan/bad.toml:2: "),
        "{err}"
    );
}

#[test]
fn one_dangling_goto_is_exactly_one_error() {
    let text = r#"[settings]
on_error = "main:start"
[entry]
"*" = "main"
[[flow.main]]
play = ["welcome"]
[[flow.main]]
label = "again"
goto = "agian"
"#;
    let err = plan_from("dialplan/typo.toml", text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dialplan/typo.toml:9: goto to unknown label `agian` in flow `main`"
    );
}

#[test]
fn unreachable_steps_and_falling_off_a_flow_are_errors() {
    let text = r#"[settings]
on_error = "main:start"
[entry]
"*" = "main"
[[flow.main]]
play = ["welcome"]
[[flow.main]]
hangup = true
[[flow.main]]
play = ["goodbye"]
"#;
    let err = plan_from("dialplan/flow.toml", text).unwrap_err();
    let found = diagnostics(&err);
    assert!(
        found
            .iter()
            .any(|(l, m)| *l == 10 && m.contains("continues to nothing")),
        "{err}"
    );

    let text = r#"[settings]
on_error = "main:start"
[entry]
"*" = "main"
[[flow.main]]
play = ["welcome"]
[[flow.main]]
hangup = true
[[flow.main]]
play = ["goodbye"]
[[flow.main]]
hangup = true
"#;
    let err = plan_from("dialplan/flow.toml", text).unwrap_err();
    let found = diagnostics(&err);
    assert_eq!(found.len(), 2, "{err}");
    assert_eq!(found[0].0, 10);
    assert_eq!(found[1].0, 12);
    assert!(
        found
            .iter()
            .all(|(_, m)| m.starts_with("step is never reached")),
        "{err}"
    );
}

#[test]
fn secrets_must_be_collected_as_secrets_and_entry_needs_a_default() {
    let text = r#"[settings]
on_error = "main:start"
[entry]
pay = "main"
[[flow.main]]
collect = "pin"
digits_max = 4
on_failure = "start"
[[flow.main]]
action = "submit_pin"
input = "pin"
[[flow.main]]
goto = "start"
"#;
    let err = plan_from("dialplan/pin.toml", text).unwrap_err();
    let found = diagnostics(&err);
    assert!(
        found
            .iter()
            .any(|(l, m)| *l == 3 && m.contains("needs a \"*\" flow")),
        "{err}"
    );
    assert!(
        found
            .iter()
            .any(|(l, m)| *l == 11 && m.contains("must be collected with `secret = true`")),
        "{err}"
    );
}

#[test]
fn a_prompt_library_missing_what_the_ivr_speaks_is_refused() {
    let only = PromptRef::from_samples("welcome", vec![0; 10]).unwrap();
    let lib = Arc::new(PromptLibrary::from_prompts(
        super::super::prompts::Language::En,
        vec![only],
    ));
    let text = "[settings]\non_error = \"main\"\n[entry]\n\"*\" = \"main\"\n[[flow.main]]\nplay = [\"welcome\"]\n[[flow.main]]\nhangup = true\n";
    let err =
        Dialplan::from_sources(vec![(PathBuf::from("d.toml"), text.into())], lib).unwrap_err();
    assert!(err.to_string().contains("lacks `num_0`"), "{err}");
}

// -- voice on the default dialplan ----------------------------------------------------------

fn audio(ms: usize) -> VoiceAudio {
    VoiceAudio::new(vec![100; ms * 8])
}

/// Identify, a spoken number, pairing with an amount, up to the first `auth_next`.
fn spoken_to_auth(c: &mut Call) {
    let n = number("31415926");
    assert_eq!(c.take(), [Ev::Action(ActionKind::Identify)]);
    c.respond(ActionResult::Identify(CallerStatus::Known));
    let grammar = SpeechGrammar {
        digits_min: 9,
        digits_max: 9,
        secret: false,
        audio: false,
        check: Some(CheckDigit::Damm),
    };
    assert_eq!(
        c.take(),
        [
            Ev::SpeechStart(grammar),
            play(&["enter_transaction_number"])
        ]
    );
    let id = c.speech.unwrap();
    // The caller speaks over the prompt: it stops, and the recognizer's digits pair.
    c.input(Input::SpeechStarted(id));
    assert_eq!(c.take(), [Ev::Stop]);
    c.now += Duration::from_millis(6_000);
    c.input(Input::SpeechResult(
        id,
        SpeechResult::Digits {
            digits: n.clone(),
            confidence: 0.8,
        },
    ));
    assert_eq!(c.take(), [Ev::Action(ActionKind::ClaimNumber)]);
    assert_eq!(c.request(), &ActionRequest::ClaimNumber { number: n });
    c.respond(ActionResult::Claim(ClaimResult::Paired {
        merchant: acme(),
        amount: Some(usd(1250)),
    }));
    assert_eq!(c.take(), [play(&ANNOUNCE_ACME_12_50)]);
    c.finish_play();
    assert_eq!(c.take(), [Ev::Action(ActionKind::AuthNext)]);
}

#[test]
fn spoken_number_then_voice_print_then_pay() {
    let mut c = Call::new_hearing_speech("pay");
    spoken_to_auth(&mut c);
    c.respond(ActionResult::AuthNext(AuthStep::Voice {
        digits: "4719".into(),
    }));
    let voice_grammar = SpeechGrammar {
        digits_min: 4,
        digits_max: 4,
        secret: false,
        audio: true,
        check: None,
    };
    // The prompted digits are heard in full (no barge-in), while listening.
    assert_eq!(
        c.take(),
        [
            Ev::SpeechStart(voice_grammar),
            play(&["voice_say_digits", "num_4", "num_7", "num_1", "num_9"])
        ]
    );
    let id = c.speech.unwrap();
    c.input(Input::SpeechStarted(id));
    assert_eq!(c.take(), [], "the prompt must not be cut");
    c.finish_play();
    c.input(Input::SpeechResult(id, SpeechResult::Audio(audio(2_000))));
    assert_eq!(c.take(), [Ev::Action(ActionKind::VoiceVerify)]);
    match c.request() {
        ActionRequest::VoiceVerify { audio } => assert_eq!(audio.duration_ms(), 2_000),
        other => panic!("{other:?}"),
    }
    // A wrong voice: say so, and ask the core again (a fresh prompt).
    c.respond(ActionResult::VoiceVerify(CredentialResult::Wrong {
        tries_left: 2,
    }));
    assert_eq!(
        c.take(),
        [play(&[
            "voice_not_recognized",
            "attempts_remaining",
            "num_2"
        ])]
    );
    c.finish_play();
    assert_eq!(c.take(), [Ev::Action(ActionKind::AuthNext)]);
    c.respond(ActionResult::AuthNext(AuthStep::Voice {
        digits: "8203".into(),
    }));
    assert_eq!(
        c.take(),
        [
            Ev::SpeechStart(voice_grammar),
            play(&["voice_say_digits", "num_8", "num_2", "num_0", "num_3"])
        ]
    );
    let id = c.speech.unwrap();
    c.finish_play();
    c.input(Input::SpeechResult(id, SpeechResult::Audio(audio(1_800))));
    assert_eq!(c.take(), [Ev::Action(ActionKind::VoiceVerify)]);
    c.respond(ActionResult::VoiceVerify(CredentialResult::Accepted));
    assert_eq!(c.take(), [Ev::Action(ActionKind::AuthNext)]);
    c.respond(ActionResult::AuthNext(AuthStep::Done));
    assert_eq!(c.take(), [play(&["press_1_to_pay"])]);
    // The audio never reaches the log.
    assert!(!c.log_text().contains("VoiceAudio("), "{}", c.log_text());
    assert!(c.log_text().contains("collect `spoken`: 1800 ms of speech"));
}

#[test]
fn voice_print_silence_and_lock() {
    let mut c = Call::new_hearing_speech("pay");
    spoken_to_auth(&mut c);
    c.respond(ActionResult::AuthNext(AuthStep::Voice {
        digits: "1357".into(),
    }));
    c.take();
    c.finish_play();
    // Silence: the collect asks again, three attempts in all, then the payment is cancelled.
    c.wait();
    assert_eq!(
        c.take(),
        [
            Ev::SpeechStop,
            Ev::SpeechStart(SpeechGrammar {
                digits_min: 4,
                digits_max: 4,
                secret: false,
                audio: true,
                check: None,
            }),
            play(&[
                "sorry_not_understood",
                "voice_say_digits",
                "num_1",
                "num_3",
                "num_5",
                "num_7"
            ])
        ]
    );
    // Recognized digits instead of audio cannot answer a voice collect.
    let id = c.speech.unwrap();
    c.finish_play();
    c.input(Input::SpeechResult(
        id,
        SpeechResult::Digits {
            digits: "1357".into(),
            confidence: 0.9,
        },
    ));
    c.take();
    let id = c.speech.unwrap();
    c.finish_play();
    c.input(Input::SpeechResult(id, SpeechResult::Audio(audio(1_500))));
    assert_eq!(c.take(), [Ev::Action(ActionKind::VoiceVerify)]);
    c.respond(ActionResult::VoiceVerify(CredentialResult::Locked));
    assert_eq!(c.take(), [play(&["payer_locked", "goodbye"])]);
}

#[test]
fn enrols_a_voice_print_by_phone_after_the_pin() {
    let mut c = Call::new_hearing_speech("4420");
    c.take();
    c.respond(ActionResult::Identify(CallerStatus::Known));
    c.take();
    c.key("4");
    // The PIN may be keyed or said; a spoken PIN is secret like a keyed one.
    let pin_grammar = SpeechGrammar {
        digits_min: 4,
        digits_max: 4,
        secret: true,
        audio: false,
        check: None,
    };
    assert_eq!(
        c.take(),
        [
            Ev::Stop,
            Ev::SpeechStart(pin_grammar),
            play(&["voice_enrol_intro", "enter_pin"])
        ]
    );
    c.key("9999");
    assert_eq!(
        c.take(),
        [Ev::Stop, Ev::SpeechStop, Ev::Action(ActionKind::CheckPin)]
    );
    match c.request() {
        ActionRequest::CheckPin { pin } => assert_eq!(pin.expose(), "9999"),
        other => panic!("{other:?}"),
    }
    c.respond(ActionResult::CheckPin(CredentialResult::Wrong {
        tries_left: 2,
    }));
    assert_eq!(
        c.take(),
        [play(&["wrong_pin", "attempts_remaining", "num_2"])]
    );
    c.finish_play();
    assert_eq!(
        c.take(),
        [
            Ev::SpeechStart(pin_grammar),
            play(&["voice_enrol_intro", "enter_pin"])
        ]
    );
    // Said this time, with enough confidence; a less sure reading would be asked again.
    let id = c.speech.unwrap();
    c.finish_play();
    c.input(Input::SpeechResult(
        id,
        SpeechResult::Digits {
            digits: "4711".into(),
            confidence: 0.93,
        },
    ));
    assert_eq!(c.take(), [Ev::Action(ActionKind::CheckPin)]);
    match c.request() {
        ActionRequest::CheckPin { pin } => assert_eq!(pin.expose(), "4711"),
        other => panic!("{other:?}"),
    }
    assert!(!c.log_text().contains("4711"), "{}", c.log_text());
    c.respond(ActionResult::CheckPin(CredentialResult::Accepted));
    assert_eq!(c.take(), [Ev::Action(ActionKind::VoiceEnrolStart)]);
    c.respond(ActionResult::VoiceEnrolStart(Ok("01234".into())));
    let grammar = SpeechGrammar {
        digits_min: 5,
        digits_max: 5,
        secret: false,
        audio: true,
        check: None,
    };
    let say = |d: &str| {
        let mut names = vec!["voice_enrol_say".to_string()];
        names.extend(d.chars().map(|c| format!("num_{c}")));
        Ev::Play(names)
    };
    assert_eq!(c.take(), [Ev::SpeechStart(grammar), say("01234")]);
    for (k, next) in ["56789", "97531", "86420"].into_iter().enumerate() {
        let id = c.speech.unwrap();
        c.finish_play();
        c.input(Input::SpeechResult(id, SpeechResult::Audio(audio(2_500))));
        assert_eq!(c.take(), [Ev::Action(ActionKind::VoiceEnrol)]);
        if k == 1 {
            // Not the prompted digits: say so and ask for the same ones.
            c.respond(ActionResult::VoiceEnrol(EnrolStep::Unclear {
                digits: "56789".into(),
            }));
            assert_eq!(c.take(), [play(&["voice_enrol_again"])]);
            c.finish_play();
            assert_eq!(c.take(), [Ev::SpeechStart(grammar), say("56789")]);
            let id = c.speech.unwrap();
            c.finish_play();
            c.input(Input::SpeechResult(id, SpeechResult::Audio(audio(2_500))));
            assert_eq!(c.take(), [Ev::Action(ActionKind::VoiceEnrol)]);
        }
        c.respond(ActionResult::VoiceEnrol(EnrolStep::More {
            digits: next.into(),
        }));
        assert_eq!(c.take(), [Ev::SpeechStart(grammar), say(next)]);
    }
    let id = c.speech.unwrap();
    c.finish_play();
    c.input(Input::SpeechResult(id, SpeechResult::Audio(audio(2_500))));
    c.take();
    c.respond(ActionResult::VoiceEnrol(EnrolStep::Enrolled));
    assert_eq!(c.take(), [play(&["voice_enrol_done"])]);
    c.finish_play();
    assert_eq!(c.take(), [play(&["main_menu"])]);
}

#[test]
fn audio_variables_are_checked_at_load() {
    let base = r#"
[settings]
on_error = "main:bye"
[entry]
"*" = "main"
[[flow.main]]
collect = "spoken"
mode = "MODE"
audio = true
digits_max = 4
on_failure = "bye"
[[flow.main]]
action = "ACTION"
input = "spoken"
[[flow.main]]
label = "bye"
play = ["goodbye"]
[[flow.main]]
hangup = true
"#;
    let load = |mode: &str, action: &str| {
        plan_from(
            "voice.toml",
            &base.replace("MODE", mode).replace("ACTION", action),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    assert_eq!(load("speech", "voice_verify"), Ok(()));
    assert_eq!(load("speech", "voice_enrol"), Ok(()));
    let e = load("both", "voice_verify").unwrap_err();
    assert!(e.contains("voice.toml:7: audio = true"), "{e}");
    let e = load("speech", "claim_number").unwrap_err();
    assert!(e.contains("holds a spoken answer"), "{e}");
    let e = load("speech", "submit_pin").unwrap_err();
    assert!(e.contains("holds a spoken answer"), "{e}");
    // Digits cannot stand in for a spoken answer.
    let digits = base.replace("audio = true\n", "").replace("MODE", "speech");
    let e = plan_from("voice.toml", &digits.replace("ACTION", "voice_verify"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be a spoken answer"), "{e}");
}
