//! Recorded prompts: loading, G.711 encoding, and speaking values by concatenation.
//!
//! # Contract
//!
//! - [`PromptLibrary::load_dir`] reads every `*.wav` of one language folder (`prompts/en/`) once,
//!   at start or on reload. Each file must be 8 kHz mono 16-bit PCM; anything else is a
//!   [`PromptError::Format`] naming the file. The prompt's name is the file stem (`welcome.wav` is
//!   `welcome`). The library keeps linear samples and their μ-law and A-law encodings, so a call
//!   never encodes a prompt again.
//! - A [`PromptRef`] is a cheap, shareable handle (an `Arc`) to one prompt's audio. The IVR hands
//!   out lists of them; the RTP sender walks a list with a [`Playback`] cursor that yields G.711
//!   frames of any packet size, padding the last one with silence.
//! - [`Language`] turns values into prompt *names* by concatenation, with pure, table-driven
//!   functions: [`Language::say_number`], [`Language::say_amount`], [`Language::say_digits`],
//!   [`Language::say_date`]. [`PromptLibrary::resolve`] turns the names into audio. Adding a
//!   language means a table in `say.rs`, a folder of phrases and a voice in `scripts/make-prompts`.
//! - Data that is not a fixed phrase (a merchant's name, a payer's security question) is not a
//!   prompt of the library: render it once at registration (`scripts/make-prompts --say TEXT OUT`),
//!   keep the WAV in the data folder and load it with [`PromptRef::load_wav`]. Without such a
//!   rendering, [`Language::say_merchant_fallback`] spells short names and says "the merchant"
//!   otherwise.
//!
//! The μ-law and A-law encoders here are a private copy (ITU-T G.711 segment encoding), so this
//! module has no dependency outside its folder.

mod g711;
mod library;
mod say;

pub use g711::{G711Law, Playback};
pub use library::{PROMPT_SAMPLES_MAX, PROMPTS_MAX, PromptLibrary, PromptRef, SAMPLE_RATE_HZ};
pub use say::{CurrencyWords, Language};

#[cfg(test)]
pub(crate) use library::repo_prompts_dir;

use std::path::PathBuf;

/// Everything that can go wrong with prompts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    /// A prompt file or folder could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not a readable WAV file.
    #[error("{path}: not a readable WAV file: {source}")]
    Wav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    /// A WAV file has the wrong format.
    #[error(
        "{path}: prompts must be 8000 Hz mono 16-bit integer PCM, found {sample_rate_hz} Hz, \
         {channels} channel(s), {bits_per_sample}-bit {sample_format}"
    )]
    Format {
        path: PathBuf,
        sample_rate_hz: u32,
        channels: u16,
        bits_per_sample: u16,
        sample_format: &'static str,
    },
    /// A prompt is longer than [`PROMPT_SAMPLES_MAX`].
    #[error("{path}: {samples} samples, more than the {samples_max} allowed for one prompt")]
    TooLong {
        path: PathBuf,
        samples: u64,
        samples_max: usize,
    },
    /// A folder holds more than [`PROMPTS_MAX`] prompts.
    #[error("{path}: more than {prompts_max} prompts")]
    TooMany { path: PathBuf, prompts_max: usize },
    /// A prompt's name is not made of `a-z`, `0-9` and `_`.
    #[error("{path}: prompt names use only a-z, 0-9 and _")]
    BadName { path: PathBuf },
    /// A folder has no prompts at all.
    #[error("{path}: no .wav prompts found")]
    Empty { path: PathBuf },
    /// The folder's name is not a language this build can speak.
    #[error("{path}: `{code}` is not a supported prompt language")]
    UnknownLanguage { path: PathBuf, code: String },
    /// A prompt name was asked for that the library does not hold.
    #[error("unknown prompt `{name}`")]
    Unknown { name: String },
    /// A currency has no spoken names in this language.
    #[error("currency `{code}` has no spoken names")]
    UnknownCurrency { code: String },
    /// A date that does not exist.
    #[error("no such date {year:04}-{month:02}-{day:02}")]
    BadDate { year: i32, month: u32, day: u32 },
}
