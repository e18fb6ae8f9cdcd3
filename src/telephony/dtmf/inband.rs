//! In-band DTMF detection on 8 kHz 16-bit linear audio, after ITU-T Q.24.
//!
//! # The loop
//!
//! [`InbandDetector::push_samples`] takes audio in chunks of any size
//! (a 20 ms RTP packet, a whole file, one sample); [`InbandDetector::poll_event`]
//! then yields what was recognised. A digit first shows as
//! [`InbandEvent::Started`] (as soon as it has lasted the minimum tone
//! time, so a prompt can be interrupted at once) and later as
//! [`InbandEvent::Ended`] with its start and duration in samples counted
//! from the first sample ever pushed. [`InbandDetector::finish`] closes a
//! digit still sounding when the stream ends. Nothing here reads a clock:
//! sample positions are the time base, and a caller that needs wall-clock
//! times maps them itself.
//!
//! # How
//!
//! Eight Goertzel filters at the DTMF frequencies run over blocks of
//! [`BLOCK_LEN`] samples (12.75 ms), each made of two halves whose results
//! are kept apart. For the strongest row and column the two tones are
//! fitted jointly (a 2×2 least-squares solve over the two filter outputs),
//! which removes what each filter picks up of the other group's tone
//! through its side lobes; without that, level, twist and phase wobble by
//! ±1 dB with the tones' relative phase. A block is a *candidate* for a
//! digit when the fitted tones are each above the level floor; their twist
//! is inside the window; every other tone of each group is at least 8 dB
//! below the strongest; and the fitted pair carries at least 70 % of the
//! block's energy (speech spreads its energy over many harmonics; a DTMF
//! pair does not). Two consecutive candidate blocks for the same digit,
//! within 2 dB of each other (both full of tone), *confirm* it once the
//! frequency of both tones is measured inside the tolerance: the phase
//! advance of each fitted tone from one block to the next gives the
//! frequency offset to a fraction of a hertz, and the phase advance from
//! one half-block to the other tells which 78 Hz alias of it is the true
//! one. Measuring frequency this way, rather than reading filter
//! magnitudes, is what lets the detector accept ±1.5 % and reject ±3.5 %
//! whatever the level. A confirmed digit is held while its two tones stay
//! the strongest and within 8 dB of their peak; two blocks in a row
//! without it end it.
//!
//! # Decisions where Q.24 leaves room (all tested)
//!
//! - Frequency: each tone within ±1.5 % of nominal is accepted and beyond
//!   ±3.5 % rejected; the decision threshold is ±2.5 %.
//! - Level: each tone down to −26 dBm0 is accepted; tones below the floor of
//!   −32 dBm0 are not detected (tested at −35 dBm0). dBm0 follows G.711's
//!   μ-law reference ([`super::super::g711::DBM0_RMS`]).
//! - Twist, meaning level(high group) − level(low group): from −8 dB
//!   ("normal" twist, the high group attenuated by the line) to +4 dB
//!   ("reverse") is accepted, with 1.5 dB to spare for noise and tones
//!   off frequency; beyond −9.5 dB and +5.5 dB is rejected (tested at
//!   −10.5 and +6.5).
//! - Timing: a tone is a digit when it lasts at least 30 ms (Q.24 demands
//!   acceptance from 40 ms; tones of 25 ms and less are rejected). The
//!   start and end of a tone are estimated within a few samples from how
//!   much of the edge blocks the tone fills, so the rule does not depend on
//!   how the tone falls on block boundaries.
//! - Pauses: two tones separated by a gap of 40 ms or more are always two
//!   digits; a gap of up to 12 ms (one block) is always bridged and the
//!   tones count as one digit. Between the two the outcome depends on how
//!   the gap falls on block boundaries, which Q.24 permits.
//!
//! # Cost
//!
//! The per-sample work is one conversion, one squared sum and eight
//! two-multiply recurrences that the compiler vectorises; everything else
//! runs once per half-block. Under `valgrind --tool=callgrind` a release
//! build spends about 0.34 M instructions per second of audio (60 s of
//! digits in noise, 20 ms packets), against 0.5 M allowed.
//!
//! # Talk-off
//!
//! None of the 2,000 recordings of speech in the Free Spoken Digit Dataset
//! (`../shared/data/fsdd`, 910 s) yields a digit, nor a single candidate
//! block; the test `talk_off_no_digit_in_any_fsdd_recording` keeps it so.

use std::collections::VecDeque;

use super::super::g711::DBM0_RMS;
use super::Digit;

/// Sample rate the detector is built for.
pub const SAMPLE_RATE_HZ: u32 = 8_000;

/// Samples in half a block.
pub const HALF_LEN: usize = 51;

/// Samples per analysis block (12.75 ms at 8 kHz).
pub const BLOCK_LEN: usize = 2 * HALF_LEN;

/// Queued events beyond which the oldest are dropped; push no more than a
/// few seconds of audio between polls (a digit takes at least 70 ms).
pub const EVENTS_MAX: usize = 128;

/// Row (low group) then column (high group) frequencies, in hertz.
const BIN_HZ: [f32; 8] = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];

/// Tunable limits; [`InbandConfig::default`] is the Q.24 setting described
/// in the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct InbandConfig {
    /// Weakest tone, per frequency, that can make a digit.
    pub level_min_dbm0: f32,
    /// How far the high group may be below the low group.
    pub normal_twist_max_db: f32,
    /// How far the high group may be above the low group.
    pub reverse_twist_max_db: f32,
    /// Frequency offset beyond which a tone is refused, in percent.
    pub frequency_tolerance_pct: f32,
    /// Shortest tone that is a digit.
    pub tone_min_ms: u32,
}

impl Default for InbandConfig {
    fn default() -> Self {
        InbandConfig {
            level_min_dbm0: -32.0,
            normal_twist_max_db: 9.5,
            reverse_twist_max_db: 5.5,
            frequency_tolerance_pct: 2.5,
            tone_min_ms: 30,
        }
    }
}

/// One recognised digit, in samples from the start of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitEvent {
    /// The key.
    pub digit: Digit,
    /// Estimated first sample of the tone.
    pub start_sample: u64,
    /// Estimated length of the tone.
    pub duration_samples: u64,
}

impl DigitEvent {
    /// The duration in whole milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.duration_samples * 1000 / u64::from(SAMPLE_RATE_HZ)
    }
}

