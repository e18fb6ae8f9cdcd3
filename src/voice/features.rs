//! From audio to the vectors the models read: speech "atoms" (voiced stretches split at short
//! pauses), the fixed-size vector of a stretch for the digit classifier, and the per-digit state
//! vectors of the voice print.

use super::dsp::{self, Features, Frontend};
use super::endpoint::{FrameVad, VadAggressiveness, frame_dbfs};

/// VAD block: 10 ms.
pub const BLOCK: usize = 80;
/// Cepstra the digit classifier reads (c0..c15) and the time grid it resamples them to.
pub const DIGIT_CEPSTRA: usize = 16;
pub const DIGIT_FRAMES: usize = 20;
/// Length of the classifier's input: statics and deltas on the grid, plus log duration.
pub const DIGIT_INPUTS: usize = DIGIT_FRAMES * DIGIT_CEPSTRA * 2 + 1;
/// Padding around a stretch before analysis, in samples (30 ms).
pub const PAD_SAMPLES: usize = 240;
/// Atoms closer than this (in 10 ms blocks) are one atom.
pub const GAP_MERGE_BLOCKS: usize = 8;
/// Atoms shorter than this (in blocks) are dropped as clicks.
pub const ATOM_BLOCKS_MIN: usize = 3;
/// Bound on atoms per utterance (the decoder's work is quadratic in it).
pub const ATOMS_MAX: usize = 64;

/// A voiced stretch in samples, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Finds voiced stretches: webrtc-vad (or a loud frame) above a floor relative to the loudest
/// part of the utterance, with pauses shorter than `GAP_MERGE_BLOCKS` closed.
pub fn speech_atoms(samples: &[i16]) -> Vec<Span> {
    let mut vad = FrameVad::new(VadAggressiveness::Aggressive, -200.0);
    let blocks: Vec<(bool, f32)> = samples
        .chunks_exact(BLOCK)
        .map(|b| (vad.is_voiced(b), frame_dbfs(b)))
        .collect();
    let loudest = blocks.iter().fold(-120.0f32, |m, b| m.max(b.1));
    let voiced: Vec<bool> = blocks
        .iter()
        .map(|&(v, db)| (v || db > loudest - 20.0) && db > loudest - 35.0 && db > -55.0)
        .collect();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, &v) in voiced.iter().chain(std::iter::once(&false)).enumerate() {
        match (v, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                match runs.last_mut() {
                    Some(last) if s - last.1 < GAP_MERGE_BLOCKS => last.1 = i,
                    _ => runs.push((s, i)),
                }
                start = None;
            }
            _ => {}
        }
    }
    runs.retain(|r| r.1 - r.0 >= ATOM_BLOCKS_MIN);
    if runs.len() > ATOMS_MAX {
        // Too fragmented to decode piecewise: keep the loud extent as one stretch.
        let (s, e) = (runs[0].0, runs[runs.len() - 1].1);
        runs = vec![(s, e)];
    }
    runs.into_iter()
        .map(|(s, e)| Span {
            start: s * BLOCK,
            end: e * BLOCK,
        })
        .collect()
}

/// Whole-utterance analysis shared by every stretch decoded from it.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub mfcc: Features,
    pub samples_len: usize,
    /// The same audio through vocal-tract-warped front ends, for the classifier to average
    /// over (test-time warps); empty when not wanted.
    pub warped: Vec<Features>,
}

pub fn analyse(frontend: &Frontend, samples: &[f32]) -> Analysis {
    Analysis {
        mfcc: frontend.mfcc(samples),
        samples_len: samples.len(),
        warped: Vec::new(),
    }
}

/// [`analyse`] plus the cepstra through each of `warps` (see [`Analysis::warped`]).
pub fn analyse_warped(frontend: &Frontend, warps: &[Frontend], samples: &[f32]) -> Analysis {
    let mut analysis = analyse(frontend, samples);
    analysis.warped = warps.iter().map(|w| w.mfcc(samples)).collect();
    analysis
}

impl Analysis {
    /// MFCC frames covering a span (padded), as `[from, to)` frame indices.
    pub fn frames_of(&self, span: Span) -> (usize, usize) {
        let start = span.start.saturating_sub(PAD_SAMPLES);
        let end = (span.end + PAD_SAMPLES).min(self.samples_len);
        let from = start / dsp::FRAME_HOP;
        let to = (end.saturating_sub(dsp::FRAME_LEN) / dsp::FRAME_HOP + 1).min(self.mfcc.rows());
        (from.min(to), to)
    }

