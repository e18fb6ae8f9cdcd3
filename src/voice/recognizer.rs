//! Spoken digits: the utterance is cut into voiced atoms at pauses, and a small dynamic
//! programme chooses how to group consecutive atoms into words (a digit split by its own stop
//! closure is one group; two digits run together stay two groups when a pause separates them),
//! scoring every candidate group with the classifier. The classifier has a class for "oh" (read
//! as 0) and a class for anything that is not a digit; groups won by the latter are dropped
//! (a click, a breath) unless they add up to 250 ms, which rejects the utterance (other speech).

use super::dsp::{Frontend, Rng};
use super::features::{self, Analysis, Span};
use super::nn::{Adam, Mlp, TrainConfig};
use super::wav;

/// Classifier outputs: digits 0–9, "oh" and "not a digit".
pub const CLASSES: usize = 12;
pub const CLASS_OH: usize = 10;
pub const CLASS_OTHER: usize = 11;
/// Longest string the recognizer returns.
pub const DIGITS_MAX: usize = 20;
/// Longest stretch (in samples) one digit may span: 1.6 s.
pub const GROUP_SAMPLES_MAX: usize = 8 * 1_600;
/// Hidden layer widths.
pub const HIDDEN: [usize; 2] = [96, 64];
/// Classifiers in the ensemble.
pub const MEMBERS: usize = 5;
/// Vocal tract warps of the extra analyses the classifier averages over at run time (besides
/// the plain one): a new speaker's formants lie somewhere between the training speakers'.
pub const TEST_WARPS: [f32; 4] = [0.9, 0.95, 1.05, 1.1];

/// Log-probability cost of a group dropped as "not a digit" in the grouping's score.
pub const DROP_COST: f32 = 3.0;

/// Recognizer settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognizerConfig {
    /// A string whose weakest digit has a lower probability is rejected.
    pub reject_below: f32,
    /// Non-digit speech at least this long in total rejects the utterance.
    pub other_speech_ms_max: u32,
    /// A group is "not a digit" when that class' log-odds against all digits together
    /// exceed this margin (0: it is the more probable of the two).
    pub other_penalty: f32,
}

impl Default for RecognizerConfig {
    fn default() -> Self {
        RecognizerConfig {
            reject_below: 0.3,
            other_speech_ms_max: 250,
            other_penalty: 0.0,
        }
    }
}

/// One recognized digit and where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct DigitSegment {
    pub digit: u8,
    /// True when the word was "oh" (still digit 0).
    pub oh: bool,
    pub probability: f32,
    pub span: Span,
}

/// The recognizer's answer for one utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognition {
    /// The digits as ASCII, empty when rejected.
    pub digits: String,
    /// The weakest digit's probability (0 when nothing was found).
    pub confidence: f32,
    pub rejected: bool,
    /// Every digit found, also when the utterance was rejected.
    pub segments: Vec<DigitSegment>,
}

/// The digit classifier with its front end.
#[derive(Debug, Clone)]
pub struct Recognizer {
    /// An ensemble of classifiers whose probabilities are averaged (at least one).
    pub(super) mlps: Vec<Mlp>,
    frontend: Frontend,
    /// Vocal-tract-warped front ends whose classifications are averaged with the plain one.
    warps: Vec<Frontend>,
    pub config: RecognizerConfig,
}

impl Recognizer {
    /// A recognizer averaging `mlps` (which must not be empty, and share one shape).
    pub fn new(mlps: Vec<Mlp>) -> Self {
        Recognizer {
            mlps,
            frontend: Frontend::default(),
            warps: TEST_WARPS.iter().map(|w| Frontend::new(*w)).collect(),
            config: RecognizerConfig::default(),
        }
    }

    /// The same recognizer averaging over front ends warped by `warps` (besides the plain one).
    pub fn with_test_warps(mut self, warps: &[f32]) -> Self {
        self.warps = warps.iter().map(|w| Frontend::new(*w)).collect();
        self
    }

    pub fn frontend(&self) -> &Frontend {
        &self.frontend
    }

