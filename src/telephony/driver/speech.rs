//! Speech for calls: a few worker threads own the calls' speech collectors.
//!
//! A [`SpeechCollector`] holds a webrtc-vad instance, which is not `Send`, and recognition is a
//! burst of CPU work at the end of each answer; neither belongs on the runtime that paces the
//! calls' 20 ms RTP slots. So each call gets a [`SpeechChannel`] to one worker thread (round
//! robin). The call sends the caller's decoded audio as it arrives; the worker feeds it to the
//! collector and sends back what the collector says. The collector's clock is the audio itself
//! (the sample count), so a worker needs no timers; the IVR keeps its own time-outs.
//!
//! Audio is never kept beyond the answer that needed it: a collector's buffer is dropped when
//! it finishes or is stopped, and an answer's audio is handed over only when the IVR asked for
//! it (voice verification and enrolment).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;

use crate::telephony::ivr::{
    CheckDigit, SpeechGrammar, SpeechId, SpeechResult, VoiceAudio, damm_is_valid,
};
use crate::voice::check_digit;

use super::stats::{self, SpeechOutcome};
use crate::voice::recognizer::Recognition;
use crate::voice::{
    CollectorConfig, CollectorEvent, EndpointConfig, SpeechCollector, Verifier, VoiceModel,
};

/// The IVR times the caller's silence itself; the collector's own no-input time-out is only a
/// backstop.
const LEADING_SILENCE_MS: u32 = 60_000;
/// Longest answer: a 9-digit number said slowly.
const SPEECH_MAX_MS: u32 = 20_000;
/// Lost audio up to this long (2 s) is replaced by silence; a longer jump is a new stream.
const GAP_FILL_MAX_SAMPLES: usize = 16_000;

enum Job {
    Start {
        key: u64,
        id: SpeechId,
        grammar: SpeechGrammar,
        events: mpsc::UnboundedSender<SpeechEvent>,
    },
    Audio {
        key: u64,
        samples: Vec<i16>,
    },
    Stop {
        key: u64,
    },
}

/// What a worker tells a call about one of its collectors.
#[derive(Debug)]
pub struct SpeechEvent {
    pub id: SpeechId,
    pub kind: SpeechEventKind,
}

#[derive(Debug)]
pub enum SpeechEventKind {
    /// The caller started speaking (barge-in).
    Started,
    /// The collector's verdict; the collector is gone.
    Finished(SpeechResult),
}

/// The speech worker threads and the model they share.
#[derive(Debug)]
pub struct SpeechService {
    workers: Vec<std_mpsc::Sender<Job>>,
    next: AtomicUsize,
    keys: AtomicU64,
    model: Arc<VoiceModel>,
    threshold: f32,
}

impl SpeechService {
    /// Starts `threads` workers (at least one) sharing `model`; voice prints are accepted at
    /// `threshold` and above.
    pub fn start(
        model: Arc<VoiceModel>,
        threads: usize,
        threshold: f32,
    ) -> std::io::Result<SpeechService> {
        let mut workers = Vec::new();
        for n in 0..threads.max(1) {
            let (tx, rx) = std_mpsc::channel();
            let model = Arc::clone(&model);
            std::thread::Builder::new()
                .name(format!("speech-{n}"))
                .spawn(move || worker(&model, &rx))?;
            workers.push(tx);
        }
        Ok(SpeechService {
            workers,
            next: AtomicUsize::new(0),
            keys: AtomicU64::new(1),
            model,
            threshold,
        })
    }

    pub fn model(&self) -> &Arc<VoiceModel> {
        &self.model
    }

    /// A verifier at the configured threshold.
    pub fn verifier(&self) -> Verifier {
        let mut v = Verifier::new(Arc::clone(&self.model));
        v.threshold = self.threshold;
        v
    }

    /// A channel for one call, on the next worker.
    pub fn channel(self: &Arc<Self>) -> SpeechChannel {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let (events_tx, events) = mpsc::unbounded_channel();
        SpeechChannel {
            service: Arc::clone(self),
            jobs: self.workers[n].clone(),
            events_tx,
            events,
            active: None,
            next_timestamp: None,
        }
    }
}

/// One call's link to its speech worker; at most one collector runs at a time.
#[derive(Debug)]
pub struct SpeechChannel {
    service: Arc<SpeechService>,
    jobs: std_mpsc::Sender<Job>,
    events_tx: mpsc::UnboundedSender<SpeechEvent>,
    events: mpsc::UnboundedReceiver<SpeechEvent>,
    /// The running collector: the IVR's id and the worker's key.
    active: Option<(SpeechId, u64)>,
    /// The RTP timestamp the next packet should carry: lost packets become silence, so the
    /// collector's clock (its sample count) keeps time with the call.
    next_timestamp: Option<u32>,
}

