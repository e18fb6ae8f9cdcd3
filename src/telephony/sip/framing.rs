//! Message framing for UDP datagrams and TCP streams, with the size limits that keep a peer from
//! making us buffer or parse without bound, and a cheap scan of the header section.
//!
//! The scan ([`scan_head`]) runs before the full parse: it checks UTF-8, line lengths and the
//! header count, unfolds continuation lines, and finds `Content-Length`. Its output also lets the
//! endpoint answer 400/501 to requests that the full parser rejects, because it still knows the
//! `Via`, `From`, `To`, `Call-ID` and `CSeq` values a response must echo.

use std::fmt;

/// Largest SIP message accepted, header section and body together, in bytes.
pub const MESSAGE_SIZE_MAX: usize = 64 * 1024;
/// Longest header line accepted (after unfolding), in bytes. Long Via/Record-Route lists stay
/// well below this; a longer line is an attack or a broken peer.
pub const HEADER_LINE_LENGTH_MAX: usize = 8 * 1024;
/// Most header fields accepted in one message.
pub const HEADER_COUNT_MAX: usize = 128;

/// The transport a message came in on or is to be sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// Whether the transport is reliable, which switches off retransmission timers (RFC 3261
    /// §17: Timers E, G retransmit only on unreliable transports; I, J, K become zero).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// Why bytes could not be framed into a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("message exceeds {MESSAGE_SIZE_MAX} bytes")]
    TooLarge,
    #[error("header line exceeds {HEADER_LINE_LENGTH_MAX} bytes")]
    HeaderLineTooLong,
    #[error("more than {HEADER_COUNT_MAX} header fields")]
    TooManyHeaders,
    #[error("header section is not UTF-8")]
    NotUtf8,
    #[error("no end of header section")]
    NoHeaderEnd,
    #[error("header line without a colon")]
    MalformedHeaderLine,
    #[error("Content-Length is not a number, or differs between headers")]
    BadContentLength,
    #[error("Content-Length is required on a stream transport")]
    MissingContentLength,
    #[error("body shorter than Content-Length")]
    BodyTruncated,
}

/// The scanned header section: start line and unfolded `(name, value)` pairs, with compact
/// names expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHead {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    pub content_length: Option<usize>,
}

impl RawHead {
    /// The first value of a header (name compared case-insensitively, full form).
    pub fn first(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Expands the compact header forms of RFC 3261 §7.3.3 (and RFC 3515, 3841, 4028) that carry
/// meaning for us.
fn expand_compact(name: &str) -> &str {
    match name {
        "v" | "V" => "Via",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "k" | "K" => "Supported",
        "e" | "E" => "Content-Encoding",
        "s" | "S" => "Subject",
        "x" | "X" => "Session-Expires",
        other => other,
    }
}

/// Position just past the `\r\n\r\n` that ends the header section, if present.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

/// Scans a header section (the bytes up to and including the blank line).
pub fn scan_head(head: &[u8]) -> Result<RawHead, FrameError> {
    let text = std::str::from_utf8(head).map_err(|_| FrameError::NotUtf8)?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default();
    if start_line.len() > HEADER_LINE_LENGTH_MAX {
        return Err(FrameError::HeaderLineTooLong);
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            // The blank line (and the empty piece after the final CRLF).
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous header (RFC 3261 §7.3.1).
            let Some((_, value)) = headers.last_mut() else {
                return Err(FrameError::MalformedHeaderLine);
            };
            value.push(' ');
            value.push_str(line.trim());
            if value.len() > HEADER_LINE_LENGTH_MAX {
                return Err(FrameError::HeaderLineTooLong);
            }
            continue;
        }
        if line.len() > HEADER_LINE_LENGTH_MAX {
            return Err(FrameError::HeaderLineTooLong);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(FrameError::MalformedHeaderLine)?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(FrameError::MalformedHeaderLine);
        }
        if headers.len() >= HEADER_COUNT_MAX {
            return Err(FrameError::TooManyHeaders);
        }
        headers.push((expand_compact(name).to_string(), value.trim().to_string()));
    }
    let mut content_length = None;
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("Content-Length") {
            let length: usize = value.parse().map_err(|_| FrameError::BadContentLength)?;
            if content_length.is_some_and(|l| l != length) {
                return Err(FrameError::BadContentLength);
            }
            content_length = Some(length);
        }
    }
    Ok(RawHead {
        start_line: start_line.to_string(),
        headers,
        content_length,
    })
}

/// RFC 3261 `token` characters.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// A framed message: the scanned head and the whole message bytes (head and body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    pub head: RawHead,
    pub bytes: Vec<u8>,
    /// Offset of the body in `bytes`.
    pub body_offset: usize,
}

