//! DTMF in SIP INFO bodies.
//!
//! Three body types are understood, chosen by the request's Content-Type
//! (parameters and case ignored):
//!
//! - `application/dtmf-relay`: lines of `Key=Value`, e.g.
//!   `Signal=5\r\nDuration=160\r\n`. `Signal` is required (a key
//!   character, or the event codes 10–15 some gateways send for `*`, `#`
//!   and `A`–`D`); `Duration` in milliseconds is optional; other keys are
//!   ignored.
//! - `application/dtmf`: the key alone, e.g. `5` (surrounding whitespace
//!   allowed, event codes 10–15 accepted as above).
//! - `audio/telephone-event`: one RFC 4733 event block, binary.
//!
//! Anything else is a typed [`InfoError`]; the caller answers the INFO with
//! 415 (unsupported type) or 400 (malformed body). Errors never quote the
//! body: it may hold a PIN digit.

use super::Digit;
use super::rfc4733::TelephoneEvent;

/// Longest body accepted.
pub const BODY_LEN_MAX: usize = 1_024;
/// Most lines looked at in a `dtmf-relay` body.
pub const LINES_MAX: usize = 16;
/// Longest key press accepted, in milliseconds.
pub const DURATION_MS_MAX: u32 = 600_000;

/// Why an INFO body gave no digit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InfoError {
    /// Not one of the three DTMF content types.
    #[error(
        "content type is not application/dtmf-relay, application/dtmf or audio/telephone-event"
    )]
    UnsupportedContentType,
    /// Longer than [`BODY_LEN_MAX`].
    #[error("INFO body of {len} bytes is longer than {BODY_LEN_MAX}")]
    TooLong {
        /// Bytes received.
        len: usize,
    },
    /// Not UTF-8 text.
    #[error("INFO body is not text")]
    NotText,
    /// More than [`LINES_MAX`] non-empty lines.
    #[error("dtmf-relay body has more than {LINES_MAX} lines")]
    TooManyLines,
    /// A non-empty line without `=`.
    #[error("dtmf-relay line {line} is not Key=Value")]
    MalformedLine {
        /// One-based line number.
        line: usize,
    },
    /// No `Signal` line.
    #[error("dtmf-relay body has no Signal")]
    MissingSignal,
    /// `Signal` or `Duration` given twice.
    #[error("dtmf-relay body repeats {key}")]
    Repeated {
        /// Which key.
        key: &'static str,
    },
    /// The signal (or `application/dtmf` body) is not a key.
    #[error("signal is not a DTMF key")]
    BadSignal,
    /// `Duration` is not a number of milliseconds within bounds.
    #[error("duration is not a number of milliseconds up to {DURATION_MS_MAX}")]
    BadDuration,
    /// An `audio/telephone-event` body that is not one valid block, or
    /// carries a non-DTMF event.
    #[error("telephone-event body is malformed or not a DTMF key")]
    BadTelephoneEvent,
}

/// A key press reported by INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoDigit {
    /// The key.
    pub digit: Digit,
    /// How long it was held, when the body says.
    pub duration_ms: Option<u32>,
}

/// The bare media type of a Content-Type value, lower-cased and without
/// parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Parses an INFO body according to its Content-Type.
pub fn parse_info(content_type: &str, body: &[u8]) -> Result<InfoDigit, InfoError> {
    if body.len() > BODY_LEN_MAX {
        return Err(InfoError::TooLong { len: body.len() });
    }
    match media_type(content_type).as_str() {
        "application/dtmf-relay" => parse_dtmf_relay(body),
        "application/dtmf" => parse_dtmf(body),
        "audio/telephone-event" => parse_telephone_event(body),
        _ => Err(InfoError::UnsupportedContentType),
    }
}

/// A key as INFO bodies write it: one key character, or an event code
/// 0–15 in decimal.
fn parse_signal(text: &str) -> Result<Digit, InfoError> {
    let text = text.trim();
    let mut chars = text.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Digit::from_char(c).ok_or(InfoError::BadSignal);
    }
    if text.len() == 2 && text.bytes().all(|b| b.is_ascii_digit()) {
        let code: u8 = text.parse().map_err(|_| InfoError::BadSignal)?;
        return Digit::from_event_code(code).ok_or(InfoError::BadSignal);
    }
    Err(InfoError::BadSignal)
}