/// What the detector reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InbandEvent {
    /// A digit has sounded for the minimum tone time and is still on.
    Started {
        /// The key.
        digit: Digit,
        /// Estimated first sample of the tone.
        start_sample: u64,
    },
    /// A digit has ended (always preceded by its `Started`).
    Ended(DigitEvent),
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Cplx {
    re: f32,
    im: f32,
}

impl Cplx {
    fn from_angle(radians: f64) -> Cplx {
        Cplx {
            re: radians.cos() as f32,
            im: radians.sin() as f32,
        }
    }

    fn mul(self, other: Cplx) -> Cplx {
        Cplx {
            re: self.re * other.re - self.im * other.im,
            im: self.re * other.im + self.im * other.re,
        }
    }

    /// `self · conj(other)`.
    fn mul_conj(self, other: Cplx) -> Cplx {
        Cplx {
            re: self.re * other.re + self.im * other.im,
            im: self.im * other.re - self.re * other.im,
        }
    }

    fn add(self, other: Cplx) -> Cplx {
        Cplx {
            re: self.re + other.re,
            im: self.im + other.im,
        }
    }

    fn sub(self, other: Cplx) -> Cplx {
        Cplx {
            re: self.re - other.re,
            im: self.im - other.im,
        }
    }

    fn conj(self) -> Cplx {
        Cplx {
            re: self.re,
            im: -self.im,
        }
    }

    fn scale(self, factor: f32) -> Cplx {
        Cplx {
            re: self.re * factor,
            im: self.im * factor,
        }
    }

    fn norm_sqr(self) -> f32 {
        self.re * self.re + self.im * self.im
    }

    fn arg(self) -> f32 {
        self.im.atan2(self.re)
    }
}

/// Per-filter and per-key constants.
#[derive(Debug, Clone)]
struct Filters {
    /// 2 cos ω, the Goertzel feedback.
    two_cos: [f32; 8],
    cos: [f32; 8],
    sin: [f32; 8],
    /// e^(−jω(HALF_LEN−1)): turns a Goertzel output after a half-block into
    /// that half's DFT value.
    to_dft: [Cplx; 8],
    /// e^(−jω·HALF_LEN): shifts a DFT value by half a block; also removes
    /// the nominal phase advance across half a block.
    half_turn: [Cplx; 8],
    /// e^(−jω·BLOCK_LEN): removes the nominal phase advance across a block.
    block_turn: [Cplx; 8],
    /// How much of a column tone a row filter sees and the other way round,
    /// D(ω_col − ω_row)/L with D the Dirichlet sum over L samples, for each
    /// key, over a half-block and over a block.
    leak_half: [[Cplx; 4]; 4],
    leak_block: [[Cplx; 4]; 4],
    /// What a tone at frequency j puts into filter k over a block,
    /// D(ω_j − ω_k)/N, to tell the other filters' own content from side
    /// lobes of the fitted pair.
    spill: [[Cplx; 8]; 8],
}

/// ω for a frequency.
fn omega(hz: f32) -> f64 {
    std::f64::consts::TAU * f64::from(hz) / f64::from(SAMPLE_RATE_HZ)
}

/// Σ e^(jΔn) over `len` samples, divided by `len`.
fn dirichlet(delta: f64, len: usize) -> Cplx {
    let (mut re, mut im) = (0.0_f64, 0.0_f64);
    for n in 0..len {
        re += (delta * n as f64).cos();
        im += (delta * n as f64).sin();
    }
    Cplx {
        re: (re / len as f64) as f32,
        im: (im / len as f64) as f32,
    }
}

impl Filters {
    fn new() -> Filters {
        let mut f = Filters {
            two_cos: [0.0; 8],
            cos: [0.0; 8],
            sin: [0.0; 8],
            to_dft: [Cplx::default(); 8],
            half_turn: [Cplx::default(); 8],
            block_turn: [Cplx::default(); 8],
            leak_half: [[Cplx::default(); 4]; 4],
            leak_block: [[Cplx::default(); 4]; 4],
            spill: [[Cplx::default(); 8]; 8],
        };
        for (k, &hz) in BIN_HZ.iter().enumerate() {
            let w = omega(hz);
            f.two_cos[k] = (2.0 * w.cos()) as f32;
            f.cos[k] = w.cos() as f32;
            f.sin[k] = w.sin() as f32;
            f.to_dft[k] = Cplx::from_angle(-w * (HALF_LEN - 1) as f64);
            f.half_turn[k] = Cplx::from_angle(-w * HALF_LEN as f64);
            f.block_turn[k] = Cplx::from_angle(-w * BLOCK_LEN as f64);
        }
        for (r, &row_hz) in BIN_HZ[..4].iter().enumerate() {
            for (c, &col_hz) in BIN_HZ[4..].iter().enumerate() {
                let delta = omega(col_hz) - omega(row_hz);
                f.leak_half[r][c] = dirichlet(delta, HALF_LEN);
                f.leak_block[r][c] = dirichlet(delta, BLOCK_LEN);
            }
        }
        for (j, &tone_hz) in BIN_HZ.iter().enumerate() {
            for (k, &filter_hz) in BIN_HZ.iter().enumerate() {
                f.spill[j][k] = dirichlet(omega(tone_hz) - omega(filter_hz), BLOCK_LEN);
            }
        }
        f
    }
}

/// The two tones of a key fitted to a stretch of audio.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Fit {
    /// Complex amplitudes: the row tone is Re(row · e^(jω n)) from the
    /// stretch's first sample, the column tone likewise.
    row: Cplx,
    col: Cplx,
}

impl Fit {
    /// Least-squares amplitudes of a row and a column tone at their nominal
    /// frequencies from the stretch's DFT values at those frequencies.
    /// Each DFT value also holds a little of the other tone (the filters'
    /// side lobes); solving the two equations together removes it, so that
    /// levels and phases do not wobble with the tones' relative phase.
    /// (Each tone's own negative-frequency image is 40 dB down and
    /// ignored.)
    fn solve(x_row: Cplx, x_col: Cplx, leak: Cplx, len: usize) -> Fit {
        let s = 2.0 / len as f32;
        let (u, v) = (x_row.scale(s), x_col.scale(s));
        // |leak| stays below 0.15 for every key, so this never nears zero.
        let inverse_det = 1.0 / (1.0 - leak.norm_sqr());
        Fit {
            row: u.sub(leak.mul(v)).scale(inverse_det),
            col: v.sub(leak.conj().mul(u)).scale(inverse_det),
        }
    }

