//! Framing and the ISO 8583:1987 message codec, byte-compatible with pyiso8583's `default_ascii`
//! specification.
//!
//! A frame is a 2-byte big-endian length followed by that many bytes of message. A message is a
//! 4-digit ASCII MTI, a primary bitmap as 16 ASCII hex digits, a secondary bitmap (16 more hex
//! digits) when any field 65–128 is present, then the present fields in ascending order: fixed
//! fields as exactly their length, LLVAR/LLLVAR fields as a 2/3-digit ASCII decimal length then
//! the data. Every field is ASCII.
//!
//! The lengths of all fields 2–128 follow the `default_ascii` table, so a well-formed field that
//! the merchant profile does not use is skipped rather than rejected. Field 65 (a tertiary bitmap
//! in pyiso8583) is not supported and is a format error.
//!
//! Decoding never panics: every way the input can be wrong is a [`CodecError`], and
//! [`Message::decode`] returns, with the error, whatever it could recover (the MTI and the valid
//! fields read before or around the fault) so that a 39=`30` response can still be addressed.
//! The encoder writes the bitmap in upper case, as pyiso8583 does; the decoder also accepts lower
//! case.

use std::collections::BTreeMap;
use std::fmt;

/// Bytes of the length prefix in front of every message.
pub const LENGTH_PREFIX_LEN: usize = 2;

/// Default bound on the length of one message (the prefix not counted). The largest message of
/// the profile, with a full field 48, is about 1,200 bytes.
pub const FRAME_SIZE_MAX: usize = 4096;

/// The largest field number of ISO 8583:1987 with a secondary bitmap.
pub const FIELD_NUMBER_MAX: u8 = 128;

const MTI_LEN: usize = 4;
const BITMAP_HEX_LEN: usize = 16;

/// Errors of framing, decoding and encoding. "The peer sent something malformed" in all but
/// [`CodecError::MessageTooLarge`] on encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The length prefix announces more than the frame bound.
    #[error("frame length {len} exceeds the bound of {max} bytes")]
    FrameTooLong { len: usize, max: usize },
    /// The length prefix announces an empty message.
    #[error("frame of length zero")]
    EmptyFrame,
    /// A message to encode is longer than the frame bound or than a 2-byte prefix can say.
    #[error("message of {len} bytes exceeds the frame bound of {max} bytes")]
    MessageTooLarge { len: usize, max: usize },
    /// The message ends inside `part`.
    #[error("{part} truncated: {needed} bytes needed, {available} available")]
    Truncated {
        part: Part,
        needed: usize,
        available: usize,
    },
    /// The MTI is not four ASCII digits.
    #[error("MTI is not four ASCII digits")]
    BadMti,
    /// A bitmap is not 16 hexadecimal digits.
    #[error("{part} is not 16 hexadecimal digits")]
    BadBitmap { part: Part },
    /// The primary bitmap announces a secondary bitmap that has no bit set.
    #[error("secondary bitmap announced but empty")]
    EmptySecondaryBitmap,
    /// A field number that has no definition here (0, 1, 65 or above 128).
    #[error("field {field} is not supported")]
    UnsupportedField { field: u8 },
    /// The length prefix of a variable field is not decimal digits.
    #[error("field {field}: length prefix is not decimal digits")]
    BadLengthPrefix { field: u8 },
    /// A variable field is longer than its maximum.
    #[error("field {field}: length {len} exceeds the maximum of {max}")]
    TooLong { field: u8, len: usize, max: usize },
    /// A fixed field set with the wrong length (encode side only: on decode a fixed field always
    /// has its length, or the message is truncated).
    #[error("field {field}: length {len}, expected exactly {expected}")]
    WrongLength {
        field: u8,
        len: usize,
        expected: usize,
    },
    /// A character outside the field's class, e.g. a letter in a numeric field.
    #[error("field {field}: character at offset {offset} is not {class}")]
    BadContent {
        field: u8,
        class: Class,
        offset: usize,
    },
    /// Bytes left over after the last field the bitmap announced.
    #[error("{extra} bytes after the last field")]
    TrailingData { extra: usize },
}