impl SpeechChannel {
    /// Starts a collector for `id`; a running one is stopped first.
    pub fn start(&mut self, id: SpeechId, grammar: SpeechGrammar) {
        self.stop_active();
        let key = self.service.keys.fetch_add(1, Ordering::Relaxed);
        let started = self.jobs.send(Job::Start {
            key,
            id,
            grammar,
            events: self.events_tx.clone(),
        });
        if started.is_err() {
            // The worker is gone (it panicked): the IVR hears "nothing understood" rather
            // than waiting for a verdict that will never come.
            let _ = self.events_tx.send(SpeechEvent {
                id,
                kind: SpeechEventKind::Finished(SpeechResult::NoMatch),
            });
            return;
        }
        self.active = Some((id, key));
        self.next_timestamp = None;
    }

    /// Stops the collector for `id` if it is the running one.
    pub fn stop(&mut self, id: SpeechId) {
        if self.active.is_some_and(|(a, _)| a == id) {
            self.stop_active();
        }
    }

    fn stop_active(&mut self) {
        if let Some((_, key)) = self.active.take() {
            let _ = self.jobs.send(Job::Stop { key });
        }
    }

    /// The service this channel belongs to (for voice-print actions).
    pub fn service(&self) -> &Arc<SpeechService> {
        &self.service
    }

    pub fn is_listening(&self) -> bool {
        self.active.is_some()
    }

    /// Feeds one packet of the caller's G.711 audio (with its RTP timestamp) to the running
    /// collector. A gap of up to `GAP_FILL_MAX_SAMPLES` is filled with silence; a packet from
    /// before the expected time (late or repeated) is dropped.
    pub fn audio(&mut self, law: crate::telephony::g711::Law, payload: &[u8], timestamp: u32) {
        let Some((_, key)) = self.active else {
            return;
        };
        let mut samples = Vec::with_capacity(payload.len());
        if let Some(expected) = self.next_timestamp {
            let ahead = timestamp.wrapping_sub(expected) as i32;
            if ahead < 0 {
                return;
            }
            let gap = ahead as usize;
            if gap <= GAP_FILL_MAX_SAMPLES {
                samples.resize(gap, 0);
            }
        }
        self.next_timestamp = Some(timestamp.wrapping_add(payload.len() as u32));
        law.decode_into(payload, &mut samples);
        let _ = self.jobs.send(Job::Audio { key, samples });
    }

    /// Waits for the next event of the running collector (pending forever when none runs).
    pub async fn recv(&mut self) -> SpeechEvent {
        loop {
            let Some(event) = self.events.recv().await else {
                // Unreachable while `events_tx` lives in `self`; stay pending.
                return std::future::pending().await;
            };
            // Events of a collector stopped meanwhile are stale.
            if !self.active.is_some_and(|(id, _)| id == event.id) {
                continue;
            }
            if matches!(event.kind, SpeechEventKind::Finished(_)) {
                self.active = None;
            }
            return event;
        }
    }
}

impl Drop for SpeechChannel {
    fn drop(&mut self) {
        self.stop_active();
    }
}

/// The recognizer's digits as the IVR sees them. A number with a check digit that the reading
/// fails is corrected from the audio when one correction clearly fits (a single misheard digit
/// is the usual error on a long number); otherwise it is not understood.
fn digits_result(
    model: &VoiceModel,
    grammar: &SpeechGrammar,
    recognition: Recognition,
    audio: &[i16],
) -> SpeechResult {
    let heard: String = recognition
        .segments
        .iter()
        .map(|s| char::from(b'0' + s.digit))
        .collect();
    let length_ok =
        (usize::from(grammar.digits_min)..=usize::from(grammar.digits_max)).contains(&heard.len());
    match grammar.check {
        Some(CheckDigit::Damm) if length_ok && !damm_is_valid(&heard) => {
            match check_digit::correct(&model.recognizer, audio, &heard, damm_is_valid) {
                Some(c) => {
                    stats::record_speech(SpeechOutcome::Corrected);
                    tracing::debug!(
                        confidence = c.confidence,
                        "a misheard digit was put right by the check digit"
                    );
                    SpeechResult::Digits {
                        digits: c.digits,
                        confidence: c.confidence,
                    }
                }
                None => {
                    stats::record_speech(SpeechOutcome::NoMatch);
                    SpeechResult::NoMatch
                }
            }
        }
        _ if recognition.rejected || recognition.digits.is_empty() => {
            stats::record_speech(SpeechOutcome::NoMatch);
            SpeechResult::NoMatch
        }
        _ => {
            stats::record_speech(SpeechOutcome::Digits);
            SpeechResult::Digits {
                digits: recognition.digits,
                confidence: recognition.confidence,
            }
        }
    }
}

