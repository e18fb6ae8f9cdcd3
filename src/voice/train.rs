//! Training and evaluation on a folder of FSDD-style recordings (`{digit}_{speaker}_{index}.wav`).
//!
//! - [`train`] writes `voice.bin` (classifier + voice-print background) from every recording.
//! - [`evaluate`] runs the documented protocol: leave-one-speaker-out digit accuracy (isolated
//!   files and connected strings built from the held-out speaker's takes), and the equal error
//!   rate of 4-digit text-prompted voice-print trials where neither the target nor the impostor
//!   is in the background (see docs/voice.md).
//!
//! Everything is seeded; the same folder gives the same bytes.

use super::dsp::{self, Frontend, Rng};
use super::features::{self, Span};
use super::g711::{self, Law};
use super::recognizer::{self, CLASS_OH, CLASS_OTHER, Recognizer};
use super::voiceprint::{Background, DIGIT_VECTOR_LEN, Template};
use super::{VoiceError, VoiceModel, wav};
use std::path::{Path, PathBuf};

/// Bound on the corpus size.
pub const CORPUS_FILES_MAX: usize = 20_000;
/// Training epochs and seed of the shipped model.
pub const EPOCHS: usize = 60;
pub const SEED: u64 = 20_240_601;
/// Vocal tract length warps used in augmentation.
const WARPS: [f32; 9] = [0.88, 0.91, 0.94, 0.97, 1.0, 1.03, 1.06, 1.09, 1.12];

/// One recording of the corpus.
#[derive(Debug, Clone)]
pub struct Item {
    pub path: PathBuf,
    pub digit: u8,
    pub speaker: usize,
    pub index: u32,
    pub samples: Vec<i16>,
    /// The voiced extent found in the clean recording.
    pub extent: Option<Span>,
}

/// The corpus: items and speaker names (indexed by `Item::speaker`).
#[derive(Debug, Clone)]
pub struct Corpus {
    pub items: Vec<Item>,
    pub speakers: Vec<String>,
}

/// Parses `{digit}_{speaker}_{index}.wav`.
pub fn parse_name(name: &str) -> Option<(u8, String, u32)> {
    let stem = name.strip_suffix(".wav")?;
    let mut parts = stem.splitn(3, '_');
    let digit: u8 = parts.next()?.parse().ok()?;
    let speaker = parts.next()?.to_string();
    let index: u32 = parts.next()?.parse().ok()?;
    (digit <= 9 && !speaker.is_empty()).then_some((digit, speaker, index))
}

fn extent_of(samples: &[i16]) -> Option<Span> {
    let atoms = features::speech_atoms(samples);
    Some(Span {
        start: atoms.first()?.start,
        end: atoms.last()?.end,
    })
}

pub fn load_corpus(dir: &Path) -> Result<Corpus, VoiceError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| VoiceError::Io(format!("{}: {e}", dir.display())))?;
    let mut named = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| VoiceError::Io(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(parsed) = parse_name(&name) {
            named.push((entry.path(), parsed));
            if named.len() > CORPUS_FILES_MAX {
                return Err(VoiceError::Corpus(format!(
                    "more than {CORPUS_FILES_MAX} recordings"
                )));
            }
        }
    }
    // A fixed order makes training independent of the directory's listing order.
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut speakers: Vec<String> = named.iter().map(|n| n.1.1.clone()).collect();
    speakers.sort();
    speakers.dedup();
    let mut items = Vec::with_capacity(named.len());
    for (path, (digit, speaker, index)) in named {
        let samples = wav::read_wav(&path)?;
        let extent = extent_of(&samples);
        items.push(Item {
            path,
            digit,
            speaker: speakers.iter().position(|s| *s == speaker).unwrap_or(0),
            index,
            samples,
            extent,
        });
    }
    if items.is_empty() {
        return Err(VoiceError::Corpus(format!(
            "no {{digit}}_{{speaker}}_{{index}}.wav files in {}",
            dir.display()
        )));
    }
    Ok(Corpus { items, speakers })
}

