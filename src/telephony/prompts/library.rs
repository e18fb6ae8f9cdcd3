//! The prompt library: every WAV of a language folder, loaded once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{G711Law, Language, PromptError};

/// The only sample rate prompts may have.
pub const SAMPLE_RATE_HZ: u32 = 8000;
/// The longest prompt accepted: 30 s. A prompt is a phrase, not a recording of a call.
pub const PROMPT_SAMPLES_MAX: usize = 30 * SAMPLE_RATE_HZ as usize;
/// The most prompts one language folder may hold.
pub const PROMPTS_MAX: usize = 4096;

struct Prompt {
    name: Box<str>,
    linear: Box<[i16]>,
    ulaw: Box<[u8]>,
    alaw: Box<[u8]>,
}

/// A shared handle to one prompt's audio: linear samples and both G.711 encodings.
#[derive(Clone)]
pub struct PromptRef(Arc<Prompt>);

impl PromptRef {
    /// Builds a prompt from linear 8 kHz samples (at most [`PROMPT_SAMPLES_MAX`]).
    pub fn from_samples(name: &str, samples: Vec<i16>) -> Result<PromptRef, PromptError> {
        if samples.len() > PROMPT_SAMPLES_MAX {
            return Err(PromptError::TooLong {
                path: PathBuf::from(name),
                samples: samples.len() as u64,
                samples_max: PROMPT_SAMPLES_MAX,
            });
        }
        let ulaw = samples.iter().map(|&s| G711Law::Ulaw.encode(s)).collect();
        let alaw = samples.iter().map(|&s| G711Law::Alaw.encode(s)).collect();
        Ok(PromptRef(Arc::new(Prompt {
            name: name.into(),
            linear: samples.into_boxed_slice(),
            ulaw,
            alaw,
        })))
    }

    /// Loads one 8 kHz mono 16-bit WAV file, e.g. a merchant's name rendered at registration.
    pub fn load_wav(name: &str, path: &Path) -> Result<PromptRef, PromptError> {
        let mut reader = hound::WavReader::open(path).map_err(|source| match source {
            hound::Error::IoError(source) => PromptError::Io {
                path: path.to_path_buf(),
                source,
            },
            source => PromptError::Wav {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let spec = reader.spec();
        if spec.sample_rate != SAMPLE_RATE_HZ
            || spec.channels != 1
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
        {
            return Err(PromptError::Format {
                path: path.to_path_buf(),
                sample_rate_hz: spec.sample_rate,
                channels: spec.channels,
                bits_per_sample: spec.bits_per_sample,
                sample_format: match spec.sample_format {
                    hound::SampleFormat::Int => "integer",
                    hound::SampleFormat::Float => "float",
                },
            });
        }
        // Check the declared length before reading, so a huge file is refused without reading it.
        let declared = u64::from(reader.len());
        if declared > PROMPT_SAMPLES_MAX as u64 {
            return Err(PromptError::TooLong {
                path: path.to_path_buf(),
                samples: declared,
                samples_max: PROMPT_SAMPLES_MAX,
            });
        }
        let samples = reader
            .samples::<i16>()
            .collect::<Result<Vec<i16>, hound::Error>>()
            .map_err(|source| PromptError::Wav {
                path: path.to_path_buf(),
                source,
            })?;
        PromptRef::from_samples(name, samples)
    }

    /// The prompt's name (its file stem).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Linear 16-bit samples at 8 kHz.
    pub fn samples(&self) -> &[i16] {
        &self.0.linear
    }

    /// The samples encoded with one G.711 law, one byte per sample.
    pub fn encoded(&self, law: G711Law) -> &[u8] {
        match law {
            G711Law::Ulaw => &self.0.ulaw,
            G711Law::Alaw => &self.0.alaw,
        }
    }

    /// The prompt's length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.0.linear.len() as u64 * 1000 / u64::from(SAMPLE_RATE_HZ)
    }
}

impl fmt::Debug for PromptRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PromptRef({})", self.0.name)
    }
}

/// Every prompt of one language, by name.
#[derive(Clone)]
pub struct PromptLibrary {
    language: Language,
    by_name: BTreeMap<Box<str>, PromptRef>,
}

impl fmt::Debug for PromptLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromptLibrary")
            .field("language", &self.language)
            .field("prompts", &self.by_name.len())
            .finish()
    }
}

