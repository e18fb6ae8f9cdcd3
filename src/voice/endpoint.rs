//! End-pointing: a sans-IO detector of the start and end of speech, fed linear 8 kHz samples in
//! chunks of any size. Time is implied by the sample count (8 samples per millisecond), so the
//! caller feeds comfort silence (zeros) when packets stop arriving.
//!
//! Loop contract: call [`Endpointer::push`] with each chunk, then drain [`Endpointer::poll`]
//! until it returns `None`. After [`EndpointEvent::SpeechEnd`] or
//! [`EndpointEvent::NoSpeech`] the end-pointer is finished and ignores further samples until
//! [`Endpointer::reset`].
//!
//! Decisions come from webrtc-vad (the libfvad C code, wrapped by the crate; any unsafe is inside
//! that crate) gated by a frame energy floor, so that a quiet line's hiss does not open speech.
//! The crate's `Vad` holds a raw pointer and is therefore neither `Send` nor `Sync`; so is
//! everything here that owns one. A driver runs a collector on the task or thread that made it.

use super::VoiceError;
use std::collections::VecDeque;
use webrtc_vad::{SampleRate, Vad, VadMode};

/// Samples per millisecond at 8 kHz.
pub const SAMPLES_PER_MS: usize = 8;

/// How aggressive the VAD is (webrtc-vad modes 0–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadAggressiveness {
    Quality,
    LowBitrate,
    Aggressive,
    VeryAggressive,
}

/// End-pointer settings; every duration is in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// VAD frame: 10, 20 or 30 ms.
    pub frame_ms: u32,
    pub aggressiveness: VadAggressiveness,
    /// Voiced time, within the last `start_window_ms`, that opens speech.
    pub start_voiced_ms: u32,
    pub start_window_ms: u32,
    /// Silence after the last voiced frame that ends speech.
    pub trailing_silence_ms: u32,
    /// No speech at all within this time from the start gives `NoSpeech`.
    pub leading_silence_ms: u32,
    /// Speech longer than this is cut (`EndReason::MaxLength`).
    pub speech_max_ms: u32,
    /// Frames quieter than this (dBFS of the frame's RMS) never count as voiced.
    pub energy_floor_dbfs: f32,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            frame_ms: 10,
            aggressiveness: VadAggressiveness::Aggressive,
            start_voiced_ms: 60,
            start_window_ms: 100,
            trailing_silence_ms: 1_200,
            leading_silence_ms: 5_000,
            speech_max_ms: 12_000,
            energy_floor_dbfs: -55.0,
        }
    }
}

impl EndpointConfig {
    pub fn validate(&self) -> Result<(), VoiceError> {
        let ok = matches!(self.frame_ms, 10 | 20 | 30)
            && self.start_voiced_ms <= self.start_window_ms
            && self.start_window_ms <= 1_000
            && self.trailing_silence_ms >= self.frame_ms
            && self.speech_max_ms >= 100
            && self.speech_max_ms <= 60_000
            && self.leading_silence_ms <= 60_000;
        if ok {
            Ok(())
        } else {
            Err(VoiceError::BadConfig("end-pointer settings out of range"))
        }
    }
}

/// Why speech ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    TrailingSilence,
    MaxLength,
}

/// What the end-pointer noticed; sample positions count from the first sample pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Speech began at this sample (the start of the first voiced frame that opened it).
    SpeechStart { sample: u64 },
    /// Speech ended: `end_sample` is just after the last voiced frame.
    SpeechEnd {
        start_sample: u64,
        end_sample: u64,
        reason: EndReason,
    },
    /// No speech within the leading-silence time.
    NoSpeech,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Speaking { start: u64, last_voiced_end: u64 },
    Done,
}

/// The end-pointer; see the module docs for the loop.
pub struct Endpointer {
    config: EndpointConfig,
    vad: Vad,
    frame_len: usize,
    pending: Vec<i16>,
    /// Samples consumed into frames so far.
    position: u64,
    /// Recent voiced flags while waiting, to apply the start rule.
    recent: VecDeque<bool>,
    state: State,
    events: VecDeque<EndpointEvent>,
}

impl std::fmt::Debug for Endpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpointer")
            .field("config", &self.config)
            .field("position", &self.position)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn make_vad(aggressiveness: VadAggressiveness) -> Vad {
    let mode = match aggressiveness {
        VadAggressiveness::Quality => VadMode::Quality,
        VadAggressiveness::LowBitrate => VadMode::LowBitrate,
        VadAggressiveness::Aggressive => VadMode::Aggressive,
        VadAggressiveness::VeryAggressive => VadMode::VeryAggressive,
    };
    Vad::new_with_rate_and_mode(SampleRate::Rate8kHz, mode)
}

/// Frame level in dBFS (RMS relative to full scale).
pub fn frame_dbfs(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return -120.0;
    }
    let mean_square =
        frame.iter().map(|&s| (s as f32) * (s as f32)).sum::<f32>() / frame.len() as f32;
    10.0 * (mean_square / (32_768.0f32 * 32_768.0)).max(1e-12).log10()
}

