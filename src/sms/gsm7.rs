//! GSM 03.38 (3GPP TS 23.038) default alphabet and its extension table, in the unpacked form
//! SMPP uses.
//!
//! Over SMPP, `data_coding = 0` ("SMSC default alphabet") carries GSM 7-bit text as one septet per
//! octet ("unpacked"); the SMSC packs the septets for the air interface. That is what Kannel and
//! most operator SMSCs expect and send, so this module never packs. A character from the
//! extension table (`€`, `[`, `{`, `|`, …) takes two septets: the escape `0x1B` and its code.
//!
//! Decoding is strict where strictness protects us: an octet above `0x7F` cannot be an unpacked
//! septet and is an error (it usually means the SMSC sends packed or Latin-1 text and the link is
//! misconfigured). An escape followed by a code that has no extension character decodes as the
//! default-table character, as TS 23.038 tells handsets to do; an escape at the very end of the
//! text is an error because the character it announced is missing.

use super::SmsError;

/// The escape septet that announces a character from the extension table.
pub const ESCAPE: u8 = 0x1B;

/// The default alphabet, indexed by septet. Position `0x1B` is the escape and never decodes
/// directly; it holds a placeholder that no caller sees.
const DEFAULT_TABLE: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: (code after the escape, character).
const EXTENSION_TABLE: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Septet of each ASCII character in the default table, or `NONE`; built from `DEFAULT_TABLE`
/// so the two cannot disagree. ASCII is what most texts are, and this spares a table scan.
const ASCII_SEPTETS: [u8; 128] = {
    let mut table = [NONE; 128];
    let mut s = 0;
    while s < 128 {
        let c = DEFAULT_TABLE[s] as u32;
        if c < 128 && s != ESCAPE as usize {
            table[c as usize] = s as u8;
        }
        s += 1;
    }
    table
};

/// Marks "no septet" in `ASCII_SEPTETS`.
const NONE: u8 = 0xFF;

/// How one character is written in GSM 7-bit: one septet, or the escape and one septet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Septets {
    /// A character of the default table.
    One(u8),
    /// A character of the extension table, written `0x1B` then this code.
    Escaped(u8),
}

impl Septets {
    /// The number of septets the character takes.
    pub fn len(self) -> usize {
        match self {
            Septets::One(_) => 1,
            Septets::Escaped(_) => 2,
        }
    }

    /// Always false: a character takes at least one septet. Present for clippy's sake.
    pub fn is_empty(self) -> bool {
        false
    }
}

/// The septets of `c`, or `None` when GSM 7-bit cannot represent it.
pub fn char_septets(c: char) -> Option<Septets> {
    if c == '\u{1B}' {
        // The escape is not a character of the text; a literal ESC cannot be sent.
        return None;
    }
    if let Some(&s) = ASCII_SEPTETS.get(c as usize) {
        if s != NONE {
            return Some(Septets::One(s));
        }
    } else if let Some(pos) = DEFAULT_TABLE.iter().position(|&d| d == c) {
        return u8::try_from(pos).ok().map(Septets::One);
    }
    EXTENSION_TABLE
        .iter()
        .find(|(_, e)| *e == c)
        .map(|(code, _)| Septets::Escaped(*code))
}

/// True when every character of `text` has a GSM 7-bit form.
pub fn is_representable(text: &str) -> bool {
    text.chars().all(|c| char_septets(c).is_some())
}

/// The number of septets `text` takes, or `None` if some character is not representable.
pub fn septet_len(text: &str) -> Option<usize> {
    text.chars()
        .try_fold(0usize, |acc, c| char_septets(c).map(|s| acc + s.len()))
}

/// Encodes `text` as unpacked septets (one per octet).
pub fn encode(text: &str) -> Result<Vec<u8>, SmsError> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_septets(c) {
            Some(Septets::One(s)) => out.push(s),
            Some(Septets::Escaped(s)) => {
                out.push(ESCAPE);
                out.push(s);
            }
            None => return Err(SmsError::NotGsm7 { character: c }),
        }
    }
    Ok(out)
}

/// Decodes unpacked septets.
pub fn decode(septets: &[u8]) -> Result<String, SmsError> {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().enumerate();
    while let Some((offset, &s)) = iter.next() {
        if s > 0x7F {
            return Err(SmsError::InvalidGsm7 {
                offset,
                reason: "octet above 0x7F in unpacked septets",
            });
        }
        if s == ESCAPE {
            let Some((_, &code)) = iter.next() else {
                return Err(SmsError::InvalidGsm7 {
                    offset,
                    reason: "escape at the end of the text",
                });
            };
            if code > 0x7F {
                return Err(SmsError::InvalidGsm7 {
                    offset: offset + 1,
                    reason: "octet above 0x7F in unpacked septets",
                });
            }
            if let Some((_, c)) = EXTENSION_TABLE.iter().find(|(e, _)| *e == code) {
                out.push(*c);
            } else if code == ESCAPE {
                // Two escapes in a row announce a further extension table that no handset
                // implements; TS 23.038 says to show a space.
                out.push(' ');
            } else {
                out.push(DEFAULT_TABLE[usize::from(code)]);
            }
            continue;
        }
        out.push(DEFAULT_TABLE[usize::from(s)]);
    }
    Ok(out)
}