    /// Like [`Fit::solve`] over a block, but with the two tones at
    /// `tone_hz` (row, column) seen through filters at `filter_hz`: each
    /// filter's response to each tone is the Dirichlet kernel of their
    /// distance, which covers both the side lobes and the loss of a tone
    /// off the filter's frequency.
    fn solve_at(x_row: Cplx, x_col: Cplx, tone_hz: [f32; 2], filter_hz: [f32; 2]) -> Fit {
        let response = |tone: f32, filter: f32| {
            let delta = std::f32::consts::TAU * (tone - filter) / SAMPLE_RATE_HZ as f32;
            let half = delta / 2.0;
            let n = BLOCK_LEN as f32;
            let gain = if half.sin().abs() < 1e-6 {
                1.0
            } else {
                (n * half).sin() / (n * half.sin())
            };
            Cplx::from_angle(f64::from(half * (n - 1.0))).scale(gain)
        };
        let (rr, cr) = (
            response(tone_hz[0], filter_hz[0]),
            response(tone_hz[1], filter_hz[0]),
        );
        let (rc, cc) = (
            response(tone_hz[0], filter_hz[1]),
            response(tone_hz[1], filter_hz[1]),
        );
        let s = 2.0 / BLOCK_LEN as f32;
        let (u, v) = (x_row.scale(s), x_col.scale(s));
        let det = rr.mul(cc).sub(cr.mul(rc));
        let det_sqr = det.norm_sqr();
        if det_sqr < 1e-6 {
            // Cannot happen for tones within tolerance (|det| is near 1);
            // a degenerate answer just fails the level test.
            return Fit::default();
        }
        // Division by det: multiply by its conjugate over its norm.
        let inverse = det.conj().scale(1.0 / det_sqr);
        Fit {
            row: u.mul(cc).sub(v.mul(cr)).mul(inverse),
            col: v.mul(rr).sub(u.mul(rc)).mul(inverse),
        }
    }

    /// Mean-square power of the row and column tones.
    fn powers(&self) -> (f32, f32) {
        (self.row.norm_sqr() / 2.0, self.col.norm_sqr() / 2.0)
    }
}

/// Limits turned into the units the block analysis compares.
#[derive(Debug, Clone)]
struct Limits {
    /// Mean-square power of the weakest acceptable tone.
    level_min: f32,
    /// Power ratio low/high allowed (normal twist).
    normal_twist: f32,
    /// Power ratio high/low allowed (reverse twist).
    reverse_twist: f32,
    /// Frequency offset allowed, as a fraction.
    tolerance: f32,
    tone_min_samples: u64,
}

impl Limits {
    fn new(config: &InbandConfig) -> Limits {
        let db = |x: f32| 10f32.powf(x / 10.0);
        Limits {
            level_min: (DBM0_RMS * DBM0_RMS) as f32 * db(config.level_min_dbm0),
            normal_twist: db(config.normal_twist_max_db),
            reverse_twist: db(config.reverse_twist_max_db),
            tolerance: config.frequency_tolerance_pct / 100.0,
            tone_min_samples: u64::from(config.tone_min_ms) * u64::from(SAMPLE_RATE_HZ) / 1000,
        }
    }
}

/// Strongest other tone in a group must be this far (power ratio, 8 dB)
/// below the strongest.
const RELATIVE_PEAK: f32 = 6.3;
/// How far below the level floor a tone may read before its frequency
/// offset is measured (a quarter, −6 dB).
const SCREEN_LOSS: f32 = 0.25;
/// Share of a candidate block's energy the two tones must carry.
const TONE_SHARE_MIN: f32 = 0.7;
/// The two blocks that confirm a digit must match in power within this
/// ratio (2 dB), which makes sure both are (nearly) full of tone so that
/// their phases measure frequency without much bias.
const PAIR_MATCH: f32 = 1.585;
/// A block keeps a sounding digit alive at this fraction of its tones'
/// power (−8 dB, the tone filling 40 % of the block) ...
const HOLD_RATIO: f32 = 0.16;
/// ... and this share of the block's energy.
const HOLD_SHARE_MIN: f32 = 0.3;
/// Blocks in a row without the digit that end it.
const MISSES_TO_END: u8 = 2;
/// A block whose tone power is within this fraction of the reference is
/// taken as filled by the tone when estimating edges.
const FULL_COVERAGE: f32 = 0.95;

/// What one block showed.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// First sample of the block.
    start: u64,
    /// The block's DFT value at each tone.
    dft: [Cplx; 8],
    /// Mean-square power of each filter's output, side lobes and all.
    raw: [f32; 8],
    /// Mean-square power of the whole block.
    total: f32,
    /// Strongest row and column (0–3 and 4–7).
    row: usize,
    col: usize,
    /// Those two tones fitted.
    fit: Fit,
    /// Their mean-square powers.
    power_row: f32,
    power_col: f32,
    /// Share of the block's energy they carry.
    share: f32,
    /// Their mean-square powers refitted at their measured frequencies
    /// (candidates only).
    true_row: f32,
    true_col: f32,
    /// The digit this block is a candidate for, with the frequency offsets
    /// of its two tones measured within the block (hertz, ±78 Hz range).
    candidate: Option<(Digit, f32, f32)>,
}

impl Block {
    fn silent(start: u64) -> Block {
        Block {
            start,
            dft: [Cplx::default(); 8],
            raw: [0.0; 8],
            total: 0.0,
            row: 0,
            col: 4,
            fit: Fit::default(),
            power_row: 0.0,
            power_col: 0.0,
            share: 0.0,
            true_row: 0.0,
            true_col: 0.0,
            candidate: None,
        }
    }

    fn end(&self) -> u64 {
        self.start + BLOCK_LEN as u64
    }

    /// Mean-square powers of a key's two tones in this block.
    fn key_powers(&self, filters: &Filters, row: usize, col: usize) -> (f32, f32) {
        if row == self.row && col == self.col {
            return (self.power_row, self.power_col);
        }
        let leak = filters.leak_block[row][col - 4];
        Fit::solve(self.dft[row], self.dft[col], leak, BLOCK_LEN).powers()
    }
}

