//! Speaking values by concatenating prompts: numbers, amounts, digits, dates.
//!
//! Everything here is a pure function from a value to a list of prompt names. The words come from
//! a [`LanguageTable`]; the composition rules (where "and" goes, how years split) are flags in the
//! same table, so a language close to English is a new table, and one with other rules adds a flag.

use super::PromptError;

/// Numbers at or above this are read digit by digit: no caller wants to hear them as words.
const SPOKEN_NUMBER_LIMIT: u64 = 1_000_000_000_000;
/// The longest string [`Language::say_digits`] and spelling will read.
const SPELL_CHARS_MAX: usize = 64;
/// Names up to this many letters and digits are spelled when no recording exists.
const MERCHANT_SPELL_CHARS_MAX: usize = 10;

/// A language the prompts can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Language {
    /// English (US voice).
    En,
}

/// Spoken names of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrencyWords {
    /// ISO 4217 code, upper case.
    pub code: &'static str,
    /// ISO 4217 minor-unit exponent (2 for USD, 0 for JPY).
    pub minor_digits: u8,
    /// Major unit, singular and plural prompt names.
    pub major: (&'static str, &'static str),
    /// Minor unit, singular and plural prompt names; `None` when the currency has none.
    pub minor: Option<(&'static str, &'static str)>,
}