/// A frame classifier: webrtc-vad plus the energy floor.
pub struct FrameVad {
    vad: Vad,
    energy_floor_dbfs: f32,
}

impl FrameVad {
    pub fn new(aggressiveness: VadAggressiveness, energy_floor_dbfs: f32) -> Self {
        FrameVad {
            vad: make_vad(aggressiveness),
            energy_floor_dbfs,
        }
    }
    /// Whether a 10, 20 or 30 ms frame is voiced; other lengths are unvoiced.
    pub fn is_voiced(&mut self, frame: &[i16]) -> bool {
        if !matches!(frame.len(), 80 | 160 | 240) {
            return false;
        }
        frame_dbfs(frame) >= self.energy_floor_dbfs
            && self.vad.is_voice_segment(frame).unwrap_or(false)
    }
}

impl Endpointer {
    pub fn new(config: EndpointConfig) -> Result<Self, VoiceError> {
        config.validate()?;
        let frame_len = config.frame_ms as usize * SAMPLES_PER_MS;
        Ok(Endpointer {
            vad: make_vad(config.aggressiveness),
            frame_len,
            pending: Vec::with_capacity(frame_len),
            position: 0,
            recent: VecDeque::new(),
            state: State::Waiting,
            events: VecDeque::new(),
            config,
        })
    }

    /// Starts over (new prompt), keeping the settings.
    pub fn reset(&mut self) {
        self.vad = make_vad(self.config.aggressiveness);
        self.pending.clear();
        self.position = 0;
        self.recent.clear();
        self.state = State::Waiting;
        self.events.clear();
    }