fn clip(item: &Item) -> &[i16] {
    match item.extent {
        Some(e) => &item.samples[e.start.min(item.samples.len())..e.end.min(item.samples.len())],
        None => &item.samples,
    }
}

/// Random telephone-like distortion: speed, level, noise, G.711, and a random lead-in.
fn augment(samples: &[i16], rng: &mut Rng) -> Vec<i16> {
    let mut x = wav::to_f32(samples);
    x = dsp::resample_linear(&x, rng.range(0.9, 1.1));
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-4);
    let level = 10f32.powf(rng.range(-24.0, -2.0) / 20.0) / peak;
    let rms = (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt() * level;
    let lead = rng.below(80 * 8);
    let mut out = vec![0.0f32; lead];
    out.extend(x.iter().map(|v| v * level));
    out.extend(std::iter::repeat_n(0.0, rng.below(80 * 8)));
    if rng.uniform() < 0.5 {
        let sigma = rms * 10f32.powf(-rng.range(12.0, 40.0) / 20.0);
        let mut previous = 0.0f32;
        let colour = rng.uniform() * 0.9;
        for v in &mut out {
            previous = colour * previous + rng.normal() * sigma;
            *v += previous;
        }
    }
    let linear = wav::to_i16(&out);
    match rng.below(3) {
        0 => g711::round_trip(&linear, Law::Mu),
        1 => g711::round_trip(&linear, Law::A),
        _ => linear,
    }
}

/// The classifier's vector for a clip, analysed with `frontend`.
fn vector_of(audio: &[i16], frontend: &Frontend) -> Option<Vec<f32>> {
    let extent = extent_of(audio)?;
    let analysis = features::analyse(frontend, &wav::to_f32(audio));
    let (from, to) = analysis.frames_of(extent);
    features::digit_vector(&analysis, from, to)
}

fn silence_padded(core: &[i16]) -> Vec<i16> {
    let mut v = vec![0i16; 800];
    v.extend_from_slice(core);
    v.extend(std::iter::repeat_n(0, 800));
    v
}

/// One epoch of examples: every training item once (augmented), "oh" from the ends of zeros,
/// and non-digit sounds (reversed digits, half digits, two digits run together, noise).
fn epoch_examples(
    items: &[&Item],
    frontends: &[Frontend],
    rng: &mut Rng,
) -> Vec<(Vec<f32>, usize)> {
    let mut out = Vec::with_capacity(items.len() * 3 / 2);
    if items.is_empty() {
        return out;
    }
    let pick = |rng: &mut Rng| items[rng.below(items.len())];
    for item in items {
        let frontend = &frontends[rng.below(frontends.len())];
        if let Some(v) = vector_of(&augment(&item.samples, rng), frontend) {
            out.push((v, item.digit as usize));
        }
        // "oh": the last part of "zero" is the same vowel.
        if item.digit == 0 && rng.uniform() < 0.6 {
            let c = clip(item);
            let keep = (c.len() as f32 * rng.range(0.38, 0.5)) as usize;
            let tail = silence_padded(&c[c.len() - keep..]);
            if let Some(v) = vector_of(&augment(&tail, rng), frontend) {
                out.push((v, CLASS_OH));
            }
        }
    }
    let others = items.len() / 4;
    for k in 0..others {
        let frontend = &frontends[rng.below(frontends.len())];
        let a = clip(pick(rng)).to_vec();
        let core: Vec<i16> = match k % 5 {
            0 => a.iter().rev().copied().collect(),
            1 => a[..(a.len() as f32 * rng.range(0.3, 0.55)) as usize].to_vec(),
            2 => {
                // The end of a "zero" is an "oh", so it is not a non-digit; a few draws find
                // another digit in any real corpus.
                let mut b = pick(rng);
                for _ in 0..32 {
                    if b.digit != 0 {
                        break;
                    }
                    b = pick(rng);
                }
                let b = clip(b);
                b[b.len() - (b.len() as f32 * rng.range(0.3, 0.55)) as usize..].to_vec()
            }
            3 => {
                let mut joined = a.clone();
                joined.extend(std::iter::repeat_n(0, rng.below(320)));
                joined.extend_from_slice(clip(pick(rng)));
                joined
            }
            _ => {
                let len = 8 * (150 + rng.below(650));
                let colour = rng.uniform() * 0.95;
                let mut previous = 0.0f32;
                (0..len)
                    .map(|_| {
                        previous = colour * previous + rng.normal() * 3_000.0;
                        previous.clamp(-30_000.0, 30_000.0) as i16
                    })
                    .collect()
            }
        };
        if let Some(v) = vector_of(&augment(&silence_padded(&core), rng), frontend) {
            out.push((v, CLASS_OTHER));
        }
    }
    out
}

