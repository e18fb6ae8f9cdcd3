//! Process-wide counters of the call driver, for `telepay bench calls` and metrics: how late
//! RTP packets leave against their 20 ms slots, and how many DTMF digits calls heard.

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
