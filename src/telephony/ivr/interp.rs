//! The IVR interpreter: one per call, sans-IO, stepping through a [`Dialplan`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::prompts::PromptRef;
use super::action::{
    ActionKind, ActionRequest, ActionResult, Amount, AuthStep, CallerStatus, ClaimResult,
    ConfirmResult, CredentialResult, DeclineReason, EnrolStep, Merchant, Purchase,
    RECENT_PURCHASES_MAX, Secret, VoiceAudio, WaitAmountResult,
};
use super::damm;
use super::dialplan::{
    ActionStep, BranchOn, CheckDigit, CollectMode, CollectStep, Dialplan, PlayItem, StepAddr,
    StepKind,
};

/// Steps executed for one input without waiting for anything; more means a loop in the
/// dialplan (`goto` back and forth), and the call is ended rather than spinning.
pub const STEPS_PER_INPUT_MAX: usize = 256;
/// How long past a playback's own length the interpreter waits for `PlaybackFinished` before
/// going on without it (a driver that lost the event must not freeze the call).
pub const PLAYBACK_SLACK_MS: u64 = 2_000;
/// The longest caller-controlled text copied into a log line.
const LOG_TEXT_CHARS_MAX: usize = 64;

/// Prompts the interpreter speaks on its own (besides the language's vocabulary and the
/// decline reasons); the dialplan loader checks the library has them.
pub const INTERPRETER_PROMPTS: [&str; 3] = [
    "security_question_number",
    "purchase_on",
    "no_recent_purchases",
];

/// Identifies one `Play`; a `PlaybackFinished` for an older one is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlayId(u32);
/// Identifies one `Action`; a result for an older one (after a timeout) is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActionId(u32);
/// Identifies one speech-collection session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpeechId(u32);

impl SpeechId {
    /// An id for driver tests (the interpreter numbers its own).
    #[cfg(test)]
    pub(crate) fn for_tests(n: u32) -> SpeechId {
        SpeechId(n)
    }
}

/// What happened on the call.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// A keyed digit (`0-9`, `*`, `#`, `A-D`) from RFC 4733, in-band or SIP INFO.
    Digit(char),
    /// The prompts of a `Play` have all been sent.
    PlaybackFinished(PlayId),
    /// The core answered an `Action`.
    ActionResult(ActionId, ActionResult),
    /// The speech collector heard the caller start speaking (barge-in by voice).
    SpeechStarted(SpeechId),
    /// The speech collector's verdict.
    SpeechResult(SpeechId, SpeechResult),
    /// Time has passed; fed when the last `Output::Timeout` deadline is reached.
    Timeout,
    /// The caller hung up (BYE, CANCEL or lost media).
    CallerHungUp,
}

/// What a speech collector reports.
#[derive(Clone, Debug)]
pub enum SpeechResult {
    /// Recognised digits, with the recogniser's confidence from 0 to 1.
    Digits { digits: String, confidence: f32 },
    /// Speech that is not digits.
    NoMatch,
    /// Nothing was said before the collector's own time-out.
    NoInput,
    /// The answer's audio, when the grammar asked for it (voice verification, enrolment).
    Audio(VoiceAudio),
}

/// What a speech collector should listen for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeechGrammar {
    pub digits_min: u8,
    pub digits_max: u8,
    /// The audio must not be kept and the result must not be logged (PIN, answer).
    pub secret: bool,
    /// Report the answer's audio (`SpeechResult::Audio`) instead of recognized digits.
    pub audio: bool,
    /// The number ends in this check digit: a reading that fails it may be corrected from the
    /// audio (see `voice::check_digit`).
    pub check: Option<CheckDigit>,
}

/// How loud a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// A log line; it never holds PIN or answer digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// What the driver must do.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Play these prompts in order, then report `PlaybackFinished(id)`. A new `Play` replaces a
    /// playing one only after a `StopPlayback`.
    Play {
        id: PlayId,
        prompts: Vec<PromptRef>,
    },
    /// Stop this playback now (barge-in); no `PlaybackFinished` is needed for it.
    StopPlayback(PlayId),
    /// Ask the core; answer with `Input::ActionResult(id, ..)`.
    Action(ActionId, ActionRequest),
    /// Start a speech collector on the caller's audio.
    SpeechStart {
        id: SpeechId,
        grammar: SpeechGrammar,
    },
    /// Stop that speech collector; its result is no longer wanted.
    SpeechStop(SpeechId),
    Log(LogLine),
    /// End the call (send BYE).
    Hangup,
    /// Feed `Input::Timeout` at this instant unless another input comes first. Always the last
    /// output of a batch while the call lives.
    Timeout(Instant),
}

/// A variable's value.
#[derive(Clone, Debug)]
enum Value {
    Digits(String),
    Secret(Secret),
    Prompts(Vec<PromptRef>),
    /// A spoken answer kept for a voice action; never played, logged or branched on.
    Audio(VoiceAudio),
}

