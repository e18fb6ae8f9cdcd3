//! The logic of the `telepay voice …` subcommands as pure functions returning their output;
//! `main.rs` only parses arguments, calls these and prints.
//!
//! - `digits FILE…` → [`digits`]: `FILE<TAB>DIGITS<TAB>CONFIDENCE` per file (DIGITS empty when
//!   rejected).
//! - `enrol --out TEMPLATE FILE…` → [`enrol`].
//! - `score --template TEMPLATE FILE…` → [`score`]: `FILE<TAB>SCORE` per file.
//! - `eval DIR` → [`eval`]; `train FSDD_DIR OUT_DIR` → [`train`].
//!
//! Every file must be an 8 kHz mono 16-bit PCM WAV; anything else stops the command with an
//! error naming the file and what it is.

use super::collector::Verifier;
use super::voiceprint::Template;
use super::{VoiceError, VoiceModel, train as training, wav};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bound on files per command.
pub const FILES_MAX: usize = 10_000;

fn check_count(files: &[PathBuf]) -> Result<(), VoiceError> {
    if files.len() > FILES_MAX {
        return Err(VoiceError::BadConfig("too many files for one command"));
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<i16>, VoiceError> {
    wav::read_wav(path).map_err(|e| match e {
        VoiceError::UnsupportedFormat { .. } | VoiceError::TooLong => {
            VoiceError::BadWav(format!("{}: {e}", path.display()))
        }
        other => other,
    })
}

/// `telepay voice digits`.
pub fn digits(model: &VoiceModel, files: &[PathBuf]) -> Result<Vec<String>, VoiceError> {
    check_count(files)?;
    files
        .iter()
        .map(|f| {
            let r = model.recognizer.recognize(&read(f)?);
            Ok(format!(
                "{}\t{}\t{:.3}",
                f.display(),
                r.digits,
                r.confidence
            ))
        })
        .collect()
}

/// `telepay voice enrol --out TEMPLATE`: writes the template and returns a summary line.
pub fn enrol(model: &VoiceModel, out: &Path, files: &[PathBuf]) -> Result<String, VoiceError> {
    check_count(files)?;
    let audio: Vec<Vec<i16>> = files.iter().map(|f| read(f)).collect::<Result<_, _>>()?;
    let utterances: Vec<(&[i16], Option<&str>)> =
        audio.iter().map(|a| (a.as_slice(), None)).collect();
    let template = Verifier::new(Arc::new(model.clone())).enrol(&utterances)?;
    let bytes = template.to_bytes();
    std::fs::write(out, &bytes).map_err(|e| VoiceError::Io(format!("{}: {e}", out.display())))?;
    let enrolled: u32 = template.counts.iter().sum();
    Ok(format!(
        "{}\t{} digits enrolled ({} distinct)\t{} bytes",
        out.display(),
        enrolled,
        template.counts.iter().filter(|c| **c > 0).count(),
        bytes.len()
    ))
}

/// `telepay voice score --template TEMPLATE`: the recognizer labels the digits (no prompt).
pub fn score(
    model: &VoiceModel,
    template: &Path,
    files: &[PathBuf],
) -> Result<Vec<String>, VoiceError> {
    check_count(files)?;
    let bytes = std::fs::read(template)
        .map_err(|e| VoiceError::Io(format!("{}: {e}", template.display())))?;
    let template = Template::from_bytes(&bytes)?;
    let verifier = Verifier::new(Arc::new(model.clone()));
    files
        .iter()
        .map(|f| {
            let (_, s) = verifier.score(&read(f)?, None, &template);
            Ok(format!("{}\t{:.4}", f.display(), s))
        })
        .collect()
}

/// `telepay voice eval DIR`: the documented protocol (trains five folds: minutes).
pub fn eval(dir: &Path, log: &mut dyn FnMut(String)) -> Result<String, VoiceError> {
    let config = training::EvalConfig {
        check_digit: Some(crate::settlement::txn_number::damm_valid),
        ..training::EvalConfig::default()
    };
    training::evaluate(dir, &config, log)
}

/// `telepay voice train FSDD_DIR OUT_DIR`: writes `OUT_DIR/voice.bin`.
pub fn train(
    fsdd_dir: &Path,
    out_dir: &Path,
    log: &mut dyn FnMut(String),
) -> Result<String, VoiceError> {
    training::train(fsdd_dir, out_dir, log)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{model, spoken};
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("telepay-voice-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn digits_enrol_and_score_print_their_lines() {
        let model = model();
        let dir = temp_dir("cli");
        let pin = dir.join("pin.wav");
        wav::write_wav(&pin, &spoken("1968", "george", 4, 300, 300)).unwrap();
        let silence = dir.join("silence.wav");
        wav::write_wav(&silence, &vec![0i16; 8_000]).unwrap();
        let lines = digits(&model, &[pin.clone(), silence.clone()]).unwrap();
        assert_eq!(lines.len(), 2);
        let fields: Vec<&str> = lines[0].split('\t').collect();
        assert_eq!(fields[0], pin.display().to_string());
        assert_eq!(fields[1], "1968");
        assert!(fields[2].parse::<f32>().unwrap() > 0.5);
        let fields: Vec<&str> = lines[1].split('\t').collect();
        assert_eq!((fields[1], fields[2]), ("", "0.000"));

        // Enrol george from isolated digits, score george and nicolas.
        let mut enrol_files = Vec::new();
        for d in 0..10u8 {
            for take in 0..3u32 {
                let f = dir.join(format!("e{d}{take}.wav"));
                wav::write_wav(&f, &super::super::test_support::fsdd(d, "george", take)).unwrap();
                enrol_files.push(f);
            }
        }
        let template = dir.join("george.tpl");
        let summary = enrol(&model, &template, &enrol_files).unwrap();
        assert!(summary.contains("bytes"), "{summary}");
        assert!(std::fs::metadata(&template).unwrap().len() <= 16 * 1_024);
        let other = dir.join("other.wav");
        wav::write_wav(&other, &spoken("1968", "nicolas", 4, 300, 300)).unwrap();
        let scores = score(&model, &template, &[pin.clone(), other.clone()]).unwrap();
        let value = |line: &str| line.split('\t').nth(1).unwrap().parse::<f32>().unwrap();
        assert!(value(&scores[0]) > value(&scores[1]), "{scores:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_formats_get_a_clear_error() {
        let model = model();
        let dir = temp_dir("format");
        let wide = dir.join("wide.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&wide, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let message = digits(&model, std::slice::from_ref(&wide))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("wide.wav") && message.contains("16000 Hz"),
            "{message}"
        );
        let missing = digits(&model, &[dir.join("missing.wav")])
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing.wav"), "{missing}");
        let not_template = score(&model, &wide, std::slice::from_ref(&wide)).unwrap_err();
        assert!(
            matches!(not_template, VoiceError::BadTemplate(_)),
            "{not_template}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
