//! Amounts of money: integers in minor units with an ISO 4217 currency, never floats.

use std::fmt;

/// One ISO 4217 currency as the gateway knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    /// Alphabetic code, e.g. `USD`.
    pub code: &'static str,
    /// Numeric code, e.g. 840 (ISO 8583 field 49 carries it).
    pub numeric: u16,
    /// Digits after the decimal point (the minor unit).
    pub exponent: u8,
    /// English names of the major and minor units, singular and plural, for prompts and texts.
    pub major_one: &'static str,
    pub major_many: &'static str,
    pub minor_one: &'static str,
    pub minor_many: &'static str,
}

macro_rules! cur {
    ($code:literal, $num:literal, $exp:literal, $m1:literal, $mn:literal, $n1:literal, $nn:literal) => {
        Currency {
            code: $code,
            numeric: $num,
            exponent: $exp,
            major_one: $m1,
            major_many: $mn,
            minor_one: $n1,
            minor_many: $nn,
        }
    };
}

/// The currencies the gateway accepts. Adding one is a one-line change; the list holds the
/// currencies in common retail use.
pub const CURRENCIES: &[Currency] = &[
    cur!("USD", 840, 2, "dollar", "dollars", "cent", "cents"),
    cur!("EUR", 978, 2, "euro", "euros", "cent", "cents"),
    cur!("GBP", 826, 2, "pound", "pounds", "penny", "pence"),
    cur!("JPY", 392, 0, "yen", "yen", "", ""),
    cur!("CHF", 756, 2, "franc", "francs", "centime", "centimes"),
    cur!(
        "CAD",
        124,
        2,
        "Canadian dollar",
        "Canadian dollars",
        "cent",
        "cents"
    ),
    cur!(
        "AUD",
        36,
        2,
        "Australian dollar",
        "Australian dollars",
        "cent",
        "cents"
    ),
    cur!(
        "NZD",
        554,
        2,
        "New Zealand dollar",
        "New Zealand dollars",
        "cent",
        "cents"
    ),
    cur!("SEK", 752, 2, "krona", "kronor", "öre", "öre"),
    cur!("NOK", 578, 2, "krone", "kroner", "øre", "øre"),
    cur!("DKK", 208, 2, "krone", "kroner", "øre", "øre"),
    cur!("PLN", 985, 2, "zloty", "zlotys", "grosz", "groszy"),
    cur!("CZK", 203, 2, "koruna", "korunas", "haler", "halers"),
    cur!("HUF", 348, 2, "forint", "forints", "filler", "fillers"),
    cur!("INR", 356, 2, "rupee", "rupees", "paisa", "paise"),
    cur!("CNY", 156, 2, "yuan", "yuan", "fen", "fen"),
    cur!(
        "HKD",
        344,
        2,
        "Hong Kong dollar",
        "Hong Kong dollars",
        "cent",
        "cents"
    ),
    cur!(
        "SGD",
        702,
        2,
        "Singapore dollar",
        "Singapore dollars",
        "cent",
        "cents"
    ),
    cur!("KRW", 410, 0, "won", "won", "", ""),
    cur!("BRL", 986, 2, "real", "reais", "centavo", "centavos"),
    cur!("MXN", 484, 2, "peso", "pesos", "centavo", "centavos"),
    cur!("ZAR", 710, 2, "rand", "rand", "cent", "cents"),
    cur!("KES", 404, 2, "shilling", "shillings", "cent", "cents"),
    cur!("NGN", 566, 2, "naira", "naira", "kobo", "kobo"),
    cur!("TRY", 949, 2, "lira", "lira", "kurus", "kurus"),
    cur!("AED", 784, 2, "dirham", "dirhams", "fils", "fils"),
    cur!("SAR", 682, 2, "riyal", "riyals", "halala", "halalas"),
    cur!("ILS", 376, 2, "shekel", "shekels", "agora", "agorot"),
    cur!("THB", 764, 2, "baht", "baht", "satang", "satang"),
    cur!("IDR", 360, 2, "rupiah", "rupiah", "sen", "sen"),
    cur!("PHP", 608, 2, "peso", "pesos", "centavo", "centavos"),
    cur!("VND", 704, 0, "dong", "dong", "", ""),
    cur!("KWD", 414, 3, "dinar", "dinars", "fils", "fils"),
    cur!("BHD", 48, 3, "dinar", "dinars", "fils", "fils"),
    cur!("ISK", 352, 0, "krona", "kronur", "", ""),
];