/// Why an attempt at a collect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    NoInput,
    Invalid,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The collect's prompts are playing.
    Prompting(PlayId),
    /// Waiting for the first digit (or for speech).
    WaitFirst(Instant),
    /// Some digits are in; waiting for the next one.
    Entering(Instant),
    /// The caller is speaking; waiting for the speech collector.
    Listening(Instant),
}

#[derive(Debug)]
struct Collecting {
    at: StepAddr,
    attempt: u8,
    digits: String,
    phase: Phase,
    speech: Option<SpeechId>,
}

#[derive(Debug)]
enum State {
    /// About to execute the step; never seen outside `run`.
    Run(StepAddr),
    Playing {
        at: StepAddr,
        id: PlayId,
        barge_in: bool,
    },
    Collecting(Box<Collecting>),
    Acting {
        at: StepAddr,
        id: ActionId,
        kind: ActionKind,
        deadline: Instant,
        hold: Option<PlayId>,
    },
    Ended,
}

/// What one keyed digit did to a collect.
enum Feed {
    More,
    Done,
    /// Done because `digits_max` was reached: a terminator right after it is swallowed.
    DoneAtMax,
    Invalid,
}

/// The interpreter of one call.
///
/// Feed every event with [`Ivr::handle_input`] and the current time, then drain
/// [`Ivr::poll_output`] until it returns `Output::Timeout(t)` (feed `Input::Timeout` at `t`) or
/// `None` (the call is over). The dialplan is held by `Arc`: a reload elsewhere does not change a
/// call in progress.
#[derive(Debug)]
pub struct Ivr {
    plan: Arc<Dialplan>,
    state: State,
    vars: BTreeMap<String, Value>,
    outcome: Option<&'static str>,
    type_ahead: VecDeque<char>,
    /// A terminator keyed right after a collect filled up is the caller's habit, not input.
    swallow: Option<(char, Instant)>,
    out: VecDeque<Output>,
    next_id: u32,
    call_deadline: Instant,
    /// The playback in progress and when it should have finished at the latest.
    play_guard: Option<(PlayId, Instant)>,
}

fn after(now: Instant, ms: u64) -> Instant {
    now.checked_add(Duration::from_millis(ms)).unwrap_or(now)
}

fn next_step(at: StepAddr) -> StepAddr {
    StepAddr {
        flow: at.flow,
        step: at.step + 1,
    }
}

fn collect_of(plan: &Dialplan, at: StepAddr) -> Option<&CollectStep<StepAddr>> {
    match plan.step(at).map(|s| &s.kind) {
        Some(StepKind::Collect(c)) => Some(c),
        _ => None,
    }
}

