//! DTMF tone generation: dual tones at a level, twist and duration, digit
//! strings rendered to 8 kHz audio, and the WAV containers tests and SIPp
//! need.
//!
//! Levels are dBm0 per tone against G.711's μ-law reference
//! ([`super::super::g711::DBM0_RMS`]); twist is level(high group) −
//! level(low group) in dB, as in [`super::inband`].
//!
//! SIPp's `rtp_stream=FILE,LOOPS,PT` action sends a file's bytes as they
//! are, 160 per 20 ms packet for payload types 0 and 8, after skipping a
//! RIFF/WAVE header up to its `data` chunk: [`ulaw_wav`] writes exactly
//! that (format tag 7, 8 kHz mono, 8-bit codes), and [`ulaw_raw`] the same
//! codes without a header.

use super::super::g711::{DBM0_PEAK, Law};
use super::Digit;

/// Sample rate of everything generated here.
pub const SAMPLE_RATE_HZ: u32 = 8_000;
/// Longest digit string [`render_digits`] accepts.
pub const DIGITS_MAX: usize = 256;
/// Longest tone, pause or padding [`render_digits`] accepts.
pub const SEGMENT_MS_MAX: u32 = 60_000;
/// Loudest tone accepted, per tone (the μ-law overload point is +3.17).
pub const LEVEL_DBM0_MAX: f64 = 0.0;
/// Quietest tone accepted, per tone.
pub const LEVEL_DBM0_MIN: f64 = -90.0;

/// Requests these functions refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// A character that is not a DTMF key (its position, not the
    /// character, is reported: digit strings may be secrets).
    #[error("character {position} is not a DTMF key (0-9, *, #, A-D)")]
    NotADigit {
        /// Zero-based character index.
        position: usize,
    },
    /// Too many digits.
    #[error("{count} digits requested, at most {max}")]
    TooManyDigits {
        /// Digits asked for.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A duration beyond [`SEGMENT_MS_MAX`].
    #[error("duration of {ms} ms is over the limit of {max} ms")]
    DurationTooLong {
        /// Asked for.
        ms: u32,
        /// The limit.
        max: u32,
    },
    /// A level outside [`LEVEL_DBM0_MIN`]..=[`LEVEL_DBM0_MAX`] or not a
    /// number.
    #[error("tone level out of range")]
    LevelOutOfRange,
}

/// Peak amplitude, in 16-bit linear units, of a sine at `level_dbm0`.
pub fn amplitude_for_dbm0(level_dbm0: f64) -> f64 {
    DBM0_PEAK * 10f64.powf(level_dbm0 / 20.0)
}

/// Two sines summed: any frequencies, any levels (for tests that step off
/// the DTMF grid).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DualTone {
    /// Low-group frequency in hertz.
    pub low_hz: f64,
    /// High-group frequency in hertz.
    pub high_hz: f64,
    /// Level of the low tone in dBm0.
    pub low_dbm0: f64,
    /// Level of the high tone in dBm0.
    pub high_dbm0: f64,
}

impl DualTone {
    /// The nominal tone pair of `digit`, the low tone at `level_dbm0` and
    /// the high tone `twist_db` above it.
    pub fn for_digit(digit: Digit, level_dbm0: f64, twist_db: f64) -> DualTone {
        let (low, high) = digit.frequencies_hz();
        DualTone {
            low_hz: f64::from(low),
            high_hz: f64::from(high),
            low_dbm0: level_dbm0,
            high_dbm0: level_dbm0 + twist_db,
        }
    }

    /// Appends `samples` samples of the tone to `out`, both sines starting
    /// at phase zero. Sums beyond 16 bits are clipped.
    pub fn render_into(&self, samples: usize, out: &mut Vec<i16>) {
        let a_low = amplitude_for_dbm0(self.low_dbm0);
        let a_high = amplitude_for_dbm0(self.high_dbm0);
        let w_low = std::f64::consts::TAU * self.low_hz / f64::from(SAMPLE_RATE_HZ);
        let w_high = std::f64::consts::TAU * self.high_hz / f64::from(SAMPLE_RATE_HZ);
        out.reserve(samples);
        for n in 0..samples {
            let t = n as f64;
            let v = a_low * (w_low * t).sin() + a_high * (w_high * t).sin();
            out.push(v.round().clamp(-32_768.0, 32_767.0) as i16);
        }
    }

