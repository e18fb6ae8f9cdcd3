//! `telepay bench voice`: the CPU cost of speech on one thread, as a real-time factor.
//!
//! From a folder of FSDD-style recordings (`{digit}_{speaker}_{index}.wav`), the bench builds
//! spoken answers the way callers give them (digits with 150–400 ms pauses and silence around,
//! half of them through μ-law), and runs on the calling thread exactly what a speech worker runs
//! for each: the streaming collector fed in 20 ms packets (end-pointing with webrtc-vad, then
//! recognition), the check-digit search for 9-digit numbers, and for 4-digit answers the
//! text-prompted voice-print verification against a template enrolled from the same speaker's
//! other takes. The real-time factor is CPU time over audio time (thread CPU time, so other
//! load on the machine does not count); `sessions_per_core` is its inverse.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::voice::{
    CollectorConfig, CollectorEvent, SpeechCollector, Verifier, VoiceModel, check_digit, g711,
    train,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct VoiceBench {
    pub fsdd_dir: PathBuf,
    /// Answers of each kind (4-digit voice-print answers and 9-digit numbers).
    pub answers: usize,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct VoiceFigures {
    pub answers: usize,
    pub audio_s: f64,
    pub cpu_s: f64,
    pub rtf: f64,
    pub sessions_per_core: f64,
    pub numbers_heard: usize,
    pub template_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum VoiceBenchError {
    #[error("{0}")]
    Voice(#[from] crate::voice::VoiceError),
    #[error("the folder has no recordings of digit {digit} by {speaker}")]
    Missing { digit: u8, speaker: String },
    #[error("thread CPU time is unavailable: {0}")]
    Clock(std::io::Error),
}

/// This thread's CPU time (user + system) from `/proc/thread-self/stat`, in clock ticks of
/// 10 ms: enough for a bench that runs seconds of CPU.
fn thread_cpu() -> Result<Duration, VoiceBenchError> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").map_err(VoiceBenchError::Clock)?;
    let bad = || {
        VoiceBenchError::Clock(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "unexpected /proc/thread-self/stat",
        ))
    };
    // Fields after the command name, which is in parentheses: state is field 3, utime 14,
    // stime 15.
    let rest = stat.rsplit_once(')').ok_or_else(bad)?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64, VoiceBenchError> {
        fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(bad)
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_millis(total * 10))
}

/// Runs the bench on the calling thread.
pub fn run(bench: &VoiceBench) -> Result<VoiceFigures, VoiceBenchError> {
    let model = Arc::new(VoiceModel::embedded()?);
    let corpus = train::load_corpus(&bench.fsdd_dir)?;
    let take = |digit: u8, speaker: usize, n: usize| -> Result<&[i16], VoiceBenchError> {
        let takes: Vec<&train::Item> = corpus
            .items
            .iter()
            .filter(|i| i.digit == digit && i.speaker == speaker)
            .collect();
        match takes.get(n % takes.len().max(1)) {
            Some(item) => Ok(&item.samples),
            None => Err(VoiceBenchError::Missing {
                digit,
                speaker: corpus.speakers.get(speaker).cloned().unwrap_or_default(),
            }),
        }
    };
    let speakers = corpus.speakers.len().max(1);
    let mut rng = crate::voice::dsp::Rng::new(7);
    let verifier = Verifier::new(Arc::clone(&model));
    // A template per speaker from takes 0 and 1 of every digit.
    let mut templates = Vec::new();
    for s in 0..speakers {
        let mut enrolment = Vec::new();
        for n in 0..2 {
            for d in 0..10u8 {
                enrolment.push((take(d, s, n)?.to_vec(), d));
            }
        }
        let utterances: Vec<(&[i16], Option<String>)> = enrolment
            .iter()
            .map(|(a, d)| (a.as_slice(), Some(d.to_string())))
            .collect();
        let refs: Vec<(&[i16], Option<&str>)> =
            utterances.iter().map(|(a, p)| (*a, p.as_deref())).collect();
        templates.push(verifier.enrol(&refs)?);
    }
    let template_bytes = templates
        .iter()
        .map(|t| t.to_bytes().len())
        .max()
        .unwrap_or(0);

    // The answers, built before the clock starts.
    let mut answers: Vec<(Vec<i16>, String, usize)> = Vec::new();
    for k in 0..bench.answers * 2 {
        let len = if k % 2 == 0 { 4 } else { 9 };
        let speaker = k % speakers;
        let digits: String = (0..len)
            .map(|_| char::from(b'0' + (rng.next_u64() % 10) as u8))
            .collect();
        let mut audio = vec![0i16; 8 * 300];
        for (i, d) in digits.bytes().enumerate() {
            if i > 0 {
                let pause_ms = 150 + (rng.next_u64() % 250) as usize;
                audio.extend(std::iter::repeat_n(0i16, 8 * pause_ms));
            }
            audio.extend_from_slice(take(d - b'0', speaker, 2 + k)?);
        }
        audio.extend(std::iter::repeat_n(0i16, 8 * 1_500));
        if k % 4 < 2 {
            audio = g711::round_trip(&audio, g711::Law::Mu);
        }
        answers.push((audio, digits, speaker));
    }

    let audio_samples: usize = answers.iter().map(|a| a.0.len()).sum();
    let damm = |n: &str| crate::settlement::txn_number::damm_valid(n);
    let mut numbers_heard = 0;
    let start = thread_cpu()?;
    for (audio, digits, speaker) in &answers {
        let config = CollectorConfig {
            digits_min: digits.len(),
            digits_max: digits.len(),
            ..CollectorConfig::default()
        };
        let mut collector = SpeechCollector::new(Arc::clone(&model), config)?;
        let mut result = None;
        for packet in audio.chunks(160) {
            collector.push(packet);
            while let Some(event) = collector.poll() {
                if let CollectorEvent::Result(r) = event {
                    result = Some(r);
                }
            }
            if collector.is_finished() {
                break;
            }
        }
        let utterance = collector.take_utterance();
        let Some(recognition) = result else {
            continue;
        };
        if digits.len() == 9 {
            let heard: String = recognition
                .segments
                .iter()
                .map(|s| char::from(b'0' + s.digit))
                .collect();
            if heard == *digits {
                numbers_heard += 1;
            } else if heard.len() == 9 {
                // The random strings are not Damm numbers; the search costs the same.
                let _ = check_digit::correct(&model.recognizer, &utterance, &heard, damm);
            }
        } else {
            std::hint::black_box(verifier.verify(&utterance, digits, &templates[*speaker]));
        }
    }
    let cpu = thread_cpu()?.saturating_sub(start);
    let audio_s = audio_samples as f64 / 8_000.0;
    let cpu_s = cpu.as_secs_f64();
    let rtf = if audio_s > 0.0 { cpu_s / audio_s } else { 0.0 };
    Ok(VoiceFigures {
        answers: answers.len(),
        audio_s,
        cpu_s,
        rtf,
        sessions_per_core: if rtf > 0.0 { 1.0 / rtf } else { 0.0 },
        numbers_heard,
        template_bytes,
    })
}
