//! SMPP framing around rusmpp's PDU types: reading whole PDUs out of a byte stream, within a
//! bound, and writing them.
//!
//! rusmpp decodes and encodes the PDU bodies (on plain `BytesMut`, no tokio). This module does
//! the framing itself rather than use rusmpp's tokio codec, for three reasons: the header must be
//! read first so that a body rusmpp rejects can still be answered with a `generic_nack` carrying
//! the right sequence number; each body is decoded from a buffer holding exactly that PDU, so a
//! decoder that stops early cannot desynchronise the stream (the codec ignores how much was
//! consumed); and a body must be consumed exactly, or its `command_length` lied.
//!
//! What the reader yields for each PDU is either a decoded [`Command`] or a [`Malformed`] saying
//! which `generic_nack` status answers it and whether the stream can go on. A `command_length`
//! below 16 leaves no way to find the next PDU: the stream is dead. One above `pdu_size_max` is
//! answered and its body skipped without being buffered, so a large but well-framed PDU costs no
//! memory.
//!
//! Keep rusmpp's `tracing` feature off and never log a [`Frame`] or a `Command`: their `Debug`
//! output includes `short_message`, which may hold a payer's PIN.

use bytes::{Buf, BytesMut};
use rusmpp::decode::{COctetStringDecodeError, DecodeErrorKind, DecodeWithLength};
use rusmpp::encode::{Length, owned::Encode};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};

/// Octets in a PDU header (`command_length`, `command_id`, `command_status`, `sequence_number`).
pub const HEADER_LEN: usize = 16;

/// The default bound on `command_length`. A `submit_sm` with a full `short_message` and common TLVs
/// is about 400 octets; 4 KiB leaves room for `message_payload` texts of several parts.
pub const PDU_SIZE_MAX_DEFAULT: usize = 4096;

/// The four header fields of a PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The whole PDU's length, header included.
    pub command_length: u32,
    /// The raw command id.
    pub command_id: u32,
    /// The raw command status.
    pub command_status: u32,
    /// The sequence number.
    pub sequence_number: u32,
}

impl Header {
    fn parse(octets: &[u8]) -> Option<Header> {
        let word = |i: usize| -> Option<u32> {
            let b = octets.get(i..i + 4)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        Some(Header {
            command_length: word(0)?,
            command_id: word(4)?,
            command_status: word(8)?,
            sequence_number: word(12)?,
        })
    }

    /// True when the command id has the response bit set.
    pub fn is_response(&self) -> bool {
        self.command_id & 0x8000_0000 != 0
    }
}

/// Why a PDU could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MalformedKind {
    /// `command_length` is below the header's 16 octets.
    LengthTooSmall,
    /// `command_length` exceeds the configured bound.
    LengthTooLarge,
    /// The command id is not one of SMPP's.
    UnknownCommandId,
    /// The body does not fit its `command_length` (too short, too long, or a field runs over).
    BodyLength,
    /// A field's content is invalid (a string that is not ASCII, …).
    BodyContent,
}

/// A PDU that could not be decoded, with what to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// The header as read.
    pub header: Header,
    /// What went wrong.
    pub kind: MalformedKind,
    /// False when the stream cannot be read further (the connection must be closed after the
    /// `generic_nack`).
    pub recoverable: bool,
}

impl Malformed {
    /// The `command_status` for the `generic_nack` that answers it.
    pub fn nack_status(&self) -> CommandStatus {
        match self.kind {
            MalformedKind::UnknownCommandId => CommandStatus::EsmeRinvcmdid,
            MalformedKind::LengthTooSmall
            | MalformedKind::LengthTooLarge
            | MalformedKind::BodyLength => CommandStatus::EsmeRinvcmdlen,
            MalformedKind::BodyContent => CommandStatus::EsmeRunknownerr,
        }
    }

    /// False when the malformed PDU was a response (`generic_nack` included): SMPP does not
    /// answer responses, and answering a broken `generic_nack` with another could loop forever.
    pub fn deserves_nack(&self) -> bool {
        !self.header.is_response()
    }
}

/// One PDU read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A decoded PDU.
    Command(Box<Command>),
    /// A PDU that could not be decoded.
    Malformed(Malformed),
}

/// Reads PDUs out of a byte stream.
#[derive(Debug)]
pub struct PduReader {
    buffer: BytesMut,
    pdu_size_max: usize,
    /// Body octets of an oversized PDU still to be thrown away.
    skip_remaining: usize,
    /// Set once the stream cannot be framed any more; everything after is ignored.
    dead: bool,
}

impl PduReader {
    /// A reader that refuses PDUs longer than `pdu_size_max` (at least 16).
    pub fn new(pdu_size_max: usize) -> PduReader {
        PduReader {
            buffer: BytesMut::new(),
            pdu_size_max: pdu_size_max.max(HEADER_LEN),
            skip_remaining: 0,
            dead: false,
        }
    }

