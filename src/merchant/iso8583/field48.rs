//! Field 48 of the merchant profile: `KEY=value` pairs separated by `;`.
//!
//! Keys are upper-case words (`TXN`, `EVENT`), optionally followed by dot-separated name parts
//! (`ATTR.age_over_18`). A value runs from the first `=` to the next `;`, so it may contain `=`.
//! Values are percent-encoded: `%`, `;` and every byte outside printable ASCII (UTF-8 text such
//! as a payer's name) are written as `%XX` with upper-case hex digits; everything else is
//! written as is. The printed field is at most 999 characters (the LLLVAR bound).
//!
//! Errors name the pair by position and, when it is readable, its key, but never a value: the
//! `KEY` pair carries a terminal credential.

use std::fmt;

/// The LLLVAR bound of field 48.
pub const FIELD48_LEN_MAX: usize = 999;
/// At most this many pairs in one field.
pub const PAIRS_MAX: usize = 32;
/// At most this many characters in one key.
pub const KEY_LEN_MAX: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Field48Error {
    #[error("field 48 is {len} characters, more than {FIELD48_LEN_MAX}")]
    TooLong { len: usize },
    #[error("field 48 has more than {PAIRS_MAX} pairs")]
    TooManyPairs,
    #[error("field 48 pair {index} is empty")]
    EmptyPair { index: usize },
    #[error("field 48 pair {index} has no '='")]
    MissingEquals { index: usize },
    #[error("field 48 pair {index} has a malformed key")]
    BadKey { index: usize },
    #[error("field 48 key {key} appears twice")]
    DuplicateKey { key: String },
    #[error("field 48 value of {key} has a malformed percent escape")]
    BadEscape { key: String },
    #[error("field 48 value of {key} is not UTF-8 once unescaped")]
    NotUtf8 { key: String },
    #[error("field 48 value of {key} has a character outside printable ASCII")]
    BadCharacter { key: String },
}

/// The pairs of field 48, in order, with values unescaped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdditionalData {
    pairs: Vec<(String, String)>,
}

impl fmt::Debug for AdditionalData {
    /// Shows keys only; a `KEY` value is a credential and other values may be personal data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

fn is_valid_key(key: &str) -> bool {
    if key.is_empty() || key.len() > KEY_LEN_MAX {
        return false;
    }
    let mut parts = key.split('.');
    let head_ok = parts.next().is_some_and(|head| {
        head.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
            && head
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    });
    head_ok
        && parts.all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

fn needs_escape(byte: u8) -> bool {
    !(0x20..=0x7e).contains(&byte) || byte == b'%' || byte == b';'
}

fn escape_into(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if needs_escape(b) {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push(char::from(b));
        }
    }
}

fn unescape(raw: &str, key: &str) -> Result<String, Field48Error> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if !(0x20..=0x7e).contains(&b) {
            return Err(Field48Error::BadCharacter { key: key.into() });
        }
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Field48Error::BadEscape { key: key.into() })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Field48Error::NotUtf8 { key: key.into() })
}

impl AdditionalData {
    pub fn new() -> AdditionalData {
        AdditionalData::default()
    }

    /// Parses the text of field 48. An empty field has no pairs.
    pub fn parse(field: &str) -> Result<AdditionalData, Field48Error> {
        if field.len() > FIELD48_LEN_MAX {
            return Err(Field48Error::TooLong { len: field.len() });
        }
        let mut data = AdditionalData::new();
        if field.is_empty() {
            return Ok(data);
        }
        for (index, pair) in field.split(';').enumerate() {
            if pair.is_empty() {
                return Err(Field48Error::EmptyPair { index });
            }
            let (key, raw) = pair
                .split_once('=')
                .ok_or(Field48Error::MissingEquals { index })?;
            if !is_valid_key(key) {
                return Err(Field48Error::BadKey { index });
            }
            let value = unescape(raw, key)?;
            data.push(key, value)?;
        }
        Ok(data)
    }

