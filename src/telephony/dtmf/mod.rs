//! DTMF: the keys a payer presses, however the trunk carries them.
//!
//! Three carriers, each a sans-IO core that takes what arrived and yields
//! digits:
//!
//! - [`rfc4733`]: RTP telephone-event packets, deduplicated so that each
//!   key press is one digit whatever the network repeated, lost or
//!   reordered; and a sender that plans such packets.
//! - [`inband`]: tones in the audio itself, detected after ITU-T Q.24.
//! - [`info`]: SIP INFO bodies (`application/dtmf-relay`,
//!   `application/dtmf`, `audio/telephone-event`).
//!
//! [`receiver::DigitReceiver`] puts the three behind one per-call object
//! that picks the carrier the configuration and the SDP offer call for.
//! [`generate`] makes DTMF audio for tests and for SIPp's `rtp_stream`
//! files, and [`detect`] runs the in-band detector over WAV recordings for
//! `telepay dtmf detect`.
//!
//! Digits are what a payer types as a PIN: nothing in this module logs them
//! or puts input text into an error message.

pub mod detect;
pub mod generate;
pub mod inband;
pub mod info;
pub mod receiver;
pub mod rfc4733;

use std::fmt;

pub use detect::{DetectError, detect_file, detect_files};
pub use inband::{DigitEvent, InbandConfig, InbandDetector, InbandEvent};
pub use info::{InfoDigit, InfoError, parse_info};
pub use receiver::{DigitReceiver, DtmfMode, DtmfSource, ReceivedDigit};
pub use rfc4733::{
    EventPacket, Handled, PlannedPacket, Rfc4733Error, Rfc4733Event, Rfc4733Receiver,
    Rfc4733Sender, TelephoneEvent,
};

/// Errors of the DTMF module as a whole; each part has its own enum and
/// this one wraps them for callers that handle them together.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DtmfError {
    /// A telephone-event packet or sender request was refused.
    #[error(transparent)]
    Rfc4733(#[from] rfc4733::Rfc4733Error),
    /// A SIP INFO body was refused.
    #[error(transparent)]
    Info(#[from] info::InfoError),
    /// Tone generation was asked for something out of range.
    #[error(transparent)]
    Generate(#[from] generate::GenerateError),
    /// A recording could not be analysed.
    #[error(transparent)]
    Detect(#[from] detect::DetectError),
    /// A configured DTMF mode name is not one of the four.
    #[error("unknown DTMF mode (expected auto, rfc4733, inband or info)")]
    UnknownMode,
}

/// One key of the 4×4 DTMF keypad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digit {
    /// 0
    D0,
    /// 1
    D1,
    /// 2
    D2,
    /// 3
    D3,
    /// 4
    D4,
    /// 5
    D5,
    /// 6
    D6,
    /// 7
    D7,
    /// 8
    D8,
    /// 9
    D9,
    /// `*`
    Star,
    /// `#`
    Hash,
    /// A (fourth column)
    A,
    /// B
    B,
    /// C
    C,
    /// D
    D,
}

/// Keys by keypad position: rows are the low group (697, 770, 852,
/// 941 Hz), columns the high group (1209, 1336, 1477, 1633 Hz).
const KEYPAD: [[Digit; 4]; 4] = [
    [Digit::D1, Digit::D2, Digit::D3, Digit::A],
    [Digit::D4, Digit::D5, Digit::D6, Digit::B],
    [Digit::D7, Digit::D8, Digit::D9, Digit::C],
    [Digit::Star, Digit::D0, Digit::Hash, Digit::D],
];

/// Low-group (row) frequencies in hertz.
pub const ROW_HZ: [u32; 4] = [697, 770, 852, 941];
/// High-group (column) frequencies in hertz.
pub const COL_HZ: [u32; 4] = [1209, 1336, 1477, 1633];

impl Digit {
    /// All sixteen keys in RFC 4733 event-code order.
    pub const ALL: [Digit; 16] = [
        Digit::D0,
        Digit::D1,
        Digit::D2,
        Digit::D3,
        Digit::D4,
        Digit::D5,
        Digit::D6,
        Digit::D7,
        Digit::D8,
        Digit::D9,
        Digit::Star,
        Digit::Hash,
        Digit::A,
        Digit::B,
        Digit::C,
        Digit::D,
    ];

    /// The key for a character: `0`–`9`, `*`, `#`, `A`–`D` (either case).
    pub fn from_char(c: char) -> Option<Digit> {
        Some(match c {
            '0'..='9' => Digit::ALL[(c as u8 - b'0') as usize],
            '*' => Digit::Star,
            '#' => Digit::Hash,
            'A' | 'a' => Digit::A,
            'B' | 'b' => Digit::B,
            'C' | 'c' => Digit::C,
            'D' | 'd' => Digit::D,
            _ => return None,
        })
    }

    /// The character printed for this key (capital letters).
    pub fn to_char(self) -> char {
        match self {
            Digit::Star => '*',
            Digit::Hash => '#',
            Digit::A => 'A',
            Digit::B => 'B',
            Digit::C => 'C',
            Digit::D => 'D',
            other => (b'0' + other.event_code()) as char,
        }
    }

    /// The key for an RFC 4733 event code (0–15); other codes (flash,
    /// modem tones…) are not keys.
    pub fn from_event_code(code: u8) -> Option<Digit> {
        Digit::ALL.get(usize::from(code)).copied()
    }

    /// The RFC 4733 event code of this key.
    pub fn event_code(self) -> u8 {
        self as u8
    }

    /// Keypad row (0–3, low group) and column (0–3, high group).
    pub fn row_col(self) -> (usize, usize) {
        for (r, row) in KEYPAD.iter().enumerate() {
            for (c, &key) in row.iter().enumerate() {
                if key == self {
                    return (r, c);
                }
            }
        }
        // Every key is on the keypad; this line is never reached.
        (3, 3)
    }

    /// The key at a keypad position.
    pub fn from_row_col(row: usize, col: usize) -> Option<Digit> {
        KEYPAD.get(row).and_then(|r| r.get(col)).copied()
    }

    /// The two frequencies of this key in hertz: (low group, high group).
    pub fn frequencies_hz(self) -> (u32, u32) {
        let (r, c) = self.row_col();
        (ROW_HZ[r], COL_HZ[c])
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_char())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_codes_and_positions_agree() {
        for (code, digit) in Digit::ALL.iter().enumerate() {
            assert_eq!(digit.event_code() as usize, code);
            assert_eq!(Digit::from_event_code(code as u8), Some(*digit));
            assert_eq!(Digit::from_char(digit.to_char()), Some(*digit));
            let (r, c) = digit.row_col();
            assert_eq!(Digit::from_row_col(r, c), Some(*digit));
        }
        assert_eq!(Digit::from_event_code(16), None);
        assert_eq!(Digit::from_char('x'), None);
        assert_eq!(Digit::from_char('b'), Some(Digit::B));
        assert_eq!(Digit::D5.frequencies_hz(), (770, 1336));
        assert_eq!(Digit::Star.frequencies_hz(), (941, 1209));
        assert_eq!(Digit::D.frequencies_hz(), (941, 1633));
        assert_eq!(Digit::Hash.to_string(), "#");
        assert_eq!(Digit::from_row_col(4, 0), None);
    }
}