    /// The analysis the classifier reads: the plain cepstra and the test-time warps.
    pub fn analyse(&self, samples: &[f32]) -> Analysis {
        features::analyse_warped(&self.frontend, &self.warps, samples)
    }

    /// Class probabilities of frames `[from, to)`, averaged over the analysis' warps.
    pub fn classify(&self, analysis: &Analysis, from: usize, to: usize) -> Option<Vec<f32>> {
        let vectors = features::digit_vectors(analysis, from, to);
        let mut sum = vec![0.0f32; CLASSES];
        for v in &vectors {
            for (s, p) in sum.iter_mut().zip(self.predict(v)?) {
                *s += p;
            }
        }
        if vectors.is_empty() {
            return None;
        }
        sum.iter_mut().for_each(|s| *s /= vectors.len() as f32);
        Some(sum)
    }

    /// Averaged class probabilities of one classifier input.
    pub fn predict(&self, v: &[f32]) -> Option<Vec<f32>> {
        let mut sum = vec![0.0f32; CLASSES];
        for mlp in &self.mlps {
            if v.len() != mlp.inputs() || mlp.classes() != CLASSES {
                return None;
            }
            for (s, p) in sum.iter_mut().zip(mlp.predict(v)) {
                *s += p;
            }
        }
        if self.mlps.is_empty() {
            return None;
        }
        let n = self.mlps.len() as f32;
        sum.iter_mut().for_each(|s| *s /= n);
        Some(sum)
    }

    /// Classifier parameters over the ensemble.
    pub fn parameter_count(&self) -> usize {
        self.mlps.iter().map(Mlp::parameter_count).sum()
    }

    pub fn recognize(&self, samples: &[i16]) -> Recognition {
        let analysis = self.analyse(&wav::to_f32(samples));
        let atoms = features::speech_atoms(samples);
        self.decode(&analysis, &atoms)
    }

    /// Groups atoms into words by dynamic programming (see the module docs).
    pub fn decode(&self, analysis: &Analysis, atoms: &[Span]) -> Recognition {
        #[derive(Clone, Copy)]
        struct Choice {
            from_atom: usize,
            class: usize,
            probability: f32,
        }
        let n = atoms.len();
        let mut best = vec![f32::NEG_INFINITY; n + 1];
        let mut back: Vec<Option<Choice>> = vec![None; n + 1];
        best[0] = 0.0;
        for j in 0..n {
            for i in (0..=j).rev() {
                let span = Span {
                    start: atoms[i].start,
                    end: atoms[j].end,
                };
                if span.len() > GROUP_SAMPLES_MAX && i < j {
                    break;
                }
                if !best[i].is_finite() {
                    continue;
                }
                let (from, to) = analysis.frames_of(span);
                let Some(p) = self.classify(analysis, from, to) else {
                    continue;
                };
                let (class, probability) = (0..CLASS_OTHER)
                    .map(|c| (c, p[c]))
                    .fold((0, -1.0f32), |b, x| if x.1 > b.1 { x } else { b });
                let other = p[CLASS_OTHER];
                // "Not a digit" is weighed against all digits together (on a new speaker the
                // digits share their probability, none of them alone need beat it), and
                // dropping a group as noise must win by a margin.
                let penalty = self.config.other_penalty;
                let digits = (1.0 - other).max(1e-9);
                let (class, probability, score) = if other.max(1e-9).ln() - penalty > digits.ln() {
                    // In the grouping's score a dropped group costs e³ more, so that two digits
                    // with a short pause are not swallowed by one "not a digit" group.
                    (CLASS_OTHER, other, other.max(1e-9).ln() - DROP_COST)
                } else {
                    (class, probability, probability.max(1e-9).ln())
                };
                if best[i] + score > best[j + 1] {
                    best[j + 1] = best[i] + score;
                    back[j + 1] = Some(Choice {
                        from_atom: i,
                        class,
                        probability,
                    });
                }
            }
        }
        let mut groups = Vec::new();
        let mut at = n;
        while at > 0 {
            let Some(choice) = back[at] else { break };
            groups.push((choice, atoms[choice.from_atom].start, atoms[at - 1].end));
            at = choice.from_atom;
        }
        groups.reverse();
        let mut segments = Vec::new();
        // Non-digit stretches add up: several short words are other speech too.
        let mut other_samples = 0usize;
        for (choice, start, end) in groups {
            let span = Span { start, end };
            if choice.class == CLASS_OTHER {
                other_samples += span.len();
                continue;
            }
            segments.push(DigitSegment {
                digit: if choice.class == CLASS_OH {
                    0
                } else {
                    choice.class as u8
                },
                oh: choice.class == CLASS_OH,
                probability: choice.probability,
                span,
            });
        }
        let confidence = if segments.is_empty() {
            0.0
        } else {
            segments.iter().fold(1.0f32, |m, s| m.min(s.probability))
        };
        let rejected = segments.is_empty()
            || other_samples >= self.config.other_speech_ms_max as usize * 8
            || segments.len() > DIGITS_MAX
            || confidence < self.config.reject_below;
        let digits = if rejected {
            String::new()
        } else {
            segments
                .iter()
                .map(|s| char::from(b'0' + s.digit))
                .collect()
        };
        Recognition {
            digits,
            confidence,
            rejected,
            segments,
        }
    }
}