    /// Drops buffered octets, for a new connection.
    pub fn reset(&mut self) {
        self.buffer.clear();
        self.skip_remaining = 0;
        self.dead = false;
    }

    /// Appends received octets. Call [`PduReader::next_frame`] until it returns `None` after each
    /// push, so the buffer never holds more than one partial PDU plus one push.
    pub fn push(&mut self, octets: &[u8]) {
        if self.dead {
            return;
        }
        let mut octets = octets;
        if self.skip_remaining > 0 {
            let n = self.skip_remaining.min(octets.len());
            self.skip_remaining -= n;
            octets = &octets[n..];
        }
        self.buffer.extend_from_slice(octets);
    }

    /// Octets buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole PDU, or `None` when more octets are needed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.dead || self.skip_remaining > 0 {
            return None;
        }
        let header = Header::parse(&self.buffer)?;
        let length = usize::try_from(header.command_length).unwrap_or(usize::MAX);
        if length < HEADER_LEN {
            self.dead = true;
            self.buffer.clear();
            return Some(Frame::Malformed(Malformed {
                header,
                kind: MalformedKind::LengthTooSmall,
                recoverable: false,
            }));
        }
        if length > self.pdu_size_max {
            let available = self.buffer.len().min(length);
            self.buffer.advance(available);
            self.skip_remaining = length - available;
            return Some(Frame::Malformed(Malformed {
                header,
                kind: MalformedKind::LengthTooLarge,
                recoverable: true,
            }));
        }
        if self.buffer.len() < length {
            return None;
        }
        let mut pdu = self.buffer.split_to(length);
        pdu.advance(4);
        Some(decode_body(header, pdu))
    }
}

/// Decodes everything after `command_length` of one PDU.
fn decode_body(header: Header, mut rest: BytesMut) -> Frame {
    let malformed = |kind| {
        Frame::Malformed(Malformed {
            header,
            kind,
            recoverable: true,
        })
    };
    if matches!(CommandId::from(header.command_id), CommandId::Other(_)) {
        return malformed(MalformedKind::UnknownCommandId);
    }
    let expected = rest.len();
    match Command::decode(&mut rest, expected) {
        Ok((command, used)) if used == expected => {
            // rusmpp yields no PDU when a body is present where none may be, or absent where
            // one must be. A response with an error status may omit its body (SMPP 3.4 §4.4.2),
            // so only requests are held to it.
            if command.pdu().is_none() && !header.is_response() {
                return malformed(MalformedKind::BodyLength);
            }
            Frame::Command(Box::new(command))
        }
        Ok(_) => malformed(MalformedKind::BodyLength),
        Err(e) => match e.kind() {
            // A string that runs past the body or a field longer than the body left are length
            // problems; a string that is not ASCII is a content problem.
            DecodeErrorKind::UnexpectedEof
            | DecodeErrorKind::OctetStringDecodeError(_)
            | DecodeErrorKind::COctetStringDecodeError(
                COctetStringDecodeError::NotNullTerminated
                | COctetStringDecodeError::TooFewBytes { .. },
            ) => malformed(MalformedKind::BodyLength),
            _ => malformed(MalformedKind::BodyContent),
        },
    }
}

/// Encodes a command with its `command_length`.
pub fn encode(command: &Command) -> Vec<u8> {
    // command_length counts itself (4 octets) and everything rusmpp encodes after it.
    let length = 4 + command.length();
    let mut out = BytesMut::with_capacity(length);
    out.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes());
    command.encode(&mut out);
    out.to_vec()
}

/// Encodes a body-less PDU (`generic_nack`, `enquire_link`, `unbind`, their responses) directly.
pub fn encode_header_only(
    command_id: CommandId,
    status: CommandStatus,
    sequence_number: u32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&(HEADER_LEN as u32).to_be_bytes());
    out.extend_from_slice(&u32::from(command_id).to_be_bytes());
    out.extend_from_slice(&u32::from(status).to_be_bytes());
    out.extend_from_slice(&sequence_number.to_be_bytes());
    out
}

