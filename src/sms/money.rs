//! Amounts for texts: integer minor units and an ISO 4217 code, written as `12.50 EUR`.
//!
//! The exponent (digits after the decimal point) comes from a small private table of common
//! currencies; the settlement core's currency table will replace it. An unknown code is written
//! in minor units with the code and the words "minor units", never with a guessed decimal point,
//! because a payer must never read a wrong amount.

/// ISO 4217 codes and their exponents (minor unit digits).
const EXPONENTS: [(&str, u8); 40] = [
    ("AED", 2),
    ("AUD", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("GHS", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("MXN", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PHP", 2),
    ("PLN", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TZS", 2),
    ("UGX", 0),
    ("USD", 2),
    ("XOF", 0),
    ("ZAR", 2),
];

/// The exponent of `currency`, if the table knows it.
pub fn exponent(currency: &str) -> Option<u8> {
    EXPONENTS
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(currency))
        .map(|(_, e)| *e)
}

/// Writes `amount_minor` of `currency` for a text: `12.50 EUR`, `1500 JPY`, `-0.05 USD`,
/// `1.250 KWD`, or `1250 XYZ minor units` for a code the table does not know.
pub fn format_amount(amount_minor: i64, currency: &str) -> String {
    let code = currency.to_ascii_uppercase();
    let Some(exp) = exponent(&code) else {
        return format!("{amount_minor} {code} minor units");
    };
    let sign = if amount_minor < 0 { "-" } else { "" };
    let magnitude = amount_minor.unsigned_abs();
    if exp == 0 {
        return format!("{sign}{magnitude} {code}");
    }
    let divisor = 10u64.pow(u32::from(exp));
    let width = usize::from(exp);
    format!(
        "{sign}{}.{:0width$} {code}",
        magnitude / divisor,
        magnitude % divisor
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_exponent() {
        assert_eq!(format_amount(1250, "EUR"), "12.50 EUR");
        assert_eq!(format_amount(5, "usd"), "0.05 USD");
        assert_eq!(format_amount(-5, "USD"), "-0.05 USD");
        assert_eq!(format_amount(1500, "JPY"), "1500 JPY");
        assert_eq!(format_amount(1250, "KWD"), "1.250 KWD");
        assert_eq!(format_amount(0, "GBP"), "0.00 GBP");
        assert_eq!(format_amount(i64::MIN, "EUR"), "-92233720368547758.08 EUR");
    }

    #[test]
    fn unknown_currencies_are_never_given_a_guessed_point() {
        assert_eq!(format_amount(1250, "XYZ"), "1250 XYZ minor units");
        assert_eq!(exponent("XYZ"), None);
    }

    #[test]
    fn the_table_is_sorted_and_unique() {
        assert!(EXPONENTS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
