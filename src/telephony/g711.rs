//! ITU-T G.711 μ-law (PCMU) and A-law (PCMA) companding between 16-bit
//! linear samples and 8-bit codes.
//!
//! Decoding is a lookup in a 256-entry table built at compile time; encoding
//! finds the segment with one `leading_zeros` and needs no table. Linear
//! samples are 16-bit two's complement, the scale every other part of
//! telepay uses: G.711's 14-bit (μ-law) and 13-bit (A-law) values sit in the
//! top bits, so the loudest μ-law code decodes to ±32124 and the loudest
//! A-law code to ±32256.
//!
//! Both directions are total functions: every `i16` has a code and every
//! byte decodes, so nothing here can fail on input from the network.
//!
//! # Level reference
//!
//! G.711 puts the μ-law overload point (14-bit decision value 8159, ±32636
//! here) at +3.17 dBm0, so a 0 dBm0 sine has a peak of
//! 32636 × 10^(−3.17/20) ≈ 22657 and an RMS of ≈ 16021. The digital
//! milliwatt of Table 5/G.711 decodes to within 0.01 dB of that. Level
//! figures in dBm0 across telepay (DTMF generation and detection) use this
//! reference, [`DBM0_RMS`].

/// RMS of a 0 dBm0 sine in 16-bit linear samples (μ-law reference,
/// 32636 × 10^(−3.17/20) / √2).
pub const DBM0_RMS: f64 = 16_020.716;

/// Peak of a 0 dBm0 sine in 16-bit linear samples.
pub const DBM0_PEAK: f64 = 22_656.714;

/// Which companding law a stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// μ-law, RTP static payload type 0 (PCMU).
    Ulaw,
    /// A-law, RTP static payload type 8 (PCMA).
    Alaw,
}

impl Law {
    /// The static RTP payload type of this law at 8 kHz.
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::Ulaw => 0,
            Law::Alaw => 8,
        }
    }

    /// The law for a static RTP payload type, if it is one of the two.
    pub const fn from_payload_type(payload_type: u8) -> Option<Law> {
        match payload_type {
            0 => Some(Law::Ulaw),
            8 => Some(Law::Alaw),
            _ => None,
        }
    }

    /// Encodes one linear sample.
    #[inline]
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Ulaw => ulaw_encode(sample),
            Law::Alaw => alaw_encode(sample),
        }
    }

    /// Decodes one code.
    #[inline]
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_decode(code),
            Law::Alaw => alaw_decode(code),
        }
    }

    /// The code of digital silence (linear 0 for μ-law, the smallest
    /// positive step for A-law, which has no zero).
    pub const fn silence(self) -> u8 {
        match self {
            Law::Ulaw => 0xFF,
            Law::Alaw => 0xD5,
        }
    }

    /// Encodes `samples`, appending one code per sample to `out`.
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        out.reserve(samples.len());
        match self {
            Law::Ulaw => out.extend(samples.iter().map(|&s| ulaw_encode(s))),
            Law::Alaw => out.extend(samples.iter().map(|&s| alaw_encode(s))),
        }
    }

    /// Decodes `codes`, appending one sample per code to `out`.
    pub fn decode_into(self, codes: &[u8], out: &mut Vec<i16>) {
        out.reserve(codes.len());
        let table = match self {
            Law::Ulaw => &ULAW_DECODE,
            Law::Alaw => &ALAW_DECODE,
        };
        out.extend(codes.iter().map(|&c| table[usize::from(c)]));
    }

    /// Decodes `codes` into the front of `out`, as many as fit, and returns
    /// how many were written. Meant for fixed stack buffers on hot paths.
    pub fn decode_to_slice(self, codes: &[u8], out: &mut [i16]) -> usize {
        let table = match self {
            Law::Ulaw => &ULAW_DECODE,
            Law::Alaw => &ALAW_DECODE,
        };
        let n = codes.len().min(out.len());
        for (dst, &code) in out.iter_mut().zip(codes.iter()) {
            *dst = table[usize::from(code)];
        }
        n
    }
}