/// A digit being heard.
#[derive(Debug, Clone, Copy)]
struct Sounding {
    digit: Digit,
    row: usize,
    col: usize,
    start: u64,
    /// Strongest tone powers seen, the reference for "filled" and "held".
    ref_row: f32,
    ref_col: f32,
    /// Last block that held the digit, and how much of it the tone filled.
    last_held: Block,
    last_held_coverage: f32,
    /// How much of the first block after it still carried the digit.
    first_miss_coverage: f32,
    misses: u8,
    announced: bool,
}

impl Sounding {
    /// How much of a block (0 to 1) this digit's tones fill, judged by
    /// amplitude against the strongest block seen.
    fn coverage(&self, filters: &Filters, block: &Block) -> f32 {
        let reference = self.ref_row + self.ref_col;
        if reference <= 0.0 {
            return 0.0;
        }
        let (p_row, p_col) = block.key_powers(filters, self.row, self.col);
        ((p_row + p_col) / reference).sqrt().clamp(0.0, 1.0)
    }

    /// Estimated end of the tone, from the last block that held it and the
    /// first that did not (if one has been seen since).
    fn end_estimate(&self) -> u64 {
        let block = BLOCK_LEN as f32;
        if self.last_held_coverage < FULL_COVERAGE {
            // The tone stopped inside the last block that held it.
            self.last_held.start + (self.last_held_coverage * block) as u64
        } else {
            self.last_held.end() + (self.first_miss_coverage * block) as u64
        }
    }
}

