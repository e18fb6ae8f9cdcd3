//! Payer texts: the SMPP 3.4 link to the operator's SMSC, GSM 03.38 and UCS-2 text, long
//! messages, the paying-by-text dialogue and receipt texts.
//!
//! Everything here is sans-IO. The pieces and their loops:
//!
//! - [`session::Esme`] is our end of the SMPP link. Feed it [`session::Input`]s (bytes read,
//!   connection up/down, the passage of time) with the current `Instant`, hand it
//!   [`session::Submit`]s, then drain [`session::Esme::poll_output`] until it returns
//!   [`session::Output::Timeout`]: each `Transmit` is written to the socket, `Connect` and
//!   `Disconnect` are done by the driver, each `Event` (a payer's text, a delivery receipt, a
//!   submit's outcome, the link going down) is handled by the caller, and `Timeout(t)` says when
//!   to call again with [`session::Input::Timeout`] if nothing else happens first.
//! - [`dialogue::Dialogues`] holds one dialogue per payer's MSISDN. Feed it a payer's text or a
//!   result from the settlement core; it answers with [`dialogue::Action`]s: texts to send and
//!   [`dialogue::CoreRequest`]s to make. It never calls the core itself.
//! - [`test_smsc::TestSmsc`] is the SMSC's end, for tests and the benchmark.
//!
//! The tokio drivers around them: [`link`] owns the TCP connection and the `Esme`; [`gateway`]
//! runs the dialogues against the settlement service and starts the channel; [`outbox`] sends
//! receipt texts from the persisted outbox.
//! - [`gsm7`], [`encoding`], [`concat`](mod@concat), [`dlr`], [`money`] and [`receipt`] are pure functions
//!   and small tables used by the above.
//!
//! The SMPP PDU types and their body codec come from rusmpp 0.4 (without its tokio codec);
//! [`pdu`] frames them with our own bounds. Message bodies never appear in `Debug` output: types
//! that carry a payer's text print its length only, because a text may be a PIN.

pub mod concat;
pub mod dialogue;
pub mod dlr;
pub mod encoding;
pub mod gateway;
pub mod gsm7;
pub mod link;
pub mod money;
pub mod outbox;
pub mod pdu;
pub mod receipt;
pub mod session;
pub mod stats;
pub mod test_smsc;

/// Errors of the SMS channel. The variants fall in three groups, kept apart in the docs: the
/// peer (SMSC or handset) sent something invalid; the caller asked for something we cannot do;
/// the configuration is unusable. None of them ever carries a message body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmsError {
    // The peer sent something invalid.
    /// Unpacked GSM 7-bit text with an impossible octet or a dangling escape.
    #[error("invalid GSM 7-bit text at offset {offset}: {reason}")]
    InvalidGsm7 {
        /// Where in the text.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// UCS-2 text of odd length or with an unpaired surrogate.
    #[error("invalid UCS-2 text: {reason}")]
    InvalidUcs2 {
        /// What is wrong.
        reason: &'static str,
    },
    /// IA5 text with an octet above 0x7F.
    #[error("invalid IA5 text at offset {offset}")]
    InvalidAscii {
        /// Where in the text.
        offset: usize,
    },
    /// A `data_coding` we do not read as text.
    #[error("unsupported data_coding {data_coding:#04x}")]
    UnsupportedDataCoding {
        /// The value received.
        data_coding: u8,
    },
    /// A user data header whose lengths or numbers are impossible.
    #[error("invalid user data header: {reason}")]
    InvalidUdh {
        /// What is wrong.
        reason: &'static str,
    },
    /// A concatenated message announcing more parts than we accept.
    #[error("concatenated message of {total} parts exceeds {parts_max}")]
    TooManyParts {
        /// Parts announced.
        total: u8,
        /// Our bound.
        parts_max: u8,
    },
    /// The reassembly table is full (overall or for this sender); the SMSC should retry later.
    #[error("too many incomplete concatenated messages")]
    ReassemblyFull,
    /// A delivery receipt we cannot make sense of.
    #[error("invalid delivery receipt: {reason}")]
    InvalidReceipt {
        /// What is missing.
        reason: &'static str,
    },

    // The caller asked for something we cannot do.
    /// A character that GSM 7-bit cannot carry was given to the GSM 7-bit encoder.
    #[error("character {character:?} has no GSM 7-bit form")]
    NotGsm7 {
        /// The character.
        character: char,
    },
    /// A text needing more parts than allowed.
    #[error("text needs {parts} parts, more than {parts_max}")]
    TextTooLong {
        /// Parts needed.
        parts: usize,
        /// The bound.
        parts_max: usize,
    },
    /// A destination address that is not 1 to 20 digits (an optional leading `+` aside).
    #[error("invalid destination address")]
    InvalidAddress,
    /// The submit queue is full.
    #[error("submit queue full ({queue_max} messages)")]
    QueueFull {
        /// The bound.
        queue_max: usize,
    },
    /// A submit id already queued or in flight.
    #[error("submit id {id} is already in use")]
    DuplicateSubmitId {
        /// The id.
        id: u64,
    },
    /// The session binds as a receiver only and cannot submit.
    #[error("the session is bound as a receiver and cannot submit")]
    NotATransmitter,
    /// The session has been shut down.
    #[error("the session is shut down")]
    ShutDown,

    // The configuration is unusable.
    /// A configuration value out of range.
    #[error("invalid SMPP configuration: {field}: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

impl SmsError {
    /// True for errors caused by what the peer sent (as opposed to the caller or configuration).
    pub fn is_peer_error(&self) -> bool {
        matches!(
            self,
            SmsError::InvalidGsm7 { .. }
                | SmsError::InvalidUcs2 { .. }
                | SmsError::InvalidAscii { .. }
                | SmsError::UnsupportedDataCoding { .. }
                | SmsError::InvalidUdh { .. }
                | SmsError::TooManyParts { .. }
                | SmsError::ReassemblyFull
                | SmsError::InvalidReceipt { .. }
        )
    }
}
