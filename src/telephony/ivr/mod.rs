//! The IVR: dialplans as data, and a sans-IO interpreter per call.
//!
//! # The loop
//!
//! A call's driver creates an [`Ivr`] with the current [`Dialplan`] (an `Arc`), the called user
//! and `now`. It then feeds every event with [`Ivr::handle_input`]`(now, input)` — keyed digits,
//! the end of a playback, the core's answers ([`ActionResult`]), speech results, `Timeout` at the
//! deadline it was given, the caller's hang-up — and drains [`Ivr::poll_output`] after each:
//!
//! - `Play { id, prompts }` / `StopPlayback(id)`: audio to send or cut (barge-in);
//!   report `PlaybackFinished(id)` when a playback ends by itself;
//! - `Action(id, request)`: ask the settlement core; answer with `ActionResult(id, result)`;
//! - `SpeechStart` / `SpeechStop`: the hook for a speech collector (`mode = "speech" | "both"`);
//! - `Log(line)`: never holds PIN or answer digits;
//! - `Hangup`: end the call;
//! - `Timeout(t)`: always last while the call lives: feed `Input::Timeout` at `t`.
//!
//! `poll_output` returns `None` once the call is over. Nothing here reads a clock or does IO.
//!
//! # Digits
//!
//! Digits keyed while a prompt plays stop it when the step allows barge-in, and are kept in a
//! bounded type-ahead buffer for the next collect; a collect that finds digits waiting plays no
//! prompt. So a caller who knows the flow can key the transaction number, the PIN and `1` in one
//! go. A collect completes on its terminator (`#`, optional), on `digits_max` (a terminator keyed
//! right after is swallowed), or on the inter-digit timeout with at least `digits_min` digits;
//! an empty or invalid entry costs an attempt, flushes the type-ahead buffer, plays the
//! invalid-input prompt and asks again, and the last failed attempt goes to `on_failure`.
//!
//! # Reload
//!
//! [`Dialplan::load_dir`] builds a new, fully validated value; the caller swaps its `Arc`. Calls
//! in progress keep the `Arc` they were created with.

mod action;
mod damm;
mod dialplan;
mod interp;

#[cfg(test)]
mod tests;

pub use action::{
    ActionKind, ActionRequest, ActionResult, Amount, AuthStep, COMMON_OUTCOMES, CallerStatus,
    ClaimResult, ConfirmResult, CredentialResult, DeclineReason, EnrolStep, InputKind, Merchant,
    PolicyRefusal, Purchase, RECENT_PURCHASES_MAX, Secret, VoiceAudio, WaitAmountResult,
};
pub use damm::{check_digit as damm_check_digit, is_valid as damm_is_valid};
pub use dialplan::{
    ACTION_VARIABLES, CheckDigit, CollectMode, DIAGNOSTICS_MAX, DIGITS_MAX, Diagnostic, Dialplan,
    DialplanError, FILE_BYTES_MAX, FILES_MAX, FLOWS_MAX, STEPS_PER_FLOW_MAX, Settings, StepAddr,
};
pub use interp::{
    ActionId, INTERPRETER_PROMPTS, Input, Ivr, LogLevel, LogLine, Output, PLAYBACK_SLACK_MS,
    PlayId, STEPS_PER_INPUT_MAX, SpeechGrammar, SpeechId, SpeechResult,
};