/// Trains the digit classifier on `items`.
pub fn train_recognizer(
    items: &[&Item],
    seed: u64,
    epochs: usize,
    log: &mut dyn FnMut(String),
) -> Recognizer {
    let frontends: Vec<Frontend> = WARPS.iter().map(|w| Frontend::new(*w)).collect();
    let mlps = recognizer::train_classifier(
        |_, rng| epoch_examples(items, &frontends, rng),
        epochs,
        recognizer::MEMBERS,
        seed,
        |epoch, loss| {
            if epoch % 10 == 9 || epoch + 1 == epochs {
                log(format!("  epoch {:>3}: loss {loss:.4}", epoch + 1));
            }
        },
    );
    Recognizer::new(mlps)
}

/// Voice-print vectors of items (clean, μ-law and A-law versions), aligned to `background`
/// (or uniformly when `None`).
fn print_vectors(
    items: &[&Item],
    background: Option<&Background>,
    frontend: &Frontend,
) -> Vec<(u8, usize, Vec<f32>)> {
    let mut out = Vec::new();
    for item in items {
        let Some(extent) = item.extent else { continue };
        for law in [None, Some(Law::Mu), Some(Law::A)] {
            let audio = match law {
                Some(l) => g711::round_trip(&item.samples, l),
                None => item.samples.clone(),
            };
            let analysis = features::analyse(frontend, &wav::to_f32(&audio));
            let (from, to) = analysis.frames_of(extent);
            let v = match background {
                Some(b) => b.digit_vector(&analysis, item.digit, from, to),
                None => features::state_means(
                    &features::print_frames(&analysis, from, to),
                    None,
                    features::PRINT_STATES,
                ),
            };
            if let Some(v) = v {
                out.push((item.digit, item.speaker, v));
            }
        }
    }
    out
}

/// Estimates the voice-print background from `items` (two re-alignment passes).
pub fn train_background(items: &[&Item]) -> Result<Background, VoiceError> {
    let frontend = Frontend::default();
    let mut background = Background::estimate(&print_vectors(items, None, &frontend))?;
    for _ in 0..2 {
        background = Background::estimate(&print_vectors(items, Some(&background), &frontend))?;
    }
    Ok(background)
}

/// Trains the whole model on `items`.
pub fn train_model(
    items: &[&Item],
    seed: u64,
    epochs: usize,
    log: &mut dyn FnMut(String),
) -> Result<VoiceModel, VoiceError> {
    let recognizer = train_recognizer(items, seed, epochs, log);
    let background = train_background(items)?;
    Ok(VoiceModel {
        recognizer,
        background,
    })
}

