//! Spoken numbers that carry a check digit (the transaction number's Damm digit): when the
//! recognized string fails the check, the utterance is searched for the one-digit correction the
//! audio supports best.
//!
//! A check digit catches every single wrong digit, and a single wrong digit is the most common
//! error on a long spoken number (the recognizer errs word by word). For each position, exactly
//! one other digit makes a Damm-checked string valid again, so there are at most as many
//! candidates as digits. Each candidate is scored by forced alignment of the utterance to it
//! (the summed log-probability of every word being its digit, as in text-prompted
//! verification), and the best one is taken only when it holds most of the candidates' summed
//! likelihood and every word of it is plausible. Otherwise the answer stays rejected and the IVR asks again;
//! the core's own number check and rate limit stay in force either way.

use super::features;
use super::recognizer::Recognizer;
use super::wav;

/// The best candidate's share of the candidates' summed likelihood must reach this (with two
/// candidates: about twice as likely as the other).
pub const SHARE_MIN: f32 = 0.65;
/// Every aligned word of the correction must have at least this probability of being its
/// digit.
pub const WORD_PROBABILITY_MIN: f32 = 0.02;

/// A correction of a recognized number.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    pub digits: String,
    /// The correction's share of the likelihood of all valid one-digit corrections: how sure
    /// the audio is of this reading among the valid ones.
    pub confidence: f32,
    /// The weakest aligned word's probability.
    pub weakest: f32,
}

/// The single-digit corrections of `recognized` that `valid` accepts.
pub fn candidates(recognized: &str, valid: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    if !recognized.bytes().all(|b| b.is_ascii_digit()) {
        return out;
    }
    for i in 0..recognized.len() {
        for d in b'0'..=b'9' {
            if recognized.as_bytes()[i] == d {
                continue;
            }
            let mut bytes = recognized.as_bytes().to_vec();
            bytes[i] = d;
            if let Ok(candidate) = String::from_utf8(bytes)
                && valid(&candidate)
            {
                out.push(candidate);
            }
        }
    }
    out
}

/// Looks for the best-supported valid one-digit correction of `recognized` in `audio`.
pub fn correct(
    recognizer: &Recognizer,
    audio: &[i16],
    recognized: &str,
    valid: impl Fn(&str) -> bool,
) -> Option<Correction> {
    let candidates = candidates(recognized, valid);
    if candidates.is_empty() {
        return None;
    }
    let analysis = features::analyse(recognizer.frontend(), &wav::to_f32(audio));
    let atoms = features::speech_atoms(audio);
    let mut scored: Vec<(f32, f32, String)> = candidates
        .into_iter()
        .filter_map(|c| {
            let digits: Vec<u8> = c.bytes().map(|b| b - b'0').collect();
            let words = recognizer.align(&analysis, &atoms, &digits)?;
            let total: f32 = words.iter().map(|(_, p)| p.max(1e-9).ln()).sum();
            let weakest = words.iter().map(|(_, p)| *p).fold(1.0f32, f32::min);
            Some((total, weakest, c))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (best, weakest, digits) = scored.first()?.clone();
    let share = 1.0 / scored.iter().map(|s| (s.0 - best).exp()).sum::<f32>();
    (share >= SHARE_MIN && weakest >= WORD_PROBABILITY_MIN).then_some(Correction {
        digits,
        confidence: share,
        weakest,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{model, spoken};
    use super::*;

    fn damm_valid(number: &str) -> bool {
        crate::settlement::txn_number::damm_valid(number)
    }

    #[test]
    fn every_position_has_exactly_one_valid_correction() {
        // 572 is the textbook Damm example (check digit 4).
        assert!(damm_valid("5724"));
        let wrong = "5734";
        assert!(!damm_valid(wrong));
        let c = candidates(wrong, damm_valid);
        assert_eq!(c.len(), 4, "{c:?}");
        assert!(c.contains(&"5724".to_string()));
        for (i, cand) in c.iter().enumerate() {
            assert!(damm_valid(cand));
            let differ = cand
                .bytes()
                .zip(wrong.bytes())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(differ, 1, "{i}: {cand}");
        }
        assert!(candidates("57a4", damm_valid).is_empty());
    }

    #[test]
    fn a_misheard_digit_is_put_right_by_the_audio() {
        let model = model();
        // A valid 9-digit number said by a speaker, and a recognition with one digit wrong.
        let check = (0..10u8)
            .map(|d| format!("31415926{d}"))
            .find(|n| damm_valid(n))
            .unwrap();
        let audio = spoken(&check, "jackson", 3, 300, 300);
        let mut misheard = check.clone().into_bytes();
        misheard[3] = if misheard[3] == b'7' { b'1' } else { b'7' };
        let misheard = String::from_utf8(misheard).unwrap();
        assert!(!damm_valid(&misheard));
        let fixed =
            correct(&model.recognizer, &audio, &misheard, damm_valid).expect("a correction");
        assert_eq!(fixed.digits, check, "{fixed:?}");
        assert!(fixed.confidence >= SHARE_MIN && fixed.confidence <= 1.0);
        // Audio of other digits altogether supports no correction of this number.
        let other = spoken("808808808", "jackson", 3, 300, 300);
        assert_eq!(
            correct(&model.recognizer, &other, &misheard, damm_valid),
            None
        );
    }
}
