//! Text-dependent voice print on digits. Each spoken digit is aligned to the background's
//! left-to-right state means of that digit, and its frames are averaged per state, giving a
//! fixed vector per digit occurrence. The background holds, per digit and state, the mean over
//! many speakers and the within-speaker variance, and per cepstrum the between-speaker variance.
//! A template keeps, per enrolled digit, the count and mean of the payer's vectors (no audio).
//! The score of a test digit is the log-likelihood ratio of a diagonal two-covariance model:
//! "same speaker as the template" (the speaker mean's posterior given the enrolment) against
//! "a random speaker", normalised by its closed-form mean and deviation under "a random
//! speaker" (an analytic Z-norm, so that every template and digit share one threshold); the
//! utterance's score is the mean over its digits. Cepstra are not mean-normalised here: the
//! long-term spectral envelope is much of what tells speakers apart (G.711 coding adds
//! quantisation noise, not a channel filter).

use super::VoiceError;
use super::features::{self, Analysis, PRINT_DIMS, PRINT_STATES};
use super::nn::{Reader, push_f32s, push_u32};

/// Values per digit vector.
pub const DIGIT_VECTOR_LEN: usize = PRINT_STATES * PRINT_DIMS;
const TEMPLATE_MAGIC: &[u8; 4] = b"TPVP";
const TEMPLATE_VERSION: u32 = 1;
/// A template never exceeds this (a header, ten counts and ten mean vectors).
pub const TEMPLATE_BYTES_MAX: usize = 16 * 1_024;
/// The enrolment count is capped so one digit cannot swamp the posterior.
pub const ENROL_COUNT_MAX: u32 = 1_000;

/// The between-speaker variance estimated from a handful of background speakers is inflated by
/// this factor (chosen on development takes 3–19, see docs/voice.md): the few speakers
/// underestimate how far a new speaker's means can lie.
pub const BETWEEN_INFLATION: f64 = 2.5;

/// Per-digit background statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    /// 10 × DIGIT_VECTOR_LEN state means.
    pub means: Vec<f32>,
    /// 10 × DIGIT_VECTOR_LEN within-speaker variances.
    pub within: Vec<f32>,
    /// PRINT_DIMS between-speaker variances (pooled over digits and states).
    pub between: Vec<f32>,
}

/// A payer's voice print.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub counts: [u32; 10],
    /// 10 × DIGIT_VECTOR_LEN means (zeros where the count is 0).
    pub means: Vec<f32>,
}

impl Background {
    fn digit_means(&self, digit: usize) -> Option<&[f32]> {
        self.means
            .get(digit * DIGIT_VECTOR_LEN..(digit + 1) * DIGIT_VECTOR_LEN)
    }

    /// The vector of one digit occurrence spanning frames `[from, to)`.
    pub fn digit_vector(
        &self,
        analysis: &Analysis,
        digit: u8,
        from: usize,
        to: usize,
    ) -> Option<Vec<f32>> {
        let digit = digit as usize;
        if digit > 9 {
            return None;
        }
        let frames = features::print_frames(analysis, from, to);
        features::state_means(&frames, Some(self.digit_means(digit)?), PRINT_STATES)
    }

    /// Estimates the background from labelled vectors `(digit, speaker, vector)`.
    pub fn estimate(samples: &[(u8, usize, Vec<f32>)]) -> Result<Background, VoiceError> {
        let speakers = samples.iter().map(|s| s.1 + 1).max().unwrap_or(0);
        let mut means = vec![0.0f32; 10 * DIGIT_VECTOR_LEN];
        let mut within = vec![0.0f32; 10 * DIGIT_VECTOR_LEN];
        let mut between_sum = vec![0.0f64; PRINT_DIMS];
        let mut between_count = 0usize;
        for digit in 0..10u8 {
            // Speaker means and counts for this digit.
            let mut sums = vec![vec![0.0f64; DIGIT_VECTOR_LEN]; speakers];
            let mut counts = vec![0usize; speakers];
            for (d, s, v) in samples {
                if *d == digit && v.len() == DIGIT_VECTOR_LEN {
                    counts[*s] += 1;
                    for (a, x) in sums[*s].iter_mut().zip(v) {
                        *a += *x as f64;
                    }
                }
            }
            let present: Vec<usize> = (0..speakers).filter(|s| counts[*s] > 1).collect();
            if present.len() < 2 {
                return Err(VoiceError::NotEnoughData("two speakers per digit"));
            }
            let speaker_means: Vec<Vec<f64>> = present
                .iter()
                .map(|&s| sums[s].iter().map(|v| v / counts[s] as f64).collect())
                .collect();
            let grand: Vec<f64> = (0..DIGIT_VECTOR_LEN)
                .map(|i| speaker_means.iter().map(|m| m[i]).sum::<f64>() / present.len() as f64)
                .collect();
            let mut within_acc = vec![0.0f64; DIGIT_VECTOR_LEN];
            let mut within_n = 0usize;
            for (d, s, v) in samples {
                if *d == digit && v.len() == DIGIT_VECTOR_LEN && counts[*s] > 1 {
                    let k = present.iter().position(|p| p == s).unwrap_or(0);
                    for (i, x) in v.iter().enumerate() {
                        within_acc[i] += (*x as f64 - speaker_means[k][i]).powi(2);
                    }
                    within_n += 1;
                }
            }
            let dof = (within_n - present.len()).max(1) as f64;
            for i in 0..DIGIT_VECTOR_LEN {
                means[digit as usize * DIGIT_VECTOR_LEN + i] = grand[i] as f32;
                within[digit as usize * DIGIT_VECTOR_LEN + i] =
                    (within_acc[i] / dof).max(1e-3) as f32;
                let spread = speaker_means
                    .iter()
                    .map(|m| (m[i] - grand[i]).powi(2))
                    .sum::<f64>()
                    / (present.len() - 1) as f64;
                between_sum[i % PRINT_DIMS] += spread;
            }
            between_count += PRINT_STATES;
        }
        let between = between_sum
            .iter()
            .map(|v| (BETWEEN_INFLATION * v / between_count.max(1) as f64).max(1e-3) as f32)
            .collect();
        Ok(Background {
            means,
            within,
            between,
        })
    }