impl Currency {
    /// Looks a currency up by its alphabetic code (case-insensitive).
    pub fn from_code(code: &str) -> Option<&'static Currency> {
        CURRENCIES
            .iter()
            .find(|c| c.code.eq_ignore_ascii_case(code))
    }

    /// Looks a currency up by its numeric code.
    pub fn from_numeric(numeric: u16) -> Option<&'static Currency> {
        CURRENCIES.iter().find(|c| c.numeric == numeric)
    }

    /// 10^exponent: minor units per major unit.
    pub fn minor_per_major(&self) -> i64 {
        10i64.pow(u32::from(self.exponent))
    }
}

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    #[error("unknown currency {0:?}; use an ISO 4217 code such as USD")]
    UnknownCurrency(String),
    #[error("the amount must be greater than zero")]
    NotPositive,
    #[error("the amount is larger than the gateway accepts ({max} minor units)")]
    TooLarge { max: i64 },
    #[error("cannot read {0:?} as an amount (expected e.g. 12.50)")]
    Unreadable(String),
}

/// The largest amount any transaction may carry: it must fit ISO 8583 field 4 (n12).
pub const AMOUNT_MINOR_MAX: i64 = 999_999_999_999;

/// An amount in minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: &'static Currency,
}

impl Money {
    /// A positive amount within the gateway's bounds.
    pub fn positive(amount_minor: i64, currency: &'static Currency) -> Result<Money, AmountError> {
        if amount_minor <= 0 {
            return Err(AmountError::NotPositive);
        }
        if amount_minor > AMOUNT_MINOR_MAX {
            return Err(AmountError::TooLarge {
                max: AMOUNT_MINOR_MAX,
            });
        }
        Ok(Money {
            amount_minor,
            currency,
        })
    }

    /// Parses a decimal string in major units ("100", "12.5", "12.50") exactly, without floats.
    pub fn parse_major(text: &str, currency: &'static Currency) -> Result<Money, AmountError> {
        let bad = || AmountError::Unreadable(text.chars().take(32).collect());
        let text = text.trim();
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > usize::from(currency.exponent)
        {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let mut frac_minor: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad())?
        };
        for _ in frac.len()..usize::from(currency.exponent) {
            frac_minor *= 10;
        }
        let minor = whole
            .checked_mul(currency.minor_per_major())
            .and_then(|m| m.checked_add(frac_minor))
            .ok_or(AmountError::TooLarge {
                max: AMOUNT_MINOR_MAX,
            })?;
        Money::positive(minor, currency)
    }
}

/// Formats minor units as a decimal string in major units, e.g. 1250 USD → `12.50`.
pub fn format_minor(amount_minor: i64, currency: &Currency) -> String {
    let per = currency.minor_per_major();
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let per_u = per.unsigned_abs();
    if currency.exponent == 0 {
        format!("{sign}{abs}")
    } else {
        format!(
            "{sign}{}.{:0width$}",
            abs / per_u,
            abs % per_u,
            width = usize::from(currency.exponent)
        )
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            format_minor(self.amount_minor, self.currency),
            self.currency.code
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> &'static Currency {
        Currency::from_code("usd").unwrap()
    }

    #[test]
    fn parses_major_units_exactly() {
        assert_eq!(
            Money::parse_major("100.00", usd()).unwrap().amount_minor,
            10_000
        );
        assert_eq!(
            Money::parse_major("12.5", usd()).unwrap().amount_minor,
            1_250
        );
        assert_eq!(Money::parse_major("7", usd()).unwrap().amount_minor, 700);
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(Money::parse_major("500", jpy).unwrap().amount_minor, 500);
        assert!(Money::parse_major("5.5", jpy).is_err());
        assert!(Money::parse_major("1.234", usd()).is_err());
        assert!(Money::parse_major("-1", usd()).is_err());
        assert!(Money::parse_major("0", usd()).is_err());
        assert!(Money::parse_major("99999999999999999999", usd()).is_err());
        assert!(Money::parse_major("1e3", usd()).is_err());
    }

    #[test]
    fn formats_minor_units() {
        assert_eq!(format_minor(1250, usd()), "12.50");
        assert_eq!(format_minor(-5, usd()), "-0.05");
        assert_eq!(
            format_minor(500, Currency::from_code("JPY").unwrap()),
            "500"
        );
        assert_eq!(
            format_minor(1234, Currency::from_code("KWD").unwrap()),
            "1.234"
        );
    }

    #[test]
    fn bounds_are_enforced() {
        assert_eq!(Money::positive(0, usd()), Err(AmountError::NotPositive));
        assert_eq!(Money::positive(-3, usd()), Err(AmountError::NotPositive));
        assert!(Money::positive(AMOUNT_MINOR_MAX, usd()).is_ok());
        assert!(Money::positive(AMOUNT_MINOR_MAX + 1, usd()).is_err());
    }

    #[test]
    fn numeric_codes_are_unique() {
        for (i, a) in CURRENCIES.iter().enumerate() {
            for b in &CURRENCIES[i + 1..] {
                assert_ne!(a.numeric, b.numeric);
                assert_ne!(a.code, b.code);
            }
        }
        assert_eq!(Currency::from_numeric(840).unwrap().code, "USD");
    }
}