/// What a datagram or a stream yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameOutcome {
    Message(Framed),
    /// A keep-alive: CRLFs on UDP (ignored) or a double-CRLF ping on TCP (answered with a CRLF
    /// pong, RFC 5626 §3.5.1).
    KeepAlive {
        pong: bool,
    },
    /// The bytes cannot be a message. `head` is set when the header section scanned, so a 400
    /// can still be built.
    Error {
        error: FrameError,
        head: Option<RawHead>,
    },
}

/// Frames one UDP datagram (RFC 3261 §18.3: the body ends at Content-Length, extra bytes are
/// discarded, a body shorter than Content-Length is an error).
pub fn frame_datagram(datagram: &[u8]) -> FrameOutcome {
    if datagram.len() > MESSAGE_SIZE_MAX {
        return FrameOutcome::Error {
            error: FrameError::TooLarge,
            head: None,
        };
    }
    // Leading CRLFs before the start line are ignored (RFC 3261 §7.5); a datagram of only
    // whitespace is a NAT keep-alive.
    let start = datagram
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        .unwrap_or(datagram.len());
    if start == datagram.len() {
        return FrameOutcome::KeepAlive { pong: false };
    }
    let bytes = &datagram[start..];
    let Some(end) = head_end(bytes) else {
        return FrameOutcome::Error {
            error: FrameError::NoHeaderEnd,
            head: None,
        };
    };
    let head = match scan_head(&bytes[..end]) {
        Ok(head) => head,
        Err(error) => return FrameOutcome::Error { error, head: None },
    };
    let available = bytes.len() - end;
    let length = head.content_length.unwrap_or(available);
    if length > available {
        return FrameOutcome::Error {
            error: FrameError::BodyTruncated,
            head: Some(head),
        };
    }
    FrameOutcome::Message(Framed {
        head,
        bytes: bytes[..end + length].to_vec(),
        body_offset: end,
    })
}

/// Reassembles messages from one TCP connection's byte stream. After an error the stream is
/// out of sync and the connection must be closed.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buffer: Vec<u8>,
    failed: bool,
}