/// A part of a message, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    LengthPrefix,
    Mti,
    PrimaryBitmap,
    SecondaryBitmap,
    Field(u8),
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::LengthPrefix => f.write_str("length prefix"),
            Part::Mti => f.write_str("MTI"),
            Part::PrimaryBitmap => f.write_str("primary bitmap"),
            Part::SecondaryBitmap => f.write_str("secondary bitmap"),
            Part::Field(n) => write!(f, "field {n}"),
        }
    }
}

/// The character class of a field's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `n`: ASCII digits.
    Numeric,
    /// `an`: ASCII letters and digits.
    AlphaNumeric,
    /// `ans`: printable ASCII, space included.
    Printable,
    /// Any 7-bit ASCII byte: fields outside the profile, which pyiso8583 treats as plain ASCII.
    Ascii,
}

impl Class {
    fn admits(self, byte: u8) -> bool {
        match self {
            Class::Numeric => byte.is_ascii_digit(),
            Class::AlphaNumeric => byte.is_ascii_alphanumeric(),
            Class::Printable => (0x20..=0x7e).contains(&byte),
            Class::Ascii => byte.is_ascii(),
        }
    }

    /// The offset of the first byte outside the class, if any.
    fn first_violation(self, data: &[u8]) -> Option<usize> {
        data.iter().position(|&b| !self.admits(b))
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Numeric => "numeric",
            Class::AlphaNumeric => "alphanumeric",
            Class::Printable => "printable ASCII",
            Class::Ascii => "ASCII",
        })
    }
}

/// How a field's length is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Exactly this many characters.
    Fixed(usize),
    /// A 2-digit length prefix, then at most this many characters.
    LlVar(usize),
    /// A 3-digit length prefix, then at most this many characters.
    LllVar(usize),
}

impl Length {
    fn prefix_len(self) -> usize {
        match self {
            Length::Fixed(_) => 0,
            Length::LlVar(_) => 2,
            Length::LllVar(_) => 3,
        }
    }

    fn max(self) -> usize {
        match self {
            Length::Fixed(n) | Length::LlVar(n) | Length::LllVar(n) => n,
        }
    }
}

/// The definition of one data field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub length: Length,
    pub class: Class,
}

use Length::{Fixed as F, LlVar as LL, LllVar as LLL};

/// Lengths of fields 2..=128 as in pyiso8583's `default_ascii` (index 0 is field 2).
const DEFAULT_ASCII_LENGTHS: [Length; 127] = [
    LL(19),
    F(6),
    F(12),
    F(12),
    F(12),
    F(10),
    F(8),
    F(8),
    F(8),
    F(6),
    F(6),
    F(4),
    F(4),
    F(4),
    F(4),
    F(4),
    F(4),
    F(3),
    F(3),
    F(3),
    F(3),
    F(3),
    F(3),
    F(2),
    F(2),
    F(1),
    F(9),
    F(9),
    F(9),
    F(9),
    LL(11),
    LL(11),
    LL(28),
    LL(37),
    LLL(104),
    F(12),
    F(6),
    F(2),
    F(3),
    F(8),
    F(15),
    F(40),
    LL(25),
    LL(76),
    LLL(999),
    LLL(999),
    LLL(999),
    F(3),
    F(3),
    F(3),
    F(16),
    F(16),
    LLL(240),
    LLL(510),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    F(16),
    F(16),
    F(1),
    F(2),
    F(3),
    F(3),
    F(3),
    F(4),
    F(4),
    F(6),
    F(10),
    F(10),
    F(10),
    F(10),
    F(10),
    F(10),
    F(10),
    F(10),
    F(12),
    F(12),
    F(12),
    F(12),
    F(16),
    F(16),
    F(16),
    F(16),
    F(42),
    F(1),
    F(2),
    F(5),
    F(7),
    F(42),
    F(16),
    F(17),
    F(25),
    LL(11),
    LL(11),
    LL(17),
    LL(28),
    LL(28),
    LLL(100),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    LLL(999),
    F(16),
];