/// Parses an `application/dtmf-relay` body.
pub fn parse_dtmf_relay(body: &[u8]) -> Result<InfoDigit, InfoError> {
    if body.len() > BODY_LEN_MAX {
        return Err(InfoError::TooLong { len: body.len() });
    }
    let text = std::str::from_utf8(body).map_err(|_| InfoError::NotText)?;
    let mut signal = None;
    let mut duration_ms = None;
    let mut lines = 0;
    for (index, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        lines += 1;
        if lines > LINES_MAX {
            return Err(InfoError::TooManyLines);
        }
        let (key, value) = line
            .split_once('=')
            .ok_or(InfoError::MalformedLine { line: index + 1 })?;
        let key = key.trim();
        if key.eq_ignore_ascii_case("signal") {
            if signal.is_some() {
                return Err(InfoError::Repeated { key: "Signal" });
            }
            signal = Some(parse_signal(value)?);
        } else if key.eq_ignore_ascii_case("duration") {
            if duration_ms.is_some() {
                return Err(InfoError::Repeated { key: "Duration" });
            }
            let value = value.trim();
            // Digits only: u32::from_str would also take a leading '+'.
            if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InfoError::BadDuration);
            }
            let ms: u32 = value.parse().map_err(|_| InfoError::BadDuration)?;
            if ms > DURATION_MS_MAX {
                return Err(InfoError::BadDuration);
            }
            duration_ms = Some(ms);
        }
        // Other keys are extensions some gateways add; they carry nothing
        // we need.
    }
    let digit = signal.ok_or(InfoError::MissingSignal)?;
    Ok(InfoDigit { digit, duration_ms })
}

/// Parses an `application/dtmf` body.
pub fn parse_dtmf(body: &[u8]) -> Result<InfoDigit, InfoError> {
    if body.len() > BODY_LEN_MAX {
        return Err(InfoError::TooLong { len: body.len() });
    }
    let text = std::str::from_utf8(body).map_err(|_| InfoError::NotText)?;
    Ok(InfoDigit {
        digit: parse_signal(text)?,
        duration_ms: None,
    })
}