    /// Appends a pair after checking the key, that it is new, and the pair count.
    pub fn push(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<&mut AdditionalData, Field48Error> {
        let key = key.into();
        if !is_valid_key(&key) {
            return Err(Field48Error::BadKey {
                index: self.pairs.len(),
            });
        }
        if self.get(&key).is_some() {
            return Err(Field48Error::DuplicateKey { key });
        }
        if self.pairs.len() >= PAIRS_MAX {
            return Err(Field48Error::TooManyPairs);
        }
        self.pairs.push((key, value.into()));
        Ok(self)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Prints the field, checking the LLLVAR bound.
    pub fn to_field(&self) -> Result<String, Field48Error> {
        let mut out = String::new();
        for (i, (key, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(key);
            out.push('=');
            escape_into(value, &mut out);
            if out.len() > FIELD48_LEN_MAX {
                return Err(Field48Error::TooLong { len: out.len() });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_pairs_in_order() {
        let text = "EVENT=PAIRED;TXN=4821937;PAYER=Ann B.;ATTR.age_over_18=yes;PORTRAIT=https://g.example/p/x?a=1";
        let data = AdditionalData::parse(text).unwrap();
        assert_eq!(data.len(), 5);
        assert_eq!(data.get("EVENT"), Some("PAIRED"));
        assert_eq!(data.get("ATTR.age_over_18"), Some("yes"));
        assert_eq!(data.get("PORTRAIT"), Some("https://g.example/p/x?a=1"));
        assert_eq!(data.get("AUTH"), None);
        assert_eq!(data.to_field().unwrap(), text);
    }

    #[test]
    fn escapes_separators_percent_and_non_ascii() {
        let mut data = AdditionalData::new();
        data.push("PAYER", "José; 100%").unwrap();
        let field = data.to_field().unwrap();
        assert_eq!(field, "PAYER=Jos%C3%A9%3B 100%25");
        assert_eq!(AdditionalData::parse(&field).unwrap(), data);
    }

    #[test]
    fn empty_field_has_no_pairs() {
        let data = AdditionalData::parse("").unwrap();
        assert!(data.is_empty());
        assert_eq!(data.to_field().unwrap(), "");
    }

    #[test]
    fn rejects_malformed_fields() {
        let cases = [
            ("A=1;", Field48Error::EmptyPair { index: 1 }),
            (";A=1", Field48Error::EmptyPair { index: 0 }),
            ("A=1;B", Field48Error::MissingEquals { index: 1 }),
            ("a=1", Field48Error::BadKey { index: 0 }),
            ("=1", Field48Error::BadKey { index: 0 }),
            ("ATTR.=1", Field48Error::BadKey { index: 0 }),
            ("1A=1", Field48Error::BadKey { index: 0 }),
            ("A=1;A=2", Field48Error::DuplicateKey { key: "A".into() }),
            ("A=%4", Field48Error::BadEscape { key: "A".into() }),
            ("A=%G0", Field48Error::BadEscape { key: "A".into() }),
            ("A=%FF", Field48Error::NotUtf8 { key: "A".into() }),
            ("A=\t", Field48Error::BadCharacter { key: "A".into() }),
        ];
        for (text, expected) in cases {
            assert_eq!(AdditionalData::parse(text), Err(expected), "{text:?}");
        }
        let long = format!("A={}", "x".repeat(998));
        assert_eq!(
            AdditionalData::parse(&long),
            Err(Field48Error::TooLong { len: 1000 })
        );
        let many = (0..=PAIRS_MAX)
            .map(|i| format!("K{i}=1"))
            .collect::<Vec<_>>()
            .join(";");
        assert_eq!(
            AdditionalData::parse(&many),
            Err(Field48Error::TooManyPairs)
        );
    }

    #[test]
    fn printer_enforces_the_length_bound_after_escaping() {
        let mut data = AdditionalData::new();
        // 400 characters that each escape to three.
        data.push("REASON", ";".repeat(400)).unwrap();
        assert!(matches!(data.to_field(), Err(Field48Error::TooLong { .. })));
    }

    #[test]
    fn debug_hides_values() {
        let data = AdditionalData::parse("KEY=s3cret;TXN=1").unwrap();
        let shown = format!("{data:?}");
        assert!(shown.contains("KEY") && shown.contains("TXN"));
        assert!(!shown.contains("s3cret"));
    }
}