    /// Columns `first..first+count` of frames `[from, to)`, mean-normalised.
    pub fn normalised(&self, from: usize, to: usize, first: usize, count: usize) -> Features {
        normalised(&self.mfcc, from, to, first, count)
    }
}

fn normalised(mfcc: &Features, from: usize, to: usize, first: usize, count: usize) -> Features {
    let mut out = Features::new(count);
    for r in from..to.min(mfcc.rows()) {
        out.data
            .extend_from_slice(&mfcc.row(r)[first..first + count]);
    }
    dsp::mean_normalise(&mut out);
    out
}

/// Scales each column to unit variance over the rows.
pub fn variance_normalise(features: &mut Features) {
    let rows = features.rows();
    if rows < 2 {
        return;
    }
    let dims = features.dims;
    for c in 0..dims {
        let var = (0..rows)
            .map(|r| features.data[r * dims + c].powi(2))
            .sum::<f32>()
            / rows as f32;
        let scale = 1.0 / var.sqrt().max(1e-3);
        for r in 0..rows {
            features.data[r * dims + c] *= scale;
        }
    }
}

/// Linear interpolation of a feature track onto `frames` points.
pub fn resample_track(track: &Features, frames: usize) -> Vec<f32> {
    let rows = track.rows();
    let mut out = Vec::with_capacity(frames * track.dims);
    if rows == 0 {
        out.resize(frames * track.dims, 0.0);
        return out;
    }
    for i in 0..frames {
        let pos = if frames > 1 {
            i as f32 * (rows - 1) as f32 / (frames - 1) as f32
        } else {
            0.0
        };
        let k = (pos as usize).min(rows - 1);
        let next = (k + 1).min(rows - 1);
        let frac = pos - k as f32;
        let (a, b) = (track.row(k), track.row(next));
        out.extend(a.iter().zip(b).map(|(x, y)| x + (y - x) * frac));
    }
    out
}

/// The digit classifier's input for frames `[from, to)`; `None` when too short to analyse.
pub fn digit_vector(analysis: &Analysis, from: usize, to: usize) -> Option<Vec<f32>> {
    track_vector(&analysis.mfcc, from, to)
}

/// The classifier's inputs for frames `[from, to)` of the plain and of every warped analysis.
pub fn digit_vectors(analysis: &Analysis, from: usize, to: usize) -> Vec<Vec<f32>> {
    std::iter::once(&analysis.mfcc)
        .chain(&analysis.warped)
        .filter_map(|m| track_vector(m, from, to))
        .collect()
}

fn track_vector(mfcc: &Features, from: usize, to: usize) -> Option<Vec<f32>> {
    if to < from + 4 || to > mfcc.rows() {
        return None;
    }
    let statics = normalised(mfcc, from, to, 0, DIGIT_CEPSTRA);
    let delta = dsp::deltas(&statics, 2);
    let mut both = Features::new(DIGIT_CEPSTRA * 2);
    for r in 0..statics.rows() {
        both.data.extend_from_slice(statics.row(r));
        both.data.extend_from_slice(delta.row(r));
    }
    let mut v = resample_track(&both, DIGIT_FRAMES);
    v.push(((to - from) as f32).ln());
    Some(v)
}

/// Cepstra the voice print reads (c1..c19): the speaker lives in the finer spectral shape.
pub const PRINT_FIRST: usize = 1;
pub const PRINT_CEPSTRA: usize = 29;
pub const PRINT_DIMS: usize = PRINT_CEPSTRA;
/// States per digit in the voice print's alignment.
pub const PRINT_STATES: usize = 8;

/// Mean-normalised voice-print frames `[from, to)`.
pub fn print_frames(analysis: &Analysis, from: usize, to: usize) -> Features {
    let mut statics = Features::new(PRINT_CEPSTRA);
    for r in from..to {
        statics
            .data
            .extend_from_slice(&analysis.mfcc.row(r)[PRINT_FIRST..PRINT_FIRST + PRINT_CEPSTRA]);
    }
    if PRINT_DIMS == PRINT_CEPSTRA {
        return statics;
    }
    let delta = dsp::deltas(&statics, 2);
    let mut out = Features::new(PRINT_DIMS);
    for r in 0..statics.rows() {
        out.data.extend_from_slice(statics.row(r));
        out.data.extend_from_slice(delta.row(r));
    }
    out
}