/// `telepay voice train`: trains on every recording in `fsdd_dir` and writes
/// `out_dir/voice.bin`; returns a summary.
pub fn train(
    fsdd_dir: &Path,
    out_dir: &Path,
    log: &mut dyn FnMut(String),
) -> Result<String, VoiceError> {
    let corpus = load_corpus(fsdd_dir)?;
    log(format!(
        "{} recordings, {} speakers",
        corpus.items.len(),
        corpus.speakers.len()
    ));
    let items: Vec<&Item> = corpus.items.iter().collect();
    let model = train_model(&items, SEED, EPOCHS, log)?;
    let bytes = model.to_bytes();
    std::fs::create_dir_all(out_dir).map_err(|e| VoiceError::Io(e.to_string()))?;
    let path = out_dir.join("voice.bin");
    std::fs::write(&path, &bytes)
        .map_err(|e| VoiceError::Io(format!("{}: {e}", path.display())))?;
    Ok(format!(
        "wrote {} ({} bytes; classifier {} parameters)",
        path.display(),
        bytes.len(),
        model.recognizer.parameter_count()
    ))
}

/// Joins clips with random pauses into one utterance (with 300 ms of silence around it).
pub fn join_with_pauses(clips: &[&[i16]], pause_ms: (usize, usize), rng: &mut Rng) -> Vec<i16> {
    let mut out = vec![0i16; 2_400];
    for (i, c) in clips.iter().enumerate() {
        if i > 0 {
            let ms = pause_ms.0 + rng.below(pause_ms.1.saturating_sub(pause_ms.0) + 1);
            out.extend(std::iter::repeat_n(0, ms * 8));
        }
        out.extend_from_slice(c);
    }
    out.extend(std::iter::repeat_n(0, 2_400));
    out
}

/// Equal error rate (as a fraction) of genuine and impostor scores.
pub fn equal_error_rate(genuine: &[f32], impostor: &[f32]) -> f32 {
    equal_error_rate_at(genuine, impostor).0
}

/// Equal error rate and the threshold where it is reached.
pub fn equal_error_rate_at(genuine: &[f32], impostor: &[f32]) -> (f32, f32) {
    if genuine.is_empty() || impostor.is_empty() {
        return (1.0, 0.0);
    }
    let mut thresholds: Vec<f32> = genuine.iter().chain(impostor).copied().collect();
    thresholds.sort_by(|a, b| a.total_cmp(b));
    let mut best = (f32::INFINITY, 1.0f32, 0.0f32);
    for t in thresholds {
        let frr = genuine.iter().filter(|s| **s < t).count() as f32 / genuine.len() as f32;
        let far = impostor.iter().filter(|s| **s >= t).count() as f32 / impostor.len() as f32;
        let gap = (frr - far).abs();
        if gap < best.0 {
            best = (gap, (frr + far) / 2.0, t);
        }
    }
    (best.1, best.2)
}

/// Protocol settings (see docs/voice.md).
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub epochs: usize,
    /// Enrolment variants: these takes of every digit.
    pub enrol_takes: Vec<std::ops::Range<u32>>,
    /// Test material: these takes.
    pub test_takes: std::ops::Range<u32>,
    /// Connected strings per held-out speaker and length.
    pub strings_per_speaker: usize,
    /// Prompted trials per target speaker and fold.
    pub trials_per_target: usize,
    pub pause_ms: (usize, usize),
    /// The check-digit rule of transaction numbers (Damm); when set, each fold also measures
    /// spoken 9-digit numbers with the check-digit correction the gateway applies.
    pub check_digit: Option<fn(&str) -> bool>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            epochs: EPOCHS,
            enrol_takes: vec![0..3, 0..5],
            test_takes: 20..40,
            strings_per_speaker: 40,
            check_digit: None,
            trials_per_target: 60,
            pause_ms: (150, 400),
        }
    }
}

fn pick_take<'a>(
    items: &[&'a Item],
    speaker: usize,
    digit: u8,
    takes: &std::ops::Range<u32>,
    rng: &mut Rng,
) -> Option<&'a Item> {
    let choices: Vec<&Item> = items
        .iter()
        .copied()
        .filter(|i| {
            i.speaker == speaker
                && i.digit == digit
                && takes.contains(&i.index)
                && i.extent.is_some()
        })
        .collect();
    (!choices.is_empty()).then(|| choices[rng.below(choices.len())])
}

