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
            Ok(format!("{}\t{}\t{:.3}", f.display(), r.digits, r.confidence))
        })
        .collect()
}

/// `telepay voice enrol --out TEMPLATE`: writes the template and returns a summary line.
pub fn enrol(model: &VoiceModel, out: &Path, files: &[PathBuf]) -> Result<String, VoiceError> {
    check_count(files)?;
    let audio: Vec<Vec<i16>> = files.iter().map(|f| read(f)).collect::<Result<_, _>>()?;
    let utterances: Vec<(&[i16], Option<&str>)> = audio.iter().map(|a| (a.as_slice(), None)).collect();
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
pub fn score(model: &VoiceModel, template: &Path, files: &[PathBuf]) -> Result<Vec<String>, VoiceError> {
    check_count(files)?;
    let bytes = std::fs::read(template).map_err(|e| VoiceError::Io(format!("{}: {e}", template.display())))?;
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
    training::evaluate(dir, &training::EvalConfig::default(), log)
}

/// `telepay voice train FSDD_DIR OUT_DIR`: writes `OUT_DIR/voice.bin`.
pub fn train(fsdd_dir: &Path, out_dir: &Path, log: &mut dyn FnMut(String)) -> Result<String, VoiceError> {
    training::train(fsdd_dir, out_dir, log)
}