impl StreamFramer {
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, keep-alive or error; `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<FrameOutcome> {
        if self.failed {
            return None;
        }
        // Leading CRLFs: a double CRLF is a ping; a single one (our own pong echoed, or
        // padding) is skipped.
        while self.buffer.starts_with(b"\r\n") {
            if self.buffer.starts_with(b"\r\n\r\n") {
                self.buffer.drain(..4);
                return Some(FrameOutcome::KeepAlive { pong: true });
            }
            if self.buffer.len() < 4 && b"\r\n\r\n".starts_with(&self.buffer) {
                // Could still become a ping; wait for more.
                return None;
            }
            self.buffer.drain(..2);
        }
        let Some(end) = head_end(&self.buffer) else {
            if self.buffer.len() > MESSAGE_SIZE_MAX {
                return Some(self.fail(FrameError::TooLarge, None));
            }
            return None;
        };
        let head = match scan_head(&self.buffer[..end]) {
            Ok(head) => head,
            Err(error) => return Some(self.fail(error, None)),
        };
        let Some(length) = head.content_length else {
            return Some(self.fail(FrameError::MissingContentLength, Some(head)));
        };
        let total = end.saturating_add(length);
        if total > MESSAGE_SIZE_MAX {
            return Some(self.fail(FrameError::TooLarge, Some(head)));
        }
        if self.buffer.len() < total {
            return None;
        }
        let bytes: Vec<u8> = self.buffer.drain(..total).collect();
        Some(FrameOutcome::Message(Framed {
            head,
            bytes,
            body_offset: end,
        }))
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    fn fail(&mut self, error: FrameError, head: Option<RawHead>) -> FrameOutcome {
        self.failed = true;
        self.buffer = Vec::new();
        FrameOutcome::Error { error, head }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] =
        b"OPTIONS sip:gw SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
        f: <sip:a@x>;tag=1\r\nt: <sip:gw>\r\ni: abc\r\nCSeq: 1 OPTIONS\r\nl: 4\r\n\r\nbody";

    #[test]
    fn compact_and_folded_headers_are_scanned() {
        let end = head_end(OPTIONS).unwrap();
        let head = scan_head(&OPTIONS[..end]).unwrap();
        assert_eq!(head.first("from"), Some("<sip:a@x>;tag=1"));
        assert_eq!(head.first("Call-ID"), Some("abc"));
        assert_eq!(head.content_length, Some(4));
        let folded = b"INVITE sip:x SIP/2.0\r\nSubject: a\r\n  b\r\n\r\n";
        let head = scan_head(folded).unwrap();
        assert_eq!(head.first("Subject"), Some("a b"));
    }

    #[test]
    fn stream_frames_split_and_coalesced_messages() {
        let mut framer = StreamFramer::new();
        let mut two = OPTIONS.to_vec();
        two.extend_from_slice(b"\r\n\r\n");
        two.extend_from_slice(OPTIONS);
        // Feed one byte at a time: framing must not depend on segment boundaries.
        let mut out = Vec::new();
        for b in &two {
            framer.push(std::slice::from_ref(b));
            while let Some(frame) = framer.next_frame() {
                out.push(frame);
            }
        }
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[0], FrameOutcome::Message(m) if m.bytes == OPTIONS));
        assert_eq!(out[1], FrameOutcome::KeepAlive { pong: true });
        assert!(matches!(&out[2], FrameOutcome::Message(m) if m.bytes.ends_with(b"body")));
        assert_eq!(framer.buffered_len(), 0);
    }

    #[test]
    fn stream_errors_poison_the_connection() {
        let mut framer = StreamFramer::new();
        framer.push(b"OPTIONS sip:gw SIP/2.0\r\nCall-ID: x\r\n\r\n");
        assert!(matches!(
            framer.next_frame(),
            Some(FrameOutcome::Error {
                error: FrameError::MissingContentLength,
                head: Some(_)
            })
        ));
        framer.push(OPTIONS);
        assert_eq!(framer.next_frame(), None);

        let mut framer = StreamFramer::new();
        framer.push(&vec![b'a'; MESSAGE_SIZE_MAX + 1]);
        assert!(matches!(
            framer.next_frame(),
            Some(FrameOutcome::Error {
                error: FrameError::TooLarge,
                ..
            })
        ));

        let mut framer = StreamFramer::new();
        framer.push(b"OPTIONS sip:gw SIP/2.0\r\nContent-Length: 999999\r\n\r\n");
        assert!(matches!(
            framer.next_frame(),
            Some(FrameOutcome::Error {
                error: FrameError::TooLarge,
                ..
            })
        ));
    }

    #[test]
    fn datagram_rules() {
        assert_eq!(
            frame_datagram(b"\r\n\r\n"),
            FrameOutcome::KeepAlive { pong: false }
        );
        assert_eq!(frame_datagram(b""), FrameOutcome::KeepAlive { pong: false });
        // Extra bytes beyond Content-Length are discarded.
        let mut extra = OPTIONS.to_vec();
        extra.extend_from_slice(b"junk");
        assert!(matches!(frame_datagram(&extra), FrameOutcome::Message(m) if m.bytes == OPTIONS));
        // No Content-Length on UDP: the body runs to the end of the datagram.
        let no_length = b"OPTIONS sip:gw SIP/2.0\r\nCall-ID: x\r\n\r\nabc";
        assert!(
            matches!(frame_datagram(no_length), FrameOutcome::Message(m) if m.bytes.len() == no_length.len())
        );
        let short = b"OPTIONS sip:gw SIP/2.0\r\nContent-Length: 10\r\n\r\nabc";
        assert!(matches!(
            frame_datagram(short),
            FrameOutcome::Error {
                error: FrameError::BodyTruncated,
                head: Some(_)
            }
        ));
        let cases: [(&[u8], FrameError); 6] = [
            (
                b"OPTIONS sip:gw SIP/2.0\r\nCall-ID: x\r\n",
                FrameError::NoHeaderEnd,
            ),
            (
                b"OPTIONS sip:gw SIP/2.0\r\nno colon here\r\n\r\n",
                FrameError::MalformedHeaderLine,
            ),
            (
                b"OPTIONS sip:gw SIP/2.0\r\nBad Name: x\r\n\r\n",
                FrameError::MalformedHeaderLine,
            ),
            (
                b"OPTIONS sip:gw SIP/2.0\r\nContent-Length: x\r\n\r\n",
                FrameError::BadContentLength,
            ),
            (
                b"OPTIONS sip:gw SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab",
                FrameError::BadContentLength,
            ),
            (
                b"OPTIONS sip:gw SIP/2.0\r\nX: \xff\r\n\r\n",
                FrameError::NotUtf8,
            ),
        ];
        for (bytes, error) in cases {
            assert!(
                matches!(frame_datagram(bytes), FrameOutcome::Error { error: e, .. } if e == error),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let huge_line = format!(
            "OPTIONS sip:gw SIP/2.0\r\nX: {}\r\n\r\n",
            "a".repeat(HEADER_LINE_LENGTH_MAX)
        );
        assert!(matches!(
            frame_datagram(huge_line.as_bytes()),
            FrameOutcome::Error {
                error: FrameError::HeaderLineTooLong,
                ..
            }
        ));
        let many = format!(
            "OPTIONS sip:gw SIP/2.0\r\n{}\r\n",
            "X: 1\r\n".repeat(HEADER_COUNT_MAX + 1)
        );
        assert!(matches!(
            frame_datagram(many.as_bytes()),
            FrameOutcome::Error {
                error: FrameError::TooManyHeaders,
                ..
            }
        ));
        assert!(matches!(
            frame_datagram(&vec![b'a'; MESSAGE_SIZE_MAX + 1]),
            FrameOutcome::Error {
                error: FrameError::TooLarge,
                ..
            }
        ));
    }
}