impl PromptLibrary {
    /// Loads every `*.wav` in `dir`; the folder's name is the language code (`prompts/en`).
    pub fn load_dir(dir: &Path) -> Result<PromptLibrary, PromptError> {
        let code = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let language = Language::from_code(&code).ok_or_else(|| PromptError::UnknownLanguage {
            path: dir.to_path_buf(),
            code,
        })?;
        let entries = std::fs::read_dir(dir).map_err(|source| PromptError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| PromptError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("wav") {
                if paths.len() == PROMPTS_MAX {
                    return Err(PromptError::TooMany {
                        path: dir.to_path_buf(),
                        prompts_max: PROMPTS_MAX,
                    });
                }
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return Err(PromptError::Empty {
                path: dir.to_path_buf(),
            });
        }
        // Sorted, so that errors and iteration order do not depend on the file system.
        paths.sort();
        let mut prompts = Vec::with_capacity(paths.len());
        for path in paths {
            let name = path
                .file_stem()
                .and_then(|n| n.to_str())
                .filter(|n| is_prompt_name(n))
                .ok_or_else(|| PromptError::BadName { path: path.clone() })?
                .to_string();
            prompts.push(PromptRef::load_wav(&name, &path)?);
        }
        Ok(PromptLibrary::from_prompts(language, prompts))
    }

    /// Builds a library from prompts already in memory (tests, generated audio).
    pub fn from_prompts(language: Language, prompts: Vec<PromptRef>) -> PromptLibrary {
        let by_name = prompts
            .into_iter()
            .map(|p| (Box::<str>::from(p.name()), p))
            .collect();
        PromptLibrary { language, by_name }
    }

    /// The language these prompts speak.
    pub fn language(&self) -> Language {
        self.language
    }

    /// One prompt by name.
    pub fn get(&self, name: &str) -> Option<&PromptRef> {
        self.by_name.get(name)
    }

    /// True when the library holds a prompt of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Turns prompt names (e.g. from [`Language::say_amount`]) into audio.
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<PromptRef>, PromptError> {
        names
            .iter()
            .map(|n| {
                self.get(n.as_ref())
                    .cloned()
                    .ok_or_else(|| PromptError::Unknown {
                        name: n.as_ref().to_string(),
                    })
            })
            .collect()
    }

    /// Every prompt name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(|k| &**k)
    }

