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
            decoded: Vec::new(),
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
    decoded: Vec<i16>,
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

    pub fn is_listening(&self) -> bool {
        self.active.is_some()
    }

    /// Feeds one packet of the caller's G.711 audio to the running collector.
    pub fn audio(&mut self, law: crate::telephony::g711::Law, payload: &[u8]) {
        let Some((_, key)) = self.active else {
            return;
        };
        self.decoded.clear();
        law.decode_into(payload, &mut self.decoded);
        let samples = self.decoded.clone();
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
            match check_digit::correct(model, audio, &heard, damm_is_valid) {
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
                    continue;
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
}