/// The character class the merchant profile demands of its fields; other fields are plain ASCII.
fn profile_class(field: u8) -> Class {
    match field {
        3 | 4 | 7 | 11 | 49 | 70 | 90 => Class::Numeric,
        37..=39 => Class::AlphaNumeric,
        41 | 42 | 48 => Class::Printable,
        _ => Class::Ascii,
    }
}

/// The definition of `field`, or `None` for numbers that are bitmaps (1, 65) or out of range.
pub fn field_spec(field: u8) -> Option<FieldSpec> {
    if field < 2 || field == 65 || field > FIELD_NUMBER_MAX {
        return None;
    }
    let length = *DEFAULT_ASCII_LENGTHS.get(usize::from(field) - 2)?;
    Some(FieldSpec {
        length,
        class: profile_class(field),
    })
}

/// A message type indicator: four ASCII digits (version, class, function, origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mti([u8; MTI_LEN]);

impl Mti {
    /// Parses four ASCII digits.
    pub fn parse(bytes: &[u8]) -> Result<Mti, CodecError> {
        let digits: [u8; MTI_LEN] = bytes.try_into().map_err(|_| CodecError::BadMti)?;
        if digits.iter().all(u8::is_ascii_digit) {
            Ok(Mti(digits))
        } else {
            Err(CodecError::BadMti)
        }
    }

    /// An MTI from a four-digit number, e.g. `Mti::from_number(800)` for `0800`.
    pub const fn from_number(number: u16) -> Option<Mti> {
        if number > 9999 {
            return None;
        }
        const fn digit(d: u16) -> u8 {
            b'0' + (d % 10) as u8
        }
        Some(Mti([
            digit(number / 1000),
            digit(number / 100),
            digit(number / 10),
            digit(number),
        ]))
    }

    /// The MTI as a four-digit number (`0800` is 800).
    pub fn number(self) -> u16 {
        self.0
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'))
    }

    pub fn as_str(&self) -> &str {
        // The digits were checked on construction; the fallback is unreachable.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    pub fn as_bytes(&self) -> &[u8; MTI_LEN] {
        &self.0
    }

    /// The function digit: 0 request, 1 response, 2 advice, 3 advice response, 4 notification.
    pub fn function(self) -> u8 {
        self.0[2] - b'0'
    }

    /// The origin digit: odd values (1 acquirer repeat, 3 issuer repeat) mark a repeat.
    pub fn origin(self) -> u8 {
        self.0[3] - b'0'
    }

    pub fn is_repeat(self) -> bool {
        self.origin() % 2 == 1
    }

    /// The MTI with the repeat mark removed (`0201` → `0200`), as used to match duplicates.
    pub fn without_repeat(self) -> Mti {
        let mut digits = self.0;
        digits[3] = b'0' + self.origin() / 2 * 2;
        Mti(digits)
    }

    /// The MTI of the response to this request or advice (`0100`/`0101` → `0110`, `0620` →
    /// `0630`), or `None` for messages that are not answered (responses, notifications, other).
    pub fn response(self) -> Option<Mti> {
        match self.function() {
            0 | 2 => {
                let mut digits = self.0;
                digits[2] += 1;
                digits[3] = b'0';
                Some(Mti(digits))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ISO 8583 message: an MTI and a set of fields with validated ASCII values.
///
/// Values are held as given (fixed fields at their full length, padding included); the typed
/// layer in `message` deals with meaning. Every value held is valid for its field, so encoding
/// cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    mti: Mti,
    fields: BTreeMap<u8, String>,
}

/// A message that failed to decode, with what could be recovered from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The first fault found.
    pub error: CodecError,
    /// The MTI and every field that was read and valid, when the MTI itself was readable.
    pub partial: Option<Message>,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.partial {
            Some(partial) => write!(f, "malformed {}: {}", partial.mti, self.error),
            None => write!(f, "malformed message: {}", self.error),
        }
    }
}

impl Message {
    pub fn new(mti: Mti) -> Message {
        Message {
            mti,
            fields: BTreeMap::new(),
        }
    }

    pub fn mti(&self) -> Mti {
        self.mti
    }

    pub fn set_mti(&mut self, mti: Mti) {
        self.mti = mti;
    }

