//! A private G.711 encoder (μ-law and A-law, ITU-T G.711 segment coding) and the playback cursor
//! that cuts a list of prompts into packet-sized frames.

use super::PromptRef;

/// Which G.711 law a call's audio uses (PCMU or PCMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// PCMU, RTP payload type 0.
    Ulaw,
    /// PCMA, RTP payload type 8.
    Alaw,
}

impl G711Law {
    /// Encodes one linear sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            G711Law::Ulaw => linear_to_ulaw(sample),
            G711Law::Alaw => linear_to_alaw(sample),
        }
    }

    /// The code of a zero sample, used to pad the last frame.
    pub fn silence(self) -> u8 {
        self.encode(0)
    }
}

/// μ-law keeps 14 bits of magnitude; the bias makes every segment's mantissa start at a power
/// of two, so the segment is the position of the highest set bit.
const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;

pub(super) fn linear_to_ulaw(sample: i16) -> u8 {
    let value = i32::from(sample);
    let sign: u8 = if value < 0 { 0x80 } else { 0x00 };
    let magnitude = value.unsigned_abs().min(ULAW_CLIP as u32) as i32 + ULAW_BIAS;
    // The biased magnitude lies in 0x84..=0x7FFF, so its highest bit is bit 7..=14.
    let exponent = (31 - magnitude.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (magnitude >> (exponent + 3)) & 0x0F;
    !(sign | ((exponent as u8) << 4) | mantissa as u8)
}

pub(super) fn linear_to_alaw(sample: i16) -> u8 {
    // A-law codes 13 bits; the sign bit is set for positive values, and even bits are inverted.
    let value = i32::from(sample) >> 3;
    let (sign, magnitude) = if value >= 0 {
        (0x80u8, value)
    } else {
        (0x00u8, -value - 1)
    };
    let magnitude = magnitude.min(0x0FFF);
    let (segment, mantissa) = if magnitude < 32 {
        (0, magnitude >> 1)
    } else {
        // Segment s >= 1 covers 2^(s+4) ..< 2^(s+5), with the mantissa in bits s..s+4.
        let segment = 31 - magnitude.leading_zeros() as i32 - 4;
        (segment, (magnitude >> segment) & 0x0F)
    };
    (sign | ((segment as u8) << 4) | mantissa as u8) ^ 0x55
}

/// A cursor over a list of prompts that fills packet-sized buffers with G.711 codes.
///
/// The frame size is the caller's (160 bytes for 20 ms at 8 kHz); prompts follow each other
/// without a gap, and the last frame is padded with silence.
#[derive(Debug, Clone)]
pub struct Playback {
    prompts: Vec<PromptRef>,
    law: G711Law,
    index: usize,
    offset: usize,
}

impl Playback {
    /// Starts at the first sample of the first prompt.
    pub fn new(prompts: Vec<PromptRef>, law: G711Law) -> Self {
        Playback {
            prompts,
            law,
            index: 0,
            offset: 0,
        }
    }

    /// Fills `frame` and returns how many bytes came from prompts; the rest is silence. Returns 0
    /// once every prompt has been played (and fills the frame with silence).
    pub fn fill(&mut self, frame: &mut [u8]) -> usize {
        let mut written = 0;
        while written < frame.len() {
            let Some(prompt) = self.prompts.get(self.index) else {
                break;
            };
            let codes = prompt.encoded(self.law);
            let rest = codes.get(self.offset..).unwrap_or(&[]);
            if rest.is_empty() {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let n = rest.len().min(frame.len() - written);
            frame[written..written + n].copy_from_slice(&rest[..n]);
            written += n;
            self.offset += n;
        }
        frame[written..].fill(self.law.silence());
        written
    }

    /// True once every sample has been handed out.
    pub fn is_finished(&self) -> bool {
        self.remaining_samples() == 0
    }

    /// Samples not yet handed out.
    pub fn remaining_samples(&self) -> usize {
        self.prompts
            .iter()
            .skip(self.index)
            .enumerate()
            .map(|(i, p)| {
                let consumed = if i == 0 { self.offset } else { 0 };
                p.samples().len().saturating_sub(consumed)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference decoders written from the G.711 definition, used only to check the encoders.
    fn ulaw_to_linear(code: u8) -> i32 {
        let code = !code;
        let sign = code & 0x80;
        let exponent = i32::from((code >> 4) & 0x07);
        let mantissa = i32::from(code & 0x0F);
        let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
        if sign != 0 { -magnitude } else { magnitude }
    }

    fn alaw_to_linear(code: u8) -> i32 {
        let code = code ^ 0x55;
        let segment = i32::from((code >> 4) & 0x07);
        let mantissa = i32::from(code & 0x0F);
        let magnitude = if segment == 0 {
            (mantissa << 4) + 8
        } else {
            ((mantissa << 4) + 0x108) << (segment - 1)
        };
        if code & 0x80 != 0 {
            magnitude
        } else {
            -magnitude
        }
    }

    #[test]
    fn known_codes() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-8), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn round_trip_error_is_within_the_segment_step() {
        for sample in (i16::MIN..=i16::MAX).step_by(7) {
            let s = i32::from(sample);
            let u = ulaw_to_linear(linear_to_ulaw(sample));
            let a = alaw_to_linear(linear_to_alaw(sample));
            // The quantisation step doubles per segment and is at most 1/16 of the magnitude
            // (plus the bias for μ-law); near full scale μ-law also clips at 32635.
            let u_bound = (s.abs() + ULAW_BIAS) / 16 + 1;
            let a_bound = (s.abs() / 16).max(16) + 16;
            assert!((u - s).abs() <= u_bound, "ulaw {sample} -> {u}");
            assert!((a - s).abs() <= a_bound, "alaw {sample} -> {a}");
            // Monotonic sign handling: a code never flips the sign of a clear signal.
            if s.abs() > 64 {
                assert_eq!(u.signum(), s.signum(), "ulaw sign {sample}");
                assert_eq!(a.signum(), s.signum(), "alaw sign {sample}");
            }
        }
    }

    #[test]
    fn encoders_are_monotonic() {
        let mut last_u = i32::MIN;
        let mut last_a = i32::MIN;
        for sample in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(sample));
            let a = alaw_to_linear(linear_to_alaw(sample));
            assert!(u >= last_u, "ulaw not monotonic at {sample}");
            assert!(a >= last_a, "alaw not monotonic at {sample}");
            last_u = u;
            last_a = a;
        }
    }
}