/// Words and rules of one language, as prompt names.
struct LanguageTable {
    /// 0 to 19.
    units: [&'static str; 20],
    /// Index 2 to 9: twenty to ninety. 0 and 1 are unused.
    tens: [&'static str; 10],
    hundred: &'static str,
    /// Thousand, million, billion.
    scales: [&'static str; 3],
    and: &'static str,
    point: &'static str,
    minus: &'static str,
    /// "oh", for the zero in "nineteen oh five".
    oh: &'static str,
    /// Whether "and" follows "hundred" ("one hundred and five").
    and_after_hundred: bool,
    /// English style years: split into centuries ("twenty twenty-five", "nineteen oh five"),
    /// except 2000-2009 and whole thousands, which are read as numbers. Otherwise a year is an
    /// ordinary number.
    years_in_centuries: bool,
    months: [&'static str; 12],
    /// 1st to 31st.
    ordinals: [&'static str; 31],
    /// Monday to Sunday.
    weekdays: [&'static str; 7],
    letters: [&'static str; 26],
    the_merchant: &'static str,
    currencies: &'static [CurrencyWords],
}

static EN: LanguageTable = LanguageTable {
    units: [
        "num_0", "num_1", "num_2", "num_3", "num_4", "num_5", "num_6", "num_7", "num_8", "num_9",
        "num_10", "num_11", "num_12", "num_13", "num_14", "num_15", "num_16", "num_17", "num_18",
        "num_19",
    ],
    tens: [
        "", "", "num_20", "num_30", "num_40", "num_50", "num_60", "num_70", "num_80", "num_90",
    ],
    hundred: "num_hundred",
    scales: ["num_thousand", "num_million", "num_billion"],
    and: "word_and",
    point: "word_point",
    minus: "word_minus",
    oh: "word_oh",
    and_after_hundred: false,
    years_in_centuries: true,
    months: [
        "month_1", "month_2", "month_3", "month_4", "month_5", "month_6", "month_7", "month_8",
        "month_9", "month_10", "month_11", "month_12",
    ],
    ordinals: [
        "ord_1", "ord_2", "ord_3", "ord_4", "ord_5", "ord_6", "ord_7", "ord_8", "ord_9", "ord_10",
        "ord_11", "ord_12", "ord_13", "ord_14", "ord_15", "ord_16", "ord_17", "ord_18", "ord_19",
        "ord_20", "ord_21", "ord_22", "ord_23", "ord_24", "ord_25", "ord_26", "ord_27", "ord_28",
        "ord_29", "ord_30", "ord_31",
    ],
    weekdays: [
        "weekday_1",
        "weekday_2",
        "weekday_3",
        "weekday_4",
        "weekday_5",
        "weekday_6",
        "weekday_7",
    ],
    letters: [
        "letter_a", "letter_b", "letter_c", "letter_d", "letter_e", "letter_f", "letter_g",
        "letter_h", "letter_i", "letter_j", "letter_k", "letter_l", "letter_m", "letter_n",
        "letter_o", "letter_p", "letter_q", "letter_r", "letter_s", "letter_t", "letter_u",
        "letter_v", "letter_w", "letter_x", "letter_y", "letter_z",
    ],
    the_merchant: "the_merchant",
    currencies: &[
        CurrencyWords {
            code: "USD",
            minor_digits: 2,
            major: ("cur_dollar", "cur_dollars"),
            minor: Some(("cur_cent", "cur_cents")),
        },
        CurrencyWords {
            code: "EUR",
            minor_digits: 2,
            major: ("cur_euro", "cur_euros"),
            minor: Some(("cur_cent", "cur_cents")),
        },
        CurrencyWords {
            code: "GBP",
            minor_digits: 2,
            major: ("cur_pound", "cur_pounds"),
            minor: Some(("cur_penny", "cur_pence")),
        },
        CurrencyWords {
            code: "JPY",
            minor_digits: 0,
            major: ("cur_yen", "cur_yen"),
            minor: None,
        },
    ],
};

impl Language {
    /// Every language this build speaks.
    pub const ALL: [Language; 1] = [Language::En];

    /// The language of a prompt folder name (`en`).
    pub fn from_code(code: &str) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The folder name of this language's prompts.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
        }
    }

    fn table(self) -> &'static LanguageTable {
        match self {
            Language::En => &EN,
        }
    }

    /// The spoken names of a currency, by ISO 4217 code (any case).
    pub fn currency(self, code: &str) -> Option<&'static CurrencyWords> {
        self.table()
            .currencies
            .iter()
            .find(|c| c.code.eq_ignore_ascii_case(code))
    }

    /// A whole number: 0 → "zero", 1234 → "one thousand two hundred thirty four".
    /// Numbers of a trillion and more are read digit by digit.
    pub fn say_number(self, n: u64) -> Vec<&'static str> {
        let mut out = Vec::new();
        self.push_number(&mut out, n);
        out
    }

    /// A signed number, with "minus" in front of negative ones.
    pub fn say_integer(self, n: i64) -> Vec<&'static str> {
        let mut out = Vec::new();
        if n < 0 {
            out.push(self.table().minus);
        }
        self.push_number(&mut out, n.unsigned_abs());
        out
    }

    fn push_number(self, out: &mut Vec<&'static str>, n: u64) {
        let t = self.table();
        if n >= SPOKEN_NUMBER_LIMIT {
            let digits = n.to_string();
            out.extend(digits.bytes().map(|b| t.units[usize::from(b - b'0')]));
            return;
        }
        if n == 0 {
            out.push(t.units[0]);
            return;
        }
        let mut rest = n;
        // Billion, million, thousand, from the largest scale down.
        for (i, scale) in t.scales.iter().enumerate().rev() {
            let size = 1000u64.pow(i as u32 + 1);
            let group = rest / size;
            if group > 0 {
                self.push_below_thousand(out, group);
                out.push(scale);
                rest %= size;
            }
        }
        if rest > 0 {
            self.push_below_thousand(out, rest);
        }
    }

    fn push_below_thousand(self, out: &mut Vec<&'static str>, n: u64) {
        let t = self.table();
        let mut rest = n % 1000;
        if rest >= 100 {
            out.push(t.units[(rest / 100) as usize]);
            out.push(t.hundred);
            rest %= 100;
            if rest > 0 && t.and_after_hundred {
                out.push(t.and);
            }
        }
        if rest >= 20 {
            out.push(t.tens[(rest / 10) as usize]);
            if rest % 10 > 0 {
                out.push(t.units[(rest % 10) as usize]);
            }
        } else if rest > 0 {
            out.push(t.units[rest as usize]);
        }
    }

    /// An amount in minor units of a currency this language has names for:
    /// `say_amount(1250, "USD")` → "twelve dollars and fifty cents".
    pub fn say_amount(
        self,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Vec<&'static str>, PromptError> {
        let t = self.table();
        let words = self
            .currency(currency)
            .ok_or_else(|| PromptError::UnknownCurrency {
                code: currency.to_string(),
            })?;
        let mut out = Vec::new();
        if amount_minor < 0 {
            out.push(t.minus);
        }
        let magnitude = amount_minor.unsigned_abs();
        let scale = 10u64.pow(u32::from(words.minor_digits));
        let (major, minor) = (magnitude / scale, magnitude % scale);
        let plural = |n: u64, (one, many): (&'static str, &'static str)| {
            if n == 1 { one } else { many }
        };
        match words.minor {
            Some(minor_words) if minor > 0 => {
                if major > 0 {
                    self.push_number(&mut out, major);
                    out.push(plural(major, words.major));
                    out.push(t.and);
                }
                self.push_number(&mut out, minor);
                out.push(plural(minor, minor_words));
            }
            _ => {
                self.push_number(&mut out, major);
                out.push(plural(major, words.major));
            }
        }
        Ok(out)
    }

    /// An amount in a currency without spoken names: the number with its decimals
    /// ("twelve point five zero") followed by the code spelled ("U S D").
    pub fn say_amount_generic(
        self,
        amount_minor: i64,
        minor_digits: u8,
        currency: &str,
    ) -> Vec<&'static str> {
        let t = self.table();
        let mut out = Vec::new();
        if amount_minor < 0 {
            out.push(t.minus);
        }
        let magnitude = amount_minor.unsigned_abs();
        let minor_digits = minor_digits.min(6);
        let scale = 10u64.pow(u32::from(minor_digits));
        self.push_number(&mut out, magnitude / scale);
        if minor_digits > 0 {
            out.push(t.point);
            let decimals = format!(
                "{:0width$}",
                magnitude % scale,
                width = usize::from(minor_digits)
            );
            out.extend(self.say_digits(&decimals));
        }
        out.extend(self.spell(currency));
        out
    }