    /// The value of `field`, if present.
    pub fn get(&self, field: u8) -> Option<&str> {
        self.fields.get(&field).map(String::as_str)
    }

    /// Sets `field` after checking its number, length and character class.
    pub fn set(&mut self, field: u8, value: impl Into<String>) -> Result<&mut Message, CodecError> {
        let value = value.into();
        let spec = field_spec(field).ok_or(CodecError::UnsupportedField { field })?;
        let len = value.len();
        match spec.length {
            Length::Fixed(expected) if len != expected => {
                return Err(CodecError::WrongLength {
                    field,
                    len,
                    expected,
                });
            }
            Length::LlVar(max) | Length::LllVar(max) if len > max => {
                return Err(CodecError::TooLong { field, len, max });
            }
            _ => {}
        }
        if let Some(offset) = spec.class.first_violation(value.as_bytes()) {
            return Err(CodecError::BadContent {
                field,
                class: spec.class,
                offset,
            });
        }
        self.fields.insert(field, value);
        Ok(self)
    }

    /// Removes `field`, returning its value.
    pub fn remove(&mut self, field: u8) -> Option<String> {
        self.fields.remove(&field)
    }

    /// The present fields in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &str)> {
        self.fields.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The bitmaps as numbers: bit 63 of the first is field 1, bit 0 of the second is field 128.
    fn bitmaps(&self) -> (u64, u64) {
        let mut primary = 0u64;
        let mut secondary = 0u64;
        for &field in self.fields.keys() {
            if field <= 64 {
                primary |= 1 << (64 - u32::from(field));
            } else {
                secondary |= 1 << (128 - u32::from(field));
            }
        }
        if secondary != 0 {
            primary |= 1 << 63;
        }
        (primary, secondary)
    }

    /// Appends the message (without length prefix) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.mti.0);
        let (primary, secondary) = self.bitmaps();
        push_hex_u64(out, primary);
        if secondary != 0 {
            push_hex_u64(out, secondary);
        }
        for (&field, value) in &self.fields {
            // Values were validated by `set`, so the spec exists and the length fits its prefix.
            match field_spec(field).map(|s| s.length) {
                Some(Length::LlVar(_)) => {
                    out.extend_from_slice(format!("{:02}", value.len()).as_bytes())
                }
                Some(Length::LllVar(_)) => {
                    out.extend_from_slice(format!("{:03}", value.len()).as_bytes())
                }
                _ => {}
            }
            out.extend_from_slice(value.as_bytes());
        }
    }

    /// The message without length prefix.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// The message as a frame: 2-byte big-endian length, then the message.
    pub fn encode_frame(&self, frame_size_max: usize) -> Result<Vec<u8>, CodecError> {
        let mut out = vec![0, 0];
        self.encode_into(&mut out);
        let len = out.len() - LENGTH_PREFIX_LEN;
        let max = frame_size_max.min(usize::from(u16::MAX));
        let prefix = u16::try_from(len)
            .ok()
            .filter(|_| len <= max)
            .ok_or(CodecError::MessageTooLarge { len, max })?;
        out[..LENGTH_PREFIX_LEN].copy_from_slice(&prefix.to_be_bytes());
        Ok(out)
    }

    /// Decodes one message (without length prefix).
    pub fn decode(bytes: &[u8]) -> Result<Message, Malformed> {
        let mut reader = Reader { bytes, pos: 0 };
        let mti_bytes = reader.take(MTI_LEN, Part::Mti).map_err(|error| Malformed {
            error,
            partial: None,
        })?;
        let mti = Mti::parse(mti_bytes).map_err(|error| Malformed {
            error,
            partial: None,
        })?;
        let mut message = Message::new(mti);
        match message.decode_body(&mut reader) {
            Ok(()) => Ok(message),
            Err(error) => Err(Malformed {
                error,
                partial: Some(message),
            }),
        }
    }