/// Letters and signs outside GSM 7-bit with a close GSM 7-bit stand-in, for names in texts we
/// write (a merchant's name should not turn a whole receipt into UCS-2, which halves what fits).
const STAND_INS: &[(char, &str)] = &[
    ('á', "a"),
    ('â', "a"),
    ('ã', "a"),
    ('ą', "a"),
    ('ă', "a"),
    ('Á', "A"),
    ('Â', "A"),
    ('À', "A"),
    ('Ã', "A"),
    ('Ą', "A"),
    ('ç', "c"),
    ('ć', "c"),
    ('č', "c"),
    ('Ć', "C"),
    ('Č', "C"),
    ('ď', "d"),
    ('Ď', "D"),
    ('ê', "e"),
    ('ë', "e"),
    ('ę', "e"),
    ('ě', "e"),
    ('È', "E"),
    ('Ê', "E"),
    ('Ę', "E"),
    ('í', "i"),
    ('î', "i"),
    ('ï', "i"),
    ('Í', "I"),
    ('ł', "l"),
    ('Ł', "L"),
    ('ń', "n"),
    ('ň', "n"),
    ('Ń', "N"),
    ('ó', "o"),
    ('ô', "o"),
    ('õ', "o"),
    ('ő', "o"),
    ('Ó', "O"),
    ('Ő', "O"),
    ('ř', "r"),
    ('Ř', "R"),
    ('ś', "s"),
    ('š', "s"),
    ('ș', "s"),
    ('Ś', "S"),
    ('Š', "S"),
    ('ť', "t"),
    ('ț', "t"),
    ('ú', "u"),
    ('û', "u"),
    ('ű', "u"),
    ('ů', "u"),
    ('Ú', "U"),
    ('ý', "y"),
    ('ź', "z"),
    ('ż', "z"),
    ('ž', "z"),
    ('Ž', "Z"),
    ('Ź', "Z"),
    ('Ż', "Z"),
    ('Ť', "T"),
    ('Ý', "Y"),
    ('Î', "I"),
    ('Ô', "O"),
    ('Û', "U"),
    ('Ë', "E"),
    ('Ï', "I"),
    ('Ě', "E"),
    ('ğ', "g"),
    ('Ğ', "G"),
    ('ı', "i"),
    ('İ', "I"),
    ('ş', "s"),
    ('Ş', "S"),
    ('Ș', "S"),
    ('Ț', "T"),
    ('Ă', "A"),
    ('‘', "'"),
    ('’', "'"),
    ('–', "-"),
    ('…', "..."),
];

/// Replaces characters outside GSM 7-bit by a stand-in where one is close enough (`ł` → `l`,
/// `’` → `'`, `“` → `"`, `—` → `-`), and leaves the others, so the caller can still fall back to
/// UCS-2 for a text that needs it.
pub fn transliterate(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if char_septets(c).is_some() {
            out.push(c);
        } else if let Some((_, s)) = STAND_INS.iter().find(|(k, _)| *k == c) {
            out.push_str(s);
        } else {
            match c {
                '“' | '”' | '„' => out.push('"'),
                '—' | '‐' | '‑' => out.push('-'),
                '\u{A0}' => out.push(' '),
                other => out.push(other),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_character_round_trips() {
        for s in 0u8..=0x7F {
            if s == ESCAPE {
                continue;
            }
            let text = decode(&[s]).unwrap();
            assert_eq!(encode(&text).unwrap(), vec![s], "septet {s:#04x}");
        }
    }

    #[test]
    fn extension_characters_take_two_septets() {
        assert_eq!(encode("€").unwrap(), vec![0x1B, 0x65]);
        assert_eq!(
            encode("a[b]").unwrap(),
            vec![0x61, 0x1B, 0x3C, 0x62, 0x1B, 0x3E]
        );
        assert_eq!(septet_len("{}|^~\\€[]\u{0C}"), Some(20));
        assert_eq!(decode(&[0x1B, 0x65, 0x31]).unwrap(), "€1");
    }

    #[test]
    fn ascii_letters_digits_and_common_punctuation_are_identity() {
        let text = "PAY 123456785 ok? yes: (1) 50% #2";
        let bytes = encode(text).unwrap();
        assert_eq!(bytes, text.as_bytes());
    }

    #[test]
    fn unrepresentable_characters_are_reported() {
        assert_eq!(encode("naïve"), Err(SmsError::NotGsm7 { character: 'ï' }));
        assert!(!is_representable("日本"));
        assert!(!is_representable("ç"));
        assert!(is_representable("Ç"));
        assert_eq!(septet_len("\u{1B}"), None);
    }

    #[test]
    fn invalid_septets_are_errors() {
        assert!(matches!(
            decode(&[0x41, 0x80]),
            Err(SmsError::InvalidGsm7 { offset: 1, .. })
        ));
        assert!(matches!(
            decode(&[0x41, 0x1B]),
            Err(SmsError::InvalidGsm7 { offset: 1, .. })
        ));
        assert!(matches!(
            decode(&[0x1B, 0xC1]),
            Err(SmsError::InvalidGsm7 { offset: 1, .. })
        ));
    }

    #[test]
    fn transliteration_keeps_gsm_characters_and_replaces_close_ones() {
        assert_eq!(
            transliterate("Café Łódź – “Żabka” 5’"),
            "Café Lodz - \"Zabka\" 5'"
        );
        assert!(is_representable(&transliterate("Příliš žluťoučký kůň")));
        assert_eq!(transliterate("東京"), "東京");
        for &(c, s) in STAND_INS {
            assert!(!is_representable(&c.to_string()), "{c} is GSM already");
            assert!(is_representable(s));
        }
    }

    #[test]
    fn unknown_extension_codes_fall_back_to_the_default_table() {
        assert_eq!(decode(&[0x1B, 0x41]).unwrap(), "A");
        assert_eq!(decode(&[0x1B, 0x1B]).unwrap(), " ");
    }
}