    /// Samples consumed so far (the implied clock: 8 per millisecond).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The sample position at which a time-out (no speech, end of speech or maximum length)
    /// fires if every further frame is silent; `None` when finished.
    pub fn deadline_sample(&self) -> Option<u64> {
        let ms = |v: u32| Self::ms_to_samples(v);
        match self.state {
            State::Waiting => Some(ms(self.config.leading_silence_ms).max(self.position)),
            State::Speaking {
                start,
                last_voiced_end,
            } => Some(
                (last_voiced_end + ms(self.config.trailing_silence_ms))
                    .min(start + ms(self.config.speech_max_ms))
                    .max(self.position),
            ),
            State::Done => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// Feeds samples of any chunk size.
    pub fn push(&mut self, samples: &[i16]) {
        let mut rest = samples;
        while !rest.is_empty() && self.state != State::Done {
            let take = (self.frame_len - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == self.frame_len {
                let frame = std::mem::take(&mut self.pending);
                let voiced = frame_dbfs(&frame) >= self.config.energy_floor_dbfs
                    && self.vad.is_voice_segment(&frame).unwrap_or(false);
                self.pending = frame;
                self.pending.clear();
                self.step(voiced);
            }
        }
    }

    /// The next event, if any.
    pub fn poll(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    fn ms_to_samples(ms: u32) -> u64 {
        ms as u64 * SAMPLES_PER_MS as u64
    }

    fn step(&mut self, voiced: bool) {
        let frame_start = self.position;
        self.position += self.frame_len as u64;
        let now = self.position;
        match self.state {
            State::Waiting => {
                let window = (self.config.start_window_ms / self.config.frame_ms).max(1) as usize;
                let needed = (self.config.start_voiced_ms / self.config.frame_ms).max(1) as usize;
                self.recent.push_back(voiced);
                while self.recent.len() > window {
                    self.recent.pop_front();
                }
                let count = self.recent.iter().filter(|v| **v).count();
                if voiced && count >= needed {
                    // Speech starts at the first voiced frame still in the window.
                    let first = self.recent.iter().position(|v| *v).unwrap_or(0);
                    let back = (self.recent.len() - first) as u64 * self.frame_len as u64;
                    let start = now.saturating_sub(back);
                    self.state = State::Speaking {
                        start,
                        last_voiced_end: now,
                    };
                    self.events
                        .push_back(EndpointEvent::SpeechStart { sample: start });
                } else if now >= Self::ms_to_samples(self.config.leading_silence_ms) {
                    self.state = State::Done;
                    self.events.push_back(EndpointEvent::NoSpeech);
                }
            }
            State::Speaking {
                start,
                mut last_voiced_end,
            } => {
                if voiced {
                    last_voiced_end = frame_start + self.frame_len as u64;
                }
                let reason = if now - start >= Self::ms_to_samples(self.config.speech_max_ms) {
                    Some(EndReason::MaxLength)
                } else if now - last_voiced_end
                    >= Self::ms_to_samples(self.config.trailing_silence_ms)
                {
                    Some(EndReason::TrailingSilence)
                } else {
                    None
                };
                match reason {
                    Some(reason) => {
                        self.state = State::Done;
                        self.events.push_back(EndpointEvent::SpeechEnd {
                            start_sample: start,
                            end_sample: if reason == EndReason::MaxLength {
                                now
                            } else {
                                last_voiced_end
                            },
                            reason,
                        });
                    }
                    None => {
                        self.state = State::Speaking {
                            start,
                            last_voiced_end,
                        }
                    }
                }
            }
            State::Done => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::SAMPLES_PER_MS;

    pub fn tone(freq_hz: f32, ms: usize, amplitude: f32) -> Vec<i16> {
        (0..ms * SAMPLES_PER_MS)
            .map(|n| {
                (amplitude
                    * 32_767.0
                    * (2.0 * std::f32::consts::PI * freq_hz * n as f32 / 8_000.0).sin())
                    as i16
            })
            .collect()
    }

    /// A crude voiced sound: a 120 Hz pulse train through two resonances, so that the VAD's
    /// speech model sees a harmonic spectrum.
    pub fn vowel(ms: usize) -> Vec<i16> {
        let n = ms * SAMPLES_PER_MS;
        let mut out = vec![0.0f32; n];
        let (mut y1, mut y2, mut z1, mut z2) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
        let resonator = |f: f32, bw: f32| {
            let r = (-std::f32::consts::PI * bw / 8_000.0).exp();
            (
                2.0 * r * (2.0 * std::f32::consts::PI * f / 8_000.0).cos(),
                -r * r,
            )
        };
        let (a1, a2) = resonator(700.0, 80.0);
        let (b1, b2) = resonator(1_200.0, 90.0);
        for (i, o) in out.iter_mut().enumerate() {
            let x = if i % 66 == 0 { 1.0 } else { 0.0 };
            let y = x + a1 * y1 + a2 * y2;
            y2 = y1;
            y1 = y;
            let z = y + b1 * z1 + b2 * z2;
            z2 = z1;
            z1 = z;
            *o = z;
        }
        let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        out.iter().map(|v| (v / peak * 12_000.0) as i16).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{tone, vowel};
    use super::*;

    fn run(config: EndpointConfig, audio: &[i16], chunk: usize) -> Vec<EndpointEvent> {
        let mut ep = Endpointer::new(config).unwrap();
        let mut events = Vec::new();
        for c in audio.chunks(chunk) {
            ep.push(c);
            while let Some(e) = ep.poll() {
                events.push(e);
            }
        }
        events
    }

    #[test]
    fn vad_tells_silence_from_voice() {
        for aggressiveness in [VadAggressiveness::Quality, VadAggressiveness::Aggressive] {
            let mut vad = FrameVad::new(aggressiveness, -55.0);
            let silence = vec![0i16; 8_000];
            let voiced = vowel(1_000);
            let s = silence.chunks(160).filter(|f| vad.is_voiced(f)).count();
            let v = voiced.chunks(160).filter(|f| vad.is_voiced(f)).count();
            assert_eq!(s, 0);
            assert!(v >= 40, "{v} of 50 voiced frames");
            // A loud tone is not silence either (for the energy gate and VAD together).
            let t = tone(440.0, 1_000, 0.5);
            assert!(t.chunks(160).filter(|f| vad.is_voiced(f)).count() > 0);
        }
    }

    #[test]
    fn finds_start_and_end_of_speech_for_every_frame_size() {
        for frame_ms in [10, 20, 30] {
            let mut audio = vec![0i16; 8 * 500];
            audio.extend(vowel(600));
            audio.extend(vec![0i16; 8 * 2_000]);
            let config = EndpointConfig {
                frame_ms,
                trailing_silence_ms: 800,
                ..EndpointConfig::default()
            };
            let events = run(config, &audio, 160);
            assert_eq!(events.len(), 2, "{frame_ms}: {events:?}");
            let EndpointEvent::SpeechStart { sample } = events[0] else {
                panic!("{events:?}")
            };
            assert!(
                (sample as i64 - 4_000).abs() <= 8 * 60,
                "{frame_ms}: {sample}"
            );
            let EndpointEvent::SpeechEnd {
                end_sample, reason, ..
            } = events[1]
            else {
                panic!("{events:?}")
            };
            assert_eq!(reason, EndReason::TrailingSilence);
            assert!(
                (end_sample as i64 - 8_800).abs() <= 8 * 100,
                "{frame_ms}: {end_sample}"
            );
        }
    }

    #[test]
    fn silence_times_out_and_long_speech_is_cut() {
        let config = EndpointConfig {
            leading_silence_ms: 1_000,
            ..EndpointConfig::default()
        };
        let events = run(config, &vec![0i16; 8 * 3_000], 160);
        assert_eq!(events, vec![EndpointEvent::NoSpeech]);

        let config = EndpointConfig {
            speech_max_ms: 500,
            ..EndpointConfig::default()
        };
        let events = run(config, &vowel(2_000), 37);
        assert!(matches!(
            events.last(),
            Some(EndpointEvent::SpeechEnd {
                reason: EndReason::MaxLength,
                ..
            })
        ));
    }

    #[test]
    fn bad_settings_are_refused() {
        let config = EndpointConfig {
            frame_ms: 15,
            ..EndpointConfig::default()
        };
        assert!(Endpointer::new(config).is_err());
    }
}
