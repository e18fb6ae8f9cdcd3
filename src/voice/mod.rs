//! Voice: spoken digits and a text-prompted voice print on 8 kHz telephone audio.
//!
//! - [`endpoint`]: webrtc-vad end-pointing (start and end of speech, time-outs), sans-IO.
//! - [`recognizer`]: speaker-independent spoken digits (isolated and connected strings, "oh"
//!   for zero), with a confidence and a rejection of speech that is not digits.
//! - [`voiceprint`]: enrolment into a compact template and a verification score.
//! - [`collector`]: the streaming API for the IVR (`SpeechCollector`) and the verifier.
//! - [`cli`]: the logic of `telepay voice digits|enrol|score|eval|train` as pure functions.
//! - [`train`]: the command that produces the shipped model from FSDD, and the evaluation.
//!
//! The model (classifier weights and voice-print background) is one small file,
//! `models/voice/voice.bin`, embedded with `include_bytes!` and parsed once by
//! [`VoiceModel::embedded`]. Everything is pure Rust apart from the VAD's C code inside the
//! webrtc-vad crate, runs on one CPU core, and is deterministic.

pub mod check_digit;
pub mod cli;
pub mod collector;
pub mod dsp;
pub mod endpoint;
pub mod features;
pub mod g711;
pub mod nn;
pub mod recognizer;
pub mod train;
pub mod voiceprint;
pub mod wav;

pub use collector::{CollectorConfig, CollectorEvent, SpeechCollector, Verification, Verifier};
pub use endpoint::{EndpointConfig, EndpointEvent, Endpointer};
pub use recognizer::{Recognition, Recognizer, RecognizerConfig};
pub use voiceprint::{Background, Template};

use nn::{Mlp, Reader};