impl Recognizer {
    /// Forced alignment for a known prompt: groups the atoms into exactly `prompt.len()` words,
    /// maximising the summed log-probability of each word being its prompted digit ("oh"
    /// counts for 0). Used for text-prompted verification and enrolment, where trusting the
    /// free recognition's labels would compare a word against the wrong digit's model.
    /// Each word comes with the classifier's probability of its prompted digit. `None` when
    /// the atoms cannot be split into that many words.
    pub fn align(
        &self,
        analysis: &Analysis,
        atoms: &[Span],
        prompt: &[u8],
    ) -> Option<Vec<(Span, f32)>> {
        let (m, n) = (atoms.len(), prompt.len());
        if n == 0 || m < n || n > DIGITS_MAX {
            return None;
        }
        // log P(prompt digit k | atoms i..=j) for every group not longer than a word.
        let mut group: Vec<Option<[f32; 10]>> = vec![None; m * m];
        for i in 0..m {
            for j in i..m {
                let span = Span {
                    start: atoms[i].start,
                    end: atoms[j].end,
                };
                if span.len() > GROUP_SAMPLES_MAX && i < j {
                    break;
                }
                let (from, to) = analysis.frames_of(span);
                if let Some(p) = self.classify(analysis, from, to) {
                    let mut logs = [0.0f32; 10];
                    for (d, l) in logs.iter_mut().enumerate() {
                        let q = if d == 0 { p[0] + p[CLASS_OH] } else { p[d] };
                        *l = q.max(1e-9).ln();
                    }
                    group[i * m + j] = Some(logs);
                }
            }
        }
        // best[k][j]: the first k prompted digits over the first j atoms.
        let mut best = vec![f32::NEG_INFINITY; (n + 1) * (m + 1)];
        let mut back = vec![0usize; (n + 1) * (m + 1)];
        best[0] = 0.0;
        for k in 1..=n {
            let digit = (prompt[k - 1] as usize).min(9);
            for j in k..=m {
                for i in (k - 1)..j {
                    let previous = best[(k - 1) * (m + 1) + i];
                    if !previous.is_finite() {
                        continue;
                    }
                    if let Some(logs) = group[i * m + (j - 1)] {
                        let score = previous + logs[digit];
                        if score > best[k * (m + 1) + j] {
                            best[k * (m + 1) + j] = score;
                            back[k * (m + 1) + j] = i;
                        }
                    }
                }
            }
        }
        if !best[n * (m + 1) + m].is_finite() {
            return None;
        }
        let mut spans = Vec::with_capacity(n);
        let mut j = m;
        for k in (1..=n).rev() {
            let i = back[k * (m + 1) + j];
            let digit = (prompt[k - 1] as usize).min(9);
            let probability = group[i * m + (j - 1)].map_or(0.0, |logs| logs[digit].exp());
            spans.push((
                Span {
                    start: atoms[i].start,
                    end: atoms[j - 1].end,
                },
                probability,
            ));
            j = i;
        }
        spans.reverse();
        Some(spans)
    }
}