    /// Log-likelihood ratio per dimension of one digit vector against a template.
    pub fn score_digit(&self, template: &Template, digit: u8, vector: &[f32]) -> Option<f32> {
        let d = digit as usize;
        let n = *template.counts.get(d)?;
        let end = (d + 1) * DIGIT_VECTOR_LEN;
        if n == 0
            || vector.len() != DIGIT_VECTOR_LEN
            || template.means.len() < end
            || self.means.len() < end
            || self.within.len() < end
            || self.between.len() != PRINT_DIMS
        {
            return None;
        }
        let base = d * DIGIT_VECTOR_LEN;
        let enrolled = &template.means[base..base + DIGIT_VECTOR_LEN];
        // The log-likelihood ratio, and its mean and variance when `vector` comes from a
        // random speaker (closed form for diagonal Gaussians), to normalise it (Z-norm):
        // scores of different templates and digits then share one scale and one threshold.
        let (mut llr, mut mean, mut var) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..DIGIT_VECTOR_LEN {
            let mu = self.means[base + i] as f64;
            let w = self.within[base + i] as f64;
            let b = self.between[i % PRINT_DIMS] as f64;
            let n = n as f64;
            let gain = b / (b + w / n);
            let post_mean = mu + gain * (enrolled[i] as f64 - mu);
            let same = w + gain * w / n;
            let any = w + b;
            let x = vector[i] as f64;
            llr += -0.5 * ((x - post_mean).powi(2) / same + same.ln())
                + 0.5 * ((x - mu).powi(2) / any + any.ln());
            let delta = post_mean - mu;
            mean += -0.5 * ((any + delta * delta) / same + same.ln()) + 0.5 * (1.0 + any.ln());
            var += 0.5 * (1.0 / any - 1.0 / same).powi(2) * any * any
                + delta * delta * any / (same * same);
        }
        Some(((llr - mean) / var.sqrt().max(1e-9)) as f32)
    }

    /// The utterance score: the mean of its scorable digits (None when none is enrolled).
    pub fn score(&self, template: &Template, digits: &[(u8, Vec<f32>)]) -> Option<f32> {
        let scores: Vec<f32> = digits
            .iter()
            .filter_map(|(d, v)| self.score_digit(template, *d, v))
            .collect();
        (!scores.is_empty()).then(|| scores.iter().sum::<f32>() / scores.len() as f32)
    }

    pub(super) fn to_bytes(&self, out: &mut Vec<u8>) {
        push_f32s(out, &self.means);
        push_f32s(out, &self.within);
        push_f32s(out, &self.between);
    }

    pub(super) fn from_reader(reader: &mut Reader<'_>) -> Result<Background, VoiceError> {
        let means = reader.f32s(10 * DIGIT_VECTOR_LEN)?;
        let within = reader.f32s(10 * DIGIT_VECTOR_LEN)?;
        let between = reader.f32s(PRINT_DIMS)?;
        if within.iter().chain(&between).any(|v| *v <= 0.0) {
            return Err(VoiceError::BadModel("variance not positive"));
        }
        Ok(Background {
            means,
            within,
            between,
        })
    }
}