/// Each word aligned to a prompt must have at least this probability of being its prompted
/// digit for the prompt to count as heard when free recognition disagrees (see
/// [`Utterance::prompt_heard`]).
pub const PROMPT_MATCH_MIN: f32 = 0.05;

/// What the voice print needs from one utterance.
#[derive(Debug, Clone)]
pub struct Utterance {
    /// Free recognition (no prompt).
    pub recognition: super::Recognition,
    /// Digit vectors of its words.
    pub vectors: Vec<(u8, Vec<f32>)>,
    /// The weakest aligned word's probability of being its prompted digit (0 without a prompt
    /// or when the words could not be aligned to it).
    pub prompt_match: f32,
}

impl Utterance {
    /// The text check of a prompted answer: free recognition heard exactly the prompt, or every
    /// word aligned to the prompt is plausibly its prompted digit. The second form keeps unseen
    /// speakers, whose digits the recognizer often gets wrong, from failing the check, while a
    /// recording of other digits still fails it.
    pub fn prompt_heard(&self, expected: &str) -> bool {
        (!self.recognition.rejected && self.recognition.digits == expected)
            || self.prompt_match >= PROMPT_MATCH_MIN
    }
}

/// Digit vectors of an utterance for the voice print. With a prompt, the words are found by
/// forced alignment to the prompted digits (free recognition only answers "were these the
/// digits?"); without one, the recognizer's words and labels are used ("oh" is skipped, as no
/// model of it exists).
pub fn utterance_vectors(model: &VoiceModel, audio: &[i16], expected: Option<&str>) -> Utterance {
    let analysis = model.recognizer.analyse(&wav::to_f32(audio));
    let atoms = features::speech_atoms(audio);
    let recognition = model.recognizer.decode(&analysis, &atoms);
    let prompted: Option<Vec<u8>> = expected.map(|e| {
        e.bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect()
    });
    let mut prompt_match = 0.0f32;
    let words: Vec<(u8, Span)> = match prompted {
        Some(prompt) => match model.recognizer.align(&analysis, &atoms, &prompt) {
            Some(aligned) => {
                prompt_match = aligned.iter().fold(1.0f32, |m, w| m.min(w.1));
                prompt
                    .into_iter()
                    .zip(aligned.into_iter().map(|w| w.0))
                    .collect()
            }
            None => Vec::new(),
        },
        None => recognition
            .segments
            .iter()
            .filter(|s| !s.oh)
            .map(|s| (s.digit, s.span))
            .collect(),
    };
    let vectors = words
        .into_iter()
        .filter_map(|(digit, span)| {
            let (from, to) = analysis.frames_of(span);
            model
                .background
                .digit_vector(&analysis, digit, from, to)
                .map(|v| (digit, v))
        })
        .collect();
    Utterance {
        recognition,
        vectors,
        prompt_match,
    }
}

/// A connected string as the protocol builds it: one take of each digit by `held`, joined with
/// pauses, μ-law coded half the time. Returns the audio and the digits actually used.
fn spoken_string(
    all: &[&Item],
    held: usize,
    digits: &[u8],
    config: &EvalConfig,
    rng: &mut Rng,
) -> (Vec<i16>, String) {
    let chosen: Vec<&Item> = digits
        .iter()
        .filter_map(|d| pick_take(all, held, *d, &(0..u32::MAX), rng))
        .collect();
    let clips: Vec<&[i16]> = chosen.iter().map(|i| clip(i)).collect();
    let mut audio = join_with_pauses(&clips, config.pause_ms, rng);
    if rng.below(2) == 0 {
        audio = g711::round_trip(&audio, Law::Mu);
    }
    let expected = chosen.iter().map(|i| char::from(b'0' + i.digit)).collect();
    (audio, expected)
}