/// Streaming in-band DTMF detector. One per call leg.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    filters: Filters,
    limits: Limits,
    /// Goertzel state of the current half-block.
    s1: [f32; 8],
    s2: [f32; 8],
    energy: f32,
    /// Samples of the current half-block seen so far.
    filled: usize,
    /// Whether the current half is the second of its block.
    second_half: bool,
    /// DFT values and energy of the block's first half.
    first_half: [Cplx; 8],
    first_half_energy: f32,
    /// Samples pushed since creation.
    position: u64,
    /// The previous two blocks, newest first.
    previous: Block,
    before_previous: Block,
    sounding: Option<Sounding>,
    events: VecDeque<InbandEvent>,
    events_dropped: u64,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    /// A detector with the Q.24 settings of the module documentation.
    pub fn new() -> InbandDetector {
        InbandDetector::with_config(&InbandConfig::default())
    }

    /// A detector with other limits (tests and experiments).
    pub fn with_config(config: &InbandConfig) -> InbandDetector {
        InbandDetector {
            filters: Filters::new(),
            limits: Limits::new(config),
            s1: [0.0; 8],
            s2: [0.0; 8],
            energy: 0.0,
            filled: 0,
            second_half: false,
            first_half: [Cplx::default(); 8],
            first_half_energy: 0.0,
            position: 0,
            previous: Block::silent(0),
            before_previous: Block::silent(0),
            sounding: None,
            events: VecDeque::new(),
            events_dropped: 0,
        }
    }

    /// Samples pushed so far; the time base of every event.
    pub fn samples_seen(&self) -> u64 {
        self.position
    }

    /// Events lost because more than [`EVENTS_MAX`] were queued unpolled.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Whether a digit is sounding now (confirmed, not yet ended).
    pub fn is_sounding(&self) -> bool {
        self.sounding.is_some_and(|s| s.announced)
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<InbandEvent> {
        self.events.pop_front()
    }

    /// Feeds audio: 8 kHz mono 16-bit linear samples, any number.
    pub fn push_samples(&mut self, mut samples: &[i16]) {
        while !samples.is_empty() {
            let take = (HALF_LEN - self.filled).min(samples.len());
            let (now, rest) = samples.split_at(take);
            self.accumulate(now);
            samples = rest;
            self.filled += take;
            self.position += take as u64;
            if self.filled == HALF_LEN {
                self.filled = 0;
                self.close_half();
            }
        }
    }

    /// Ends the stream: a digit still sounding is closed as if silence
    /// followed, and a partial block is discarded.
    pub fn finish(&mut self) {
        if let Some(sounding) = self.sounding.take() {
            self.close_digit(&sounding);
        }
        self.s1 = [0.0; 8];
        self.s2 = [0.0; 8];
        self.energy = 0.0;
        self.filled = 0;
        self.second_half = false;
        self.previous = Block::silent(self.position);
        self.before_previous = Block::silent(self.position);
    }

    /// The per-sample work, kept to plain arrays so that the eight
    /// recurrences become vector operations.
    #[inline]
    fn accumulate(&mut self, samples: &[i16]) {
        let two_cos = self.filters.two_cos;
        let mut s1 = self.s1;
        let mut s2 = self.s2;
        let mut energy = self.energy;
        for &sample in samples {
            let x = f32::from(sample);
            energy += x * x;
            for k in 0..8 {
                let s0 = x + two_cos[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        self.s1 = s1;
        self.s2 = s2;
        self.energy = energy;
    }

    fn close_half(&mut self) {
        let mut dft = [Cplx::default(); 8];
        for (k, v) in dft.iter_mut().enumerate() {
            let goertzel = Cplx {
                re: self.s1[k] - self.filters.cos[k] * self.s2[k],
                im: self.filters.sin[k] * self.s2[k],
            };
            *v = goertzel.mul(self.filters.to_dft[k]);
        }
        let energy = self.energy;
        self.s1 = [0.0; 8];
        self.s2 = [0.0; 8];
        self.energy = 0.0;
        if self.second_half {
            self.second_half = false;
            let block = self.analyse(&dft, energy);
            self.step(block);
        } else {
            self.second_half = true;
            self.first_half = dft;
            self.first_half_energy = energy;
        }
    }

    /// Block-level measurements and the per-block candidate tests.
    fn analyse(&self, second: &[Cplx; 8], second_energy: f32) -> Block {
        let filters = &self.filters;
        let start = self.position - BLOCK_LEN as u64;
        let n = BLOCK_LEN as f32;
        let mut block = Block::silent(start);
        for (k, (dft, raw)) in block.dft.iter_mut().zip(block.raw.iter_mut()).enumerate() {
            *dft = self.first_half[k].add(second[k].mul(filters.half_turn[k]));
            // A sine of amplitude A gives |X| = A·N/2 at its own
            // frequency, so 2|X|²/N² is its mean-square power.
            *raw = 2.0 * dft.norm_sqr() / (n * n);
        }
        block.total = (self.first_half_energy + second_energy) / n;
        block.row = strongest(&block.raw[..4]);
        block.col = 4 + strongest(&block.raw[4..]);
        let (row, col) = (block.row, block.col);
        block.fit = Fit::solve(
            block.dft[row],
            block.dft[col],
            filters.leak_block[row][col - 4],
            BLOCK_LEN,
        );
        (block.power_row, block.power_col) = block.fit.powers();
        if block.total > 0.0 {
            // Energy of the fitted pair, by the projection identity
            // Σ x·x̂ = Σ x̂² of a least-squares fit.
            let fitted = block.fit.row.mul_conj(block.dft[row]).re
                + block.fit.col.mul_conj(block.dft[col]).re;
            block.share = fitted / n / block.total;
        }

        let (p_row, p_col) = (block.power_row, block.power_col);
        let limits = &self.limits;
        // Every other filter, once the fitted pair's side lobes are taken
        // out of it, must be well below its group's tone.
        let peaks_ok = (0..8).filter(|&k| k != row && k != col).all(|k| {
            let spilled = block
                .fit
                .row
                .mul(filters.spill[row][k])
                .add(block.fit.col.mul(filters.spill[col][k]))
                .scale(n / 2.0);
            let own = 2.0 * block.dft[k].sub(spilled).norm_sqr() / (n * n);
            own * RELATIVE_PEAK <= if k < 4 { p_row } else { p_col }
        });
        // A tone off its nominal frequency reads low; the screen lets such
        // tones through, and their measured offset corrects them below.
        let plausible = p_row >= limits.level_min * SCREEN_LOSS
            && p_col >= limits.level_min * SCREEN_LOSS
            && block.share >= TONE_SHARE_MIN
            && peaks_ok;
        let Some(digit) = Digit::from_row_col(row, col - 4).filter(|_| plausible) else {
            return block;
        };
        let leak = filters.leak_half[row][col - 4];
        let first = Fit::solve(self.first_half[row], self.first_half[col], leak, HALF_LEN);
        let last = Fit::solve(second[row], second[col], leak, HALF_LEN);
        let hz_per_radian = SAMPLE_RATE_HZ as f32 / (std::f32::consts::TAU * HALF_LEN as f32);
        let offset = |a: Cplx, b: Cplx, k: usize| {
            b.mul_conj(a).mul(filters.half_turn[k]).arg() * hz_per_radian
        };
        let (offset_row_hz, offset_col_hz) = (
            offset(first.row, last.row, row),
            offset(first.col, last.col, col),
        );
        // Refit with the tones where they were measured to be: level and
        // twist then hold for tones off their nominal frequency too.
        let (true_row, true_col) = Fit::solve_at(
            block.dft[row],
            block.dft[col],
            [BIN_HZ[row] + offset_row_hz, BIN_HZ[col] + offset_col_hz],
            [BIN_HZ[row], BIN_HZ[col]],
        )
        .powers();
        let loud_enough = true_row >= limits.level_min && true_col >= limits.level_min;
        let twist_ok = true_col * limits.normal_twist >= true_row
            && true_col <= true_row * limits.reverse_twist;
        if loud_enough && twist_ok {
            block.candidate = Some((digit, offset_row_hz, offset_col_hz));
            (block.true_row, block.true_col) = (true_row, true_col);
        }
        block
    }

    /// Whether two consecutive candidate blocks for the same key have both
    /// tones within the frequency tolerance.
    fn frequencies_ok(&self, earlier: &Block, later: &Block) -> bool {
        let (Some((_, coarse_row_a, coarse_col_a)), Some((_, coarse_row_b, coarse_col_b))) =
            (earlier.candidate, later.candidate)
        else {
            return false;
        };
        let alias_hz = SAMPLE_RATE_HZ as f32 / BLOCK_LEN as f32;
        let check = |a: Cplx, b: Cplx, k: usize, coarse_hz: f32| {
            let turn = b.mul_conj(a).mul(self.filters.block_turn[k]);
            let fine_hz = turn.arg() * alias_hz / std::f32::consts::TAU;
            // The block-to-block phase is precise but only known modulo one
            // 78 Hz alias; the half-to-half phase is coarse but unambiguous.
            let offset_hz = [fine_hz - alias_hz, fine_hz, fine_hz + alias_hz]
                .into_iter()
                .min_by(|x, y| (x - coarse_hz).abs().total_cmp(&(y - coarse_hz).abs()))
                .unwrap_or(fine_hz);
            offset_hz.abs() <= self.limits.tolerance * BIN_HZ[k]
        };
        check(
            earlier.fit.row,
            later.fit.row,
            later.row,
            (coarse_row_a + coarse_row_b) / 2.0,
        ) && check(
            earlier.fit.col,
            later.fit.col,
            later.col,
            (coarse_col_a + coarse_col_b) / 2.0,
        )
    }

    fn step(&mut self, block: Block) {
        // First, does the digit already sounding go on?
        if let Some(mut sounding) = self.sounding.take() {
            let held = block.row == sounding.row
                && block.col == sounding.col
                && block.power_row >= sounding.ref_row * HOLD_RATIO
                && block.power_col >= sounding.ref_col * HOLD_RATIO
                && block.power_row >= self.limits.level_min * HOLD_RATIO
                && block.power_col >= self.limits.level_min * HOLD_RATIO
                && block.share >= HOLD_SHARE_MIN;
            if held {
                sounding.ref_row = sounding.ref_row.max(block.power_row);
                sounding.ref_col = sounding.ref_col.max(block.power_col);
                sounding.last_held = block;
                sounding.last_held_coverage = sounding.coverage(&self.filters, &block);
                sounding.misses = 0;
                sounding.first_miss_coverage = 0.0;
                let heard_until = if sounding.last_held_coverage < FULL_COVERAGE {
                    sounding.end_estimate()
                } else {
                    block.end()
                };
                self.announce_if_long(&mut sounding, heard_until);
                self.sounding = Some(sounding);
            } else {
                if sounding.misses == 0 {
                    sounding.first_miss_coverage = sounding.coverage(&self.filters, &block);
                }
                sounding.misses += 1;
                if sounding.misses >= MISSES_TO_END {
                    self.close_digit(&sounding);
                } else {
                    self.sounding = Some(sounding);
                }
            }
        }

        // Then, does a new digit start?
        if self.sounding.is_none() {
            if let Some(digit) = self.confirmed_pair(&block) {
                self.confirm(digit, &block);
            }
        }

        self.before_previous = self.previous;
        self.previous = block;
    }

    /// The key that the previous block and this one confirm together:
    /// candidates for the same key, of matching strength, with both tones'
    /// frequencies in tolerance.
    fn confirmed_pair(&self, block: &Block) -> Option<Digit> {
        let earlier = &self.previous;
        let (Some((digit, ..)), Some((later, ..))) = (earlier.candidate, block.candidate) else {
            return None;
        };
        let matched = |a: f32, b: f32| a <= b * PAIR_MATCH && b <= a * PAIR_MATCH;
        let confirmed = digit == later
            && matched(earlier.true_row, block.true_row)
            && matched(earlier.true_col, block.true_col)
            && self.frequencies_ok(earlier, block);
        confirmed.then_some(digit)
    }

    fn confirm(&mut self, digit: Digit, block: &Block) {
        let earlier = self.previous;
        let mut sounding = Sounding {
            digit,
            row: block.row,
            col: block.col,
            start: earlier.start,
            ref_row: earlier.power_row.max(block.power_row),
            ref_col: earlier.power_col.max(block.power_col),
            last_held: *block,
            last_held_coverage: 1.0,
            first_miss_coverage: 0.0,
            misses: 0,
            announced: false,
        };
        // The confirming blocks are (nearly) full of tone. If the earlier
        // one is not quite, the tone began inside it; otherwise the block
        // before holds the onset, if any of it.
        let block_len = BLOCK_LEN as f32;
        let filled = sounding.coverage(&self.filters, &earlier);
        sounding.start = if filled < FULL_COVERAGE {
            earlier.end() - (filled * block_len) as u64
        } else {
            let onset = sounding.coverage(&self.filters, &self.before_previous);
            earlier.start.saturating_sub((onset * block_len) as u64)
        };
        self.announce_if_long(&mut sounding, block.end());
        self.sounding = Some(sounding);
    }

    fn announce_if_long(&mut self, sounding: &mut Sounding, heard_until: u64) {
        if !sounding.announced
            && heard_until.saturating_sub(sounding.start) >= self.limits.tone_min_samples
        {
            sounding.announced = true;
            self.emit(InbandEvent::Started {
                digit: sounding.digit,
                start_sample: sounding.start,
            });
        }
    }

    fn close_digit(&mut self, sounding: &Sounding) {
        let end = sounding.end_estimate().max(sounding.start);
        let duration = end - sounding.start;
        if !sounding.announced {
            if duration < self.limits.tone_min_samples {
                // Too short to be a digit (Q.24 non-operate time).
                return;
            }
            self.emit(InbandEvent::Started {
                digit: sounding.digit,
                start_sample: sounding.start,
            });
        }
        self.emit(InbandEvent::Ended(DigitEvent {
            digit: sounding.digit,
            start_sample: sounding.start,
            duration_samples: duration,
        }));
    }

    fn emit(&mut self, event: InbandEvent) {
        if self.events.len() >= EVENTS_MAX {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }
}

/// Index of the largest value.
fn strongest(powers: &[f32]) -> usize {
    let mut best = 0;
    for (k, &p) in powers.iter().enumerate() {
        if p > powers[best] {
            best = k;
        }
    }
    best
}

/// Runs a detector over a whole recording and returns the digits heard.
pub fn detect_digits(samples: &[i16]) -> Vec<DigitEvent> {
    let mut detector = InbandDetector::new();
    let mut found = Vec::new();
    // Feed in packet-sized pieces so that the event queue never fills.
    for chunk in samples.chunks(160) {
        detector.push_samples(chunk);
        while let Some(event) = detector.poll_event() {
            if let InbandEvent::Ended(digit) = event {
                found.push(digit);
            }
        }
    }
    detector.finish();
    while let Some(event) = detector.poll_event() {
        if let InbandEvent::Ended(digit) = event {
            found.push(digit);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::generate::{DualTone, RenderOptions, render_digits};
    use super::*;

    /// Deterministic noise: xorshift64* with Box–Muller for Gaussian
    /// samples, so that every run sees the same signal.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        fn gaussian(&mut self) -> f64 {
            let u1 = self.uniform().max(1e-300);
            let u2 = self.uniform();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }

    fn ms(n: usize) -> usize {
        n * SAMPLE_RATE_HZ as usize / 1000
    }

    fn digits(events: &[DigitEvent]) -> String {
        events.iter().map(|e| e.digit.to_char()).collect()
    }

    /// `lead` samples of silence, the tone, 100 ms of silence.
    fn tone_alone(tone: &DualTone, lead: usize, samples: usize) -> Vec<i16> {
        let mut audio = vec![0; lead];
        tone.render_into(samples, &mut audio);
        audio.resize(audio.len() + ms(100), 0);
        audio
    }

    #[test]
    fn all_sixteen_keys_with_their_timing() {
        let options = RenderOptions::default();
        let keys = "0123456789*#ABCD";
        let audio = render_digits(keys, &options).unwrap_or_default();
        let found = detect_digits(&audio);
        assert_eq!(digits(&found), keys);
        for (i, event) in found.iter().enumerate() {
            let start = ms(200 + 200 * i) as i64;
            assert!(
                (event.start_sample as i64 - start).abs() <= 16,
                "{event:?} should start at {start}"
            );
            assert!(
                (event.duration_samples as i64 - ms(100) as i64).abs() <= 24,
                "{event:?} should last 800 samples"
            );
        }
    }

    #[test]
    fn started_comes_early_and_ended_after() {
        let tone = DualTone::for_digit(Digit::D7, -10.0, 0.0);
        let audio = tone_alone(&tone, 400, ms(500));
        let mut detector = InbandDetector::new();
        let mut started_at = None;
        let mut ended_at = None;
        for (i, chunk) in audio.chunks(160).enumerate() {
            detector.push_samples(chunk);
            while let Some(event) = detector.poll_event() {
                let at = (i + 1) * 160;
                match event {
                    InbandEvent::Started { digit, .. } => {
                        assert_eq!(digit, Digit::D7);
                        assert!(started_at.replace(at).is_none());
                    }
                    InbandEvent::Ended(e) => {
                        assert_eq!(e.digit, Digit::D7);
                        assert!(ended_at.replace(at).is_none());
                    }
                }
            }
        }
        // Reported within 60 ms of the tone's start, ended within 60 ms
        // of its end.
        let started_at = started_at.unwrap_or(usize::MAX);
        let ended_at = ended_at.unwrap_or(usize::MAX);
        assert!(started_at <= 400 + ms(60), "started at {started_at}");
        assert!(
            ended_at > 400 + ms(500) && ended_at <= 400 + ms(560),
            "ended at {ended_at}"
        );
    }

    #[test]
    fn frequency_within_1_5_percent_is_accepted_and_beyond_3_5_rejected() {
        let mut checked = 0;
        for (n, digit) in Digit::ALL.iter().enumerate() {
            let nominal = DualTone::for_digit(*digit, -10.0, 0.0);
            for step in -20_i32..=20 {
                let pct = f64::from(step) * 0.25;
                if pct.abs() > 1.5 && pct.abs() < 3.5 {
                    continue;
                }
                for high in [false, true] {
                    let mut tone = nominal;
                    if high {
                        tone.high_hz *= 1.0 + pct / 100.0;
                    } else {
                        tone.low_hz *= 1.0 + pct / 100.0;
                    }
                    let lead = 37 * (n + 3 * step.unsigned_abs() as usize) % BLOCK_LEN;
                    let found = digits(&detect_digits(&tone_alone(&tone, lead, ms(60))));
                    let expected = if pct.abs() <= 1.5 {
                        digit.to_string()
                    } else {
                        String::new()
                    };
                    assert_eq!(
                        found,
                        expected,
                        "{digit} with {} tone off by {pct} %",
                        if high { "high" } else { "low" }
                    );
                    checked += 1;
                }
            }
        }
        // 41 steps of 0.25 % less the 14 between the two limits.
        assert_eq!(checked, 16 * 2 * 27);
    }

    #[test]
    fn twist_up_to_8_db_normal_and_4_db_reverse_is_accepted() {
        for (n, digit) in Digit::ALL.iter().enumerate() {
            for (low_dbm0, twist_db, accept) in [
                (-4.0, -8.0, true),
                (-18.0, -8.0, true),
                (-8.0, 4.0, true),
                (-22.0, 4.0, true),
                (-4.0, -10.5, false),
                (-14.0, -10.5, false),
                (-8.0, 6.5, false),
                (-20.0, 6.5, false),
            ] {
                let tone = DualTone::for_digit(*digit, low_dbm0, twist_db);
                let found = digits(&detect_digits(&tone_alone(&tone, 11 * n, ms(60))));
                let expected = if accept {
                    digit.to_string()
                } else {
                    String::new()
                };
                assert_eq!(
                    found, expected,
                    "{digit} at {low_dbm0} dBm0 with twist {twist_db} dB"
                );
            }
        }
    }

    #[test]
    fn level_down_to_minus_26_dbm0_is_accepted_and_below_the_floor_rejected() {
        for (n, digit) in Digit::ALL.iter().enumerate() {
            for (level, accept) in [(-3.0, true), (-26.0, true), (-35.0, false), (-45.0, false)] {
                let tone = DualTone::for_digit(*digit, level, 0.0);
                let found = digits(&detect_digits(&tone_alone(&tone, 13 * n, ms(60))));
                let expected = if accept {
                    digit.to_string()
                } else {
                    String::new()
                };
                assert_eq!(found, expected, "{digit} at {level} dBm0 per tone");
            }
        }
    }

    /// The limits together: weakest tone at −26 dBm0 or strongest twist,
    /// with both tones 1.5 % off in every direction, for every key.
    #[test]
    fn limits_combined_are_accepted() {
        for (n, digit) in Digit::ALL.iter().enumerate() {
            for (low_dbm0, twist_db) in [(-18.0, -8.0), (-26.0, 4.0), (-6.0, -8.0), (-10.0, 4.0)] {
                for (low_pct, high_pct) in [(1.5, 1.5), (-1.5, -1.5), (1.5, -1.5), (-1.5, 1.5)] {
                    let mut tone = DualTone::for_digit(*digit, low_dbm0, twist_db);
                    tone.low_hz *= 1.0 + low_pct / 100.0;
                    tone.high_hz *= 1.0 + high_pct / 100.0;
                    let lead = (29 * n + 7 * (low_dbm0 as i32).unsigned_abs() as usize) % BLOCK_LEN;
                    let found = digits(&detect_digits(&tone_alone(&tone, lead, ms(50))));
                    assert_eq!(
                        found,
                        digit.to_string(),
                        "{digit} at {low_dbm0} dBm0, twist {twist_db} dB, off {low_pct}/{high_pct} %"
                    );
                }
            }
        }
    }

    /// Adds white Gaussian noise `snr_db` below the power of the signal's
    /// tones (`tone_power`, mean square), over the whole 0–4 kHz band.
    fn add_noise(audio: &mut [i16], tone_power: f64, snr_db: f64, rng: &mut Rng) {
        let sigma = (tone_power / 10f64.powf(snr_db / 10.0)).sqrt();
        for s in audio.iter_mut() {
            let v = f64::from(*s) + sigma * rng.gaussian();
            *s = v.round().clamp(-32_768.0, 32_767.0) as i16;
        }
    }

    #[test]
    fn noise_at_15_db_snr_costs_no_digit() {
        let mut rng = Rng(0x5EED_D7F0);
        let keys: String = (0..10).map(|_| "0123456789*#ABCD").collect();
        for level in [-10.0, -20.0, -26.0] {
            for (tone_ms, pause_ms) in [(40, 40), (60, 60)] {
                let options = RenderOptions {
                    tone_ms,
                    pause_ms,
                    lead_ms: 100,
                    tail_ms: 100,
                    level_dbm0: level,
                    twist_db: 0.0,
                };
                let mut audio = render_digits(&keys, &options).unwrap_or_default();
                let amplitude = super::super::generate::amplitude_for_dbm0(level);
                // Two tones, each of mean square A²/2.
                add_noise(&mut audio, amplitude * amplitude, 15.0, &mut rng);
                let found = digits(&detect_digits(&audio));
                assert_eq!(found, keys, "at {level} dBm0, {tone_ms}/{pause_ms} ms");
            }
        }
    }

    #[test]
    fn noise_alone_gives_no_digit() {
        let mut rng = Rng(42);
        let mut audio = vec![0_i16; ms(60_000)];
        add_noise(&mut audio, 16_000.0 * 16_000.0, 10.0, &mut rng);
        assert_eq!(digits(&detect_digits(&audio)), "");
    }

    #[test]
    fn tones_of_40_ms_are_digits_and_of_25_ms_are_not_wherever_they_fall() {
        for lead in 0..BLOCK_LEN {
            let digit = Digit::ALL[lead % 16];
            for level in [-10.0, -26.0] {
                let tone = DualTone::for_digit(digit, level, 0.0);
                let found = digits(&detect_digits(&tone_alone(&tone, lead, ms(40))));
                assert_eq!(
                    found,
                    digit.to_string(),
                    "40 ms at offset {lead}, {level} dBm0"
                );
                for short_ms in [20, 25] {
                    let found = digits(&detect_digits(&tone_alone(&tone, lead, ms(short_ms))));
                    assert_eq!(found, "", "{short_ms} ms at offset {lead}, {level} dBm0");
                }
            }
        }
    }

    #[test]
    fn pauses_of_40_ms_split_digits_and_of_12_ms_do_not() {
        for lead in 0..BLOCK_LEN {
            let digit = Digit::ALL[lead % 16];
            for level in [-10.0, -26.0] {
                let tone = DualTone::for_digit(digit, level, 0.0);
                for (gap, expected) in [(ms(40), 2), (ms(60), 2), (96, 1), (ms(5), 1)] {
                    let mut audio = vec![0; lead];
                    tone.render_into(ms(60), &mut audio);
                    audio.resize(audio.len() + gap, 0);
                    tone.render_into(ms(60), &mut audio);
                    audio.resize(audio.len() + ms(100), 0);
                    let found = detect_digits(&audio);
                    assert_eq!(
                        found.len(),
                        expected,
                        "gap of {gap} samples at offset {lead}, {level} dBm0: {found:?}"
                    );
                    assert!(found.iter().all(|e| e.digit == digit));
                }
            }
        }
    }

    #[test]
    fn chunk_sizes_do_not_change_the_result() {
        let audio = render_digits("159#D", &RenderOptions::default()).unwrap_or_default();
        let whole = {
            let mut d = InbandDetector::new();
            d.push_samples(&audio);
            d.finish();
            std::iter::from_fn(|| d.poll_event()).collect::<Vec<_>>()
        };
        assert_eq!(whole.len(), 10);
        let mut rng = Rng(7);
        for _ in 0..5 {
            let mut d = InbandDetector::new();
            let mut rest = audio.as_slice();
            while !rest.is_empty() {
                let take = (rng.next_u64() % 300) as usize % (rest.len() + 1);
                let (now, later) = rest.split_at(take);
                d.push_samples(now);
                rest = later;
            }
            d.finish();
            let events: Vec<_> = std::iter::from_fn(|| d.poll_event()).collect();
            assert_eq!(events, whole);
        }
    }

    #[test]
    fn a_long_press_is_one_digit() {
        let tone = DualTone::for_digit(Digit::D0, -12.0, -2.0);
        let found = detect_digits(&tone_alone(&tone, 0, ms(10_000)));
        assert_eq!(found.len(), 1);
        assert!((found[0].duration_samples as i64 - ms(10_000) as i64).abs() < 24);
    }

    #[test]
    fn a_digit_still_sounding_at_the_end_is_closed_by_finish() {
        let tone = DualTone::for_digit(Digit::Hash, -10.0, 0.0);
        let mut detector = InbandDetector::new();
        detector.push_samples(&tone.render(ms(200)));
        assert!(matches!(
            detector.poll_event(),
            Some(InbandEvent::Started {
                digit: Digit::Hash,
                ..
            })
        ));
        assert_eq!(detector.poll_event(), None);
        detector.finish();
        assert!(
            matches!(detector.poll_event(), Some(InbandEvent::Ended(e)) if e.digit == Digit::Hash)
        );
    }

    /// Found by fuzzing: a dropout that cost one block, then the tone
    /// again, then the end of the stream, once put the end past the audio.
    #[test]
    fn events_stay_within_the_audio_whatever_the_cut() {
        let tone = DualTone::for_digit(Digit::Hash, -10.0, 0.0);
        for lead in (0..BLOCK_LEN).step_by(17) {
            let mut audio = vec![0; lead];
            tone.render_into(ms(60), &mut audio);
            audio.resize(audio.len() + 80, 0);
            tone.render_into(ms(100), &mut audio);
            for cut in (ms(30)..audio.len()).step_by(23) {
                let mut detector = InbandDetector::new();
                detector.push_samples(&audio[..cut]);
                detector.finish();
                let mut open = None;
                while let Some(event) = detector.poll_event() {
                    match event {
                        InbandEvent::Started { start_sample, .. } => {
                            assert!(open.replace(start_sample).is_none());
                        }
                        InbandEvent::Ended(e) => {
                            assert_eq!(open.take(), Some(e.start_sample));
                            assert!(
                                e.start_sample + e.duration_samples <= cut as u64,
                                "lead {lead}, cut {cut}: {e:?}"
                            );
                        }
                    }
                }
                assert_eq!(open, None);
            }
        }
    }

    /// Where the FSDD recordings are: `TELEPAY_FSDD_DIR`, else the shared
    /// data folder beside the repository.
    fn fsdd_dir() -> std::path::PathBuf {
        match std::env::var_os("TELEPAY_FSDD_DIR") {
            Some(dir) => dir.into(),
            None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fsdd"),
        }
    }

    /// Talk-off: real speech (the Free Spoken Digit Dataset) must never
    /// make a digit. The folder must exist; a missing folder fails.
    #[test]
    fn talk_off_no_digit_in_any_fsdd_recording() {
        let dir = fsdd_dir();
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!("FSDD folder {dir:?} is missing ({e}); set TELEPAY_FSDD_DIR")
        });
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no WAV files in {dir:?}");
        let mut talk_off = Vec::new();
        for (path, result) in super::super::detect::detect_files(&files) {
            match result {
                Ok(found) if found.is_empty() => {}
                Ok(found) => talk_off.push(format!("{}: {found}", path.display())),
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
        assert!(
            talk_off.is_empty(),
            "digits in speech ({} of {} files): {talk_off:?}",
            talk_off.len(),
            files.len()
        );
    }
}
