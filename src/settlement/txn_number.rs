//! Transaction numbers: short, random, one-time, with a Damm check digit.
//!
//! A number is `length` random decimal digits drawn from the operating system's CSPRNG followed
//! by one Damm check digit. The Damm algorithm detects every single-digit error and every
//! adjacent transposition, which are the mistakes people make when keying a number they read
//! off a terminal's display. The check digit is verified before any store access, so a mistyped
//! number costs the gateway nothing.

use rand::TryRngCore;
use rand::rngs::OsRng;

/// Digits before the check digit unless configured otherwise.
pub const PAYLOAD_DIGITS_DEFAULT: usize = 8;
/// Bounds on the configurable payload length: fewer than 6 digits is too easy to guess, more
/// than 15 is too long to key.
pub const PAYLOAD_DIGITS_MIN: usize = 6;
pub const PAYLOAD_DIGITS_MAX: usize = 15;

/// The Damm quasigroup of order 10 (weakly totally anti-symmetric, zero diagonal).
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

/// Why a keyed or texted number was refused before any lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NumberError {
    #[error("a transaction number has {expected} digits, this one has {actual}")]
    WrongLength { expected: usize, actual: usize },
    #[error("a transaction number holds digits only")]
    NotDigits,
    #[error("the check digit does not match; the number was probably mistyped")]
    BadCheckDigit,
}

/// The Damm check digit of a string of ASCII digits; `None` if a byte is not a digit.
pub fn damm_check_digit(digits: &str) -> Option<u8> {
    let mut interim = 0u8;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        interim = DAMM[usize::from(interim)][usize::from(b - b'0')];
    }
    Some(interim)
}

/// True when `digits` (payload followed by its check digit) passes the Damm check.
pub fn damm_valid(digits: &str) -> bool {
    !digits.is_empty() && damm_check_digit(digits) == Some(0)
}

/// Checks a number as keyed by a payer: length, digits only, check digit.
pub fn validate(number: &str, payload_digits: usize) -> Result<(), NumberError> {
    let expected = payload_digits + 1;
    if !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumberError::NotDigits);
    }
    if number.len() != expected {
        return Err(NumberError::WrongLength {
            expected,
            actual: number.len(),
        });
    }
    if damm_valid(number) {
        Ok(())
    } else {
        Err(NumberError::BadCheckDigit)
    }
}

/// Draws a fresh number of `payload_digits` random digits plus the check digit.
///
/// Digits are drawn by rejection sampling from OS randomness so every digit is uniform.
pub fn generate(payload_digits: usize) -> Result<String, rand::rand_core::OsError> {
    let payload_digits = payload_digits.clamp(PAYLOAD_DIGITS_MIN, PAYLOAD_DIGITS_MAX);
    let mut out = String::with_capacity(payload_digits + 1);
    let mut buf = [0u8; 32];
    while out.len() < payload_digits {
        OsRng.try_fill_bytes(&mut buf)?;
        for b in buf {
            // 250 is the largest multiple of 10 not above 256: rejecting 250..=255 keeps the
            // distribution uniform.
            if b < 250 && out.len() < payload_digits {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    let check = damm_check_digit(&out).unwrap_or(0);
    out.push(char::from(b'0' + check));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damm_reference_value() {
        // The classic worked example: 572 has check digit 4.
        assert_eq!(damm_check_digit("572"), Some(4));
        assert!(damm_valid("5724"));
        assert!(!damm_valid("5723"));
    }

    #[test]
    fn generated_numbers_validate_and_vary() {
        let a = generate(8).unwrap();
        let b = generate(8).unwrap();
        assert_eq!(a.len(), 9);
        assert_eq!(validate(&a, 8), Ok(()));
        assert_eq!(validate(&b, 8), Ok(()));
        assert_ne!(a, b, "two draws of 10^8 should not collide");
    }

    #[test]
    fn every_single_digit_error_and_adjacent_transposition_is_caught() {
        let n = generate(8).unwrap();
        let bytes = n.as_bytes();
        for i in 0..bytes.len() {
            for d in b'0'..=b'9' {
                if d == bytes[i] {
                    continue;
                }
                let mut m = bytes.to_vec();
                m[i] = d;
                let m = String::from_utf8(m).unwrap();
                assert_eq!(validate(&m, 8), Err(NumberError::BadCheckDigit), "{m}");
            }
        }
        for i in 0..bytes.len() - 1 {
            if bytes[i] == bytes[i + 1] {
                continue;
            }
            let mut m = bytes.to_vec();
            m.swap(i, i + 1);
            let m = String::from_utf8(m).unwrap();
            assert_eq!(validate(&m, 8), Err(NumberError::BadCheckDigit), "{m}");
        }
    }

    #[test]
    fn malformed_numbers_are_refused() {
        assert_eq!(
            validate("12345678", 8),
            Err(NumberError::WrongLength {
                expected: 9,
                actual: 8
            })
        );
        assert_eq!(validate("12345678a", 8), Err(NumberError::NotDigits));
        assert_eq!(
            validate("", 8),
            Err(NumberError::WrongLength {
                expected: 9,
                actual: 0
            })
        );
    }
}