/// `telepay voice eval DIR`: the report of the documented protocol.
pub fn evaluate(
    dir: &Path,
    config: &EvalConfig,
    log: &mut dyn FnMut(String),
) -> Result<String, VoiceError> {
    let corpus = load_corpus(dir)?;
    let speakers = corpus.speakers.len();
    if speakers < 3 {
        return Err(VoiceError::Corpus(
            "the protocol needs at least three speakers".into(),
        ));
    }
    let all: Vec<&Item> = corpus.items.iter().collect();
    let mut report = Vec::new();
    let mut rng = Rng::new(SEED ^ 0xE7A1);
    // Leave one speaker out: digits.
    let (mut correct, mut total, mut rejected) = (0usize, 0usize, 0usize);
    let mut string_stats = [(0usize, 0usize); 2];
    // Transaction numbers: exact, right after correction, wrong after correction, said.
    let mut number_stats = [0usize; 4];
    let mut fold_models = Vec::new();
    for held in 0..speakers {
        let train_items: Vec<&Item> = all.iter().copied().filter(|i| i.speaker != held).collect();
        log(format!(
            "fold {}: training on {} recordings",
            corpus.speakers[held],
            train_items.len()
        ));
        let recognizer = train_recognizer(&train_items, SEED + held as u64, config.epochs, log);
        let (mut c, mut n, mut alone) = (0usize, 0usize, 0usize);
        for item in all.iter().filter(|i| i.speaker == held) {
            if let Some(v) = vector_of(&item.samples, recognizer.frontend()) {
                if let Some(p) = recognizer.predict(&v) {
                    let best = (0..CLASS_OTHER)
                        .max_by(|&x, &y| p[x].total_cmp(&p[y]))
                        .unwrap_or(0);
                    if best % 10 == item.digit as usize {
                        alone += 1;
                    }
                }
            }
            let r = recognizer.recognize(&item.samples);
            n += 1;
            if r.rejected {
                rejected += 1;
            }
            if r.digits == char::from(b'0' + item.digit).to_string() {
                c += 1;
            }
        }
        correct += c;
        total += n;
        let mut line = format!(
            "  {:<10} isolated {:>5.1} % ({c}/{n}; classifier alone {alone})",
            corpus.speakers[held],
            100.0 * c as f32 / n.max(1) as f32
        );
        for (k, len) in [4usize, 9].into_iter().enumerate() {
            let mut ok = 0;
            for _ in 0..config.strings_per_speaker {
                let digits: Vec<u8> = (0..len).map(|_| rng.below(10) as u8).collect();
                let (audio, expected) = spoken_string(&all, held, &digits, config, &mut rng);
                if recognizer.recognize(&audio).digits == expected {
                    ok += 1;
                }
            }
            string_stats[k].0 += ok;
            string_stats[k].1 += config.strings_per_speaker;
            line.push_str(&format!(
                ", {len}-digit strings {ok}/{}",
                config.strings_per_speaker
            ));
        }
        if let Some(valid) = config.check_digit {
            // Its own random stream, so that the other figures' draws do not move.
            let mut nrng = Rng::new(SEED ^ 0xDA77 ^ held as u64);
            let mut counts = [0usize; 4];
            for _ in 0..config.strings_per_speaker {
                let base: String = (0..8)
                    .map(|_| char::from(b'0' + nrng.below(10) as u8))
                    .collect();
                let Some(number) = (0..10u8).map(|c| format!("{base}{c}")).find(|n| valid(n))
                else {
                    continue;
                };
                let digits: Vec<u8> = number.bytes().map(|d| d - b'0').collect();
                let (audio, expected) = spoken_string(&all, held, &digits, config, &mut nrng);
                counts[3] += 1;
                let r = recognizer.recognize(&audio);
                let heard: String = r
                    .segments
                    .iter()
                    .map(|s| char::from(b'0' + s.digit))
                    .collect();
                if !r.rejected && r.digits == expected {
                    counts[0] += 1;
                    counts[1] += 1;
                } else if heard.len() == expected.len() && !valid(&heard) {
                    match super::check_digit::correct(&recognizer, &audio, &heard, valid) {
                        Some(c) if c.digits == expected => counts[1] += 1,
                        Some(_) => counts[2] += 1,
                        None => {}
                    }
                }
            }
            for (total, n) in number_stats.iter_mut().zip(counts) {
                *total += n;
            }
            line.push_str(&format!(
                ", numbers {}/{} exact, {}/{} after check-digit correction ({} corrected wrongly)",
                counts[0], counts[3], counts[1], counts[3], counts[2]
            ));
        }
        log(line.clone());
        report.push(line);
        fold_models.push(recognizer);
    }
    report.insert(
        0,
        format!(
            "digits, leave one speaker out: {:.2} % correct on {total} isolated recordings ({rejected} rejected); \
             4-digit strings {:.1} %, 9-digit strings {:.1} % exact",
            100.0 * correct as f32 / total.max(1) as f32,
            100.0 * string_stats[0].0 as f32 / string_stats[0].1.max(1) as f32,
            100.0 * string_stats[1].0 as f32 / string_stats[1].1.max(1) as f32,
        ),
    );
    if config.check_digit.is_some() {
        let n = number_stats[3].max(1) as f32;
        report.insert(
            1,
            format!(
                "9-digit transaction numbers (Damm check digit), leave one speaker out: {:.1} % exact, \
                 {:.1} % after check-digit correction, {:.1} % corrected to a wrong number",
                100.0 * number_stats[0] as f32 / n,
                100.0 * number_stats[1] as f32 / n,
                100.0 * number_stats[2] as f32 / n,
            ),
        );
    }
    report.extend(evaluate_voice_print(
        &corpus,
        &fold_models,
        config,
        &mut rng,
        log,
    )?);
    Ok(report.join("\n"))
}

