//! Process-wide counters of the call driver, for `telepay bench calls` and `GET /metrics`: how
//! late RTP packets leave against their 20 ms slots, how many DTMF digits calls heard, calls
//! started and ended, and what speech and voice prints did.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Lateness buckets of 50 µs up to 100 ms; later sends land in the last bucket.
const BUCKET_US: u64 = 50;
const BUCKETS: usize = 2_000;

static LATENESS: [AtomicU64; BUCKETS] = [const { AtomicU64::new(0) }; BUCKETS];
static DIGITS: AtomicU64 = AtomicU64::new(0);

/// Records how long after its slot a packet was sent.
pub fn record_send_lateness(late: Duration) {
    let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
    let i = usize::try_from(us / BUCKET_US)
        .unwrap_or(BUCKETS - 1)
        .min(BUCKETS - 1);
    LATENESS[i].fetch_add(1, Ordering::Relaxed);
}

/// Counts a digit a call received (from any carrier).
pub fn record_digit() {
    DIGITS.fetch_add(1, Ordering::Relaxed);
}

/// Digits received by every call so far.
pub fn digits() -> u64 {
    DIGITS.load(Ordering::Relaxed)
}

/// Clears the lateness histogram.
pub fn reset_lateness() {
    for b in &LATENESS {
        b.store(0, Ordering::Relaxed);
    }
}

/// Packets sent since the last reset, and the `p`-th percentile (0–100) of their lateness in
/// milliseconds (upper bucket edge).
pub fn lateness_percentile_ms(p: f64) -> (u64, f64) {
    let counts: Vec<u64> = LATENESS.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return (0, 0.0);
    }
    let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return (total, ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0);
        }
    }
    (total, (BUCKETS as u64 * BUCKET_US) as f64 / 1000.0)
}

static CALLS_STARTED: AtomicU64 = AtomicU64::new(0);
static CALLS_ENDED: AtomicU64 = AtomicU64::new(0);

/// A call's task started (the call was answered).
pub fn record_call_started() {
    CALLS_STARTED.fetch_add(1, Ordering::Relaxed);
}

/// A call's task ended.
pub fn record_call_ended() {
    CALLS_ENDED.fetch_add(1, Ordering::Relaxed);
}

/// What a speech collector's answer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechOutcome {
    Digits,
    /// Digits whose check digit failed, put right from the audio.
    Corrected,
    NoMatch,
    NoInput,
    /// The answer's audio, for a voice print.
    Audio,
}

impl SpeechOutcome {
    const ALL: [SpeechOutcome; 5] = [
        SpeechOutcome::Digits,
        SpeechOutcome::Corrected,
        SpeechOutcome::NoMatch,
        SpeechOutcome::NoInput,
        SpeechOutcome::Audio,
    ];

    fn name(self) -> &'static str {
        match self {
            SpeechOutcome::Digits => "digits",
            SpeechOutcome::Corrected => "corrected",
            SpeechOutcome::NoMatch => "no_match",
            SpeechOutcome::NoInput => "no_input",
            SpeechOutcome::Audio => "audio",
        }
    }
}

static SPEECH: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
/// Voice-print checks: accepted, rejected; enrolments stored.
static VOICE_CHECKS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static VOICE_ENROLMENTS: AtomicU64 = AtomicU64::new(0);

pub fn record_speech(outcome: SpeechOutcome) {
    SPEECH[outcome as usize].fetch_add(1, Ordering::Relaxed);
}

pub fn speech_count(outcome: SpeechOutcome) -> u64 {
    SPEECH[outcome as usize].load(Ordering::Relaxed)
}

pub fn record_voice_check(accepted: bool) {
    VOICE_CHECKS[usize::from(!accepted)].fetch_add(1, Ordering::Relaxed);
}

pub fn record_voice_enrolment() {
    VOICE_ENROLMENTS.fetch_add(1, Ordering::Relaxed);
}

/// The call counters in the Prometheus text format.
pub fn render_prometheus(out: &mut String) {
    let counter = |out: &mut String, name: &str, help: &str| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
    };
    counter(out, "telepay_calls_total", "Payer calls by event.");
    for (event, v) in [("started", &CALLS_STARTED), ("ended", &CALLS_ENDED)] {
        out.push_str(&format!(
            "telepay_calls_total{{event=\"{event}\"}} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    counter(
        out,
        "telepay_call_digits_total",
        "DTMF digits heard by calls.",
    );
    out.push_str(&format!("telepay_call_digits_total {}\n", digits()));
    counter(
        out,
        "telepay_speech_answers_total",
        "Spoken answers by outcome.",
    );
    for o in SpeechOutcome::ALL {
        out.push_str(&format!(
            "telepay_speech_answers_total{{outcome=\"{}\"}} {}\n",
            o.name(),
            speech_count(o)
        ));
    }
    counter(
        out,
        "telepay_voice_checks_total",
        "Voice-print checks by result.",
    );
    for (result, i) in [("accepted", 0), ("rejected", 1)] {
        out.push_str(&format!(
            "telepay_voice_checks_total{{result=\"{result}\"}} {}\n",
            VOICE_CHECKS[i].load(Ordering::Relaxed)
        ));
    }
    counter(
        out,
        "telepay_voice_enrolments_total",
        "Voice prints enrolled by phone.",
    );
    out.push_str(&format!(
        "telepay_voice_enrolments_total {}\n",
        VOICE_ENROLMENTS.load(Ordering::Relaxed)
    ));
}