fn collector_config(grammar: &SpeechGrammar) -> CollectorConfig {
    let max = usize::from(grammar.digits_max).clamp(1, crate::voice::recognizer::DIGITS_MAX);
    let min = usize::from(grammar.digits_min).clamp(1, max);
    CollectorConfig {
        endpoint: EndpointConfig {
            leading_silence_ms: LEADING_SILENCE_MS,
            speech_max_ms: SPEECH_MAX_MS,
            ..EndpointConfig::default()
        },
        digits_min: min,
        digits_max: max,
    }
}

struct Running {
    id: SpeechId,
    collector: SpeechCollector,
    grammar: SpeechGrammar,
    events: mpsc::UnboundedSender<SpeechEvent>,
}

fn worker(model: &Arc<VoiceModel>, jobs: &std_mpsc::Receiver<Job>) {
    let mut running: HashMap<u64, Running> = HashMap::new();
    while let Ok(job) = jobs.recv() {
        let key = job.key();
        // A bug in recognition must cost one answer, not every call on this worker: the
        // collector that failed is dropped and its call hears "not understood".
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle(model, &mut running, job);
        }));
        if handled.is_err() {
            tracing::error!("speech recognition failed on an answer; it counts as not understood");
            if let Some(r) = running.remove(&key) {
                let _ = r.events.send(SpeechEvent {
                    id: r.id,
                    kind: SpeechEventKind::Finished(SpeechResult::NoMatch),
                });
            }
        }
    }
}

impl Job {
    fn key(&self) -> u64 {
        match self {
            Job::Start { key, .. } | Job::Audio { key, .. } | Job::Stop { key } => *key,
        }
    }
}