/// The voice-print part of the protocol: pairs of speakers, the background estimated on the
/// others; words are placed by `fold_models[target]` (a recognizer that did not see the target).
pub fn evaluate_voice_print(
    corpus: &Corpus,
    fold_models: &[Recognizer],
    config: &EvalConfig,
    rng: &mut Rng,
    log: &mut dyn FnMut(String),
) -> Result<Vec<String>, VoiceError> {
    let speakers = corpus.speakers.len();
    if fold_models.len() != speakers {
        return Err(VoiceError::BadConfig("one recognizer per speaker"));
    }
    let all: Vec<&Item> = corpus.items.iter().collect();
    let mut report = Vec::new();
    // Voice print: folds over pairs of speakers; the background excludes both.
    let variants = config.enrol_takes.len();
    let mut scores: Vec<[(Vec<f32>, Vec<f32>); 3]> = vec![Default::default(); variants];
    let mut prompts_ok = (0usize, 0usize);
    // Genuine answers whose prompt was heard; replays heard as another prompt, and replays.
    let mut prompts_heard = (0usize, 0usize, 0usize);
    for a in 0..speakers {
        for b in a + 1..speakers {
            let background_items: Vec<&Item> = all
                .iter()
                .copied()
                .filter(|i| i.speaker != a && i.speaker != b)
                .collect();
            let background = train_background(&background_items)?;
            for (target, other) in [(a, b), (b, a)] {
                let model = VoiceModel {
                    recognizer: fold_models[target].clone(),
                    background: background.clone(),
                };
                let mut templates = Vec::with_capacity(variants);
                for takes in &config.enrol_takes {
                    let mut enrol_vectors = Vec::new();
                    for item in all
                        .iter()
                        .filter(|i| i.speaker == target && takes.contains(&i.index))
                    {
                        let v =
                            utterance_vectors(&model, &item.samples, Some(&item.digit.to_string()))
                                .vectors;
                        enrol_vectors.extend(v);
                    }
                    templates.push(Template::from_vectors(&enrol_vectors)?);
                }
                for _ in 0..config.trials_per_target {
                    let prompt: Vec<u8> = (0..4).map(|_| rng.below(10) as u8).collect();
                    let text: String = prompt.iter().map(|d| char::from(b'0' + d)).collect();
                    for (speaker, genuine) in [(target, true), (other, false)] {
                        let chosen: Vec<&Item> = prompt
                            .iter()
                            .filter_map(|d| pick_take(&all, speaker, *d, &config.test_takes, rng))
                            .collect();
                        let clips: Vec<&[i16]> = chosen.iter().map(|i| clip(i)).collect();
                        let linear = join_with_pauses(&clips, config.pause_ms, rng);
                        for (k, law) in [None, Some(Law::Mu), Some(Law::A)].into_iter().enumerate()
                        {
                            let audio = match law {
                                Some(l) => g711::round_trip(&linear, l),
                                None => linear.clone(),
                            };
                            let utterance = utterance_vectors(&model, &audio, Some(&text));
                            let vectors = &utterance.vectors;
                            if genuine && k == 0 {
                                prompts_ok.1 += 1;
                                if utterance.recognition.digits == text {
                                    prompts_ok.0 += 1;
                                }
                                if utterance.prompt_heard(&text) {
                                    prompts_heard.0 += 1;
                                }
                                // A replay: the same answer checked against another prompt.
                                let other: String = (0..4)
                                    .map(|_| char::from(b'0' + rng.below(10) as u8))
                                    .collect();
                                if other != text {
                                    prompts_heard.2 += 1;
                                    if utterance_vectors(&model, &audio, Some(&other))
                                        .prompt_heard(&other)
                                    {
                                        prompts_heard.1 += 1;
                                    }
                                }
                            }
                            for (v, template) in templates.iter().enumerate() {
                                let score = model
                                    .background
                                    .score(template, vectors)
                                    .unwrap_or(f32::NEG_INFINITY);
                                if genuine {
                                    scores[v][k].0.push(score);
                                } else {
                                    scores[v][k].1.push(score);
                                }
                            }
                        }
                    }
                }
            }
        }
        log(format!(
            "voice print: folds with {} done",
            corpus.speakers[a]
        ));
    }
    for (v, takes) in config.enrol_takes.iter().enumerate() {
        let eers: Vec<(f32, f32)> = scores[v]
            .iter()
            .map(|(g, i)| equal_error_rate_at(g, i))
            .collect();
        report.push(format!(
            "voice print, enrolled from takes {}..{} of each digit, 4-digit prompted trials ({} genuine, {} impostor per coding): \
             EER {:.2} % linear, {:.2} % mu-law, {:.2} % A-law (threshold at EER, linear: {:.2})",
            takes.start,
            takes.end,
            scores[v][0].0.len(),
            scores[v][0].1.len(),
            100.0 * eers[0].0,
            100.0 * eers[1].0,
            100.0 * eers[2].0,
            eers[0].1
        ));
    }
    report.push(format!(
        "text check: genuine prompts recognized exactly {:.1} %, heard (exact or every aligned word p >= {PROMPT_MATCH_MIN}) {:.1} %; \
         a genuine answer checked against another random prompt passes {:.1} % (recognizer that did not see the target)",
        100.0 * prompts_ok.0 as f32 / prompts_ok.1.max(1) as f32,
        100.0 * prompts_heard.0 as f32 / prompts_ok.1.max(1) as f32,
        100.0 * prompts_heard.1 as f32 / prompts_heard.2.max(1) as f32,
    ));
    report.push(format!(
        "template: {} bytes at most",
        4 + 4 + 40 + 10 * DIGIT_VECTOR_LEN * 4
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(parse_name("7_theo_12.wav"), Some((7, "theo".into(), 12)));
        assert_eq!(parse_name("12_theo_1.wav"), None);
        assert_eq!(parse_name("7_theo.wav"), None);
        assert_eq!(parse_name("README.md"), None);
    }

    #[test]
    fn eer_of_separated_and_overlapping_scores() {
        assert_eq!(equal_error_rate(&[2.0, 3.0], &[0.0, 1.0]), 0.0);
        let eer = equal_error_rate(&[0.0, 1.0, 2.0, 3.0], &[-1.0, 0.5, 1.5, -2.0]);
        assert!((eer - 0.25).abs() < 1e-6, "{eer}");
    }
}