/// Trains `members` classifiers (different initialisations, dropout and order) on the same
/// `(vector, class)` examples, produced per epoch by `make_epoch`.
pub fn train_classifier(
    mut make_epoch: impl FnMut(usize, &mut Rng) -> Vec<(Vec<f32>, usize)>,
    epochs: usize,
    members: usize,
    seed: u64,
    mut progress: impl FnMut(usize, f32),
) -> Vec<Mlp> {
    let mut rng = Rng::new(seed);
    let mut widths = vec![features::DIGIT_INPUTS];
    widths.extend(HIDDEN);
    widths.push(CLASSES);
    let mut nets: Vec<(Mlp, Adam, Rng)> = (0..members.max(1))
        .map(|k| {
            let mut own = Rng::new(seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k as u64 + 1)));
            let mlp = Mlp::new(&widths, &mut own);
            let adam = Adam::new(&mlp);
            (mlp, adam, own)
        })
        .collect();
    let base = TrainConfig::default();
    for epoch in 0..epochs {
        let data = make_epoch(epoch, &mut rng);
        if epoch == 0 {
            let rows: Vec<Vec<f32>> = data.iter().map(|d| d.0.clone()).collect();
            for net in &mut nets {
                net.0.fit_standardisation(&rows);
            }
        }
        // Linear decay to a tenth of the rate over the run.
        let config = TrainConfig {
            learning_rate: base.learning_rate * (1.0 - 0.9 * epoch as f32 / epochs.max(1) as f32),
            ..base.clone()
        };
        let mut loss = 0.0;
        for (mlp, adam, own) in &mut nets {
            loss += mlp.train_epoch(&data, &config, adam, own);
        }
        progress(epoch, loss / nets.len() as f32);
    }
    nets.into_iter().map(|n| n.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(seed: u64) -> Mlp {
        let mut rng = Rng::new(seed);
        Mlp::new(&[features::DIGIT_INPUTS, 8, CLASSES], &mut rng)
    }

    #[test]
    fn an_ensemble_averages_its_members_and_checks_shapes() {
        let (a, b) = (net(1), net(2));
        let mut rng = Rng::new(9);
        let v: Vec<f32> = (0..features::DIGIT_INPUTS).map(|_| rng.normal()).collect();
        let both = Recognizer::new(vec![a.clone(), b.clone()])
            .predict(&v)
            .unwrap();
        let (pa, pb) = (a.predict(&v), b.predict(&v));
        assert_eq!(both.len(), CLASSES);
        for k in 0..CLASSES {
            assert!((both[k] - (pa[k] + pb[k]) / 2.0).abs() < 1e-6);
        }
        assert!((both.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        // A wrong input length or an empty ensemble gives no answer.
        assert!(Recognizer::new(vec![a]).predict(&v[1..]).is_none());
        assert!(Recognizer::new(Vec::new()).predict(&v).is_none());
    }

    #[test]
    fn test_time_warps_add_analyses_that_the_classifier_averages() {
        let recognizer = Recognizer::new(vec![net(3)]);
        let mut rng = Rng::new(4);
        let audio: Vec<f32> = (0..8_000).map(|_| 0.1 * rng.normal()).collect();
        let analysis = recognizer.analyse(&audio);
        assert_eq!(analysis.warped.len(), TEST_WARPS.len());
        assert_eq!(
            features::digit_vectors(&analysis, 10, 60).len(),
            TEST_WARPS.len() + 1
        );
        let plain_only = recognizer.clone().with_test_warps(&[]);
        let plain = plain_only.analyse(&audio);
        assert!(plain.warped.is_empty());
        assert_eq!(plain.mfcc, analysis.mfcc);
        let p = recognizer.classify(&analysis, 10, 60).unwrap();
        let q = plain_only.classify(&plain, 10, 60).unwrap();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert_ne!(p, q);
        // The plain analysis alone gives the plain classifier's answer.
        let v = features::digit_vector(&plain, 10, 60).unwrap();
        assert_eq!(q, recognizer.predict(&v).unwrap());
        // Too short a stretch is not classified.
        assert!(recognizer.classify(&analysis, 10, 12).is_none());
    }
}