fn handle(model: &Arc<VoiceModel>, running: &mut HashMap<u64, Running>, job: Job) {
    match job {
        Job::Start {
            key,
            id,
            grammar,
            events,
        } => match SpeechCollector::new(Arc::clone(model), collector_config(&grammar)) {
            Ok(collector) => {
                running.insert(
                    key,
                    Running {
                        id,
                        collector,
                        grammar,
                        events,
                    },
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "speech collector could not start");
                let _ = events.send(SpeechEvent {
                    id,
                    kind: SpeechEventKind::Finished(SpeechResult::NoMatch),
                });
            }
        },
        Job::Audio { key, samples } => {
            let Some(r) = running.get_mut(&key) else {
                return;
            };
            r.collector.push(&samples);
            let mut finished = false;
            while let Some(event) = r.collector.poll() {
                let kind = match event {
                    CollectorEvent::SpeechStarted { .. } => SpeechEventKind::Started,
                    CollectorEvent::NoInput => {
                        finished = true;
                        stats::record_speech(SpeechOutcome::NoInput);
                        SpeechEventKind::Finished(SpeechResult::NoInput)
                    }
                    CollectorEvent::Result(recognition) => {
                        finished = true;
                        let audio = r.collector.take_utterance();
                        SpeechEventKind::Finished(if r.grammar.audio {
                            stats::record_speech(SpeechOutcome::Audio);
                            SpeechResult::Audio(VoiceAudio::new(audio))
                        } else {
                            digits_result(model, &r.grammar, recognition, &audio)
                        })
                    }
                };
                let _ = r.events.send(SpeechEvent { id: r.id, kind });
            }
            if finished {
                running.remove(&key);
            }
        }
        Job::Stop { key } => {
            running.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::g711::Law;
    use crate::voice::test_support::{model, spoken};

    fn grammar(digits: u8, audio: bool, check: Option<CheckDigit>) -> SpeechGrammar {
        SpeechGrammar {
            digits_min: digits,
            digits_max: digits,
            secret: false,
            audio,
            check,
        }
    }

    /// Feeds `samples` as 20 ms μ-law packets, then a second and a half of silence.
    fn feed(channel: &mut SpeechChannel, samples: &[i16]) {
        let mut padded = samples.to_vec();
        padded.extend(std::iter::repeat_n(0i16, 8 * 1_500));
        for (n, packet) in padded.chunks(160).enumerate() {
            let mut codes = Vec::new();
            Law::Ulaw.encode_into(packet, &mut codes);
            channel.audio(Law::Ulaw, &codes, 1_000 + 160 * n as u32);
        }
    }

    async fn next(channel: &mut SpeechChannel) -> SpeechEvent {
        match tokio::time::timeout(std::time::Duration::from_secs(20), channel.recv()).await {
            Ok(e) => e,
            Err(_) => panic!("no speech event"),
        }
    }

    #[tokio::test]
    async fn a_worker_hears_digits_and_hands_over_audio_only_when_asked() {
        let service = Arc::new(SpeechService::start(model(), 1, 4.9).unwrap());
        let mut channel = service.channel();
        assert!(!channel.is_listening());
        // Audio while nothing listens goes nowhere.
        feed(&mut channel, &spoken("4207", "jackson", 5, 300, 300));

        let id = SpeechId::for_tests(1);
        channel.start(id, grammar(4, false, None));
        assert!(channel.is_listening());
        feed(&mut channel, &spoken("4207", "jackson", 5, 300, 300));
        let e = next(&mut channel).await;
        assert_eq!(e.id, id);
        assert!(matches!(e.kind, SpeechEventKind::Started), "{e:?}");
        match next(&mut channel).await.kind {
            SpeechEventKind::Finished(SpeechResult::Digits { digits, confidence }) => {
                assert_eq!(digits, "4207");
                assert!(confidence > 0.5);
            }
            other => panic!("{other:?}"),
        }
        assert!(!channel.is_listening());

        // A voice step asks for the audio itself.
        let id = SpeechId::for_tests(2);
        channel.start(id, grammar(4, true, None));
        feed(&mut channel, &spoken("1357", "theo", 8, 300, 300));
        assert!(matches!(
            next(&mut channel).await.kind,
            SpeechEventKind::Started
        ));
        match next(&mut channel).await.kind {
            SpeechEventKind::Finished(SpeechResult::Audio(a)) => {
                assert!(a.duration_ms() > 1_000, "{a:?}");
            }
            other => panic!("{other:?}"),
        }

        // A stopped collector says nothing more; the next one answers for itself.
        let stopped = SpeechId::for_tests(3);
        channel.start(stopped, grammar(4, false, None));
        feed(
            &mut channel,
            &spoken("8642", "nicolas", 4, 300, 300)[..8 * 600],
        );
        channel.stop(stopped);
        let id = SpeechId::for_tests(4);
        channel.start(id, grammar(2, false, None));
        feed(&mut channel, &spoken("59", "jackson", 9, 300, 300));
        let e = next(&mut channel).await;
        assert_eq!(e.id, id, "{e:?}");
    }

    #[tokio::test]
    async fn lost_packets_count_as_silence() {
        let service = Arc::new(SpeechService::start(model(), 1, 4.9).unwrap());
        let mut channel = service.channel();
        let id = SpeechId::for_tests(9);
        channel.start(id, grammar(4, false, None));
        // Every packet of the pauses between the digits is lost (a phone's silence
        // suppression does the same); the timestamps tell how long they were.
        let mut audio = spoken("4207", "jackson", 5, 400, 300);
        audio.extend(std::iter::repeat_n(0i16, 8 * 1_500));
        let mut sent = 0;
        for (n, packet) in audio.chunks(160).enumerate() {
            if packet.iter().all(|s| *s == 0) && n > 20 {
                continue;
            }
            let mut codes = Vec::new();
            Law::Ulaw.encode_into(packet, &mut codes);
            channel.audio(Law::Ulaw, &codes, 77 + 160 * n as u32);
            sent += 1;
        }
        assert!(sent < audio.len() / 160, "no packet was dropped");
        // A late, repeated packet is dropped too.
        channel.audio(Law::Ulaw, &[0xFF; 160], 77);
        // The trailing silence never came: time passes by a packet far later.
        channel.audio(
            Law::Ulaw,
            &[0xFF; 160],
            77 + 160 * (audio.len() / 160) as u32,
        );
        let mut last = next(&mut channel).await;
        if matches!(last.kind, SpeechEventKind::Started) {
            last = next(&mut channel).await;
        }
        match last.kind {
            SpeechEventKind::Finished(SpeechResult::Digits { digits, .. }) => {
                assert_eq!(digits, "4207");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reading_that_fails_its_check_digit_is_put_right_from_the_audio() {
        let model = model();
        let base = "27182818";
        let check = crate::telephony::ivr::damm_check_digit(base).unwrap();
        let number = format!("{base}{check}");
        let audio = spoken(&number, "jackson", 12, 300, 300);
        let mut recognition = model.recognizer.recognize(&audio);
        assert_eq!(recognition.digits, number, "the test needs a clean reading");
        // Mishear the fifth digit.
        recognition.segments[4].digit = (recognition.segments[4].digit + 3) % 10;
        recognition.rejected = true;
        recognition.digits.clear();
        let g = grammar(9, false, Some(CheckDigit::Damm));
        match digits_result(&model, &g, recognition.clone(), &audio) {
            SpeechResult::Digits { digits, confidence } => {
                assert_eq!(digits, number);
                assert!(confidence >= check_digit::SHARE_MIN);
            }
            other => panic!("{other:?}"),
        }
        // Without a check digit the same reading is not understood.
        let g = grammar(9, false, None);
        assert!(matches!(
            digits_result(&model, &g, recognition, &audio),
            SpeechResult::NoMatch
        ));
    }
}