    /// Reads bitmaps and fields into `self`. A field whose content is outside its class does not
    /// stop the reading, since its extent is known: the rest is still read so that the STAN and
    /// terminal id can be recovered, and the first such fault is returned at the end.
    fn decode_body(&mut self, reader: &mut Reader<'_>) -> Result<(), CodecError> {
        let primary = reader.take_bitmap(Part::PrimaryBitmap)?;
        let secondary = if primary & (1 << 63) != 0 {
            let secondary = reader.take_bitmap(Part::SecondaryBitmap)?;
            if secondary == 0 {
                return Err(CodecError::EmptySecondaryBitmap);
            }
            secondary
        } else {
            0
        };
        if secondary & (1 << 63) != 0 {
            return Err(CodecError::UnsupportedField { field: 65 });
        }
        let mut content_fault = None;
        let present = (2u8..=FIELD_NUMBER_MAX).filter(|&field| {
            if field <= 64 {
                primary & (1 << (64 - u32::from(field))) != 0
            } else {
                secondary & (1 << (128 - u32::from(field))) != 0
            }
        });
        for field in present {
            let spec = field_spec(field).ok_or(CodecError::UnsupportedField { field })?;
            let len = match spec.length {
                Length::Fixed(len) => len,
                var => {
                    let prefix = reader.take(var.prefix_len(), Part::Field(field))?;
                    let len = parse_decimal(prefix).ok_or(CodecError::BadLengthPrefix { field })?;
                    if len > var.max() {
                        return Err(CodecError::TooLong {
                            field,
                            len,
                            max: var.max(),
                        });
                    }
                    len
                }
            };
            let data = reader.take(len, Part::Field(field))?;
            match spec.class.first_violation(data) {
                None => {
                    // Every byte is ASCII, so the conversion cannot fail.
                    let value = String::from_utf8_lossy(data).into_owned();
                    self.fields.insert(field, value);
                }
                Some(offset) => {
                    content_fault.get_or_insert(CodecError::BadContent {
                        field,
                        class: spec.class,
                        offset,
                    });
                }
            }
        }
        if let Some(fault) = content_fault {
            return Err(fault);
        }
        let extra = reader.bytes.len() - reader.pos;
        if extra != 0 {
            return Err(CodecError::TrailingData { extra });
        }
        Ok(())
    }
}

/// A cursor over the message bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, part: Part) -> Result<&'a [u8], CodecError> {
        let available = self.bytes.len() - self.pos;
        let slice = self
            .bytes
            .get(self.pos..self.pos.saturating_add(len))
            .ok_or(CodecError::Truncated {
                part,
                needed: len,
                available,
            })?;
        self.pos += len;
        Ok(slice)
    }

    fn take_bitmap(&mut self, part: Part) -> Result<u64, CodecError> {
        let hex = self.take(BITMAP_HEX_LEN, part)?;
        hex.iter().try_fold(0u64, |acc, &b| {
            let nibble = char::from(b)
                .to_digit(16)
                .ok_or(CodecError::BadBitmap { part })?;
            Ok(acc << 4 | u64::from(nibble))
        })
    }
}

fn parse_decimal(digits: &[u8]) -> Option<usize> {
    digits.iter().try_fold(0usize, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + usize::from(b - b'0'))
    })
}

fn push_hex_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(format!("{value:016X}").as_bytes());
}

/// Checks whether `buf` starts with a complete frame, without parsing the message.
///
/// Returns the total frame length (prefix included) when complete, `None` when more bytes are
/// needed, and an error when the prefix announces an empty or over-long message (the stream
/// cannot be resynchronised after that).
pub fn check_frame(buf: &[u8], frame_size_max: usize) -> Result<Option<usize>, CodecError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_LEN) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if len == 0 {
        return Err(CodecError::EmptyFrame);
    }
    if len > frame_size_max {
        return Err(CodecError::FrameTooLong {
            len,
            max: frame_size_max,
        });
    }
    let total = LENGTH_PREFIX_LEN + len;
    Ok((buf.len() >= total).then_some(total))
}

/// Reassembles frames from a byte stream.
///
/// After every [`FrameReader::push`] the caller drains [`FrameReader::next_frame`] until it
/// returns `Ok(None)`; the bytes held back are then less than one frame.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    frame_size_max: usize,
}

