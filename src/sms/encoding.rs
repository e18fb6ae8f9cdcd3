//! Text encodings of `short_message` and the choice between them.
//!
//! Outgoing text is GSM 7-bit (`data_coding = 0`, unpacked septets, see [`super::gsm7`]) when
//! every character has a GSM 7-bit form, and UCS-2 (`data_coding = 8`, UTF-16 big-endian, surrogate
//! pairs allowed) otherwise. Incoming text is accepted in GSM 7-bit, IA5/ASCII (`1`), Latin-1
//! (`3`) and UCS-2 (`8`), and in the GSM message-class codings `0xF0..=0xF3` (7-bit); binary
//! codings are refused with a typed error, because a payer's text is never binary.

use super::{SmsError, gsm7};

/// `data_coding` values this module writes or reads.
pub mod data_coding {
    /// SMSC default alphabet, which we send and read as GSM 7-bit unpacked septets.
    pub const DEFAULT: u8 = 0x00;
    /// IA5 (CCITT T.50), in practice ASCII.
    pub const IA5: u8 = 0x01;
    /// Octet-unspecified binary.
    pub const BINARY: u8 = 0x02;
    /// Latin-1 (ISO-8859-1).
    pub const LATIN1: u8 = 0x03;
    /// Octet-unspecified binary.
    pub const BINARY_8BIT: u8 = 0x04;
    /// UCS-2 (ISO/IEC 10646), big-endian.
    pub const UCS2: u8 = 0x08;
}

/// The alphabet a text is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// GSM 7-bit default alphabet with the extension table, unpacked, `data_coding = 0`.
    Gsm7,
    /// UCS-2 big-endian (UTF-16BE in practice), `data_coding = 8`.
    Ucs2,
}

impl Alphabet {
    /// The alphabet `text` should go out in: GSM 7-bit when possible, UCS-2 otherwise.
    pub fn for_text(text: &str) -> Alphabet {
        if gsm7::is_representable(text) {
            Alphabet::Gsm7
        } else {
            Alphabet::Ucs2
        }
    }

    /// The `data_coding` value announcing this alphabet.
    pub fn data_coding(self) -> u8 {
        match self {
            Alphabet::Gsm7 => data_coding::DEFAULT,
            Alphabet::Ucs2 => data_coding::UCS2,
        }
    }
}

/// Encodes `text` as UTF-16 big-endian octets.
pub fn ucs2_encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decodes UTF-16 big-endian octets; an odd length or an unpaired surrogate is an error.
pub fn ucs2_decode(octets: &[u8]) -> Result<String, SmsError> {
    if octets.len() % 2 != 0 {
        return Err(SmsError::InvalidUcs2 {
            reason: "odd number of octets",
        });
    }
    let units = octets
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| SmsError::InvalidUcs2 {
            reason: "unpaired surrogate",
        })
}

/// Decodes a `short_message` body (without UDH) according to `data_coding`.
pub fn decode_text(data_coding: u8, octets: &[u8]) -> Result<String, SmsError> {
    match data_coding {
        data_coding::DEFAULT | 0xF0..=0xF3 => gsm7::decode(octets),
        data_coding::IA5 => {
            if let Some(offset) = octets.iter().position(|b| *b > 0x7F) {
                return Err(SmsError::InvalidAscii { offset });
            }
            Ok(octets.iter().map(|b| char::from(*b)).collect())
        }
        data_coding::LATIN1 => Ok(octets.iter().map(|b| char::from(*b)).collect()),
        data_coding::UCS2 => ucs2_decode(octets),
        other => Err(SmsError::UnsupportedDataCoding { data_coding: other }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_choice_follows_representability() {
        assert_eq!(Alphabet::for_text("PAY 123 €"), Alphabet::Gsm7);
        assert_eq!(Alphabet::for_text("Zahlung für Café"), Alphabet::Gsm7);
        assert_eq!(Alphabet::for_text("Płatność"), Alphabet::Ucs2);
        assert_eq!(Alphabet::for_text("🙂"), Alphabet::Ucs2);
        assert_eq!(Alphabet::Ucs2.data_coding(), 8);
    }

    #[test]
    fn ucs2_round_trips_including_surrogate_pairs() {
        let text = "Zł 🙂 ok";
        let octets = ucs2_encode(text);
        assert_eq!(octets.len(), 2 * text.encode_utf16().count());
        assert_eq!(ucs2_decode(&octets).unwrap(), text);
    }

    #[test]
    fn invalid_ucs2_is_an_error() {
        assert!(matches!(
            ucs2_decode(&[0x00]),
            Err(SmsError::InvalidUcs2 { .. })
        ));
        // A high surrogate with nothing after it.
        assert!(matches!(
            ucs2_decode(&[0xD8, 0x3D]),
            Err(SmsError::InvalidUcs2 { .. })
        ));
    }

    #[test]
    fn incoming_codings() {
        assert_eq!(decode_text(0, b"PAY 1").unwrap(), "PAY 1");
        assert_eq!(decode_text(0xF1, &[0x00]).unwrap(), "@");
        assert_eq!(decode_text(1, b"BAL").unwrap(), "BAL");
        assert!(matches!(
            decode_text(1, &[0xE9]),
            Err(SmsError::InvalidAscii { offset: 0 })
        ));
        assert_eq!(decode_text(3, &[0x63, 0xE9]).unwrap(), "cé");
        assert_eq!(decode_text(8, &[0x00, 0x41]).unwrap(), "A");
        assert!(matches!(
            decode_text(4, &[1, 2]),
            Err(SmsError::UnsupportedDataCoding { data_coding: 4 })
        ));
    }
}