    /// Digits one by one ("one two three"), e.g. a receipt reference. Letters are spelled;
    /// anything else (spaces, dashes) is skipped. At most 64 characters are read.
    pub fn say_digits(self, text: &str) -> Vec<&'static str> {
        self.spell(text)
    }

    /// Letters and digits one by one; other characters are skipped.
    pub fn spell(self, text: &str) -> Vec<&'static str> {
        let t = self.table();
        text.chars()
            .take(SPELL_CHARS_MAX)
            .filter_map(|c| {
                let c = c.to_ascii_lowercase();
                match c {
                    '0'..='9' => Some(t.units[c as usize - '0' as usize]),
                    'a'..='z' => Some(t.letters[c as usize - 'a' as usize]),
                    _ => None,
                }
            })
            .collect()
    }

    /// A merchant's name when no recording of it exists: spelled when it is short (at most ten
    /// letters and digits), otherwise "the merchant".
    pub fn say_merchant_fallback(self, name: &str) -> Vec<&'static str> {
        let spelled = self.spell(name);
        let alphanumerics = name.chars().filter(char::is_ascii_alphanumeric).count();
        let readable = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-' || c == '.' || c == '&');
        if spelled.is_empty() || alphanumerics > MERCHANT_SPELL_CHARS_MAX || !readable {
            vec![self.table().the_merchant]
        } else {
            spelled
        }
    }

    /// An ordinal from 1st to 31st.
    pub fn say_ordinal(self, n: u32) -> Option<&'static str> {
        let index = usize::try_from(n).ok()?.checked_sub(1)?;
        self.table().ordinals.get(index).copied()
    }

    /// A year: 2025 → "twenty twenty-five", 2005 → "two thousand five", 1905 → "nineteen oh five".
    pub fn say_year(self, year: i32) -> Vec<&'static str> {
        let t = self.table();
        let mut out = Vec::new();
        if year < 0 {
            out.push(t.minus);
        }
        let y = u64::from(year.unsigned_abs());
        let split = t.years_in_centuries
            && (1000..10_000).contains(&y)
            && !(2000..2010).contains(&y)
            && y % 1000 != 0;
        if !split {
            self.push_number(&mut out, y);
            return out;
        }
        let (century, rest) = (y / 100, y % 100);
        self.push_number(&mut out, century);
        match rest {
            0 => out.push(t.hundred),
            1..=9 => {
                out.push(t.oh);
                out.push(t.units[rest as usize]);
            }
            _ => self.push_number(&mut out, rest),
        }
        out
    }

    /// A date: (2025, 3, 3) → "March third twenty twenty-five".
    pub fn say_date(
        self,
        year: i32,
        month: u32,
        day: u32,
    ) -> Result<Vec<&'static str>, PromptError> {
        let t = self.table();
        if !is_valid_date(year, month, day) {
            return Err(PromptError::BadDate { year, month, day });
        }
        let mut out = vec![t.months[month as usize - 1], t.ordinals[day as usize - 1]];
        out.extend(self.say_year(year));
        Ok(out)
    }

    /// A date with its weekday first: "Monday March third twenty twenty-five".
    pub fn say_date_with_weekday(
        self,
        year: i32,
        month: u32,
        day: u32,
    ) -> Result<Vec<&'static str>, PromptError> {
        let date = self.say_date(year, month, day)?;
        let mut out = vec![self.table().weekdays[weekday_index(year, month, day)]];
        out.extend(date);
        Ok(out)
    }

    /// Every prompt name any `say_*` function of this language can produce, for checks against a
    /// prompt library.
    pub fn vocabulary(self) -> Vec<&'static str> {
        let t = self.table();
        let mut out: Vec<&'static str> = Vec::new();
        out.extend(t.units);
        out.extend(t.tens.iter().filter(|w| !w.is_empty()));
        out.push(t.hundred);
        out.extend(t.scales);
        out.extend([t.and, t.point, t.minus, t.oh, t.the_merchant]);
        out.extend(t.months);
        out.extend(t.ordinals);
        out.extend(t.weekdays);
        out.extend(t.letters);
        for c in t.currencies {
            out.extend([c.major.0, c.major.1]);
            if let Some((one, many)) = c.minor {
                out.extend([one, many]);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn is_valid_date(year: i32, month: u32, day: u32) -> bool {
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day) && (1..=9999).contains(&year)
}

/// Monday = 0 … Sunday = 6, for a valid Gregorian date (days counted from 0001-01-01, a Monday).
fn weekday_index(year: i32, month: u32, day: u32) -> usize {
    const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let y = i64::from(year) - 1;
    let mut days = y * 365 + y / 4 - y / 100 + y / 400;
    days += i64::from(CUMULATIVE[(month as usize - 1).min(11)]);
    if month > 2 && is_leap_year(year) {
        days += 1;
    }
    days += i64::from(day) - 1;
    days.rem_euclid(7) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Maps prompt names back to the words of `prompts/en/phrases.tsv`, so tests read as English.
    fn words(names: &[&str]) -> String {
        let phrases = std::fs::read_to_string(
            super::super::library::repo_prompts_dir().join("en/phrases.tsv"),
        )
        .unwrap();
        names
            .iter()
            .map(|n| {
                phrases
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{n}\t")))
                    .unwrap_or_else(|| panic!("no phrase for {n}"))
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    const EN_: Language = Language::En;

    #[test]
    fn numbers() {
        let cases: &[(u64, &str)] = &[
            (0, "zero"),
            (7, "seven"),
            (13, "thirteen"),
            (20, "twenty"),
            (42, "forty two"),
            (100, "one hundred"),
            (105, "one hundred five"),
            (999, "nine hundred ninety nine"),
            (1000, "one thousand"),
            (1001, "one thousand one"),
            (12_345, "twelve thousand three hundred forty five"),
            (100_000, "one hundred thousand"),
            (2_000_019, "two million nineteen"),
            (
                987_654_321_012,
                "nine hundred eighty seven billion six hundred fifty four million three hundred \
                 twenty one thousand twelve",
            ),
            (
                1_000_000_000_000,
                "one zero zero zero zero zero zero zero zero zero zero zero zero",
            ),
        ];
        for &(n, expected) in cases {
            assert_eq!(words(&EN_.say_number(n)), expected, "{n}");
        }
        assert_eq!(words(&EN_.say_integer(-15)), "minus fifteen");
        assert_eq!(words(&EN_.say_integer(i64::MIN)).split(' ').count(), 20);
    }

    #[test]
    fn amounts() {
        let cases: &[(i64, &str, &str)] = &[
            (1250, "USD", "twelve dollars and fifty cents"),
            (100, "USD", "one dollar"),
            (101, "usd", "one dollar and one cent"),
            (50, "USD", "fifty cents"),
            (1, "EUR", "one cent"),
            (0, "EUR", "zero euros"),
            (
                199_999,
                "EUR",
                "one thousand nine hundred ninety nine euros and ninety nine cents",
            ),
            (201, "GBP", "two pounds and one penny"),
            (1099, "GBP", "ten pounds and ninety nine pence"),
            (500, "JPY", "five hundred yen"),
            (1, "JPY", "one yen"),
            (-300, "USD", "minus three dollars"),
        ];
        for &(minor, code, expected) in cases {
            assert_eq!(
                words(&EN_.say_amount(minor, code).unwrap()),
                expected,
                "{minor} {code}"
            );
        }
        assert!(matches!(
            EN_.say_amount(100, "XTS"),
            Err(PromptError::UnknownCurrency { .. })
        ));
        assert_eq!(
            words(&EN_.say_amount_generic(1205, 2, "CHF")),
            "twelve point zero five C H F"
        );
        assert_eq!(words(&EN_.say_amount_generic(7, 0, "xaf")), "seven X A F");
    }

    #[test]
    fn digits_and_spelling() {
        assert_eq!(words(&EN_.say_digits("0042")), "zero zero four two");
        assert_eq!(words(&EN_.say_digits("R-12 b")), "R one two B");
        assert_eq!(EN_.say_digits(&"9".repeat(500)).len(), SPELL_CHARS_MAX);
        assert_eq!(words(&EN_.say_merchant_fallback("Acme")), "A C M E");
        assert_eq!(
            words(&EN_.say_merchant_fallback("Corner Coffee Company")),
            "the merchant"
        );
        assert_eq!(words(&EN_.say_merchant_fallback("Café")), "the merchant");
        assert_eq!(words(&EN_.say_merchant_fallback("")), "the merchant");
    }

    #[test]
    fn years_and_dates() {
        let years: &[(i32, &str)] = &[
            (2025, "twenty twenty five"),
            (2000, "two thousand"),
            (2005, "two thousand five"),
            (2010, "twenty ten"),
            (1999, "nineteen ninety nine"),
            (1905, "nineteen oh five"),
            (1900, "nineteen hundred"),
            (3000, "three thousand"),
            (999, "nine hundred ninety nine"),
        ];
        for &(y, expected) in years {
            assert_eq!(words(&EN_.say_year(y)), expected, "{y}");
        }
        assert_eq!(
            words(&EN_.say_date(2025, 3, 3).unwrap()),
            "March third twenty twenty five"
        );
        assert_eq!(
            words(&EN_.say_date(2024, 2, 29).unwrap()),
            "February twenty-ninth twenty twenty four"
        );
        assert_eq!(
            words(&EN_.say_date_with_weekday(2025, 11, 24).unwrap()),
            "Monday November twenty-fourth twenty twenty five"
        );
        assert_eq!(
            words(&EN_.say_date_with_weekday(2000, 1, 1).unwrap()),
            "Saturday January first two thousand"
        );
        for (y, m, d) in [(2023, 2, 29), (2025, 13, 1), (2025, 4, 31), (2025, 1, 0)] {
            assert!(
                matches!(EN_.say_date(y, m, d), Err(PromptError::BadDate { .. })),
                "{y}-{m}-{d}"
            );
        }
    }

    #[test]
    fn ordinals_are_bounded() {
        assert_eq!(EN_.say_ordinal(1), Some("ord_1"));
        assert_eq!(EN_.say_ordinal(31), Some("ord_31"));
        assert_eq!(EN_.say_ordinal(0), None);
        assert_eq!(EN_.say_ordinal(32), None);
    }

    /// Every word the functions can produce has a committed recording.
    #[test]
    fn vocabulary_is_recorded() {
        let lib = super::super::PromptLibrary::load_dir(
            &super::super::library::repo_prompts_dir().join("en"),
        )
        .unwrap();
        for name in EN_.vocabulary() {
            assert!(lib.contains(name), "no recording for {name}");
        }
        // And a sweep of values only ever yields names from that vocabulary.
        let vocabulary = EN_.vocabulary();
        let mut n: u64 = 0;
        while n < 20_000_000_000_000 {
            for name in EN_.say_number(n) {
                assert!(vocabulary.contains(&name), "{n} gave {name}");
            }
            n = n * 3 + 7;
        }
    }
}