/// Errors of the voice module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VoiceError {
    #[error(
        "unsupported audio: {sample_rate_hz} Hz, {channels} channel(s), {bits_per_sample} bits; need 8000 Hz mono 16-bit PCM WAV"
    )]
    UnsupportedFormat {
        sample_rate_hz: u32,
        channels: u16,
        bits_per_sample: u16,
    },
    #[error("not a readable WAV file: {0}")]
    BadWav(String),
    #[error("audio longer than the 10 minute limit")]
    TooLong,
    #[error("i/o: {0}")]
    Io(String),
    #[error("voice model unusable: {0}")]
    BadModel(&'static str),
    #[error("voice template unusable: {0}")]
    BadTemplate(&'static str),
    #[error("not enough speech: {0}")]
    NotEnoughData(&'static str),
    #[error("bad setting: {0}")]
    BadConfig(&'static str),
    #[error("corpus: {0}")]
    Corpus(String),
}

const MODEL_MAGIC: &[u8; 4] = b"TPVM";
const MODEL_VERSION: u32 = 2;
/// Bound on the classifiers of the ensemble a model file may declare.
const ENSEMBLE_MAX: usize = 16;

/// The shipped model file (produced by `train::train`).
pub static EMBEDDED_MODEL: &[u8] = include_bytes!("../../models/voice/voice.bin");

/// The digit classifier and the voice-print background, loaded together.
#[derive(Debug, Clone)]
pub struct VoiceModel {
    pub recognizer: Recognizer,
    pub background: Background,
}

impl VoiceModel {
    /// Parses the embedded model.
    pub fn embedded() -> Result<VoiceModel, VoiceError> {
        Self::from_bytes(EMBEDDED_MODEL)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MODEL_MAGIC);
        nn::push_u32(&mut out, MODEL_VERSION);
        nn::push_u32(&mut out, self.recognizer.mlps.len() as u32);
        for mlp in &self.recognizer.mlps {
            mlp.to_bytes(&mut out);
        }
        self.background.to_bytes(&mut out);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<VoiceModel, VoiceError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4)? != MODEL_MAGIC {
            return Err(VoiceError::BadModel(
                "not a voice model (run `telepay voice train`)",
            ));
        }
        if reader.u32()? != MODEL_VERSION {
            return Err(VoiceError::BadModel("unknown version"));
        }
        let members = reader.u32()? as usize;
        if members == 0 || members > ENSEMBLE_MAX {
            return Err(VoiceError::BadModel("ensemble size"));
        }
        let mut mlps = Vec::with_capacity(members);
        for _ in 0..members {
            let (mlp, used) = Mlp::from_bytes(&bytes[reader.at..])?;
            if mlp.inputs() != features::DIGIT_INPUTS || mlp.classes() != recognizer::CLASSES {
                return Err(VoiceError::BadModel("classifier shape"));
            }
            reader.at += used;
            mlps.push(mlp);
        }
        let background = Background::from_reader(&mut reader)?;
        if reader.at != bytes.len() {
            return Err(VoiceError::BadModel("trailing bytes"));
        }
        Ok(VoiceModel {
            recognizer: Recognizer::new(mlps),
            background,
        })
    }
}

/// Test helpers shared by the module's tests: the FSDD folder beside the repository.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;

    /// `../shared/data/fsdd` next to the crate (as in CI), or the workspace copy. Tests that
    /// need it fail loudly when it is missing rather than skipping.
    pub fn fsdd_dir() -> PathBuf {
        let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fsdd");
        if beside.is_dir() {
            return beside;
        }
        PathBuf::from("/work/shared/data/fsdd")
    }

    pub fn fsdd(digit: u8, speaker: &str, index: u32) -> Vec<i16> {
        let path = fsdd_dir().join(format!("{digit}_{speaker}_{index}.wav"));
        match super::wav::read_wav(&path) {
            Ok(samples) => samples,
            Err(e) => panic!("test data missing: {e}"),
        }
    }

    pub fn model() -> std::sync::Arc<super::VoiceModel> {
        match super::VoiceModel::embedded() {
            Ok(m) => std::sync::Arc::new(m),
            Err(e) => panic!("embedded model: {e}"),
        }
    }

    /// Digits from `speaker` joined with `pause_ms` of silence and `lead_ms` around them.
    pub fn spoken(
        digits: &str,
        speaker: &str,
        index: u32,
        pause_ms: usize,
        lead_ms: usize,
    ) -> Vec<i16> {
        let mut out = vec![0i16; lead_ms * 8];
        for (k, d) in digits.bytes().enumerate() {
            if k > 0 {
                out.extend(std::iter::repeat_n(0, pause_ms * 8));
            }
            out.extend(fsdd(d - b'0', speaker, index + k as u32));
        }
        out.extend(std::iter::repeat_n(0, lead_ms * 8));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_model_parses_and_round_trips() {
        let model = VoiceModel::embedded().unwrap();
        assert_eq!(model.to_bytes(), EMBEDDED_MODEL);
        assert!(VoiceModel::from_bytes(&EMBEDDED_MODEL[..EMBEDDED_MODEL.len() - 3]).is_err());
        assert!(VoiceModel::from_bytes(b"TPVX\x02\x00\x00\x00").is_err());
        // An ensemble of no classifier, or of more than the bound, is refused.
        let mut empty = b"TPVM".to_vec();
        nn::push_u32(&mut empty, MODEL_VERSION);
        nn::push_u32(&mut empty, 0);
        assert!(VoiceModel::from_bytes(&empty).is_err());
        let mut huge = b"TPVM".to_vec();
        nn::push_u32(&mut huge, MODEL_VERSION);
        nn::push_u32(&mut huge, ENSEMBLE_MAX as u32 + 1);
        assert!(VoiceModel::from_bytes(&huge).is_err());
        // The previous format is refused with a clear error.
        let mut old = b"TPVM".to_vec();
        nn::push_u32(&mut old, 1);
        assert!(matches!(
            VoiceModel::from_bytes(&old),
            Err(VoiceError::BadModel("unknown version"))
        ));
        let mut longer = EMBEDDED_MODEL.to_vec();
        longer.push(0);
        assert!(VoiceModel::from_bytes(&longer).is_err());
    }

    #[test]
    fn recognizes_digits_of_a_training_speaker_and_rejects_noise() {
        let model = test_support::model();
        let audio = test_support::spoken("4207", "jackson", 5, 300, 300);
        let r = model.recognizer.recognize(&audio);
        assert_eq!(r.digits, "4207", "{r:?}");
        assert!(r.confidence > 0.5);
        // The same string through μ-law.
        let coded = g711::round_trip(&audio, g711::Law::Mu);
        assert_eq!(model.recognizer.recognize(&coded).digits, "4207");
        // Loud noise and silence are not digits.
        let mut rng = dsp::Rng::new(5);
        let noise: Vec<i16> = (0..8_000)
            .map(|_| (rng.normal() * 4_000.0) as i16)
            .collect();
        assert_eq!(model.recognizer.recognize(&noise).digits, "");
        assert!(model.recognizer.recognize(&vec![0i16; 8_000]).rejected);
        // Bursts of white to brown noise, half a second to 1.5 s, give no digits either (the
        // ensemble's averaged probabilities are soft: "not a digit" is weighed against all
        // digits together, see docs/voice.md).
        for seed in 1..=10u64 {
            let mut rng = dsp::Rng::new(seed);
            let len = 4_000 + rng.below(8_000);
            let colour = rng.uniform() * 0.95;
            let mut previous = 0.0f32;
            let burst: Vec<i16> = (0..len)
                .map(|_| {
                    previous = colour * previous + rng.normal() * 3_000.0;
                    previous.clamp(-30_000.0, 30_000.0) as i16
                })
                .collect();
            let r = model.recognizer.recognize(&burst);
            assert_eq!(r.digits, "", "seed {seed}: {r:?}");
        }
    }

    #[test]
    fn forced_alignment_finds_one_word_per_prompted_digit() {
        let model = test_support::model();
        let audio = test_support::spoken("9316", "lucas", 7, 300, 300);
        let analysis = model.recognizer.analyse(&wav::to_f32(&audio));
        let atoms = features::speech_atoms(&audio);
        let spans = model
            .recognizer
            .align(&analysis, &atoms, &[9, 3, 1, 6])
            .unwrap();
        assert_eq!(spans.len(), 4);
        // Words are in order, disjoint, and each starts after the previous one's pause; each
        // is plausibly its prompted digit (a training speaker).
        assert!(spans.iter().all(|w| w.1 > 0.5), "{spans:?}");
        for pair in spans.windows(2) {
            assert!(pair[1].0.start >= pair[0].0.end + 8 * 250, "{spans:?}");
        }
        assert!(model.recognizer.align(&analysis, &atoms, &[]).is_none());
        let too_many = [1u8; 21];
        assert!(
            model
                .recognizer
                .align(&analysis, &atoms, &too_many)
                .is_none()
        );
    }
}