    /// The tone as a new buffer.
    pub fn render(&self, samples: usize) -> Vec<i16> {
        let mut out = Vec::with_capacity(samples);
        self.render_into(samples, &mut out);
        out
    }
}

/// How [`render_digits`] lays digits out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderOptions {
    /// Length of each tone.
    pub tone_ms: u32,
    /// Silence between tones.
    pub pause_ms: u32,
    /// Silence before the first tone.
    pub lead_ms: u32,
    /// Silence after the last tone.
    pub tail_ms: u32,
    /// Level of the low tone, dBm0.
    pub level_dbm0: f64,
    /// Level of the high tone relative to the low one, dB.
    pub twist_db: f64,
}

impl Default for RenderOptions {
    /// 100 ms tones and pauses at −10 dBm0 per tone, 200 ms of silence on
    /// either side: an ordinary handset.
    fn default() -> Self {
        RenderOptions {
            tone_ms: 100,
            pause_ms: 100,
            lead_ms: 200,
            tail_ms: 200,
            level_dbm0: -10.0,
            twist_db: 0.0,
        }
    }
}

fn samples_for_ms(ms: u32) -> Result<usize, GenerateError> {
    if ms > SEGMENT_MS_MAX {
        return Err(GenerateError::DurationTooLong {
            ms,
            max: SEGMENT_MS_MAX,
        });
    }
    Ok(ms as usize * SAMPLE_RATE_HZ as usize / 1000)
}

fn check_level(level_dbm0: f64) -> Result<(), GenerateError> {
    if (LEVEL_DBM0_MIN..=LEVEL_DBM0_MAX).contains(&level_dbm0) {
        Ok(())
    } else {
        Err(GenerateError::LevelOutOfRange)
    }
}

/// One digit's tone: `duration_ms` of the nominal pair, low tone at
/// `level_dbm0`, high tone `twist_db` above it.
pub fn digit_tone(
    digit: Digit,
    level_dbm0: f64,
    twist_db: f64,
    duration_ms: u32,
) -> Result<Vec<i16>, GenerateError> {
    check_level(level_dbm0)?;
    check_level(level_dbm0 + twist_db)?;
    let samples = samples_for_ms(duration_ms)?;
    Ok(DualTone::for_digit(digit, level_dbm0, twist_db).render(samples))
}

/// Renders a digit string (`0`–`9`, `*`, `#`, `A`–`D`) to 8 kHz 16-bit
/// linear audio laid out by `options`.
pub fn render_digits(digits: &str, options: &RenderOptions) -> Result<Vec<i16>, GenerateError> {
    let count = digits.chars().count();
    if count > DIGITS_MAX {
        return Err(GenerateError::TooManyDigits {
            count,
            max: DIGITS_MAX,
        });
    }
    let keys = digits
        .chars()
        .enumerate()
        .map(|(position, c)| Digit::from_char(c).ok_or(GenerateError::NotADigit { position }))
        .collect::<Result<Vec<_>, _>>()?;
    check_level(options.level_dbm0)?;
    check_level(options.level_dbm0 + options.twist_db)?;
    let tone = samples_for_ms(options.tone_ms)?;
    let pause = samples_for_ms(options.pause_ms)?;
    let lead = samples_for_ms(options.lead_ms)?;
    let tail = samples_for_ms(options.tail_ms)?;
    let mut out = Vec::with_capacity(lead + tail + keys.len() * (tone + pause));
    out.resize(lead, 0);
    for (i, &digit) in keys.iter().enumerate() {
        if i > 0 {
            out.resize(out.len() + pause, 0);
        }
        DualTone::for_digit(digit, options.level_dbm0, options.twist_db)
            .render_into(tone, &mut out);
    }
    out.resize(out.len() + tail, 0);
    Ok(out)
}

/// μ-law codes of `samples`, no header (SIPp also plays raw files).
pub fn ulaw_raw(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len());
    Law::Ulaw.encode_into(samples, &mut out);
    out
}

/// A WAV file of μ-law codes (format tag 7, 8 kHz, mono, 8 bits), the form
/// SIPp's `rtp_stream` plays as PCMU.
pub fn ulaw_wav(samples: &[i16]) -> Vec<u8> {
    companded_wav(Law::Ulaw, samples)
}

/// A WAV file of A-law codes (format tag 6), for `rtp_stream` as PCMA.
pub fn alaw_wav(samples: &[i16]) -> Vec<u8> {
    companded_wav(Law::Alaw, samples)
}

