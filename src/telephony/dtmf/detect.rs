//! `telepay dtmf detect FILE.wav…`: the in-band detector over recordings.
//!
//! Each file must be 8 kHz mono 16-bit PCM WAV, the form of a decoded G.711
//! channel; anything else gets a [`DetectError`] naming what it is instead.
//! The command line prints one `FILE<TAB>DIGITS` line per result (an empty
//! digit string when none were heard). Files are streamed through the
//! detector, so memory does not grow with their length.

use std::path::{Path, PathBuf};

use super::inband::{InbandDetector, InbandEvent, SAMPLE_RATE_HZ};

/// Longest recording analysed: one hour at 8 kHz.
pub const RECORDING_SAMPLES_MAX: u32 = 3_600 * SAMPLE_RATE_HZ;

/// Why a recording could not be analysed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// Not readable as WAV (missing file, truncated, not RIFF…).
    #[error("cannot read WAV: {0}")]
    Wav(#[from] hound::Error),
    /// A WAV, but not 8 kHz mono 16-bit integer PCM.
    #[error(
        "unsupported WAV format: {channels} channel(s), {sample_rate_hz} Hz, {bits} bit {kind} \
         (need 8000 Hz mono 16-bit PCM)"
    )]
    Format {
        /// Channels in the file.
        channels: u16,
        /// Its sample rate.
        sample_rate_hz: u32,
        /// Bits per sample.
        bits: u16,
        /// "integer" or "float".
        kind: &'static str,
    },
    /// Longer than [`RECORDING_SAMPLES_MAX`].
    #[error("recording of {samples} samples is longer than the limit of {max}")]
    TooLong {
        /// Samples in the file.
        samples: u32,
        /// The limit.
        max: u32,
    },
}

/// The digits heard in one recording, in order, as a string.
pub fn detect_file(path: &Path) -> Result<String, DetectError> {
    let mut reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.sample_rate != SAMPLE_RATE_HZ
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(DetectError::Format {
            channels: spec.channels,
            sample_rate_hz: spec.sample_rate,
            bits: spec.bits_per_sample,
            kind: match spec.sample_format {
                hound::SampleFormat::Int => "integer",
                hound::SampleFormat::Float => "float",
            },
        });
    }
    let samples = reader.duration();
    if samples > RECORDING_SAMPLES_MAX {
        return Err(DetectError::TooLong {
            samples,
            max: RECORDING_SAMPLES_MAX,
        });
    }
    let mut detector = InbandDetector::new();
    let mut digits = String::new();
    let mut chunk = Vec::with_capacity(160);
    let drain = |detector: &mut InbandDetector, digits: &mut String| {
        while let Some(event) = detector.poll_event() {
            if let InbandEvent::Started { digit, .. } = event {
                digits.push(digit.to_char());
            }
        }
    };
    for sample in reader.samples::<i16>() {
        chunk.push(sample?);
        if chunk.len() == chunk.capacity() {
            detector.push_samples(&chunk);
            chunk.clear();
            drain(&mut detector, &mut digits);
        }
    }
    detector.push_samples(&chunk);
    detector.finish();
    drain(&mut detector, &mut digits);
    Ok(digits)
}

/// [`detect_file`] over several files, one result per path, in order.
pub fn detect_files<P: AsRef<Path>>(paths: &[P]) -> Vec<(PathBuf, Result<String, DetectError>)> {
    paths
        .iter()
        .map(|p| (p.as_ref().to_path_buf(), detect_file(p.as_ref())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::generate::{RenderOptions, pcm_wav, render_digits, ulaw_wav};
    use super::*;

    /// A fresh directory for this test's files.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("telepay-dtmf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        dir
    }

    #[test]
    fn files_yield_digits_or_clear_errors() {
        let dir = scratch_dir("detect");
        let audio =
            render_digits("0123456789*#ABCD", &RenderOptions::default()).unwrap_or_default();
        let good = dir.join("keys.wav");
        std::fs::write(&good, pcm_wav(&audio)).unwrap_or_else(|e| panic!("{e}"));
        let silent = dir.join("silent.wav");
        std::fs::write(&silent, pcm_wav(&vec![0; 8000])).unwrap_or_else(|e| panic!("{e}"));
        let companded = dir.join("ulaw.wav");
        std::fs::write(&companded, ulaw_wav(&audio)).unwrap_or_else(|e| panic!("{e}"));
        let stereo = dir.join("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        if let Ok(mut w) = hound::WavWriter::create(&stereo, spec) {
            let _ = w.write_sample(0_i16);
            let _ = w.write_sample(0_i16);
            let _ = w.finalize();
        }
        let missing = dir.join("missing.wav");
        let junk = dir.join("junk.wav");
        std::fs::write(&junk, b"RIFF\x04\x00\x00\x00WAVEjunk").unwrap_or_else(|e| panic!("{e}"));

        let results = detect_files(&[&good, &silent, &companded, &stereo, &missing, &junk]);
        assert_eq!(results.len(), 6);
        assert_eq!(results[0].0, good);
        assert_eq!(results[0].1.as_deref().ok(), Some("0123456789*#ABCD"));
        assert_eq!(results[1].1.as_deref().ok(), Some(""));
        // hound does not read μ-law, and says so.
        assert!(matches!(results[2].1, Err(DetectError::Wav(_))));
        match &results[3].1 {
            Err(e @ DetectError::Format { channels: 2, .. }) => {
                assert!(e.to_string().contains("need 8000 Hz mono 16-bit PCM"));
            }
            other => panic!("stereo file gave {other:?}"),
        }
        assert!(matches!(results[4].1, Err(DetectError::Wav(_))));
        assert!(matches!(results[5].1, Err(DetectError::Wav(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