/// Parses an `audio/telephone-event` body (exactly one block).
pub fn parse_telephone_event(body: &[u8]) -> Result<InfoDigit, InfoError> {
    if body.len() != super::rfc4733::EVENT_LEN {
        return Err(InfoError::BadTelephoneEvent);
    }
    let event = TelephoneEvent::parse(body).map_err(|_| InfoError::BadTelephoneEvent)?;
    let digit = event.digit().ok_or(InfoError::BadTelephoneEvent)?;
    Ok(InfoDigit {
        digit,
        // Telephone-event durations count 8 kHz ticks.
        duration_ms: Some(u32::from(event.duration) / 8),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "application/dtmf-relay";

    fn relay(body: &str) -> Result<InfoDigit, InfoError> {
        parse_info(RELAY, body.as_bytes())
    }

    #[test]
    fn dtmf_relay_bodies_as_phones_send_them() {
        assert_eq!(
            relay("Signal=5\r\nDuration=160\r\n"),
            Ok(InfoDigit {
                digit: Digit::D5,
                duration_ms: Some(160)
            })
        );
        assert_eq!(
            relay("signal = # \nduration= 250"),
            Ok(InfoDigit {
                digit: Digit::Hash,
                duration_ms: Some(250)
            })
        );
        assert_eq!(
            relay("Signal=*"),
            Ok(InfoDigit {
                digit: Digit::Star,
                duration_ms: None
            })
        );
        assert_eq!(
            relay("Signal=10\r\nDuration=100").map(|d| d.digit),
            Ok(Digit::Star)
        );
        assert_eq!(relay("Signal=11").map(|d| d.digit), Ok(Digit::Hash));
        assert_eq!(relay("Signal=d").map(|d| d.digit), Ok(Digit::D));
        assert_eq!(
            relay("Signal=0\r\nX-Extra=1\r\n\r\n").map(|d| d.digit),
            Ok(Digit::D0)
        );
        // Content-Type case and parameters do not matter.
        assert_eq!(
            parse_info("Application/DTMF-Relay; charset=utf-8", b"Signal=1").map(|d| d.digit),
            Ok(Digit::D1)
        );
    }

    #[test]
    fn dtmf_relay_junk_gets_typed_errors() {
        assert_eq!(relay(""), Err(InfoError::MissingSignal));
        assert_eq!(relay("Duration=160"), Err(InfoError::MissingSignal));
        assert_eq!(
            relay("Signal=5\r\nnonsense"),
            Err(InfoError::MalformedLine { line: 2 })
        );
        assert_eq!(relay("Signal=55"), Err(InfoError::BadSignal));
        assert_eq!(relay("Signal=16"), Err(InfoError::BadSignal));
        assert_eq!(relay("Signal=x"), Err(InfoError::BadSignal));
        assert_eq!(relay("Signal="), Err(InfoError::BadSignal));
        assert_eq!(
            relay("Signal=5\nSignal=6"),
            Err(InfoError::Repeated { key: "Signal" })
        );
        assert_eq!(relay("Signal=5\nDuration=-1"), Err(InfoError::BadDuration));
        assert_eq!(relay("Signal=5\nDuration=+5"), Err(InfoError::BadDuration));
        assert_eq!(
            relay("Signal=5\nDuration=99999999999"),
            Err(InfoError::BadDuration)
        );
        assert_eq!(
            relay("Signal=5\nDuration=600001"),
            Err(InfoError::BadDuration)
        );
        assert_eq!(
            relay("Signal=5\nDuration=1\nDuration=2"),
            Err(InfoError::Repeated { key: "Duration" })
        );
        let many: String = (0..=LINES_MAX).map(|i| format!("X{i}=1\n")).collect();
        assert_eq!(relay(&many), Err(InfoError::TooManyLines));
        assert_eq!(
            parse_info(RELAY, &vec![b' '; BODY_LEN_MAX + 1]),
            Err(InfoError::TooLong {
                len: BODY_LEN_MAX + 1
            })
        );
        assert_eq!(parse_info(RELAY, b"Signal=\xff"), Err(InfoError::NotText));
        assert_eq!(
            parse_info("text/plain", b"Signal=5"),
            Err(InfoError::UnsupportedContentType)
        );
        assert_eq!(parse_info("", b"5"), Err(InfoError::UnsupportedContentType));
    }

    #[test]
    fn errors_never_quote_the_body() {
        for body in ["Signal=Z9", "Signal=5\nDuration=9x9", "Signal=5\n7777"] {
            if let Err(e) = relay(body) {
                let message = e.to_string();
                assert!(
                    !message.contains("Z9")
                        && !message.contains("9x9")
                        && !message.contains("7777")
                );
            } else {
                panic!("{body:?} was accepted");
            }
        }
    }

    #[test]
    fn application_dtmf_is_the_key_alone() {
        assert_eq!(
            parse_info("application/dtmf", b"7"),
            Ok(InfoDigit {
                digit: Digit::D7,
                duration_ms: None
            })
        );
        assert_eq!(
            parse_info("application/dtmf", b" *\r\n").map(|d| d.digit),
            Ok(Digit::Star)
        );
        assert_eq!(
            parse_info("application/dtmf", b"11").map(|d| d.digit),
            Ok(Digit::Hash)
        );
        assert_eq!(
            parse_info("application/dtmf", b""),
            Err(InfoError::BadSignal)
        );
        assert_eq!(
            parse_info("application/dtmf", b"12 3"),
            Err(InfoError::BadSignal)
        );
        assert_eq!(
            parse_info("application/dtmf", b"Signal=1"),
            Err(InfoError::BadSignal)
        );
    }

    #[test]
    fn audio_telephone_event_is_one_binary_block() {
        assert_eq!(
            parse_info("audio/telephone-event", &[4, 0x8A, 0x06, 0x40]),
            Ok(InfoDigit {
                digit: Digit::D4,
                duration_ms: Some(200)
            })
        );
        assert_eq!(
            parse_info("audio/telephone-event", &[16, 0, 0, 0]),
            Err(InfoError::BadTelephoneEvent)
        );
        assert_eq!(
            parse_info("audio/telephone-event", &[1, 0, 0]),
            Err(InfoError::BadTelephoneEvent)
        );
        assert_eq!(
            parse_info("audio/telephone-event", &[1, 0, 0, 0, 0]),
            Err(InfoError::BadTelephoneEvent)
        );
    }
}