fn companded_wav(law: Law, samples: &[i16]) -> Vec<u8> {
    let mut data = Vec::with_capacity(samples.len());
    law.encode_into(samples, &mut data);
    let format_tag: u16 = match law {
        Law::Alaw => 6,
        Law::Ulaw => 7,
    };
    // Non-PCM formats carry an 18-byte fmt chunk and a fact chunk.
    let mut fmt = Vec::with_capacity(18);
    fmt.extend_from_slice(&format_tag.to_le_bytes());
    fmt.extend_from_slice(&1_u16.to_le_bytes()); // channels
    fmt.extend_from_slice(&SAMPLE_RATE_HZ.to_le_bytes());
    fmt.extend_from_slice(&SAMPLE_RATE_HZ.to_le_bytes()); // bytes per second
    fmt.extend_from_slice(&1_u16.to_le_bytes()); // block align
    fmt.extend_from_slice(&8_u16.to_le_bytes()); // bits per sample
    fmt.extend_from_slice(&0_u16.to_le_bytes()); // no extension
    let fact = u32::try_from(samples.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    riff(&[(b"fmt ", &fmt), (b"fact", &fact), (b"data", &data)])
}

/// A 16-bit PCM WAV file, 8 kHz mono: what `telepay dtmf detect` reads.
pub fn pcm_wav(samples: &[i16]) -> Vec<u8> {
    let mut fmt = Vec::with_capacity(16);
    fmt.extend_from_slice(&1_u16.to_le_bytes()); // PCM
    fmt.extend_from_slice(&1_u16.to_le_bytes());
    fmt.extend_from_slice(&SAMPLE_RATE_HZ.to_le_bytes());
    fmt.extend_from_slice(&(SAMPLE_RATE_HZ * 2).to_le_bytes());
    fmt.extend_from_slice(&2_u16.to_le_bytes());
    fmt.extend_from_slice(&16_u16.to_le_bytes());
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    riff(&[(b"fmt ", &fmt), (b"data", &data)])
}

fn riff(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let body_len: usize = chunks
        .iter()
        .map(|(_, data)| 8 + data.len() + data.len() % 2)
        .sum();
    let mut out = Vec::with_capacity(12 + body_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(
        &u32::try_from(4 + body_len)
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(b"WAVE");
    for (id, data) in chunks {
        out.extend_from_slice(*id);
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            // RIFF chunks are padded to even length.
            out.push(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::super::g711::{DBM0_RMS, ulaw_decode};
    use super::*;

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len() as f64).sqrt()
    }

    /// Power of one frequency by a direct DFT, as a mean-square value.
    fn tone_power(samples: &[i16], hz: f64) -> f64 {
        let w = std::f64::consts::TAU * hz / f64::from(SAMPLE_RATE_HZ);
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &s) in samples.iter().enumerate() {
            re += f64::from(s) * (w * n as f64).cos();
            im -= f64::from(s) * (w * n as f64).sin();
        }
        let n = samples.len() as f64;
        2.0 * (re * re + im * im) / (n * n)
    }

    #[test]
    fn tone_levels_and_frequencies_are_as_asked() {
        // One second: every DTMF frequency completes whole cycles.
        let samples = digit_tone(Digit::D5, -10.0, 3.0, 1000).unwrap_or_default();
        assert_eq!(samples.len(), 8000);
        let low_db = 10.0 * (tone_power(&samples, 770.0) / (DBM0_RMS * DBM0_RMS)).log10();
        let high_db = 10.0 * (tone_power(&samples, 1336.0) / (DBM0_RMS * DBM0_RMS)).log10();
        assert!((low_db + 10.0).abs() < 0.05, "low tone at {low_db} dBm0");
        assert!((high_db + 7.0).abs() < 0.05, "high tone at {high_db} dBm0");
        // Nothing at the other keys' frequencies.
        let stray = tone_power(&samples, 697.0) + tone_power(&samples, 1477.0);
        assert!(stray < tone_power(&samples, 770.0) * 1e-4);
        // Two equal tones at −6 dBm0 each make −3 dBm0 together.
        let pair = digit_tone(Digit::D1, -6.0, 0.0, 1000).unwrap_or_default();
        let total_db = 20.0 * (rms(&pair) / DBM0_RMS).log10();
        assert!((total_db + 2.99).abs() < 0.05, "{total_db}");
    }

    #[test]
    fn rendering_lays_out_tones_and_pauses() {
        let options = RenderOptions {
            tone_ms: 50,
            pause_ms: 60,
            lead_ms: 10,
            tail_ms: 20,
            ..RenderOptions::default()
        };
        let audio = render_digits("1#", &options).unwrap_or_default();
        assert_eq!(audio.len(), 8 * (10 + 50 + 60 + 50 + 20));
        assert!(audio[..80].iter().all(|&s| s == 0));
        assert!(rms(&audio[80..480]) > 1000.0);
        assert!(audio[480..960].iter().all(|&s| s == 0));
        assert!(audio[audio.len() - 160..].iter().all(|&s| s == 0));
    }

    #[test]
    fn bad_requests_are_refused_with_positions_not_text() {
        let options = RenderOptions::default();
        assert_eq!(
            render_digits("12x4", &options),
            Err(GenerateError::NotADigit { position: 2 })
        );
        assert!(
            !GenerateError::NotADigit { position: 2 }
                .to_string()
                .contains('x')
        );
        let long = "1".repeat(DIGITS_MAX + 1);
        assert!(matches!(
            render_digits(&long, &options),
            Err(GenerateError::TooManyDigits { .. })
        ));
        let loud = RenderOptions {
            level_dbm0: -2.0,
            twist_db: 4.0,
            ..options
        };
        assert_eq!(
            render_digits("1", &loud),
            Err(GenerateError::LevelOutOfRange)
        );
        let nan = RenderOptions {
            level_dbm0: f64::NAN,
            ..options
        };
        assert_eq!(
            render_digits("1", &nan),
            Err(GenerateError::LevelOutOfRange)
        );
        assert!(matches!(
            digit_tone(Digit::D1, -10.0, 0.0, SEGMENT_MS_MAX + 1),
            Err(GenerateError::DurationTooLong { .. })
        ));
    }

    fn chunk<'a>(file: &'a [u8], id: &[u8; 4]) -> Option<&'a [u8]> {
        let mut pos = 12;
        while pos + 8 <= file.len() {
            let len = u32::from_le_bytes(file[pos + 4..pos + 8].try_into().ok()?) as usize;
            let body = file.get(pos + 8..pos + 8 + len)?;
            if &file[pos..pos + 4] == id {
                return Some(body);
            }
            pos += 8 + len + len % 2;
        }
        None
    }

    #[test]
    fn ulaw_wav_has_the_header_sipp_skips_and_the_codes_after_it() {
        let audio = render_digits("5", &RenderOptions::default()).unwrap_or_default();
        let wav = ulaw_wav(&audio);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(&wav[8..12], b"WAVE");
        assert_eq!(
            u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]) as usize,
            wav.len() - 8
        );
        let fmt = chunk(&wav, b"fmt ").unwrap_or_default();
        assert_eq!(fmt.len(), 18);
        assert_eq!(u16::from_le_bytes([fmt[0], fmt[1]]), 7);
        assert_eq!(u16::from_le_bytes([fmt[2], fmt[3]]), 1);
        assert_eq!(u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]), 8000);
        assert_eq!(u16::from_le_bytes([fmt[14], fmt[15]]), 8);
        let data = chunk(&wav, b"data").unwrap_or_default();
        assert_eq!(data, ulaw_raw(&audio).as_slice());
        // The codes decode back to the audio within μ-law's quantisation.
        for (&code, &s) in data.iter().zip(&audio) {
            let err = (i32::from(ulaw_decode(code)) - i32::from(s)).abs();
            assert!(err <= 5 + i32::from(s).abs() / 16, "{s} -> {code:#x}");
        }
        let alaw = alaw_wav(&audio);
        let fmt = chunk(&alaw, b"fmt ").unwrap_or_default();
        assert_eq!(u16::from_le_bytes([fmt[0], fmt[1]]), 6);
    }

    #[test]
    fn pcm_wav_reads_back_with_hound() {
        let audio = render_digits("9", &RenderOptions::default()).unwrap_or_default();
        let bytes = pcm_wav(&audio);
        let reader = hound::WavReader::new(std::io::Cursor::new(bytes));
        let Ok(mut reader) = reader else {
            panic!("hound refused the file");
        };
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 8000, 16)
        );
        let back: Vec<i16> = reader.samples::<i16>().filter_map(Result::ok).collect();
        assert_eq!(back, audio);
    }
}