impl Template {
    /// Builds a template from digit vectors.
    pub fn from_vectors(vectors: &[(u8, Vec<f32>)]) -> Result<Template, VoiceError> {
        let mut counts = [0u32; 10];
        let mut means = vec![0.0f32; 10 * DIGIT_VECTOR_LEN];
        for (d, v) in vectors {
            let d = *d as usize;
            if d > 9 || v.len() != DIGIT_VECTOR_LEN || counts[d] >= ENROL_COUNT_MAX {
                continue;
            }
            counts[d] += 1;
            for (m, x) in means[d * DIGIT_VECTOR_LEN..(d + 1) * DIGIT_VECTOR_LEN]
                .iter_mut()
                .zip(v)
            {
                *m += x;
            }
        }
        if counts.iter().sum::<u32>() < 3 {
            return Err(VoiceError::NotEnoughData(
                "at least three spoken digits to enrol",
            ));
        }
        for d in 0..10 {
            let n = counts[d].max(1) as f32;
            for m in &mut means[d * DIGIT_VECTOR_LEN..(d + 1) * DIGIT_VECTOR_LEN] {
                *m /= n;
            }
        }
        Ok(Template { counts, means })
    }

    /// The stored form: magic, version, ten counts, then the means of enrolled digits.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TEMPLATE_BYTES_MAX);
        out.extend_from_slice(TEMPLATE_MAGIC);
        push_u32(&mut out, TEMPLATE_VERSION);
        for c in self.counts {
            push_u32(&mut out, c);
        }
        for d in 0..10 {
            if self.counts[d] > 0 {
                push_f32s(
                    &mut out,
                    &self.means[d * DIGIT_VECTOR_LEN..(d + 1) * DIGIT_VECTOR_LEN],
                );
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Template, VoiceError> {
        if bytes.len() > TEMPLATE_BYTES_MAX {
            return Err(VoiceError::BadTemplate("too large"));
        }
        let bad = |_| VoiceError::BadTemplate("truncated or corrupt");
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4).map_err(bad)? != TEMPLATE_MAGIC {
            return Err(VoiceError::BadTemplate("not a voice template"));
        }
        if reader.u32().map_err(bad)? != TEMPLATE_VERSION {
            return Err(VoiceError::BadTemplate("unknown version"));
        }
        let mut counts = [0u32; 10];
        for c in &mut counts {
            *c = reader.u32().map_err(bad)?;
            if *c > ENROL_COUNT_MAX {
                return Err(VoiceError::BadTemplate("count out of range"));
            }
        }
        let mut means = vec![0.0f32; 10 * DIGIT_VECTOR_LEN];
        for d in 0..10 {
            if counts[d] > 0 {
                let v = reader.f32s(DIGIT_VECTOR_LEN).map_err(bad)?;
                means[d * DIGIT_VECTOR_LEN..(d + 1) * DIGIT_VECTOR_LEN].copy_from_slice(&v);
            }
        }
        if reader.at != bytes.len() {
            return Err(VoiceError::BadTemplate("trailing bytes"));
        }
        Ok(Template { counts, means })
    }
}

#[cfg(test)]
mod tests {
    use super::super::dsp::Rng;
    use super::*;

    fn vector(rng: &mut Rng, centre: f32, spread: f32) -> Vec<f32> {
        (0..DIGIT_VECTOR_LEN)
            .map(|i| centre * ((i % 7) as f32 - 3.0) + spread * rng.normal())
            .collect()
    }

    #[test]
    fn same_speaker_scores_above_others_and_templates_round_trip() {
        let mut rng = Rng::new(11);
        // Speakers differ by a centre offset; takes differ by noise.
        let centres = [0.0f32, 0.5, -0.5, 1.0, -1.0];
        let mut samples = Vec::new();
        for (s, c) in centres.iter().enumerate().skip(1) {
            for d in 0..10u8 {
                for _ in 0..5 {
                    samples.push((d, s - 1, vector(&mut rng, *c, 0.3)));
                }
            }
        }
        let background = Background::estimate(&samples).unwrap();
        let enrol: Vec<(u8, Vec<f32>)> = (0..10u8)
            .flat_map(|d| {
                [
                    (d, vector(&mut rng, 0.0, 0.3)),
                    (d, vector(&mut rng, 0.0, 0.3)),
                ]
            })
            .collect();
        let template = Template::from_vectors(&enrol).unwrap();
        let bytes = template.to_bytes();
        assert!(bytes.len() <= TEMPLATE_BYTES_MAX);
        assert_eq!(Template::from_bytes(&bytes).unwrap(), template);
        assert!(Template::from_bytes(&bytes[..bytes.len() - 2]).is_err());
        let genuine = background
            .score(&template, &[(3, vector(&mut rng, 0.0, 0.3))])
            .unwrap();
        let impostor = background
            .score(&template, &[(3, vector(&mut rng, 0.5, 0.3))])
            .unwrap();
        assert!(genuine > impostor, "{genuine} vs {impostor}");
    }
}
