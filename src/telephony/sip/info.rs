//! DTMF carried in SIP INFO bodies: `application/dtmf-relay` (`Signal=5` / `Duration=160`
//! lines, the Cisco form most phones send) and `application/dtmf` (the bare digit).
//!
//! Either may write `*` and `#` as `10` and `11` (RFC 4733 event codes), and the letters
//! A–D in either case.

/// Largest INFO body accepted as DTMF, in bytes. Real ones are under 40.
pub const INFO_BODY_SIZE_MAX: usize = 256;
/// Longest tone duration accepted, in milliseconds.
pub const INFO_DURATION_MS_MAX: u32 = 60_000;

/// The content types we take DTMF from.
pub const DTMF_CONTENT_TYPES: &str = "application/dtmf-relay, application/dtmf";

/// Why an INFO body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InfoError {
    #[error("INFO content type is not a DTMF type")]
    UnsupportedType,
    #[error("INFO body is not valid DTMF")]
    Malformed,
}

/// One key press from an INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoDigit {
    /// `0`–`9`, `*`, `#`, `A`–`D`.
    pub digit: char,
    pub duration_ms: Option<u32>,
}

/// Parses an INFO body by its content type (already lower-cased, parameters allowed).
pub fn parse_dtmf_info(content_type: &str, body: &[u8]) -> Result<InfoDigit, InfoError> {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    let relay = match media_type {
        "application/dtmf-relay" => true,
        "application/dtmf" => false,
        _ => return Err(InfoError::UnsupportedType),
    };
    if body.len() > INFO_BODY_SIZE_MAX {
        return Err(InfoError::Malformed);
    }
    let text = std::str::from_utf8(body).map_err(|_| InfoError::Malformed)?;
    if !relay {
        let digit = digit_from(text.trim()).ok_or(InfoError::Malformed)?;
        return Ok(InfoDigit {
            digit,
            duration_ms: None,
        });
    }
    let mut digit = None;
    let mut duration_ms = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or(InfoError::Malformed)?;
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("Signal") {
            if digit.is_some() {
                return Err(InfoError::Malformed);
            }
            digit = Some(digit_from(value).ok_or(InfoError::Malformed)?);
        } else if key.eq_ignore_ascii_case("Duration") {
            let ms: u32 = value.parse().map_err(|_| InfoError::Malformed)?;
            if ms > INFO_DURATION_MS_MAX {
                return Err(InfoError::Malformed);
            }
            duration_ms = Some(ms);
        }
    }
    Ok(InfoDigit {
        digit: digit.ok_or(InfoError::Malformed)?,
        duration_ms,
    })
}

fn digit_from(value: &str) -> Option<char> {
    match value {
        "10" => return Some('*'),
        "11" => return Some('#'),
        _ => {}
    }
    let mut chars = value.chars();
    let c = chars.next()?.to_ascii_uppercase();
    if chars.next().is_some() {
        return None;
    }
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_and_plain_forms() {
        let ok = [
            (
                "application/dtmf-relay",
                "Signal=5\r\nDuration=160\r\n",
                '5',
                Some(160),
            ),
            (
                "application/dtmf-relay",
                "signal= #\nduration = 250",
                '#',
                Some(250),
            ),
            ("application/dtmf-relay", "Signal=10\r\n", '*', None),
            (
                "application/dtmf-relay; charset=utf-8",
                "Signal=d\r\nDuration=100",
                'D',
                Some(100),
            ),
            ("application/dtmf", "7", '7', None),
            ("application/dtmf", " 11\r\n", '#', None),
        ];
        for (ct, body, digit, duration_ms) in ok {
            assert_eq!(
                parse_dtmf_info(ct, body.as_bytes()),
                Ok(InfoDigit { digit, duration_ms }),
                "{body:?}"
            );
        }
        let bad: [(&str, &[u8], InfoError); 9] = [
            ("text/plain", b"Signal=5", InfoError::UnsupportedType),
            ("application/sdp", b"v=0", InfoError::UnsupportedType),
            (
                "application/dtmf-relay",
                b"Duration=160",
                InfoError::Malformed,
            ),
            ("application/dtmf-relay", b"Signal=55", InfoError::Malformed),
            ("application/dtmf-relay", b"Signal=E", InfoError::Malformed),
            (
                "application/dtmf-relay",
                b"Signal=1\r\nSignal=2",
                InfoError::Malformed,
            ),
            (
                "application/dtmf-relay",
                b"Signal=1\r\nDuration=-5",
                InfoError::Malformed,
            ),
            ("application/dtmf-relay", b"junk junk", InfoError::Malformed),
            ("application/dtmf", b"\xff", InfoError::Malformed),
        ];
        for (ct, body, err) in bad {
            assert_eq!(
                parse_dtmf_info(ct, body),
                Err(err),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!("Signal=1\r\n{}", " ".repeat(INFO_BODY_SIZE_MAX));
        assert_eq!(
            parse_dtmf_info("application/dtmf-relay", long.as_bytes()),
            Err(InfoError::Malformed)
        );
    }
}
