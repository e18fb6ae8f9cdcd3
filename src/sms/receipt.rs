//! The text of a payer's receipt (claims 8 and 32), for every channel's settlements.
//!
//! `Paid 12.50 EUR to Café Central. Ref K7Q2M9. 2024-05-01 14:03 UTC. telepay`
//!
//! The text is kept in GSM 7-bit where possible, so it fits one message: names are passed
//! through [`gsm7::transliterate`] and cut to `MERCHANT_NAME_CHARS_MAX` characters. A name that
//! still needs UCS-2 (a script GSM 7-bit lacks) is kept as it is; the receipt is then sent in UCS-2
//! and may take two parts.

use time::OffsetDateTime;
use time::macros::format_description;

use super::{gsm7, money};

/// The longest merchant name shown on a receipt, in characters.
pub const MERCHANT_NAME_CHARS_MAX: usize = 40;
/// The longest reference shown on a receipt, in characters.
pub const REFERENCE_CHARS_MAX: usize = 24;

/// What a receipt says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    /// The merchant's display name.
    pub merchant_name: String,
    /// The amount paid, in minor units.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The settlement's reference, as the payer would quote it.
    pub reference: String,
    /// When it was settled.
    pub settled_at: OffsetDateTime,
    /// The service's name, signing the text.
    pub brand: String,
}

/// Cuts `text` to `max` characters, marking the cut with `...` (itself GSM 7-bit).
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(3);
    let mut out: String = text.chars().take(keep).collect();
    // Cut at a word boundary when one is not too far back.
    let next_is_space = text.chars().nth(keep).is_some_and(char::is_whitespace);
    if let Some(space) = out
        .rfind(' ')
        .filter(|i| !next_is_space && *i >= out.len() / 2)
    {
        out.truncate(space);
    }
    let mut out = out.trim_end().to_owned();
    out.push_str("...");
    out
}

/// Makes a name fit for a text: GSM stand-ins, control characters and runs of white space
/// collapsed to one space, cut to `max` characters.
pub fn display_name(name: &str, max: usize) -> String {
    let cleaned: String = gsm7::transliterate(name)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    cut(&collapsed, max)
}

/// The time as a receipt shows it: `2024-05-01 14:03 UTC` or `2024-05-01 16:03 +02:00`.
pub fn format_time(at: OffsetDateTime) -> String {
    let date_time = format_description!("[year]-[month]-[day] [hour]:[minute]");
    let offset = format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    let main = at.format(&date_time).unwrap_or_default();
    if at.offset().is_utc() {
        format!("{main} UTC")
    } else {
        let off = at.format(&offset).unwrap_or_default();
        format!("{main} {off}")
    }
}

/// Renders the receipt text.
pub fn render(facts: &ReceiptFacts) -> String {
    let name = display_name(&facts.merchant_name, MERCHANT_NAME_CHARS_MAX);
    // A name cut with "..." or ending in "." needs no second full stop.
    let stop = if name.ends_with('.') { "" } else { "." };
    format!(
        "Paid {} to {name}{stop} Ref {}. {}. {}",
        money::format_amount(facts.amount_minor, &facts.currency),
        display_name(&facts.reference, REFERENCE_CHARS_MAX),
        format_time(facts.settled_at),
        display_name(&facts.brand, 20),
    )
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::super::concat;
    use super::super::encoding::Alphabet;
    use super::*;

    fn facts(name: &str) -> ReceiptFacts {
        ReceiptFacts {
            merchant_name: name.into(),
            amount_minor: 1250,
            currency: "EUR".into(),
            reference: "K7Q2M9".into(),
            settled_at: datetime!(2024-05-01 14:03:27 UTC),
            brand: "telepay".into(),
        }
    }

    #[test]
    fn renders_merchant_amount_reference_and_time() {
        assert_eq!(
            render(&facts("Café Central")),
            "Paid 12.50 EUR to Café Central. Ref K7Q2M9. 2024-05-01 14:03 UTC. telepay"
        );
        let mut f = facts("Kiosk");
        f.settled_at = datetime!(2024-05-01 16:03 +02:00);
        f.amount_minor = 300;
        f.currency = "JPY".into();
        assert_eq!(
            render(&f),
            "Paid 300 JPY to Kiosk. Ref K7Q2M9. 2024-05-01 16:03 +02:00. telepay"
        );
    }

    #[test]
    fn names_are_made_gsm_and_bounded_so_the_receipt_fits_one_message() {
        let text = render(&facts("Żabka Łódź — “Sklep”\n\tnr 5 ’24"));
        assert!(
            text.contains("to Zabka Lodz - \"Sklep\" nr 5 '24."),
            "{text}"
        );
        assert_eq!(Alphabet::for_text(&text), Alphabet::Gsm7);
        let long = render(&facts(&"Supermarket ".repeat(20)));
        assert!(
            long.contains("to Supermarket Supermarket Supermarket... Ref"),
            "{long}"
        );
        assert_eq!(cut("abcdefghij", 6), "abc...");
        assert_eq!(cut("abc", 3), "abc");
        let split = concat::split(&long, 0, 8).unwrap();
        assert_eq!(
            split.parts.len(),
            1,
            "{} septets",
            gsm7::septet_len(&long).unwrap()
        );
    }

    #[test]
    fn a_name_without_gsm_form_keeps_its_script() {
        let text = render(&facts("東京ラーメン"));
        assert!(text.contains("東京ラーメン"));
        assert_eq!(Alphabet::for_text(&text), Alphabet::Ucs2);
        assert!(concat::split(&text, 0, 8).unwrap().parts.len() <= 2);
    }
}
