//! A private G.711 helper (μ-law and A-law, ITU-T G.711) used to train and test the voice
//! models on the coding a telephone call applies. The telephony module has its own codec; this
//! copy keeps the voice folder self-contained.

/// Which G.711 law to apply in a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Mu,
    A,
}

const MU_BIAS: i32 = 0x84;
const MU_CLIP: i32 = 32_635;

pub fn mu_encode(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(MU_CLIP) + MU_BIAS;
    // The segment is the position of the highest set bit above bit 7.
    let exponent = (31 - (s as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 as i32 | mantissa) as u8
}

pub fn mu_decode(code: u8) -> i16 {
    let c = !code;
    let sign = c & 0x80;
    let exponent = ((c >> 4) & 0x07) as i32;
    let mantissa = (c & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + MU_BIAS) << exponent) - MU_BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

pub fn a_encode(sample: i16) -> u8 {
    let s = sample as i32;
    let (sign, magnitude) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    let magnitude = magnitude.min(32_767) >> 3;
    let code = if magnitude < 32 {
        magnitude >> 1
    } else {
        let exponent = (31 - (magnitude as u32).leading_zeros() as i32 - 4).clamp(1, 7);
        (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    };
    ((sign | code) ^ 0x55) as u8
}

pub fn a_decode(code: u8) -> i16 {
    let c = (code ^ 0x55) as i32;
    let exponent = (c >> 4) & 0x07;
    let mantissa = c & 0x0F;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if c & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Encodes and decodes every sample with `law`.
pub fn round_trip(samples: &[i16], law: Law) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| match law {
            Law::Mu => mu_decode(mu_encode(s)),
            Law::A => a_decode(a_encode(s)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_error_is_within_the_segment_step() {
        for law in [Law::Mu, Law::A] {
            for s in (-32_768i32..=32_767).step_by(7) {
                let s = s as i16;
                let back = round_trip(&[s], law)[0] as i32;
                let error = (back - s as i32).abs();
                // The step doubles per segment; half of it plus the bias is the worst case.
                let bound = 16 + (s as i32).abs() / 16;
                assert!(error <= bound, "{law:?} {s} -> {back}");
            }
        }
    }

    #[test]
    fn known_codes() {
        // Silence codes: μ-law 0xFF, A-law 0xD5 decode to (near) zero.
        assert_eq!(mu_encode(0), 0xFF);
        assert_eq!(mu_decode(0xFF), 0);
        assert_eq!(a_encode(0), 0xD5);
        assert_eq!(a_decode(0xD5), 8);
        assert_eq!(mu_decode(0x80), 32_124);
        assert_eq!(a_decode(0xAA), 32_256);
        // Decode is the inverse of encode on every code's own value.
        for code in 0..=255u8 {
            assert_eq!(mu_decode(mu_encode(mu_decode(code))), mu_decode(code));
            assert_eq!(a_decode(a_encode(a_decode(code))), a_decode(code));
        }
    }
}
