//! The Damm check digit, as the settlement core issues numbers with it. The IVR verifies it
//! before asking the core, so a mistyped number costs the caller no guess from the rate limit.

pub use crate::settlement::txn_number::damm_check_digit as check_digit;

/// True when `number` (check digit last) is all digits, non-empty and its check digit matches.
pub fn is_valid(number: &str) -> bool {
    crate::settlement::txn_number::damm_valid(number)
}