    /// How many prompts the library holds.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when the library holds no prompt.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

fn is_prompt_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The repository's `prompts/` folder, found from this file's path both when this module is
/// built inside telepay (a relative path, tests run in the package root) and when it is
/// included by absolute path from elsewhere.
#[cfg(test)]
pub(crate) fn repo_prompts_dir() -> PathBuf {
    let here = Path::new(file!());
    // src/telephony/prompts/library.rs -> four levels up is the repository root.
    let root = here
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    root.join("prompts")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "telepay-prompts-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            tag
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_wav(path: &Path, rate: u32, channels: u16, bits: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            if bits == 8 {
                w.write_sample((s >> 8) as i8).unwrap();
            } else {
                w.write_sample(s).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn loads_a_folder_and_encodes_once() {
        let dir = temp_dir("ok").join("en");
        std::fs::create_dir_all(&dir).unwrap();
        write_wav(&dir.join("hello.wav"), 8000, 1, 16, &[0, 1000, -1000, 0]);
        write_wav(&dir.join("bye.wav"), 8000, 1, 16, &[5; 800]);
        std::fs::write(dir.join("notes.txt"), "not a prompt").unwrap();
        let lib = PromptLibrary::load_dir(&dir).unwrap();
        assert_eq!(lib.language(), Language::En);
        assert_eq!(lib.names().collect::<Vec<_>>(), ["bye", "hello"]);
        let hello = lib.get("hello").unwrap();
        assert_eq!(hello.samples(), &[0, 1000, -1000, 0]);
        assert_eq!(hello.encoded(G711Law::Ulaw)[0], 0xFF);
        assert_eq!(hello.encoded(G711Law::Alaw)[0], 0xD5);
        assert_eq!(lib.get("bye").unwrap().duration_ms(), 100);
        let seq = lib.resolve(&["hello", "bye"]).unwrap();
        assert_eq!(seq.len(), 2);
        match lib.resolve(&["hello", "nope"]) {
            Err(PromptError::Unknown { name }) => assert_eq!(name, "nope"),
            other => panic!("expected unknown prompt, got {other:?}"),
        }
    }

    #[test]
    fn wrong_formats_name_the_file() {
        for (tag, rate, channels, bits) in [
            ("rate", 16000, 1, 16),
            ("stereo", 8000, 2, 16),
            ("bits", 8000, 1, 8),
        ] {
            let dir = temp_dir(tag).join("en");
            std::fs::create_dir_all(&dir).unwrap();
            write_wav(&dir.join("good.wav"), 8000, 1, 16, &[0; 10]);
            write_wav(&dir.join("bad.wav"), rate, channels, bits, &[0; 10]);
            let err = PromptLibrary::load_dir(&dir).unwrap_err();
            assert!(matches!(err, PromptError::Format { .. }), "{tag}: {err:?}");
            let text = err.to_string();
            assert!(text.contains("bad.wav"), "{tag}: {text}");
            assert!(text.contains("8000 Hz mono 16-bit"), "{tag}: {text}");
        }
    }

    #[test]
    fn junk_and_bad_names_and_unknown_languages_are_errors() {
        let dir = temp_dir("junk").join("en");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("junk.wav"), b"RIFF....not really").unwrap();
        let err = PromptLibrary::load_dir(&dir).unwrap_err();
        assert!(matches!(err, PromptError::Wav { .. }), "{err:?}");
        assert!(err.to_string().contains("junk.wav"));

        let dir = temp_dir("name").join("en");
        std::fs::create_dir_all(&dir).unwrap();
        write_wav(&dir.join("Bad Name.wav"), 8000, 1, 16, &[0; 10]);
        assert!(matches!(
            PromptLibrary::load_dir(&dir),
            Err(PromptError::BadName { .. })
        ));

        let dir = temp_dir("lang").join("xx");
        std::fs::create_dir_all(&dir).unwrap();
        write_wav(&dir.join("a.wav"), 8000, 1, 16, &[0; 10]);
        assert!(matches!(
            PromptLibrary::load_dir(&dir),
            Err(PromptError::UnknownLanguage { .. })
        ));

        let dir = temp_dir("empty").join("en");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(
            PromptLibrary::load_dir(&dir),
            Err(PromptError::Empty { .. })
        ));
    }

    #[test]
    fn too_long_is_refused() {
        assert!(matches!(
            PromptRef::from_samples("long", vec![0; PROMPT_SAMPLES_MAX + 1]),
            Err(PromptError::TooLong { .. })
        ));
        let dir = temp_dir("long").join("en");
        std::fs::create_dir_all(&dir).unwrap();
        write_wav(
            &dir.join("long.wav"),
            8000,
            1,
            16,
            &vec![0; PROMPT_SAMPLES_MAX + 1],
        );
        let err = PromptLibrary::load_dir(&dir).unwrap_err();
        assert!(matches!(err, PromptError::TooLong { .. }), "{err:?}");
        assert!(err.to_string().contains("long.wav"));
    }

    #[test]
    fn playback_cuts_frames_across_prompts_and_pads_with_silence() {
        use super::super::Playback;
        let a = PromptRef::from_samples("a", vec![1000; 100]).unwrap();
        let b = PromptRef::from_samples("b", vec![-1000; 150]).unwrap();
        let mut p = Playback::new(vec![a, b], G711Law::Ulaw);
        assert_eq!(p.remaining_samples(), 250);
        let mut frame = [0u8; 160];
        assert_eq!(p.fill(&mut frame), 160);
        assert_eq!(frame[99], G711Law::Ulaw.encode(1000));
        assert_eq!(frame[100], G711Law::Ulaw.encode(-1000));
        assert!(!p.is_finished());
        assert_eq!(p.fill(&mut frame), 90);
        assert_eq!(frame[89], G711Law::Ulaw.encode(-1000));
        assert!(frame[90..].iter().all(|&c| c == 0xFF));
        assert!(p.is_finished());
        assert_eq!(p.fill(&mut frame), 0);
        assert!(frame.iter().all(|&c| c == 0xFF));
    }

    /// Every committed prompt loads, and the folder is exactly the phrase list.
    #[test]
    fn committed_prompts_load_and_match_their_phrase_list() {
        let dir = repo_prompts_dir().join("en");
        let lib = PromptLibrary::load_dir(&dir).unwrap();
        let phrases = std::fs::read_to_string(dir.join("phrases.tsv")).unwrap();
        let mut listed: Vec<&str> = phrases
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split('\t').next())
            .collect();
        listed.sort_unstable();
        assert_eq!(lib.names().collect::<Vec<_>>(), listed);
        for name in lib.names() {
            let p = lib.get(name).unwrap();
            assert!(!p.samples().is_empty(), "{name} is empty");
            assert!(p.duration_ms() < 10_000, "{name} is {} ms", p.duration_ms());
            // make-prompts normalises the peak to -1 dBFS (29204) and turns loud prompts down to
            // -16 dBFS RMS: nothing clips, nothing is near-silent.
            let peak = p
                .samples()
                .iter()
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap_or(0);
            assert!((8_000..=29_300).contains(&peak), "{name} peaks at {peak}");
            let energy: f64 = p.samples().iter().map(|&s| f64::from(s).powi(2)).sum();
            let rms_dbfs =
                10.0 * (energy / p.samples().len() as f64).log10() - 20.0 * 32768f64.log10();
            assert!(
                (-22.0..=-15.5).contains(&rms_dbfs),
                "{name} RMS {rms_dbfs:.1} dBFS"
            );
        }
    }
}