/// Encodes a command of `pdu` with `status` and `sequence_number`.
pub fn encode_pdu(status: CommandStatus, sequence_number: u32, pdu: impl Into<Pdu>) -> Vec<u8> {
    encode(&Command::new(status, sequence_number, pdu))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(reader: &mut PduReader) -> Vec<Frame> {
        std::iter::from_fn(|| reader.next_frame()).collect()
    }

    #[test]
    fn reads_pdus_split_anywhere() {
        let mut stream = encode_header_only(CommandId::EnquireLink, CommandStatus::EsmeRok, 7);
        stream.extend(encode_header_only(
            CommandId::UnbindResp,
            CommandStatus::EsmeRok,
            8,
        ));
        for cut in 0..stream.len() {
            let mut reader = PduReader::new(PDU_SIZE_MAX_DEFAULT);
            reader.push(&stream[..cut]);
            let mut got = frames(&mut reader);
            reader.push(&stream[cut..]);
            got.extend(frames(&mut reader));
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert!(
                matches!(&got[0], Frame::Command(c) if c.id() == CommandId::EnquireLink && c.sequence_number() == 7)
            );
            assert!(matches!(&got[1], Frame::Command(c) if c.id() == CommandId::UnbindResp));
        }
    }

    #[test]
    fn unknown_command_ids_are_malformed_and_the_stream_goes_on() {
        let mut reader = PduReader::new(PDU_SIZE_MAX_DEFAULT);
        let mut junk = vec![
            0, 0, 0, 20, 0, 0, 0x0F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4,
        ];
        junk.extend(encode_header_only(
            CommandId::EnquireLink,
            CommandStatus::EsmeRok,
            10,
        ));
        reader.push(&junk);
        let got = frames(&mut reader);
        let Frame::Malformed(m) = got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(
            (m.kind, m.header.sequence_number),
            (MalformedKind::UnknownCommandId, 9)
        );
        assert_eq!(m.nack_status(), CommandStatus::EsmeRinvcmdid);
        assert!(m.deserves_nack());
        assert!(matches!(&got[1], Frame::Command(c) if c.id() == CommandId::EnquireLink));
    }

    #[test]
    fn a_length_below_the_header_kills_the_stream() {
        let mut reader = PduReader::new(PDU_SIZE_MAX_DEFAULT);
        reader.push(&[
            0, 0, 0, 8, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF,
        ]);
        let got = frames(&mut reader);
        assert_eq!(got.len(), 1);
        let Frame::Malformed(m) = got[0] else {
            panic!()
        };
        assert_eq!(
            (m.kind, m.recoverable),
            (MalformedKind::LengthTooSmall, false)
        );
        reader.push(&encode_header_only(
            CommandId::EnquireLink,
            CommandStatus::EsmeRok,
            2,
        ));
        assert!(reader.next_frame().is_none());
    }

    #[test]
    fn an_oversized_pdu_is_skipped_without_buffering() {
        let mut reader = PduReader::new(64);
        let mut big = vec![0, 0, 0x10, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 3];
        reader.push(&big);
        let Some(Frame::Malformed(m)) = reader.next_frame() else {
            panic!()
        };
        assert_eq!(
            (m.kind, m.recoverable),
            (MalformedKind::LengthTooLarge, true)
        );
        assert_eq!(m.nack_status(), CommandStatus::EsmeRinvcmdlen);
        big = vec![0xAA; 0x1000 - 16 - 10];
        reader.push(&big);
        assert_eq!(reader.buffered(), 0);
        assert!(reader.next_frame().is_none());
        let mut tail = vec![0xAA; 10];
        tail.extend(encode_header_only(
            CommandId::EnquireLink,
            CommandStatus::EsmeRok,
            4,
        ));
        reader.push(&tail);
        assert!(matches!(reader.next_frame(), Some(Frame::Command(c)) if c.sequence_number() == 4));
    }

    #[test]
    fn bodies_that_lie_about_their_length_are_malformed() {
        // enquire_link with a body.
        let mut reader = PduReader::new(PDU_SIZE_MAX_DEFAULT);
        reader.push(&[0, 0, 0, 17, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert!(
            matches!(reader.next_frame(), Some(Frame::Malformed(m)) if m.kind == MalformedKind::BodyLength)
        );
        // submit_sm cut short.
        reader.push(&[
            0, 0, 0, 20, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 1, b'1',
        ]);
        assert!(
            matches!(reader.next_frame(), Some(Frame::Malformed(m)) if m.kind == MalformedKind::BodyLength)
        );
        // bind_transceiver with a trailing octet.
        let mut bind = vec![0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 3];
        bind.extend_from_slice(b"id\0pw\0\0\x34\x00\x00\0\x99");
        let n = bind.len() as u32;
        bind[..4].copy_from_slice(&n.to_be_bytes());
        reader.push(&bind);
        assert!(
            matches!(reader.next_frame(), Some(Frame::Malformed(m)) if m.kind == MalformedKind::BodyLength)
        );
    }

    #[test]
    fn an_error_response_may_omit_its_body() {
        let mut reader = PduReader::new(PDU_SIZE_MAX_DEFAULT);
        reader.push(&encode_header_only(
            CommandId::SubmitSmResp,
            CommandStatus::EsmeRthrottled,
            5,
        ));
        let Some(Frame::Command(c)) = reader.next_frame() else {
            panic!()
        };
        assert_eq!(
            (c.id(), c.status(), c.pdu()),
            (CommandId::SubmitSmResp, CommandStatus::EsmeRthrottled, None)
        );
    }

    #[test]
    fn malformed_responses_get_no_nack() {
        let mut reader = PduReader::new(PDU_SIZE_MAX_DEFAULT);
        reader.push(&[0, 0, 0, 17, 0x80, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let Some(Frame::Malformed(m)) = reader.next_frame() else {
            panic!()
        };
        assert!(!m.deserves_nack());
    }
}