/// Aligns frames to `states` left-to-right states (each at least one frame) against state
/// means `model` (or uniformly when `model` is `None`), and returns the per-state mean vectors.
pub fn state_means(frames: &Features, model: Option<&[f32]>, states: usize) -> Option<Vec<f32>> {
    let t_len = frames.rows();
    let dims = frames.dims;
    if t_len < states || states == 0 {
        return None;
    }
    let assignment: Vec<usize> = match model {
        Some(means) if means.len() == states * dims => {
            // Viterbi over a strict left-to-right chain with self loops.
            let cost = |t: usize, s: usize| -> f32 {
                frames
                    .row(t)
                    .iter()
                    .zip(&means[s * dims..(s + 1) * dims])
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum()
            };
            let mut score = vec![f32::INFINITY; t_len * states];
            let mut from_previous = vec![false; t_len * states];
            score[0] = cost(0, 0);
            for t in 1..t_len {
                for s in 0..states {
                    let stay = score[(t - 1) * states + s];
                    let advance = if s > 0 {
                        score[(t - 1) * states + s - 1]
                    } else {
                        f32::INFINITY
                    };
                    let (best, moved) = if advance < stay {
                        (advance, true)
                    } else {
                        (stay, false)
                    };
                    if best.is_finite() {
                        score[t * states + s] = best + cost(t, s);
                        from_previous[t * states + s] = moved;
                    }
                }
            }
            let mut path = vec![0usize; t_len];
            let mut s = states - 1;
            for t in (0..t_len).rev() {
                path[t] = s;
                if t > 0 && from_previous[t * states + s] {
                    s = s.saturating_sub(1);
                }
            }
            path
        }
        _ => (0..t_len).map(|t| t * states / t_len).collect(),
    };
    let mut sums = vec![0.0f32; states * dims];
    let mut counts = vec![0usize; states];
    for (t, &s) in assignment.iter().enumerate() {
        counts[s] += 1;
        for (acc, v) in sums[s * dims..(s + 1) * dims].iter_mut().zip(frames.row(t)) {
            *acc += v;
        }
    }
    for s in 0..states {
        let n = counts[s].max(1) as f32;
        for v in &mut sums[s * dims..(s + 1) * dims] {
            *v /= n;
        }
    }
    Some(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoms_split_at_pauses_and_ignore_silence() {
        let word = |ms: usize| super::super::endpoint::tests_support::vowel(ms);
        let mut audio = vec![0i16; 8 * 300];
        audio.extend(word(400));
        audio.extend(vec![0i16; 8 * 300]);
        audio.extend(word(300));
        audio.extend(vec![0i16; 8 * 40]);
        audio.extend(word(300));
        audio.extend(vec![0i16; 8 * 300]);
        let atoms = speech_atoms(&audio);
        // The 40 ms gap closes; the 300 ms one does not.
        assert_eq!(atoms.len(), 2, "{atoms:?}");
        assert!((atoms[0].start as i64 - 2_400).abs() <= 160);
        assert!((atoms[1].end as i64 - 8 * 1_640).abs() <= 240, "{atoms:?}");
        assert!(speech_atoms(&vec![0i16; 8_000]).is_empty());
    }

    #[test]
    fn alignment_follows_a_step_change() {
        let mut frames = Features::new(1);
        for t in 0..20 {
            frames.data.push(if t < 5 { 0.0 } else { 10.0 });
        }
        let model = [0.0, 10.0];
        let means = state_means(&frames, Some(&model), 2).unwrap();
        assert_eq!(means, vec![0.0, 10.0]);
        let uniform = state_means(&frames, None, 2).unwrap();
        assert!(uniform[0] > 0.0);
        assert!(state_means(&frames, None, 30).is_none());
    }

    #[test]
    fn resampling_a_track_keeps_its_ends() {
        let mut track = Features::new(1);
        track.data = vec![1.0, 2.0, 3.0];
        assert_eq!(resample_track(&track, 5), vec![1.0, 1.5, 2.0, 2.5, 3.0]);
    }
}