impl FrameReader {
    pub fn new(frame_size_max: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            frame_size_max,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        // Compact before growing so that the buffer holds at most one partial frame plus input.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message (prefix removed), if any.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, CodecError> {
        let pending = &self.buf[self.start..];
        match check_frame(pending, self.frame_size_max)? {
            None => Ok(None),
            Some(total) => {
                let from = self.start + LENGTH_PREFIX_LEN;
                let to = self.start + total;
                self.start = to;
                Ok(self.buf.get(from..to))
            }
        }
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mti(n: u16) -> Mti {
        Mti::from_number(n).expect("valid MTI")
    }

    #[test]
    fn table_matches_known_entries() {
        assert_eq!(field_spec(2).map(|s| s.length), Some(Length::LlVar(19)));
        assert_eq!(field_spec(4).map(|s| s.length), Some(Length::Fixed(12)));
        assert_eq!(field_spec(48).map(|s| s.length), Some(Length::LllVar(999)));
        assert_eq!(field_spec(90).map(|s| s.length), Some(Length::Fixed(42)));
        assert_eq!(field_spec(128).map(|s| s.length), Some(Length::Fixed(16)));
        assert_eq!(field_spec(1), None);
        assert_eq!(field_spec(65), None);
        assert_eq!(field_spec(129), None);
    }

    #[test]
    fn encodes_like_pyiso8583_docstring_example() {
        // pyiso8583's own documentation: {'t': '0210', '3': '111111', '39': '05'} encodes to
        // b'0210200000000200000011111105'.
        let mut m = Message::new(mti(210));
        m.set(3, "111111").unwrap().set(39, "05").unwrap();
        assert_eq!(m.encode(), b"0210200000000200000011111105");
    }

    #[test]
    fn decodes_pyiso8583_docstring_example() {
        // pyiso8583's decode example: fields 2 (LLVAR), 12 and 20.
        let m = Message::decode(b"02004010100000000000161234567890123456123456111").unwrap();
        assert_eq!(m.mti(), mti(200));
        assert_eq!(m.get(2), Some("1234567890123456"));
        assert_eq!(m.get(12), Some("123456"));
        assert_eq!(m.get(20), Some("111"));
    }

    #[test]
    fn secondary_bitmap_only_when_needed() {
        let mut m = Message::new(mti(800));
        m.set(11, "000001").unwrap();
        let bytes = m.encode();
        assert_eq!(&bytes[4..20], b"0020000000000000");
        assert_eq!(bytes.len(), 4 + 16 + 6);
        m.set(70, "301").unwrap();
        let bytes = m.encode();
        assert_eq!(&bytes[4..20], b"8020000000000000");
        assert_eq!(&bytes[20..36], b"0400000000000000");
        assert_eq!(&bytes[36..], b"000001301");
        assert_eq!(Message::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn round_trips_every_profile_field() {
        let mut m = Message::new(mti(200));
        m.set(3, "000000").unwrap();
        m.set(4, "000000001250").unwrap();
        m.set(7, "0314153000").unwrap();
        m.set(11, "123456").unwrap();
        m.set(37, "A1B2C3D4E5F6").unwrap();
        m.set(38, "AUTH01").unwrap();
        m.set(39, "00").unwrap();
        m.set(41, "TERM0001").unwrap();
        m.set(42, "MERCHANT 000001").unwrap();
        m.set(48, "TXN=123456;EXP=300").unwrap();
        m.set(49, "978").unwrap();
        m.set(70, "001").unwrap();
        m.set(
            90,
            "0200123456031415300000000000000000000000000"[..42].to_string(),
        )
        .unwrap();
        let bytes = m.encode();
        let back = Message::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn skips_well_formed_fields_outside_the_profile() {
        // Field 2 (LLVAR), 43 (fixed 40), 102 (LLVAR, secondary bitmap) with arbitrary ASCII.
        let mut m = Message::new(mti(100));
        m.set(2, "4111111111111111").unwrap();
        m.set(11, "000007").unwrap();
        m.set(43, format!("{:<40}", "Shop\tname")).unwrap();
        m.set(102, "ACCOUNT-1").unwrap();
        let back = Message::decode(&m.encode()).unwrap();
        assert_eq!(back.get(11), Some("000007"));
        assert_eq!(back, m);
    }

    #[test]
    fn accepts_lower_case_bitmap() {
        let upper: &[u8] = b"0100B0000000000000000400000000000000000000000000001000001";
        let lower = upper.to_ascii_lowercase();
        let a = Message::decode(upper).unwrap();
        let b = Message::decode(&lower).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get(4), Some("000000001000"));
        assert_eq!(a.get(70), Some("001"));
        assert_eq!(b.encode(), upper, "the encoder writes upper case");
    }

    #[test]
    fn decode_errors_name_the_field() {
        let cases: Vec<(&[u8], CodecError)> = vec![
            (
                b"",
                CodecError::Truncated {
                    part: Part::Mti,
                    needed: 4,
                    available: 0,
                },
            ),
            (
                b"08",
                CodecError::Truncated {
                    part: Part::Mti,
                    needed: 4,
                    available: 2,
                },
            ),
            (b"08X0", CodecError::BadMti),
            (
                b"080000200000",
                CodecError::Truncated {
                    part: Part::PrimaryBitmap,
                    needed: 16,
                    available: 8,
                },
            ),
            (
                b"08000020000000G00000000001",
                CodecError::BadBitmap {
                    part: Part::PrimaryBitmap,
                },
            ),
            (
                b"08008000000000000000",
                CodecError::Truncated {
                    part: Part::SecondaryBitmap,
                    needed: 16,
                    available: 0,
                },
            ),
            (
                b"080080000000000000000000000000000000",
                CodecError::EmptySecondaryBitmap,
            ),
            (
                b"080080000000000000008000000000000000",
                CodecError::UnsupportedField { field: 65 },
            ),
            (
                b"08000020000000000000000",
                CodecError::Truncated {
                    part: Part::Field(11),
                    needed: 6,
                    available: 3,
                },
            ),
            (
                b"080000200000000000000000012",
                CodecError::TrailingData { extra: 1 },
            ),
            (
                b"08000020000000000000000A01",
                CodecError::BadContent {
                    field: 11,
                    class: Class::Numeric,
                    offset: 3,
                },
            ),
            (
                b"08000000000000010000",
                CodecError::Truncated {
                    part: Part::Field(48),
                    needed: 3,
                    available: 0,
                },
            ),
            (
                b"080000000000000100001X3abc",
                CodecError::BadLengthPrefix { field: 48 },
            ),
            (
                b"08004000000000000000",
                CodecError::Truncated {
                    part: Part::Field(2),
                    needed: 2,
                    available: 0,
                },
            ),
            (
                b"0800400000000000000020123456789012345678901",
                CodecError::TooLong {
                    field: 2,
                    len: 20,
                    max: 19,
                },
            ),
            (
                b"080000000000000100000100",
                CodecError::Truncated {
                    part: Part::Field(48),
                    needed: 10,
                    available: 1,
                },
            ),
            (
                b"08000000000000010000003a\x01c",
                CodecError::BadContent {
                    field: 48,
                    class: Class::Printable,
                    offset: 1,
                },
            ),
            (
                b"08000000000000010000003a\xffc",
                CodecError::BadContent {
                    field: 48,
                    class: Class::Printable,
                    offset: 1,
                },
            ),
        ];
        for (input, expected) in cases {
            let err = Message::decode(input).expect_err("must fail");
            assert_eq!(
                err.error,
                expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn content_fault_still_recovers_the_stan() {
        // Letters in field 4 (n12); field 11 comes after and must be recovered.
        let bytes = b"02003000000000000000000000001X00000042";
        let err = Message::decode(bytes).unwrap_err();
        assert_eq!(
            err.error,
            CodecError::BadContent {
                field: 4,
                class: Class::Numeric,
                offset: 3
            }
        );
        let partial = err.partial.expect("MTI was readable");
        assert_eq!(partial.mti(), mti(200));
        assert_eq!(partial.get(11), None, "field 11 is not in this bitmap");
        let bytes = b"020010200000000000000000000001X0123456";
        let err = Message::decode(bytes).unwrap_err();
        let partial = err.partial.expect("MTI was readable");
        assert_eq!(partial.get(11), Some("123456"));
        assert_eq!(partial.get(4), None);
    }

    #[test]
    fn set_validates() {
        let mut m = Message::new(mti(100));
        assert_eq!(
            m.set(4, "12").unwrap_err(),
            CodecError::WrongLength {
                field: 4,
                len: 2,
                expected: 12
            }
        );
        assert!(matches!(
            m.set(4, "00000000000A"),
            Err(CodecError::BadContent { field: 4, .. })
        ));
        assert!(matches!(
            m.set(48, "x".repeat(1000)),
            Err(CodecError::TooLong { field: 48, .. })
        ));
        assert!(matches!(
            m.set(65, "0".repeat(16)),
            Err(CodecError::UnsupportedField { field: 65 })
        ));
        assert!(matches!(
            m.set(1, "0".repeat(16)),
            Err(CodecError::UnsupportedField { field: 1 })
        ));
        assert!(matches!(
            m.set(0, ""),
            Err(CodecError::UnsupportedField { field: 0 })
        ));
        assert!(matches!(
            m.set(200, ""),
            Err(CodecError::UnsupportedField { field: 200 })
        ));
        assert!(m.set(48, "").is_ok(), "an empty LLLVAR is allowed");
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn mti_helpers() {
        assert_eq!(mti(100).response(), Some(mti(110)));
        assert_eq!(mti(101).response(), Some(mti(110)));
        assert_eq!(mti(620).response(), Some(mti(630)));
        assert_eq!(mti(810).response(), None);
        assert_eq!(mti(201).without_repeat(), mti(200));
        assert_eq!(mti(203).without_repeat(), mti(202));
        assert!(mti(401).is_repeat());
        assert!(!mti(400).is_repeat());
        assert_eq!(mti(800).number(), 800);
        assert_eq!(mti(800).as_str(), "0800");
        assert_eq!(Mti::from_number(10000), None);
    }

    #[test]
    fn frame_checks() {
        assert_eq!(check_frame(b"", 100), Ok(None));
        assert_eq!(check_frame(b"\x00", 100), Ok(None));
        assert_eq!(check_frame(b"\x00\x03ab", 100), Ok(None));
        assert_eq!(check_frame(b"\x00\x03abcd", 100), Ok(Some(5)));
        assert_eq!(check_frame(b"\x00\x00", 100), Err(CodecError::EmptyFrame));
        assert_eq!(
            check_frame(b"\x01\x00", 100),
            Err(CodecError::FrameTooLong { len: 256, max: 100 })
        );
    }

    #[test]
    fn frame_reader_reassembles_split_and_joined_frames() {
        let mut m = Message::new(mti(800));
        m.set(11, "000001").unwrap().set(70, "301").unwrap();
        let frame = m.encode_frame(FRAME_SIZE_MAX).unwrap();
        let mut stream = frame.clone();
        stream.extend_from_slice(&frame);
        let mut reader = FrameReader::new(FRAME_SIZE_MAX);
        let mut frames = Vec::new();
        // Feed one byte at a time, then everything at once.
        for b in &stream {
            reader.push(std::slice::from_ref(b));
            while let Some(f) = reader.next_frame().unwrap() {
                frames.push(f.to_vec());
            }
        }
        reader.push(&stream);
        while let Some(f) = reader.next_frame().unwrap() {
            frames.push(f.to_vec());
        }
        assert_eq!(frames.len(), 4);
        for f in frames {
            assert_eq!(Message::decode(&f).unwrap(), m);
        }
        assert_eq!(reader.buffered_len(), 0);
    }

    #[test]
    fn encode_frame_respects_bound() {
        let mut m = Message::new(mti(620));
        m.set(48, "x".repeat(999)).unwrap();
        assert!(matches!(
            m.encode_frame(100),
            Err(CodecError::MessageTooLarge { max: 100, .. })
        ));
        let frame = m.encode_frame(FRAME_SIZE_MAX).unwrap();
        assert_eq!(
            usize::from(u16::from_be_bytes([frame[0], frame[1]])),
            frame.len() - 2
        );
    }
}