/// μ-law works on biased magnitudes: adding 0x84 (33 in 14-bit units)
/// makes every segment start at a power of two.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude that still fits the top segment once biased
/// (0x7FFF − 0x84); louder samples clip to it.
const ULAW_CLIP: i32 = 0x7FFF - ULAW_BIAS;

/// Encodes a 16-bit linear sample as μ-law, rounding to the nearest
/// quantisation level and clipping beyond the overload point.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let linear = i32::from(sample);
    let (sign, magnitude) = if linear < 0 {
        (0x80_u32, (-linear).min(ULAW_CLIP))
    } else {
        (0x00_u32, linear.min(ULAW_CLIP))
    };
    // The biased magnitude lies in 0x84..=0x7FFF, so its top bit is bit 7
    // to 14 and the exponent 0 to 7.
    let biased = (magnitude + ULAW_BIAS).unsigned_abs();
    let exponent = (31 - biased.leading_zeros()) - 7;
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    // Codes are sent inverted so that idle channels carry many ones.
    let code = sign | (exponent << 4) | mantissa;
    !(code as u8)
}

/// Decodes a μ-law code to a 16-bit linear sample.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// Encodes a 16-bit linear sample as A-law (truncating within the segment,
/// since A-law reconstruction values sit mid-interval).
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    let linear = i32::from(sample);
    // A-law marks positive values with the sign bit set.
    let (sign, magnitude) = if linear >= 0 {
        (0x80_u32, linear.unsigned_abs())
    } else {
        (0x00_u32, linear.unsigned_abs())
    };
    // G.711 A-law quantises a 13-bit signed value: 12 bits of magnitude.
    let magnitude13 = (magnitude >> 3).min(0x0FFF);
    let code = if magnitude13 < 32 {
        // Segments 0 and 1 share one step size, two 13-bit units.
        sign | (magnitude13 >> 1)
    } else {
        let top_bit = 31 - magnitude13.leading_zeros();
        let segment = top_bit - 4;
        sign | (segment << 4) | ((magnitude13 >> segment) & 0x0F)
    };
    // Even bits are inverted on the line.
    (code as u8) ^ 0x55
}

/// Decodes an A-law code to a 16-bit linear sample.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
}