fn printable(text: &str) -> String {
    text.chars()
        .take(LOG_TEXT_CHARS_MAX)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl Ivr {
    /// Starts a call to `called_user` (the Request-URI user, e.g. `pay`) in its entry flow.
    pub fn new(plan: Arc<Dialplan>, called_user: &str, now: Instant) -> Ivr {
        let entry = plan.entry_for(called_user);
        let call_deadline = after(now, plan.settings.call_duration_max_ms);
        let mut ivr = Ivr {
            state: State::Run(entry),
            vars: BTreeMap::new(),
            outcome: None,
            type_ahead: VecDeque::new(),
            swallow: None,
            out: VecDeque::new(),
            next_id: 1,
            call_deadline,
            play_guard: None,
            plan,
        };
        let start = ivr.plan.describe(entry);
        ivr.log(
            LogLevel::Info,
            format!("call to `{}` starts at {start}", printable(called_user)),
        );
        ivr.run(now);
        ivr
    }

    /// The dialplan this call runs on.
    pub fn dialplan(&self) -> &Arc<Dialplan> {
        &self.plan
    }

    /// True once the call is over (hung up by either side).
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// The next output, `Output::Timeout` when there is nothing else to do, `None` once ended.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        if self.is_ended() {
            return None;
        }
        Some(Output::Timeout(self.next_deadline()))
    }

    fn next_deadline(&self) -> Instant {
        let step_deadline = match &self.state {
            State::Collecting(c) => match c.phase {
                Phase::WaitFirst(d) | Phase::Entering(d) | Phase::Listening(d) => Some(d),
                Phase::Prompting(_) => None,
            },
            State::Acting { deadline, .. } => Some(*deadline),
            _ => None,
        };
        [step_deadline, self.play_guard.map(|(_, t)| t)]
            .into_iter()
            .flatten()
            .fold(self.call_deadline, Instant::min)
    }

    /// Feeds one event at time `now`.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.is_ended() {
            return;
        }
        if now >= self.call_deadline {
            self.log(
                LogLevel::Warn,
                "call reached call_duration_max_ms; hanging up".into(),
            );
            self.hangup();
            return;
        }
        match input {
            Input::Digit(d) => self.on_digit(now, d),
            Input::PlaybackFinished(id) => self.on_playback_finished(now, id),
            Input::ActionResult(id, result) => self.on_action_result(now, id, result),
            Input::SpeechStarted(id) => self.on_speech_started(now, id),
            Input::SpeechResult(id, result) => self.on_speech_result(now, id, result),
            Input::Timeout => self.on_timeout(now),
            Input::CallerHungUp => {
                self.log(LogLevel::Info, "caller hung up".into());
                self.state = State::Ended;
            }
        }
        self.run(now);
    }

    // -- outputs ----------------------------------------------------------------------------

    fn log(&mut self, level: LogLevel, message: String) {
        self.out.push_back(Output::Log(LogLine { level, message }));
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn play(&mut self, prompts: Vec<PromptRef>, now: Instant) -> PlayId {
        let id = PlayId(self.id());
        let length_ms: u64 = prompts.iter().map(PromptRef::duration_ms).sum();
        self.play_guard = Some((id, after(now, length_ms.saturating_add(PLAYBACK_SLACK_MS))));
        self.out.push_back(Output::Play { id, prompts });
        id
    }

    fn stop_playback(&mut self, id: PlayId) {
        if self.play_guard.is_some_and(|(g, _)| g == id) {
            self.play_guard = None;
        }
        self.out.push_back(Output::StopPlayback(id));
    }

    fn hangup(&mut self) {
        match &self.state {
            State::Playing { id, .. } | State::Acting { hold: Some(id), .. } => {
                let id = *id;
                self.stop_playback(id);
            }
            State::Collecting(c) => {
                let (phase, speech) = (c.phase, c.speech);
                if let Phase::Prompting(id) = phase {
                    self.stop_playback(id);
                }
                if let Some(id) = speech {
                    self.out.push_back(Output::SpeechStop(id));
                }
            }
            _ => {}
        }
        self.out.push_back(Output::Hangup);
        self.state = State::Ended;
    }

    fn push_type_ahead(&mut self, d: char) {
        if self.type_ahead.len() >= self.plan.settings.type_ahead_max {
            self.log(
                LogLevel::Warn,
                "type-ahead buffer full; a keyed digit was dropped".into(),
            );
        } else {
            self.type_ahead.push_back(d);
        }
    }

    // -- stepping ---------------------------------------------------------------------------

    fn run(&mut self, now: Instant) {
        let mut budget = STEPS_PER_INPUT_MAX;
        while let State::Run(at) = self.state {
            if budget == 0 {
                let here = self.plan.describe(at);
                self.log(
                    LogLevel::Error,
                    format!(
                        "{STEPS_PER_INPUT_MAX} steps without waiting, at {here}: a loop in \
                         the dialplan; hanging up"
                    ),
                );
                self.hangup();
                return;
            }
            budget -= 1;
            self.execute(at, now);
        }
    }

    fn go_to_error_flow(&mut self, why: String) {
        self.log(LogLevel::Error, why);
        self.state = State::Run(self.plan.on_error);
    }

    fn execute(&mut self, at: StepAddr, now: Instant) {
        let plan = Arc::clone(&self.plan);
        let Some(step) = plan.step(at) else {
            // Validation ensures every flow ends in goto, branch or hangup, so this is a bug.
            self.log(LogLevel::Error, format!("no step at {at:?}; hanging up"));
            self.hangup();
            return;
        };
        match &step.kind {
            StepKind::Play(p) => {
                if p.flush {
                    self.type_ahead.clear();
                }
                if p.barge_in && !self.type_ahead.is_empty() {
                    // The caller has keyed ahead; a skippable prompt is skipped.
                    self.state = State::Run(next_step(at));
                    return;
                }
                let prompts = self.expand(&p.items);
                if prompts.is_empty() {
                    self.state = State::Run(next_step(at));
                    return;
                }
                let id = self.play(prompts, now);
                self.state = State::Playing {
                    at,
                    id,
                    barge_in: p.barge_in,
                };
            }
            StepKind::Collect(c) => {
                if c.flush {
                    self.type_ahead.clear();
                }
                self.begin_attempt(at, c, 0, Vec::new(), now);
            }
            StepKind::Branch(b) => {
                let key = match &b.on {
                    BranchOn::Outcome => self.outcome.unwrap_or("").to_string(),
                    BranchOn::Var(v) => match self.vars.get(v) {
                        Some(Value::Digits(d)) => d.clone(),
                        _ => String::new(),
                    },
                };
                let target = b
                    .cases
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, t)| *t)
                    .or(b.default);
                match target {
                    Some(t) => self.state = State::Run(t),
                    None => {
                        let here = plan.describe(at);
                        self.go_to_error_flow(format!("no case for `{key}` at {here}"));
                    }
                }
            }
            StepKind::Goto(t) => self.state = State::Run(*t),
            StepKind::Hangup => {
                self.log(LogLevel::Info, format!("hangup at {}", plan.describe(at)));
                self.hangup();
            }
            StepKind::Action(a) => self.start_action(at, a, now),
        }
    }

    /// Turns a prompt list into audio, speaking variables by their values.
    fn expand(&mut self, items: &[PlayItem]) -> Vec<PromptRef> {
        let mut out = Vec::new();
        for item in items {
            match item {
                PlayItem::Prompt(p) => out.push(p.clone()),
                PlayItem::Var(name) => match self.vars.get(name) {
                    Some(Value::Prompts(list)) => out.extend(list.iter().cloned()),
                    Some(Value::Digits(d)) => {
                        let names = self.plan.settings.language.say_digits(d);
                        out.extend(self.resolve(&names));
                    }
                    // The loader refuses plays of secret variables; never speak one anyway.
                    Some(Value::Secret(_) | Value::Audio(_)) => {}
                    None => {
                        let name = name.clone();
                        self.log(LogLevel::Warn, format!("`${{{name}}}` is not set; skipped"));
                    }
                },
            }
        }
        out
    }

    fn resolve(&mut self, names: &[&str]) -> Vec<PromptRef> {
        let plan = Arc::clone(&self.plan);
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match plan.prompts().get(name) {
                Some(p) => out.push(p.clone()),
                None => self.log(LogLevel::Warn, format!("no prompt `{name}`; skipped")),
            }
        }
        out
    }

    // -- collect ----------------------------------------------------------------------------

    fn begin_attempt(
        &mut self,
        at: StepAddr,
        c: &CollectStep<StepAddr>,
        attempt: u8,
        lead: Vec<PromptRef>,
        now: Instant,
    ) {
        let mut st = Box::new(Collecting {
            at,
            attempt,
            digits: String::new(),
            phase: Phase::WaitFirst(after(now, c.first_digit_timeout_ms)),
            speech: None,
        });
        if c.mode != CollectMode::Speech {
            match self.drain_type_ahead(st, c, now) {
                Some(back) => st = back,
                None => return,
            }
            if !st.digits.is_empty() {
                // The caller is keying this entry already: no prompt.
                st.phase = Phase::Entering(after(now, c.inter_digit_timeout_ms));
                self.state = State::Collecting(st);
                return;
            }
        }
        if c.mode != CollectMode::Dtmf {
            let id = SpeechId(self.id());
            self.out.push_back(Output::SpeechStart {
                id,
                grammar: SpeechGrammar {
                    digits_min: c.digits_min,
                    digits_max: c.digits_max,
                    secret: c.secret,
                    audio: c.audio,
                    check: c.check,
                },
            });
            st.speech = Some(id);
        }
        let mut prompts = lead;
        prompts.extend(self.expand(&c.prompts));
        if !prompts.is_empty() {
            st.phase = Phase::Prompting(self.play(prompts, now));
        }
        self.state = State::Collecting(st);
    }

    /// Feeds type-ahead digits; gives the state back if the collect still wants more.
    fn drain_type_ahead(
        &mut self,
        mut st: Box<Collecting>,
        c: &CollectStep<StepAddr>,
        now: Instant,
    ) -> Option<Box<Collecting>> {
        while let Some(d) = self.type_ahead.pop_front() {
            match self.feed(&mut st, c, d, now) {
                Feed::More => {}
                Feed::Done | Feed::DoneAtMax => {
                    self.complete(st, c, now);
                    return None;
                }
                Feed::Invalid => {
                    self.attempt_failed(st, c, Failure::Invalid, now);
                    return None;
                }
            }
        }
        Some(st)
    }

    fn feed(
        &mut self,
        st: &mut Collecting,
        c: &CollectStep<StepAddr>,
        d: char,
        now: Instant,
    ) -> Feed {
        if Some(d) == c.terminator {
            return if st.digits.len() >= usize::from(c.digits_min) {
                Feed::Done
            } else {
                Feed::Invalid
            };
        }
        if !d.is_ascii_digit() {
            return Feed::Invalid;
        }
        st.digits.push(d);
        if st.digits.len() < usize::from(c.digits_max) {
            return Feed::More;
        }
        if let Some(t) = c.terminator {
            if self.type_ahead.front() == Some(&t) {
                self.type_ahead.pop_front();
            } else {
                self.swallow = Some((t, after(now, c.inter_digit_timeout_ms)));
            }
        }
        Feed::DoneAtMax
    }

    fn stop_collect_media(&mut self, st: &mut Collecting) {
        if let Phase::Prompting(id) = st.phase {
            self.stop_playback(id);
        }
        if let Some(id) = st.speech.take() {
            self.out.push_back(Output::SpeechStop(id));
        }
    }

    fn complete(&mut self, mut st: Box<Collecting>, c: &CollectStep<StepAddr>, now: Instant) {
        let digits = std::mem::take(&mut st.digits);
        let len = digits.len();
        let valid_length = (usize::from(c.digits_min)..=usize::from(c.digits_max)).contains(&len)
            && digits.bytes().all(|b| b.is_ascii_digit());
        let in_list = c.valid.is_empty() || c.valid.contains(&digits);
        let checked = match c.check {
            Some(CheckDigit::Damm) => damm::is_valid(&digits),
            None => true,
        };
        if !(valid_length && in_list && checked) {
            let why = if !checked {
                "check digit wrong"
            } else {
                "not accepted"
            };
            self.log(
                LogLevel::Info,
                format!("collect `{}`: {len} digit(s) {why}", c.var),
            );
            self.attempt_failed(st, c, Failure::Invalid, now);
            return;
        }
        self.stop_collect_media(&mut st);
        if c.secret {
            self.log(
                LogLevel::Info,
                format!("collect `{}`: {len} digit(s) (secret)", c.var),
            );
            self.vars
                .insert(c.var.clone(), Value::Secret(Secret::new(digits)));
        } else {
            self.log(LogLevel::Info, format!("collect `{}` = {digits}", c.var));
            self.vars.insert(c.var.clone(), Value::Digits(digits));
        }
        self.state = State::Run(next_step(st.at));
    }

    fn attempt_failed(
        &mut self,
        mut st: Box<Collecting>,
        c: &CollectStep<StepAddr>,
        failure: Failure,
        now: Instant,
    ) {
        // What the caller keyed ahead was meant for an entry that just failed.
        self.type_ahead.clear();
        self.swallow = None;
        self.stop_collect_media(&mut st);
        let used = st.attempt.saturating_add(1);
        let what = match failure {
            Failure::NoInput => "no input",
            Failure::Invalid => "invalid input",
        };
        self.log(
            LogLevel::Info,
            format!(
                "collect `{}`: {what} (attempt {used} of {})",
                c.var, c.attempts
            ),
        );
        if used >= c.attempts {
            self.state = State::Run(c.on_failure);
            return;
        }
        let lead = match failure {
            Failure::NoInput => self.expand(&c.no_input_prompts),
            Failure::Invalid => self.expand(&c.invalid_prompts),
        };
        self.begin_attempt(st.at, c, used, lead, now);
    }

    // -- inputs -----------------------------------------------------------------------------

    fn on_digit(&mut self, now: Instant, d: char) {
        let d = d.to_ascii_uppercase();
        if !matches!(d, '0'..='9' | '*' | '#' | 'A'..='D') {
            self.log(
                LogLevel::Warn,
                "ignored a key that is not a DTMF digit".into(),
            );
            return;
        }
        if let Some((t, until)) = self.swallow.take() {
            if d == t && now <= until {
                return;
            }
        }
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Playing {
                at,
                id,
                barge_in: true,
            } => {
                self.stop_playback(id);
                self.push_type_ahead(d);
                self.state = State::Run(next_step(at));
            }
            state @ (State::Playing { .. } | State::Acting { .. }) => {
                self.state = state;
                self.push_type_ahead(d);
            }
            State::Collecting(mut st) => {
                let plan = Arc::clone(&self.plan);
                let Some(c) = collect_of(&plan, st.at) else {
                    self.state = State::Collecting(st);
                    return;
                };
                if c.mode == CollectMode::Speech {
                    self.log(
                        LogLevel::Debug,
                        "keyed digit ignored: this collect listens for speech only".into(),
                    );
                    self.state = State::Collecting(st);
                    return;
                }
                if let Phase::Prompting(id) = st.phase {
                    if !c.barge_in {
                        // Kept for when the prompt ends.
                        self.state = State::Collecting(st);
                        self.push_type_ahead(d);
                        return;
                    }
                    self.stop_playback(id);
                    st.phase = Phase::Entering(after(now, c.inter_digit_timeout_ms));
                }
                if let Some(id) = st.speech.take() {
                    // A keyed digit wins over speech in `both` mode.
                    self.out.push_back(Output::SpeechStop(id));
                }
                match self.feed(&mut st, c, d, now) {
                    Feed::More => {
                        st.phase = Phase::Entering(after(now, c.inter_digit_timeout_ms));
                        self.state = State::Collecting(st);
                    }
                    Feed::Done | Feed::DoneAtMax => self.complete(st, c, now),
                    Feed::Invalid => self.attempt_failed(st, c, Failure::Invalid, now),
                }
            }
            state @ State::Run(_) => {
                self.state = state;
                self.push_type_ahead(d);
            }
            State::Ended => {}
        }
    }

    fn on_playback_finished(&mut self, now: Instant, id: PlayId) {
        if self.play_guard.is_some_and(|(g, _)| g == id) {
            self.play_guard = None;
        }
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Playing {
                at, id: current, ..
            } if current == id => {
                self.state = State::Run(next_step(at));
            }
            State::Collecting(mut st) if matches!(st.phase, Phase::Prompting(p) if p == id) => {
                let plan = Arc::clone(&self.plan);
                let Some(c) = collect_of(&plan, st.at) else {
                    self.state = State::Collecting(st);
                    return;
                };
                st.phase = Phase::WaitFirst(after(now, c.first_digit_timeout_ms));
                if c.mode != CollectMode::Speech {
                    // Digits keyed during a prompt without barge-in count now.
                    let Some(mut back) = self.drain_type_ahead(st, c, now) else {
                        return;
                    };
                    if !back.digits.is_empty() {
                        back.phase = Phase::Entering(after(now, c.inter_digit_timeout_ms));
                    }
                    st = back;
                }
                self.state = State::Collecting(st);
            }
            State::Acting {
                at,
                id: action,
                kind,
                deadline,
                hold: Some(h),
            } if h == id => {
                // Hold prompts repeat until the result comes (bounded by the step's timeout).
                let plan = Arc::clone(&self.plan);
                let prompts = match plan.step(at).map(|s| &s.kind) {
                    Some(StepKind::Action(a)) => self.expand(&a.hold),
                    _ => Vec::new(),
                };
                let hold = (!prompts.is_empty()).then(|| self.play(prompts, now));
                self.state = State::Acting {
                    at,
                    id: action,
                    kind,
                    deadline,
                    hold,
                };
            }
            state => self.state = state,
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        if let Some((id, t)) = self.play_guard {
            if now >= t {
                self.log(
                    LogLevel::Warn,
                    "no PlaybackFinished long after the prompts' end; going on".into(),
                );
                self.stop_playback(id);
                self.on_playback_finished(now, id);
                return;
            }
        }
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Collecting(st) => {
                let plan = Arc::clone(&self.plan);
                let Some(c) = collect_of(&plan, st.at) else {
                    self.state = State::Collecting(st);
                    return;
                };
                match st.phase {
                    Phase::WaitFirst(d) | Phase::Listening(d) if now >= d => {
                        self.attempt_failed(st, c, Failure::NoInput, now);
                    }
                    Phase::Entering(d) if now >= d => {
                        if st.digits.len() >= usize::from(c.digits_min) {
                            self.complete(st, c, now);
                        } else {
                            self.attempt_failed(st, c, Failure::Invalid, now);
                        }
                    }
                    _ => self.state = State::Collecting(st),
                }
            }
            State::Acting {
                at,
                kind,
                deadline,
                hold,
                ..
            } if now >= deadline => {
                if let Some(h) = hold {
                    self.stop_playback(h);
                }
                self.log(
                    LogLevel::Warn,
                    format!("action {}: no result in time", kind.name()),
                );
                self.outcome = Some("timeout");
                self.state = State::Run(next_step(at));
            }
            state => self.state = state,
        }
    }

    fn on_speech_started(&mut self, now: Instant, id: SpeechId) {
        let State::Collecting(st) = &mut self.state else {
            return;
        };
        if st.speech != Some(id) {
            return;
        }
        let at = st.at;
        let plan = Arc::clone(&self.plan);
        let Some(c) = collect_of(&plan, at) else {
            return;
        };
        let State::Collecting(st) = &mut self.state else {
            return;
        };
        match st.phase {
            Phase::Prompting(p) if c.barge_in => {
                st.phase = Phase::Listening(after(now, c.speech_timeout_ms));
                self.stop_playback(p);
            }
            Phase::Prompting(_) => {}
            _ => st.phase = Phase::Listening(after(now, c.speech_timeout_ms)),
        }
    }

    fn on_speech_result(&mut self, now: Instant, id: SpeechId, result: SpeechResult) {
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Collecting(mut st) if st.speech == Some(id) => {
                let plan = Arc::clone(&self.plan);
                let Some(c) = collect_of(&plan, st.at) else {
                    self.state = State::Collecting(st);
                    return;
                };
                // The collector has finished by itself; it needs no stop.
                st.speech = None;
                match result {
                    SpeechResult::Audio(audio) if c.audio => {
                        self.stop_collect_media(&mut st);
                        self.log(
                            LogLevel::Info,
                            format!("collect `{}`: {} ms of speech", c.var, audio.duration_ms()),
                        );
                        self.vars.insert(c.var.clone(), Value::Audio(audio));
                        self.state = State::Run(next_step(st.at));
                    }
                    SpeechResult::Audio(_) => self.attempt_failed(st, c, Failure::Invalid, now),
                    SpeechResult::Digits { .. } if c.audio => {
                        self.attempt_failed(st, c, Failure::Invalid, now);
                    }
                    SpeechResult::Digits { digits, confidence }
                        if confidence >= c.speech_confidence_min =>
                    {
                        st.digits = digits.chars().take(usize::from(c.digits_max) + 1).collect();
                        self.complete(st, c, now);
                    }
                    SpeechResult::Digits { .. } | SpeechResult::NoMatch => {
                        self.attempt_failed(st, c, Failure::Invalid, now);
                    }
                    SpeechResult::NoInput => self.attempt_failed(st, c, Failure::NoInput, now),
                }
            }
            state => self.state = state,
        }
    }

    // -- actions ----------------------------------------------------------------------------

    fn start_action(&mut self, at: StepAddr, a: &ActionStep, now: Instant) {
        let input = a.input.as_deref();
        let request = match a.kind {
            ActionKind::Identify => Some(ActionRequest::Identify),
            ActionKind::WaitAmount => Some(ActionRequest::WaitAmount),
            ActionKind::AuthNext => Some(ActionRequest::AuthNext),
            ActionKind::Confirm => Some(ActionRequest::Confirm),
            ActionKind::Cancel => Some(ActionRequest::Cancel),
            ActionKind::AvailableAmount => Some(ActionRequest::AvailableAmount),
            ActionKind::RecentPurchases => Some(ActionRequest::RecentPurchases {
                count_max: RECENT_PURCHASES_MAX,
            }),
            ActionKind::ClaimNumber => match input.and_then(|v| self.vars.get(v)) {
                Some(Value::Digits(number)) => Some(ActionRequest::ClaimNumber {
                    number: number.clone(),
                }),
                _ => None,
            },
            // The secret leaves the variables as it is sent: it is needed exactly once.
            ActionKind::SubmitPin => match input.and_then(|v| self.vars.remove(v)) {
                Some(Value::Secret(pin)) => Some(ActionRequest::SubmitPin { pin }),
                _ => None,
            },
            ActionKind::SubmitAnswer => match input.and_then(|v| self.vars.remove(v)) {
                Some(Value::Secret(answer)) => Some(ActionRequest::SubmitAnswer { answer }),
                _ => None,
            },
            ActionKind::CheckPin => match input.and_then(|v| self.vars.remove(v)) {
                Some(Value::Secret(pin)) => Some(ActionRequest::CheckPin { pin }),
                _ => None,
            },
            ActionKind::VoiceEnrolStart => Some(ActionRequest::VoiceEnrolStart),
            // Spoken answers, like secrets, are sent once and not kept.
            ActionKind::VoiceVerify => match input.and_then(|v| self.vars.remove(v)) {
                Some(Value::Audio(audio)) => Some(ActionRequest::VoiceVerify { audio }),
                _ => None,
            },
            ActionKind::VoiceEnrol => match input.and_then(|v| self.vars.remove(v)) {
                Some(Value::Audio(audio)) => Some(ActionRequest::VoiceEnrol { audio }),
                _ => None,
            },
        };
        let Some(request) = request else {
            let here = self.plan.describe(at);
            self.go_to_error_flow(format!(
                "action {} at {here}: its input `{}` has not been collected",
                a.kind.name(),
                input.unwrap_or("")
            ));
            return;
        };
        let id = ActionId(self.id());
        self.log(LogLevel::Info, format!("action {}", a.kind.name()));
        self.out.push_back(Output::Action(id, request));
        let prompts = self.expand(&a.hold);
        let hold = (!prompts.is_empty()).then(|| self.play(prompts, now));
        self.state = State::Acting {
            at,
            id,
            kind: a.kind,
            deadline: after(now, a.timeout_ms),
            hold,
        };
    }

    fn on_action_result(&mut self, _now: Instant, id: ActionId, result: ActionResult) {
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Acting {
                at,
                id: current,
                kind,
                hold,
                ..
            } if current == id => {
                if let Some(h) = hold {
                    self.stop_playback(h);
                }
                let result = match result.kind() {
                    Some(k) if k != kind => {
                        self.log(
                            LogLevel::Error,
                            format!(
                                "action {}: got a result for {}; treated as unavailable",
                                kind.name(),
                                k.name()
                            ),
                        );
                        ActionResult::Unavailable
                    }
                    _ => result,
                };
                let outcome = result.outcome();
                self.log(
                    LogLevel::Info,
                    format!("action {} -> {outcome}", kind.name()),
                );
                self.apply_result(result);
                self.outcome = Some(outcome);
                self.state = State::Run(next_step(at));
            }
            state => {
                self.state = state;
                self.log(
                    LogLevel::Debug,
                    "ignored a result for an action no longer waited for".into(),
                );
            }
        }
    }

    fn set_prompts(&mut self, var: &str, names: &[&str]) {
        let prompts = self.resolve(names);
        self.vars.insert(var.to_string(), Value::Prompts(prompts));
    }

    fn set_reason(&mut self, reason: DeclineReason) {
        self.set_prompts("reason", &[reason.prompt_name()]);
    }

    fn amount_names(&self, amount: &Amount) -> Vec<&'static str> {
        let language = self.plan.settings.language;
        language
            .say_amount(amount.amount_minor, &amount.currency)
            .unwrap_or_else(|_| {
                language.say_amount_generic(
                    amount.amount_minor,
                    amount.minor_digits,
                    &amount.currency,
                )
            })
    }

    fn merchant_prompts(&mut self, merchant: &Merchant) -> Vec<PromptRef> {
        match &merchant.voice {
            Some(voice) => vec![voice.clone()],
            None => {
                let names = self
                    .plan
                    .settings
                    .language
                    .say_merchant_fallback(&merchant.name);
                self.resolve(&names)
            }
        }
    }

    fn purchase_prompts(&mut self, p: &Purchase) -> Vec<PromptRef> {
        let language = self.plan.settings.language;
        let mut names = vec!["purchase_on"];
        names.extend(
            language
                .say_date(p.year, p.month, p.day)
                .unwrap_or_default(),
        );
        let mut out = self.resolve(&names);
        out.extend(self.merchant_prompts(&p.merchant));
        let amount = self.amount_names(&p.amount);
        out.extend(self.resolve(&amount));
        out
    }

    fn apply_result(&mut self, result: ActionResult) {
        let language = self.plan.settings.language;
        match result {
            ActionResult::Identify(status) => match status {
                CallerStatus::Unknown => self.set_reason(DeclineReason::PayerUnknown),
                CallerStatus::Suspended => self.set_reason(DeclineReason::PayerSuspended),
                CallerStatus::Locked => self.set_reason(DeclineReason::PayerLocked),
                CallerStatus::Known | CallerStatus::Withheld => {}
            },
            ActionResult::Claim(ClaimResult::Paired { merchant, amount }) => {
                let m = self.merchant_prompts(&merchant);
                self.vars.insert("merchant".into(), Value::Prompts(m));
                if let Some(amount) = amount {
                    let names = self.amount_names(&amount);
                    self.set_prompts("amount", &names);
                }
            }
            ActionResult::Claim(ClaimResult::Declined(reason))
            | ActionResult::AuthNext(AuthStep::Refused(reason))
            | ActionResult::VoiceEnrolStart(Err(reason))
            | ActionResult::VoiceEnrol(EnrolStep::Declined(reason))
            | ActionResult::Confirm(ConfirmResult::Declined(reason))
            | ActionResult::AvailableAmount(Err(reason))
            | ActionResult::RecentPurchases(Err(reason)) => self.set_reason(reason),
            ActionResult::Claim(_) => {}
            ActionResult::WaitAmount(WaitAmountResult::Amount(amount))
            | ActionResult::AvailableAmount(Ok(amount)) => {
                let names = self.amount_names(&amount);
                self.set_prompts("amount", &names);
            }
            ActionResult::WaitAmount(WaitAmountResult::Cancelled) => {
                self.set_reason(DeclineReason::MerchantCancelled);
            }
            ActionResult::WaitAmount(WaitAmountResult::Expired) => {
                self.set_reason(DeclineReason::TransactionExpired);
            }
            ActionResult::AuthNext(AuthStep::Challenge {
                question_number,
                question_voice,
            }) => {
                let prompts = match question_voice {
                    Some(voice) => vec![voice],
                    None => {
                        let mut names = vec!["security_question_number"];
                        names.extend(language.say_number(u64::from(question_number)));
                        self.resolve(&names)
                    }
                };
                self.vars.insert("question".into(), Value::Prompts(prompts));
            }
            ActionResult::AuthNext(AuthStep::Voice { digits })
            | ActionResult::VoiceEnrolStart(Ok(digits))
            | ActionResult::VoiceEnrol(
                EnrolStep::More { digits } | EnrolStep::Unclear { digits },
            ) => {
                self.vars
                    .insert("voice_digits".into(), Value::Digits(digits));
            }
            ActionResult::AuthNext(_) | ActionResult::VoiceEnrol(EnrolStep::Enrolled) => {}
            ActionResult::SubmitPin(c)
            | ActionResult::SubmitAnswer(c)
            | ActionResult::CheckPin(c)
            | ActionResult::VoiceVerify(c) => match c {
                CredentialResult::Wrong { tries_left } => {
                    let names = language.say_number(u64::from(tries_left));
                    self.set_prompts("tries_left", &names);
                }
                CredentialResult::Locked => self.set_reason(DeclineReason::PayerLocked),
                CredentialResult::Accepted => {}
            },
            ActionResult::Confirm(ConfirmResult::Settled { reference }) => {
                self.log(
                    LogLevel::Info,
                    format!("settled, reference {}", printable(&reference)),
                );
                let names = language.say_digits(&reference);
                self.set_prompts("reference", &names);
            }
            ActionResult::RecentPurchases(Ok(list)) => {
                let mut prompts = Vec::new();
                for p in list.iter().take(usize::from(RECENT_PURCHASES_MAX)) {
                    prompts.extend(self.purchase_prompts(p));
                }
                if prompts.is_empty() {
                    prompts = self.resolve(&["no_recent_purchases"]);
                }
                self.vars
                    .insert("purchases".into(), Value::Prompts(prompts));
            }
            ActionResult::Cancelled | ActionResult::Unavailable => {}
        }
    }
}
