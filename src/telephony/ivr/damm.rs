//! The Damm check digit (a weakly totally anti-symmetric quasigroup of order 10): it catches every
//! single-digit error and every swap of adjacent digits. The transaction number's last digit is
//! its check digit; the IVR verifies it before asking the core, so a mistyped number costs the
//! caller no guess from the core's rate limit.

const TABLE: [[u8; 10]; 10] = [
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

/// The interim digit after running `digits` through the table; `None` if a character is not a
/// decimal digit.
fn interim(digits: &str) -> Option<u8> {
    digits.bytes().try_fold(0u8, |acc, b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        Some(TABLE[usize::from(acc)][usize::from(d)])
    })
}

/// The check digit to append to `digits`.
pub fn check_digit(digits: &str) -> Option<u8> {
    interim(digits)
}

/// True when `number` (check digit last) is all digits, non-empty and its check digit matches.
pub fn is_valid(number: &str) -> bool {
    !number.is_empty() && interim(number) == Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value() {
        // The classic worked example: 572 has check digit 4.
        assert_eq!(check_digit("572"), Some(4));
        assert!(is_valid("5724"));
        assert!(!is_valid("5723"));
        assert!(!is_valid(""));
        assert!(!is_valid("57a4"));
    }

    #[test]
    fn catches_single_errors_and_adjacent_swaps() {
        let base = "12345678";
        let number = format!("{base}{}", check_digit(base).unwrap());
        assert!(is_valid(&number));
        let bytes = number.as_bytes();
        for i in 0..bytes.len() {
            for d in b'0'..=b'9' {
                if d == bytes[i] {
                    continue;
                }
                let mut changed = bytes.to_vec();
                changed[i] = d;
                assert!(!is_valid(std::str::from_utf8(&changed).unwrap()));
            }
            if i + 1 < bytes.len() && bytes[i] != bytes[i + 1] {
                let mut swapped = bytes.to_vec();
                swapped.swap(i, i + 1);
                assert!(!is_valid(std::str::from_utf8(&swapped).unwrap()));
            }
        }
    }
}