const fn ulaw_decode_slow(code: u8) -> i16 {
    let u = !code;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_slow(code: u8) -> i16 {
    let a = code ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if segment == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (segment - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_table(ulaw: bool) -> [i16; 256] {
    let mut table = [0_i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if ulaw {
            ulaw_decode_slow(i as u8)
        } else {
            alaw_decode_slow(i as u8)
        };
        i += 1;
    }
    table
}

static ULAW_DECODE: [i16; 256] = build_table(true);
static ALAW_DECODE: [i16; 256] = build_table(false);

#[cfg(test)]
mod tests {
    use super::*;

    /// The digital milliwatt of G.711 Tables 5 and 6: a 1 kHz sine at
    /// 0 dBm0, eight samples per period.
    const ULAW_MILLIWATT: [u8; 8] = [0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E];
    const ALAW_MILLIWATT: [u8; 8] = [0x34, 0x21, 0x21, 0x34, 0xB4, 0xA1, 0xA1, 0xB4];

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / samples.len() as f64).sqrt()
    }

    #[test]
    fn reference_constants_follow_the_formula() {
        let peak = 32_636.0 * 10f64.powf(-3.17 / 20.0);
        assert!((DBM0_PEAK - peak).abs() < 0.01);
        assert!((DBM0_RMS - peak / 2f64.sqrt()).abs() < 0.01);
    }

    #[test]
    fn ulaw_milliwatt_decodes_to_known_values_at_0_dbm0() {
        let mut decoded = Vec::new();
        Law::Ulaw.decode_into(&ULAW_MILLIWATT, &mut decoded);
        assert_eq!(
            decoded,
            [-8828, -20860, -20860, -8828, 8828, 20860, 20860, 8828]
        );
        let level_db = 20.0 * (rms(&decoded) / DBM0_RMS).log10();
        assert!(level_db.abs() < 0.01, "milliwatt at {level_db} dBm0");
        for (&code, &s) in ULAW_MILLIWATT.iter().zip(&decoded) {
            assert_eq!(ulaw_encode(s), code);
        }
    }

    #[test]
    fn alaw_milliwatt_decodes_to_known_values_at_0_dbm0() {
        let mut decoded = Vec::new();
        Law::Alaw.decode_into(&ALAW_MILLIWATT, &mut decoded);
        assert_eq!(
            decoded,
            [-8960, -20992, -20992, -8960, 8960, 20992, 20992, 8960]
        );
        // A-law's own overload point is +3.14 dBm0 at 32768, 0.08 dB from the
        // μ-law reference used for levels.
        let level_db = 20.0 * (rms(&decoded) / DBM0_RMS).log10();
        assert!(level_db.abs() < 0.1, "milliwatt at {level_db} dBm0");
        for (&code, &s) in ALAW_MILLIWATT.iter().zip(&decoded) {
            assert_eq!(alaw_encode(s), code);
        }
    }

    #[test]
    fn known_codes_for_extremes_and_zero() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32_124);
        assert_eq!(ulaw_decode(0x00), -32_124);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0xAA), 32_256);
        assert_eq!(alaw_decode(0x2A), -32_256);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255_u8 {
            // μ-law has two zeros; −0 comes back as +0.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                ulaw_encode(ulaw_decode(code)),
                expected,
                "μ-law {code:#04x}"
            );
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
        }
    }

    /// Half the quantisation step of the segment `x` falls in: the most a
    /// rounding (μ-law) or mid-interval (A-law) quantiser may be off.
    fn ulaw_error_bound(x: i32) -> i32 {
        let biased = x.abs().min(ULAW_CLIP) + ULAW_BIAS;
        let exponent = (31 - biased.leading_zeros() as i32) - 7;
        4 << exponent
    }

    fn alaw_error_bound(x: i32) -> i32 {
        let magnitude13 = (x.unsigned_abs() >> 3).min(0x0FFF);
        let segment = if magnitude13 < 32 {
            1
        } else {
            31 - magnitude13.leading_zeros() as i32 - 4
        };
        // One 13-bit unit is 8 here; steps are 2 units in segments 0 and 1
        // and double per segment after.
        8 << segment
    }

    #[test]
    fn quantisation_error_is_within_half_a_step_and_monotonic() {
        let mut previous_u = i16::MIN;
        let mut previous_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let xi = i32::from(x);
            let u = ulaw_decode(ulaw_encode(x));
            let a = alaw_decode(alaw_encode(x));
            // Clipping: beyond the top reconstruction level the error grows.
            let clipped_u = xi.clamp(-32_124, 32_124);
            let clipped_a = xi.clamp(-32_256, 32_256);
            assert!(
                (i32::from(u) - clipped_u).abs() <= ulaw_error_bound(xi),
                "μ-law {x} -> {u}"
            );
            assert!(
                (i32::from(a) - clipped_a).abs() <= alaw_error_bound(xi),
                "A-law {x} -> {a}"
            );
            assert!(u >= previous_u && a >= previous_a, "not monotonic at {x}");
            previous_u = u;
            previous_a = a;
        }
    }

    #[test]
    fn payload_types_and_slices() {
        assert_eq!(Law::from_payload_type(0), Some(Law::Ulaw));
        assert_eq!(Law::from_payload_type(8), Some(Law::Alaw));
        assert_eq!(Law::from_payload_type(18), None);
        assert_eq!(Law::Alaw.payload_type(), 8);
        let samples = [0_i16, 1000, -1000, 32_000, -32_000];
        for law in [Law::Ulaw, Law::Alaw] {
            let mut codes = Vec::new();
            law.encode_into(&samples, &mut codes);
            let mut back = [0_i16; 3];
            assert_eq!(law.decode_to_slice(&codes, &mut back), 3);
            assert_eq!(back[1], law.decode(law.encode(1000)));
            assert!(law.decode(law.silence()).abs() <= 8);
        }
    }
}
