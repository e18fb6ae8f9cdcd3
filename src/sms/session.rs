//! Our end (the ESME) of an SMPP 3.4 link, sans-IO.
//!
//! # The loop
//!
//! The driver owns the socket and the clock. It calls [`Esme::handle_input`] with what happened
//! ([`Input::Connected`], [`Input::Receive`] with the octets read, [`Input::Disconnected`],
//! [`Input::Timeout`]) and the current `Instant`, hands messages to send to [`Esme::submit`], then
//! drains [`Esme::poll_output`] until it returns [`Output::Timeout`]:
//!
//! - [`Output::Transmit`]: write these octets to the socket, in order.
//! - [`Output::Connect`]: open a TCP connection to the SMSC, then report `Connected` or
//!   `ConnectFailed`.
//! - [`Output::Disconnect`]: close the connection (after writing what was transmitted before).
//! - [`Output::Event`]: something for the application (see [`Event`]).
//! - [`Output::Timeout`]: call again with [`Input::Timeout`] at this instant if nothing else
//!   happens first.
//! - [`Output::Done`]: the session has unbound for good; drop it.
//!
//! # States
//!
//! One type per state, each consuming itself on input and returning the next:
//! [`Closed`] (waiting to reconnect at a given instant) → [`Connecting`] (the driver connects)
//! → [`Open`] (connected, `bind_*` sent) → [`Bound`] (submits flow, `enquire_link` keeps the link
//! alive) → [`Unbinding`] (our `unbind` sent, waiting for `unbind_resp`) → done. Any loss of the
//! link returns to `Closed` with a reconnect instant from an exponential backoff with jitter
//! (reset once a bind succeeds). Only [`Esme::shutdown`] leads to `Unbinding` and the end.
//!
//! # Submits
//!
//! [`Esme::submit`] encodes and splits the text at once (so a text that cannot be sent is refused
//! there) and queues its parts. While bound, parts go out as long as fewer than `window_size` are
//! awaiting their `submit_sm_resp`. `ESME_RTHROTTLED` or `ESME_RMSGQFUL` put the part back at the
//! head of the queue and pause all sending for a backoff that doubles with each consecutive
//! refusal (up to a bound) and resets on the next success; a part refused `retries_max` times
//! fails. Each submit ends in exactly one [`Event::SubmitAccepted`] (all parts accepted, with
//! their message ids) or [`Event::SubmitFailed`]. A part whose response does not come within
//! `response_timeout_ms`, or that was in flight when the link went down, fails its message: the
//! SMSC may or may not have taken it, and only the caller (the receipts outbox) knows whether a
//! second copy is acceptable. Parts not yet sent stay queued across reconnects.
//!
//! # What the SMSC sends
//!
//! `deliver_sm` carries payers' texts (joined from concatenated parts, see [`super::concat`]) and
//! delivery receipts (see [`super::dlr`]); both are answered with `deliver_sm_resp`, whose status
//! is `ESME_RX_P_APPN` for a text that can never be understood (bad encoding, absurd UDH) and
//! `ESME_RX_T_APPN` when the reassembly table is full (the SMSC retries later). `enquire_link` is
//! answered, `unbind` is answered and the link closed (then reconnected). A PDU that cannot be
//! decoded gets a `generic_nack` (see [`super::pdu`]); a request we do not serve gets a
//! `generic_nack` with `ESME_RINVCMDID`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use rusmpp::pdus::{
    BindReceiver, BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm,
};
use rusmpp::tlvs::{Tlv, TlvValue};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};

use super::concat::{self, ConcatInfo, Offer, Reassembler, ReassemblyLimits};
use super::dlr::{self, DeliveryReceipt};
use super::pdu::{self, Frame, Malformed, PduReader};
use super::{SmsError, encoding};

/// How the ESME binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// `bind_transceiver`: submit and receive on one connection (the default).
    Transceiver,
    /// `bind_transmitter`: submit only.
    Transmitter,
    /// `bind_receiver`: receive only.
    Receiver,
}

impl BindMode {
    fn can_submit(self) -> bool {
        self != BindMode::Receiver
    }

    fn response_id(self) -> CommandId {
        match self {
            BindMode::Transceiver => CommandId::BindTransceiverResp,
            BindMode::Transmitter => CommandId::BindTransmitterResp,
            BindMode::Receiver => CommandId::BindReceiverResp,
        }
    }
}

/// The SMPP link's settings. Host and port belong to the driver; everything here is what the
/// session needs.
#[derive(Clone, PartialEq, Eq)]
pub struct EsmeConfig {
    /// `system_id` (at most 15 ASCII characters).
    pub system_id: String,
    /// `password` (at most 8 ASCII characters). Never printed by `Debug`.
    pub password: String,
    /// `system_type` (at most 12 ASCII characters, often empty).
    pub system_type: String,
    /// `addr_ton` of the bind.
    pub addr_ton: u8,
    /// `addr_npi` of the bind.
    pub addr_npi: u8,
    /// `address_range` of the bind (at most 40 ASCII characters, often empty).
    pub address_range: String,
    /// Transceiver, transmitter or receiver.
    pub bind_mode: BindMode,
    /// Our number or short code, the `source_addr` of what we submit (at most 20 characters).
    pub source_addr: String,
    /// `source_addr_ton` (5 = alphanumeric, 3 = network specific/short code, 1 = international).
    pub source_addr_ton: u8,
    /// `source_addr_npi`.
    pub source_addr_npi: u8,
    /// `dest_addr_ton` of payers' numbers (1 = international).
    pub dest_addr_ton: u8,
    /// `dest_addr_npi` of payers' numbers (1 = ISDN/E.164).
    pub dest_addr_npi: u8,
    /// Ask for delivery receipts (`registered_delivery = 1`).
    pub registered_delivery: bool,
    /// The most `submit_sm` awaiting their response.
    pub window_size: usize,
    /// The most messages queued and in flight.
    pub submit_queue_max: usize,
    /// The most parts one outgoing text may take.
    pub parts_max: usize,
    /// How long a `submit_sm` may wait for its response.
    pub response_timeout_ms: u64,
    /// How long the driver may take to connect.
    pub connect_timeout_ms: u64,
    /// How long the SMSC may take to answer the bind.
    pub bind_timeout_ms: u64,
    /// Send `enquire_link` after this long without receiving anything.
    pub enquire_link_interval_ms: u64,
    /// The link is dead when an `enquire_link` is not answered within this.
    pub enquire_link_timeout_ms: u64,
    /// How long to wait for `unbind_resp`.
    pub unbind_timeout_ms: u64,
    /// The first pause after `ESME_RTHROTTLED` or `ESME_RMSGQFUL`.
    pub throttle_backoff_ms: u64,
    /// The longest such pause.
    pub throttle_backoff_max_ms: u64,
    /// How many times one part may be refused for throttling before its message fails.
    pub retries_max: u32,
    /// The first reconnect delay.
    pub reconnect_backoff_ms: u64,
    /// The longest reconnect delay.
    pub reconnect_backoff_max_ms: u64,
    /// Seed of the jitter on reconnect delays (different per process, e.g. from the clock).
    pub jitter_seed: u64,
    /// The largest PDU accepted from the SMSC.
    pub pdu_size_max: usize,
    /// Bounds on joining received long messages.
    pub reassembly: ReassemblyLimits,
}

impl Default for EsmeConfig {
    fn default() -> Self {
        EsmeConfig {
            system_id: String::new(),
            password: String::new(),
            system_type: String::new(),
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
            bind_mode: BindMode::Transceiver,
            source_addr: String::new(),
            source_addr_ton: 0,
            source_addr_npi: 0,
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            registered_delivery: true,
            window_size: 10,
            submit_queue_max: 10_000,
            parts_max: 6,
            response_timeout_ms: 10_000,
            connect_timeout_ms: 10_000,
            bind_timeout_ms: 10_000,
            enquire_link_interval_ms: 30_000,
            enquire_link_timeout_ms: 10_000,
            unbind_timeout_ms: 5_000,
            throttle_backoff_ms: 500,
            throttle_backoff_max_ms: 30_000,
            retries_max: 8,
            reconnect_backoff_ms: 1_000,
            reconnect_backoff_max_ms: 60_000,
            jitter_seed: 0x9E37_79B9_7F4A_7C15,
            pdu_size_max: pdu::PDU_SIZE_MAX_DEFAULT,
            reassembly: ReassemblyLimits::default(),
        }
    }
}

impl fmt::Debug for EsmeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsmeConfig")
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("system_type", &self.system_type)
            .field("address_range", &self.address_range)
            .field("bind_mode", &self.bind_mode)
            .field("source_addr", &self.source_addr)
            .field("window_size", &self.window_size)
            .field("enquire_link_interval_ms", &self.enquire_link_interval_ms)
            .finish_non_exhaustive()
    }
}

impl EsmeConfig {
    /// Checks lengths and ranges; the session is built only from a valid configuration.
    pub fn validate(&self) -> Result<(), SmsError> {
        let ascii = |field, value: &str, max: usize| {
            if !value.is_ascii() || value.contains('\0') {
                Err(SmsError::Config {
                    field,
                    reason: "must be ASCII without NUL",
                })
            } else if value.len() > max {
                Err(SmsError::Config {
                    field,
                    reason: "too long",
                })
            } else {
                Ok(())
            }
        };
        ascii("system_id", &self.system_id, 15)?;
        ascii("password", &self.password, 8)?;
        ascii("system_type", &self.system_type, 12)?;
        ascii("address_range", &self.address_range, 40)?;
        ascii("source_addr", &self.source_addr, 20)?;
        let positive = |field, value: u64| {
            if value == 0 {
                Err(SmsError::Config {
                    field,
                    reason: "must be positive",
                })
            } else {
                Ok(())
            }
        };
        positive("window_size", self.window_size as u64)?;
        positive("submit_queue_max", self.submit_queue_max as u64)?;
        positive("parts_max", self.parts_max as u64)?;
        positive("response_timeout_ms", self.response_timeout_ms)?;
        positive("connect_timeout_ms", self.connect_timeout_ms)?;
        positive("bind_timeout_ms", self.bind_timeout_ms)?;
        positive("enquire_link_interval_ms", self.enquire_link_interval_ms)?;
        positive("enquire_link_timeout_ms", self.enquire_link_timeout_ms)?;
        positive("unbind_timeout_ms", self.unbind_timeout_ms)?;
        positive("throttle_backoff_ms", self.throttle_backoff_ms)?;
        positive("reconnect_backoff_ms", self.reconnect_backoff_ms)?;
        if self.parts_max > 255 {
            return Err(SmsError::Config {
                field: "parts_max",
                reason: "at most 255",
            });
        }
        if self.pdu_size_max < 512 {
            return Err(SmsError::Config {
                field: "pdu_size_max",
                reason: "below 512 octets a full submit_sm does not fit",
            });
        }
        if self.throttle_backoff_max_ms < self.throttle_backoff_ms
            || self.reconnect_backoff_max_ms < self.reconnect_backoff_ms
        {
            return Err(SmsError::Config {
                field: "backoff",
                reason: "maximum below initial",
            });
        }
        Ok(())
    }
}

/// A text to send to a payer.
#[derive(Clone, PartialEq, Eq)]
pub struct Submit {
    /// The caller's id for this message, echoed in the outcome event.
    pub id: u64,
    /// The payer's number: digits, optionally with a leading `+`.
    pub to: String,
    /// The text.
    pub text: String,
}

impl fmt::Debug for Submit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submit")
            .field("id", &self.id)
            .field("to", &self.to)
            .field("text_chars", &self.text.chars().count())
            .finish()
    }
}

/// A payer's text, joined from its parts.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The payer's number (`source_addr`).
    pub from: String,
    /// Our number it was sent to (`destination_addr`).
    pub to: String,
    /// The text. It may be a PIN: never log it.
    pub text: String,
    /// How many parts it came in.
    pub parts: u8,
}

impl fmt::Debug for Delivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivered")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("text_chars", &self.text.chars().count())
            .field("parts", &self.parts)
            .finish()
    }
}

/// Why a submit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitFailure {
    /// The SMSC refused a part with this `command_status`.
    Refused(u32),
    /// The SMSC kept throttling a part; the last status is given.
    RetriesExhausted(u32),
    /// A part's response did not come in time.
    ResponseTimeout,
    /// The link went down with a part in flight.
    LinkLost,
    /// The session was shut down before the message was sent.
    ShutDown,
}

/// Why the link went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkDownReason {
    /// The driver could not connect.
    ConnectFailed,
    /// Connecting took longer than `connect_timeout_ms`.
    ConnectTimeout,
    /// The SMSC refused the bind with this status.
    BindRejected(u32),
    /// The SMSC did not answer the bind in time.
    BindTimeout,
    /// `enquire_link` went unanswered: the link is dead.
    DeadLink,
    /// The SMSC sent `unbind`.
    UnbindBySmsc,
    /// The connection closed.
    Disconnected,
    /// The SMSC's byte stream cannot be framed any more.
    Framing,
}

/// Things the application hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The bind succeeded; the SMSC gave this `system_id`.
    Bound {
        /// The SMSC's `system_id`.
        smsc_system_id: String,
    },
    /// The link is down; the session reconnects at `reconnect_at`.
    LinkDown {
        /// Why.
        reason: LinkDownReason,
        /// When the next connection attempt is due.
        reconnect_at: Instant,
    },
    /// A payer's text.
    Delivered(Delivered),
    /// A delivery receipt for something we submitted.
    DeliveryReceipt(DeliveryReceipt),
    /// Every part of a submit was accepted by the SMSC.
    SubmitAccepted {
        /// The caller's id.
        id: u64,
        /// The SMSC's message id of each part, in order.
        message_ids: Vec<String>,
    },
    /// A submit failed (some parts may have been accepted).
    SubmitFailed {
        /// The caller's id.
        id: u64,
        /// Why.
        reason: SubmitFailure,
    },
    /// A `deliver_sm` we answered with an error status.
    InboundRejected {
        /// The sender.
        from: String,
        /// What was wrong.
        error: SmsError,
    },
    /// An incomplete long message given up on.
    ReassemblyExpired(concat::Expired),
    /// The SMSC sent something we answered with `generic_nack` (or dropped, for a response).
    PeerMalformed(Malformed),
    /// The session has unbound for good.
    Unbound,
}

/// What the driver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// The connection asked for by [`Output::Connect`] is up.
    Connected,
    /// The connection asked for by [`Output::Connect`] could not be made.
    ConnectFailed,
    /// Octets read from the connection.
    Receive(&'a [u8]),
    /// The connection closed or failed.
    Disconnected,
    /// Time has passed (the instant is the `now` argument).
    Timeout,
}

/// What the session asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these octets.
    Transmit(Vec<u8>),
    /// Connect to the SMSC.
    Connect,
    /// Close the connection.
    Disconnect,
    /// Something happened.
    Event(Event),
    /// Nothing more to do before this instant.
    Timeout(Instant),
    /// The session is over.
    Done,
}

/// Waiting to (re)connect.
#[derive(Debug)]
pub struct Closed {
    reconnect_at: Instant,
}

/// The driver is connecting.
#[derive(Debug)]
pub struct Connecting {
    deadline: Instant,
}

/// Connected, bind sent.
#[derive(Debug)]
pub struct Open {
    bind_seq: u32,
    deadline: Instant,
}

/// Bound: submits flow.
#[derive(Debug)]
pub struct Bound {
    inflight: HashMap<u32, InFlight>,
    /// When our unanswered `enquire_link` declares the link dead.
    enquire_deadline: Option<Instant>,
    last_receive: Instant,
    throttled_until: Option<Instant>,
    throttle_backoff_ms: u64,
}

/// Our `unbind` is out.
#[derive(Debug)]
pub struct Unbinding {
    seq: u32,
    deadline: Instant,
    inflight: HashMap<u32, InFlight>,
}

#[derive(Debug)]
enum State {
    Closed(Closed),
    Connecting(Connecting),
    Open(Open),
    Bound(Bound),
    Unbinding(Unbinding),
    Done,
}

#[derive(Debug, Clone)]
struct QueuedPart {
    id: u64,
    index: usize,
    short_message: Vec<u8>,
    refusals: u32,
}

#[derive(Debug, Clone)]
struct InFlight {
    part: QueuedPart,
    deadline: Instant,
}

#[derive(Debug)]
struct OutMessage {
    to: String,
    data_coding: u8,
    udh: bool,
    message_ids: Vec<Option<String>>,
    /// Parts in flight.
    inflight: usize,
    failed: bool,
}

/// What all states share.
#[derive(Debug)]
struct Common {
    config: EsmeConfig,
    reader: PduReader,
    out: VecDeque<Output>,
    seq: u32,
    queue: VecDeque<QueuedPart>,
    messages: HashMap<u64, OutMessage>,
    reassembler: Reassembler,
    concat_reference: u8,
    reconnect_attempts: u32,
    rng: u64,
    shutdown: bool,
}

/// Our end of the SMPP link. See the module documentation for the loop.
#[derive(Debug)]
pub struct Esme {
    common: Common,
    state: State,
}

impl Esme {
    /// A session that will connect at `now`.
    pub fn new(config: EsmeConfig, now: Instant) -> Result<Esme, SmsError> {
        config.validate()?;
        let reader = PduReader::new(config.pdu_size_max);
        let reassembler = Reassembler::new(config.reassembly);
        let rng = config.jitter_seed | 1;
        let connect_deadline = now + ms(config.connect_timeout_ms);
        let mut out = VecDeque::new();
        out.push_back(Output::Connect);
        Ok(Esme {
            common: Common {
                config,
                reader,
                out,
                seq: 0,
                queue: VecDeque::new(),
                messages: HashMap::new(),
                reassembler,
                concat_reference: 0,
                reconnect_attempts: 0,
                rng,
                shutdown: false,
            },
            state: State::Connecting(Connecting {
                deadline: connect_deadline,
            }),
        })
    }

    /// True while bound.
    pub fn is_bound(&self) -> bool {
        matches!(self.state, State::Bound(_))
    }

    /// Messages queued or in flight.
    pub fn pending_messages(&self) -> usize {
        self.common.messages.len()
    }

    /// Parts awaiting their `submit_sm_resp`.
    pub fn parts_in_flight(&self) -> usize {
        match &self.state {
            State::Bound(b) => b.inflight.len(),
            State::Unbinding(u) => u.inflight.len(),
            _ => 0,
        }
    }

    /// Queues a text. It is checked, encoded and split now; its outcome comes as one
    /// [`Event::SubmitAccepted`] or [`Event::SubmitFailed`].
    pub fn submit(&mut self, now: Instant, submit: Submit) -> Result<(), SmsError> {
        let c = &mut self.common;
        if c.shutdown {
            return Err(SmsError::ShutDown);
        }
        if !c.config.bind_mode.can_submit() {
            return Err(SmsError::NotATransmitter);
        }
        if c.messages.len() >= c.config.submit_queue_max {
            return Err(SmsError::QueueFull {
                queue_max: c.config.submit_queue_max,
            });
        }
        if c.messages.contains_key(&submit.id) {
            return Err(SmsError::DuplicateSubmitId { id: submit.id });
        }
        let to = normalise_address(&submit.to)?;
        let split = concat::split(&submit.text, c.concat_reference, c.config.parts_max)?;
        if split.udh {
            c.concat_reference = c.concat_reference.wrapping_add(1);
        }
        let parts = split.parts.len();
        c.messages.insert(
            submit.id,
            OutMessage {
                to,
                data_coding: split.alphabet.data_coding(),
                udh: split.udh,
                message_ids: vec![None; parts],
                inflight: 0,
                failed: false,
            },
        );
        for (index, short_message) in split.parts.into_iter().enumerate() {
            c.queue.push_back(QueuedPart {
                id: submit.id,
                index,
                short_message,
                refusals: 0,
            });
        }
        self.pump(now);
        Ok(())
    }

    /// Unbinds cleanly: queued messages fail with [`SubmitFailure::ShutDown`], parts in flight
    /// get until `unbind_timeout_ms` for their responses, then the connection is closed and
    /// [`Output::Done`] follows.
    pub fn shutdown(&mut self, now: Instant) {
        if self.common.shutdown {
            return;
        }
        self.common.shutdown = true;
        self.common.fail_queued(SubmitFailure::ShutDown);
        let c = &mut self.common;
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match state {
            State::Bound(bound) => bound.unbind(c, now),
            State::Open(_) | State::Connecting(_) => {
                c.out.push_back(Output::Disconnect);
                c.finish()
            }
            State::Closed(_) => c.finish(),
            State::Unbinding(u) => State::Unbinding(u),
            State::Done => State::Done,
        };
    }

    /// Feeds what happened.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        let state = std::mem::replace(&mut self.state, State::Done);
        let c = &mut self.common;
        self.state = match (state, input) {
            (State::Done, _) => State::Done,
            (State::Connecting(_), Input::Connected) => {
                c.reader.reset();
                c.send_bind(now)
            }
            (State::Connecting(_), Input::ConnectFailed | Input::Disconnected) => {
                c.link_down(now, LinkDownReason::ConnectFailed, &mut HashMap::new())
            }
            (
                state @ (State::Open(_) | State::Bound(_) | State::Unbinding(_)),
                Input::Disconnected,
            ) => {
                let mut inflight = state.into_inflight();
                if c.shutdown {
                    c.fail_inflight(&mut inflight, SubmitFailure::LinkLost);
                    c.finish()
                } else {
                    c.link_down(now, LinkDownReason::Disconnected, &mut inflight)
                }
            }
            (state, Input::Receive(octets)) if state.is_connected() => {
                c.reader.push(octets);
                let mut state = state;
                while let Some(frame) = c.reader.next_frame() {
                    state = match frame {
                        Frame::Command(command) => state.handle_command(c, now, *command),
                        Frame::Malformed(m) => state.handle_malformed(c, now, m),
                    };
                    if !state.is_connected() {
                        break;
                    }
                }
                state
            }
            (state, Input::Timeout) => state.handle_timeout(c, now),
            // Inputs that do not fit the state (a late `Connected`, a `Disconnected` while
            // closed) change nothing.
            (state, _) => state,
        };
        self.pump(now);
    }

    /// The next thing to do. Drain until [`Output::Timeout`] or [`Output::Done`].
    pub fn poll_output(&mut self) -> Output {
        if let Some(output) = self.common.out.pop_front() {
            return output;
        }
        match self.deadline() {
            Some(t) => Output::Timeout(t),
            None => Output::Done,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let c = &self.common;
        let reassembly = c.reassembler.next_deadline();
        let own = match &self.state {
            State::Closed(s) => Some(s.reconnect_at),
            State::Connecting(s) => Some(s.deadline),
            State::Open(s) => Some(s.deadline),
            State::Bound(b) => {
                let enquire = match b.enquire_deadline {
                    Some(deadline) => deadline,
                    None => b.last_receive + ms(c.config.enquire_link_interval_ms),
                };
                let responses = b.inflight.values().map(|f| f.deadline).min();
                let throttle = b.throttled_until.filter(|_| !c.queue.is_empty());
                [Some(enquire), responses, throttle]
                    .into_iter()
                    .flatten()
                    .min()
            }
            State::Unbinding(u) => Some(u.deadline),
            State::Done => return None,
        };
        [own, reassembly].into_iter().flatten().min()
    }

    /// Starts connecting when it is time, and sends queued parts while the window allows.
    fn pump(&mut self, now: Instant) {
        let state = std::mem::replace(&mut self.state, State::Done);
        self.state = match state {
            State::Closed(closed) if closed.reconnect_at <= now && !self.common.shutdown => {
                self.common.out.push_back(Output::Connect);
                State::Connecting(Connecting {
                    deadline: now + ms(self.common.config.connect_timeout_ms),
                })
            }
            State::Bound(mut bound) => {
                bound.send_queued(&mut self.common, now);
                State::Bound(bound)
            }
            other => other,
        };
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Checks a payer's number and strips a leading `+` (TON international says it already).
fn normalise_address(to: &str) -> Result<String, SmsError> {
    let digits = to.strip_prefix('+').unwrap_or(to);
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SmsError::InvalidAddress);
    }
    Ok(digits.to_owned())
}

/// A C-octet string from text we checked to be ASCII and short enough; anything else (which
/// would be a bug) becomes the empty string rather than a panic.
fn c_string<const MIN: usize, const MAX: usize>(value: &str) -> COctetString<MIN, MAX> {
    COctetString::from_string(value.to_owned()).unwrap_or_else(|_| COctetString::empty())
}

impl State {
    fn is_connected(&self) -> bool {
        matches!(self, State::Open(_) | State::Bound(_) | State::Unbinding(_))
    }

    /// The parts in flight, taken out of a state that is being left.
    fn into_inflight(self) -> HashMap<u32, InFlight> {
        match self {
            State::Bound(b) => b.inflight,
            State::Unbinding(u) => u.inflight,
            _ => HashMap::new(),
        }
    }

    fn handle_command(self, c: &mut Common, now: Instant, command: Command) -> State {
        match self {
            State::Open(open) => open.handle_command(c, now, command),
            State::Bound(bound) => bound.handle_command(c, now, command),
            State::Unbinding(unbinding) => unbinding.handle_command(c, now, command),
            // Octets after the connection was given up on are ignored.
            other => other,
        }
    }

    fn handle_malformed(self, c: &mut Common, now: Instant, m: Malformed) -> State {
        if !self.is_connected() {
            return self;
        }
        c.out.push_back(Output::Event(Event::PeerMalformed(m)));
        if m.deserves_nack() {
            c.out.push_back(Output::Transmit(pdu::encode_header_only(
                CommandId::GenericNack,
                m.nack_status(),
                m.header.sequence_number,
            )));
        }
        if !m.recoverable {
            let mut inflight = self.into_inflight();
            c.out.push_back(Output::Disconnect);
            if c.shutdown {
                c.fail_inflight(&mut inflight, SubmitFailure::LinkLost);
                return c.finish();
            }
            return c.link_down(now, LinkDownReason::Framing, &mut inflight);
        }
        // A response we could not decode still answers the request with its sequence number:
        // treat it with the status from its header, so a quirk in a body does not stall a
        // bind or a submit.
        if m.header.is_response() {
            let status = CommandStatus::from(m.header.command_status);
            let command = Command::builder()
                .status(status)
                .sequence_number(m.header.sequence_number)
                .pdu(Pdu::Other {
                    command_id: CommandId::from(m.header.command_id),
                    body: rusmpp::types::AnyOctetString::empty(),
                });
            return self.handle_command(c, now, command);
        }
        self
    }

    fn handle_timeout(self, c: &mut Common, now: Instant) -> State {
        for expired in c.reassembler.expire(now) {
            c.out
                .push_back(Output::Event(Event::ReassemblyExpired(expired)));
        }
        match self {
            State::Closed(closed) => State::Closed(closed),
            State::Connecting(connecting) if now >= connecting.deadline => {
                c.out.push_back(Output::Disconnect);
                c.link_down(now, LinkDownReason::ConnectTimeout, &mut HashMap::new())
            }
            State::Open(open) if now >= open.deadline => {
                c.out.push_back(Output::Disconnect);
                c.link_down(now, LinkDownReason::BindTimeout, &mut HashMap::new())
            }
            State::Bound(bound) => bound.handle_timeout(c, now),
            State::Unbinding(u) if now >= u.deadline => {
                let mut inflight = u.inflight;
                c.fail_inflight(&mut inflight, SubmitFailure::ResponseTimeout);
                c.out.push_back(Output::Disconnect);
                c.finish()
            }
            other => other,
        }
    }
}

impl Common {
    fn next_seq(&mut self) -> u32 {
        // Sequence numbers run from 1 to 0x7FFFFFFF and wrap (SMPP 3.4 §3.2).
        self.seq = if self.seq >= 0x7FFF_FFFF {
            1
        } else {
            self.seq + 1
        };
        self.seq
    }

    fn transmit(&mut self, status: CommandStatus, seq: u32, pdu: impl Into<Pdu>) {
        self.out
            .push_back(Output::Transmit(pdu::encode_pdu(status, seq, pdu)));
    }

    fn transmit_header_only(&mut self, id: CommandId, status: CommandStatus, seq: u32) {
        self.out
            .push_back(Output::Transmit(pdu::encode_header_only(id, status, seq)));
    }

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    fn send_bind(&mut self, now: Instant) -> State {
        let cfg = &self.config;
        let system_id = c_string(&cfg.system_id);
        let password = c_string(&cfg.password);
        let system_type = c_string(&cfg.system_type);
        let address_range = c_string(&cfg.address_range);
        let (ton, npi) = (Ton::from(cfg.addr_ton), Npi::from(cfg.addr_npi));
        let version = InterfaceVersion::Smpp3_4;
        let pdu: Pdu = match cfg.bind_mode {
            BindMode::Transceiver => BindTransceiver::new(
                system_id,
                password,
                system_type,
                version,
                ton,
                npi,
                address_range,
            )
            .into(),
            BindMode::Transmitter => BindTransmitter::new(
                system_id,
                password,
                system_type,
                version,
                ton,
                npi,
                address_range,
            )
            .into(),
            BindMode::Receiver => BindReceiver::new(
                system_id,
                password,
                system_type,
                version,
                ton,
                npi,
                address_range,
            )
            .into(),
        };
        let bind_seq = self.next_seq();
        self.transmit(CommandStatus::EsmeRok, bind_seq, pdu);
        State::Open(Open {
            bind_seq,
            deadline: now + ms(self.config.bind_timeout_ms),
        })
    }

    /// The reconnect delay for the current attempt: exponential, capped, with "equal jitter"
    /// (half fixed, half random) so that many gateways restarted together spread out.
    fn reconnect_delay_ms(&mut self) -> u64 {
        let base = self.config.reconnect_backoff_ms;
        let max = self.config.reconnect_backoff_max_ms;
        let exp = self.reconnect_attempts.min(32);
        let delay = base.saturating_mul(1u64 << exp).min(max);
        self.reconnect_attempts = self.reconnect_attempts.saturating_add(1);
        // xorshift64: a small, seeded generator keeps the session deterministic under test.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = delay / 2;
        half + self.rng % (delay - half + 1)
    }

    fn link_down(
        &mut self,
        now: Instant,
        reason: LinkDownReason,
        inflight: &mut HashMap<u32, InFlight>,
    ) -> State {
        self.fail_inflight(inflight, SubmitFailure::LinkLost);
        let reconnect_at = now + ms(self.reconnect_delay_ms());
        self.event(Event::LinkDown {
            reason,
            reconnect_at,
        });
        State::Closed(Closed { reconnect_at })
    }

    fn finish(&mut self) -> State {
        self.fail_queued(SubmitFailure::ShutDown);
        self.event(Event::Unbound);
        State::Done
    }

    /// Fails the messages of the parts in flight; their remaining queued parts are dropped.
    fn fail_inflight(&mut self, inflight: &mut HashMap<u32, InFlight>, reason: SubmitFailure) {
        let mut ids: Vec<u64> = inflight.drain().map(|(_, f)| f.part.id).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if let Some(m) = self.messages.get_mut(&id) {
                m.inflight = 0;
            }
            self.fail_message(id, reason);
        }
    }

    fn fail_queued(&mut self, reason: SubmitFailure) {
        let mut ids: Vec<u64> = self.queue.drain(..).map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            self.fail_message(id, reason);
        }
    }

    /// Reports a message's failure once, drops its queued parts, and forgets it when no part is
    /// in flight any more.
    fn fail_message(&mut self, id: u64, reason: SubmitFailure) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        if !m.failed {
            m.failed = true;
            self.out
                .push_back(Output::Event(Event::SubmitFailed { id, reason }));
        }
        if m.inflight == 0 {
            self.messages.remove(&id);
        }
        self.queue.retain(|p| p.id != id);
    }

    fn submit_pdu(&self, part: &QueuedPart) -> Option<SubmitSm> {
        let m = self.messages.get(&part.id)?;
        let cfg = &self.config;
        let short_message = OctetString::from_vec(part.short_message.clone()).ok()?;
        let sm = SubmitSm::builder()
            .source_addr_ton(Ton::from(cfg.source_addr_ton))
            .source_addr_npi(Npi::from(cfg.source_addr_npi))
            .source_addr(c_string(&cfg.source_addr))
            .dest_addr_ton(Ton::from(cfg.dest_addr_ton))
            .dest_addr_npi(Npi::from(cfg.dest_addr_npi))
            .destination_addr(c_string(&m.to))
            // Built from the octet: rusmpp's default EsmClass encodes as 0x08, not 0x00.
            .esm_class(EsmClass::from(if m.udh { 0x40u8 } else { 0x00 }))
            .registered_delivery(RegisteredDelivery::from(u8::from(cfg.registered_delivery)))
            .data_coding(DataCoding::from(m.data_coding))
            .short_message(short_message)
            .build();
        Some(sm)
    }

    /// Handles a `submit_sm_resp` (or a `generic_nack` answering a `submit_sm`).
    fn submit_response(
        &mut self,
        now: Instant,
        flight: InFlight,
        status: CommandStatus,
        message_id: String,
        throttle: Option<&mut (Option<Instant>, u64)>,
    ) {
        let id = flight.part.id;
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        m.inflight = m.inflight.saturating_sub(1);
        if m.failed {
            if m.inflight == 0 {
                self.messages.remove(&id);
            }
            return;
        }
        match status {
            CommandStatus::EsmeRok => {
                // A success resets the backoff's length but not a pause already running: with
                // a window, a success may overtake a refusal of a part sent just before it.
                if let Some((_, backoff)) = throttle {
                    *backoff = self.config.throttle_backoff_ms;
                }
                if let Some(slot) = m.message_ids.get_mut(flight.part.index) {
                    *slot = Some(message_id);
                }
                if m.inflight == 0 && m.message_ids.iter().all(Option::is_some) {
                    let message_ids = m.message_ids.iter().flatten().cloned().collect();
                    self.messages.remove(&id);
                    self.event(Event::SubmitAccepted { id, message_ids });
                }
            }
            CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful => {
                let mut part = flight.part;
                part.refusals += 1;
                if part.refusals > self.config.retries_max {
                    self.fail_message(id, SubmitFailure::RetriesExhausted(u32::from(status)));
                    return;
                }
                if let Some((until, backoff)) = throttle {
                    *until = Some(now + ms(*backoff));
                    *backoff = backoff
                        .saturating_mul(2)
                        .min(self.config.throttle_backoff_max_ms);
                }
                self.queue.push_front(part);
            }
            other => self.fail_message(id, SubmitFailure::Refused(u32::from(other))),
        }
    }

    /// Handles a `deliver_sm`: returns the status for its response.
    fn deliver(&mut self, now: Instant, d: &DeliverSm) -> CommandStatus {
        let from = d.source_addr.as_str().to_owned();
        let to = d.destination_addr.as_str().to_owned();
        let esm = u8::from(d.esm_class);
        let data_coding = u8::from(d.data_coding);
        let mut payload: Option<&[u8]> = None;
        let mut receipted_id: Option<&str> = None;
        let mut message_state: Option<u8> = None;
        let (mut sar_ref, mut sar_total, mut sar_seq) = (None, None, None);
        for tlv in d.tlvs() {
            match Tlv::value(tlv) {
                Some(TlvValue::MessagePayload(p)) => payload = Some(p.value.as_ref()),
                Some(TlvValue::ReceiptedMessageId(id)) => receipted_id = Some(id.as_str()),
                Some(TlvValue::MessageState(s)) => message_state = Some(u8::from(*s)),
                Some(TlvValue::SarMsgRefNum(r)) => sar_ref = Some(*r),
                Some(TlvValue::SarTotalSegments(t)) => sar_total = Some(*t),
                Some(TlvValue::SarSegmentSeqnum(s)) => sar_seq = Some(*s),
                _ => {}
            }
        }
        let short_message: &[u8] = d.short_message().as_ref();
        let body = match payload {
            Some(p) if short_message.is_empty() => p,
            _ => short_message,
        };
        // Message type bits of esm_class: 0x04 MC delivery receipt, 0x20 intermediate
        // notification. Both are reports on our submits, not texts from payers.
        let message_type = esm & 0x3C;
        if message_type == 0x04 || message_type == 0x20 {
            let text = encoding::decode_text(data_coding, body)
                .unwrap_or_else(|_| body.iter().map(|b| char::from(*b & 0x7F)).collect());
            return match dlr::parse(&text, receipted_id, message_state) {
                Ok(receipt) => {
                    self.event(Event::DeliveryReceipt(receipt));
                    CommandStatus::EsmeRok
                }
                Err(error) => self.reject(from, error),
            };
        }
        let parsed = if esm & 0x40 != 0 {
            concat::parse_udh(body)
        } else {
            let sar = match (sar_ref, sar_total, sar_seq) {
                (Some(reference), Some(total), Some(seq)) => Some(ConcatInfo {
                    reference,
                    wide_reference: true,
                    total,
                    seq,
                }),
                _ => None,
            };
            Ok((sar, body))
        };
        let (info, text) = match parsed {
            Ok(p) => p,
            Err(error) => return self.reject(from, error),
        };
        let info = info.unwrap_or(ConcatInfo {
            reference: 0,
            wide_reference: false,
            total: 1,
            seq: 1,
        });
        match self.reassembler.offer(now, &from, info, data_coding, text) {
            Ok(Offer::Complete {
                data_coding,
                octets,
                parts,
            }) => match encoding::decode_text(data_coding, &octets) {
                Ok(text) => {
                    self.event(Event::Delivered(Delivered {
                        from,
                        to,
                        text,
                        parts,
                    }));
                    CommandStatus::EsmeRok
                }
                Err(error) => self.reject(from, error),
            },
            Ok(Offer::Pending | Offer::Duplicate) => CommandStatus::EsmeRok,
            Err(error) => self.reject(from, error),
        }
    }

    fn reject(&mut self, from: String, error: SmsError) -> CommandStatus {
        let status = if error == SmsError::ReassemblyFull {
            CommandStatus::EsmeRxTAppn
        } else {
            CommandStatus::EsmeRxPAppn
        };
        self.event(Event::InboundRejected { from, error });
        status
    }

    /// Requests any bound state answers the same way.
    fn answer_common_request(&mut self, now: Instant, command: &Command) -> bool {
        let seq = command.sequence_number();
        match command.pdu() {
            Some(Pdu::EnquireLink) => {
                self.transmit_header_only(CommandId::EnquireLinkResp, CommandStatus::EsmeRok, seq);
                true
            }
            Some(Pdu::DeliverSm(d)) => {
                let status = if self.config.bind_mode == BindMode::Transmitter {
                    CommandStatus::EsmeRinvbndsts
                } else {
                    self.deliver(now, d)
                };
                self.transmit(status, seq, DeliverSmResp::default());
                true
            }
            // alert_notification has no response.
            Some(Pdu::AlertNotification(_)) => true,
            _ if command.id().is_operation() => {
                self.transmit_header_only(
                    CommandId::GenericNack,
                    CommandStatus::EsmeRinvcmdid,
                    seq,
                );
                true
            }
            _ => false,
        }
    }
}

impl Open {
    fn handle_command(self, c: &mut Common, now: Instant, command: Command) -> State {
        let seq = command.sequence_number();
        let id = command.id();
        if seq == self.bind_seq
            && (id == c.config.bind_mode.response_id()
                || id == CommandId::GenericNack
                || matches!(command.pdu(), Some(Pdu::Other { .. })))
        {
            if command.status() != CommandStatus::EsmeRok {
                c.out.push_back(Output::Disconnect);
                return c.link_down(
                    now,
                    LinkDownReason::BindRejected(u32::from(command.status())),
                    &mut HashMap::new(),
                );
            }
            let smsc_system_id = match command.pdu() {
                Some(Pdu::BindTransceiverResp(r)) => r.system_id.as_str().to_owned(),
                Some(Pdu::BindTransmitterResp(r)) => r.system_id.as_str().to_owned(),
                Some(Pdu::BindReceiverResp(r)) => r.system_id.as_str().to_owned(),
                _ => String::new(),
            };
            c.reconnect_attempts = 0;
            c.event(Event::Bound { smsc_system_id });
            return State::Bound(Bound {
                inflight: HashMap::new(),
                enquire_deadline: None,
                last_receive: now,
                throttled_until: None,
                throttle_backoff_ms: c.config.throttle_backoff_ms,
            });
        }
        match command.pdu() {
            Some(Pdu::EnquireLink) => {
                c.transmit_header_only(CommandId::EnquireLinkResp, CommandStatus::EsmeRok, seq);
                State::Open(self)
            }
            Some(Pdu::Unbind) => {
                c.transmit_header_only(CommandId::UnbindResp, CommandStatus::EsmeRok, seq);
                c.out.push_back(Output::Disconnect);
                c.link_down(now, LinkDownReason::UnbindBySmsc, &mut HashMap::new())
            }
            _ if id.is_operation() => {
                // Nothing but the bind is allowed before the bind completes.
                c.transmit_header_only(CommandId::GenericNack, CommandStatus::EsmeRinvbndsts, seq);
                State::Open(self)
            }
            _ => State::Open(self),
        }
    }
}

impl Bound {
    fn send_queued(&mut self, c: &mut Common, now: Instant) {
        if let Some(until) = self.throttled_until {
            if now < until {
                return;
            }
            self.throttled_until = None;
        }
        while self.inflight.len() < c.config.window_size {
            let Some(part) = c.queue.pop_front() else {
                break;
            };
            let Some(sm) = c.submit_pdu(&part) else {
                // The message was failed meanwhile; its parts are stale.
                continue;
            };
            let seq = c.next_seq();
            c.transmit(CommandStatus::EsmeRok, seq, sm);
            if let Some(m) = c.messages.get_mut(&part.id) {
                m.inflight += 1;
            }
            self.inflight.insert(
                seq,
                InFlight {
                    part,
                    deadline: now + ms(c.config.response_timeout_ms),
                },
            );
        }
    }

    fn unbind(self, c: &mut Common, now: Instant) -> State {
        let seq = c.next_seq();
        c.transmit_header_only(CommandId::Unbind, CommandStatus::EsmeRok, seq);
        State::Unbinding(Unbinding {
            seq,
            deadline: now + ms(c.config.unbind_timeout_ms),
            inflight: self.inflight,
        })
    }

    fn handle_command(mut self, c: &mut Common, now: Instant, command: Command) -> State {
        // Anything received proves the link alive, an answer to our enquire_link or not.
        self.last_receive = now;
        self.enquire_deadline = None;
        let seq = command.sequence_number();
        let status = command.status();
        match command.pdu() {
            Some(Pdu::Unbind) => {
                c.transmit_header_only(CommandId::UnbindResp, CommandStatus::EsmeRok, seq);
                c.out.push_back(Output::Disconnect);
                return c.link_down(now, LinkDownReason::UnbindBySmsc, &mut self.inflight);
            }
            Some(Pdu::EnquireLinkResp) => return State::Bound(self),
            _ => {}
        }
        if c.answer_common_request(now, &command) {
            return State::Bound(self);
        }
        // A response: find the submit it answers (others, like a generic_nack to our
        // enquire_link, need nothing more).
        if let Some(flight) = self.inflight.remove(&seq) {
            let message_id = match command.pdu() {
                Some(Pdu::SubmitSmResp(r)) => r.message_id().as_str().to_owned(),
                _ => String::new(),
            };
            let mut throttle = (self.throttled_until, self.throttle_backoff_ms);
            c.submit_response(now, flight, status, message_id, Some(&mut throttle));
            (self.throttled_until, self.throttle_backoff_ms) = throttle;
            self.send_queued(c, now);
        }
        State::Bound(self)
    }

    fn handle_timeout(mut self, c: &mut Common, now: Instant) -> State {
        if let Some(deadline) = self.enquire_deadline {
            if now >= deadline {
                c.out.push_back(Output::Disconnect);
                return c.link_down(now, LinkDownReason::DeadLink, &mut self.inflight);
            }
        } else if now >= self.last_receive + ms(c.config.enquire_link_interval_ms) {
            let seq = c.next_seq();
            c.transmit_header_only(CommandId::EnquireLink, CommandStatus::EsmeRok, seq);
            self.enquire_deadline = Some(now + ms(c.config.enquire_link_timeout_ms));
        }
        let late: Vec<u32> = self
            .inflight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in late {
            if let Some(flight) = self.inflight.remove(&seq) {
                if let Some(m) = c.messages.get_mut(&flight.part.id) {
                    m.inflight = m.inflight.saturating_sub(1);
                }
                c.fail_message(flight.part.id, SubmitFailure::ResponseTimeout);
            }
        }
        self.send_queued(c, now);
        State::Bound(self)
    }
}

impl Unbinding {
    fn handle_command(mut self, c: &mut Common, now: Instant, command: Command) -> State {
        let seq = command.sequence_number();
        if seq == self.seq
            && (command.id() == CommandId::UnbindResp || command.id() == CommandId::GenericNack)
        {
            c.fail_inflight(&mut self.inflight, SubmitFailure::LinkLost);
            c.out.push_back(Output::Disconnect);
            return c.finish();
        }
        if let Some(Pdu::Unbind) = command.pdu() {
            c.transmit_header_only(CommandId::UnbindResp, CommandStatus::EsmeRok, seq);
            c.fail_inflight(&mut self.inflight, SubmitFailure::LinkLost);
            c.out.push_back(Output::Disconnect);
            return c.finish();
        }
        if c.answer_common_request(now, &command) {
            return State::Unbinding(self);
        }
        if let Some(flight) = self.inflight.remove(&seq) {
            let message_id = match command.pdu() {
                Some(Pdu::SubmitSmResp(r)) => r.message_id().as_str().to_owned(),
                _ => String::new(),
            };
            c.submit_response(now, flight, command.status(), message_id, None);
        }
        State::Unbinding(self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::dlr::ReceiptState;
    use super::super::test_smsc::{SmscConfig, SmscEvent, SmscOutput, TestSmsc};
    use super::*;

    /// An ESME and a test SMSC joined by a virtual wire, stepped in virtual time.
    struct Net {
        now: Instant,
        esme: Esme,
        smsc: TestSmsc,
        smsc_config: SmscConfig,
        /// Whether the SMSC accepts connections.
        smsc_up: bool,
        connected: bool,
        /// While set, the ESME's octets are held back instead of reaching the SMSC.
        hold: bool,
        held: Vec<Vec<u8>>,
        events: Vec<(Instant, Event)>,
        smsc_events: Vec<(Instant, SmscEvent)>,
        /// Every PDU the ESME sent: (instant, command id, sequence number).
        sent: Vec<(Instant, u32, u32)>,
        connects: usize,
        done: bool,
        deadline: Option<Instant>,
    }

    fn config() -> EsmeConfig {
        EsmeConfig {
            system_id: "telepay".into(),
            password: "secret".into(),
            source_addr: "4242".into(),
            source_addr_ton: 3,
            ..EsmeConfig::default()
        }
    }

    impl Net {
        fn new(config: EsmeConfig) -> Net {
            let now = Instant::now();
            let smsc_config = SmscConfig::default();
            let mut net = Net {
                now,
                esme: Esme::new(config, now).unwrap(),
                smsc: TestSmsc::new(smsc_config.clone()),
                smsc_config,
                smsc_up: true,
                connected: false,
                hold: false,
                held: Vec::new(),
                events: Vec::new(),
                smsc_events: Vec::new(),
                sent: Vec::new(),
                connects: 0,
                done: false,
                deadline: None,
            };
            net.settle();
            net
        }

        /// Moves outputs both ways until both ends are idle.
        fn settle(&mut self) {
            for _ in 0..10_000 {
                let mut busy = false;
                loop {
                    match self.esme.poll_output() {
                        Output::Transmit(octets) => {
                            busy = true;
                            self.record_sent(&octets);
                            if self.hold {
                                self.held.push(octets);
                            } else if self.connected {
                                self.smsc.handle_receive(self.now, &octets);
                            }
                        }
                        Output::Connect => {
                            busy = true;
                            self.connects += 1;
                            if self.smsc_up {
                                self.connected = true;
                                self.smsc = TestSmsc::new(self.smsc_config.clone());
                                self.esme.handle_input(self.now, Input::Connected);
                            } else {
                                self.esme.handle_input(self.now, Input::ConnectFailed);
                            }
                        }
                        Output::Disconnect => {
                            busy = true;
                            self.connected = false;
                        }
                        Output::Event(e) => {
                            busy = true;
                            self.events.push((self.now, e));
                        }
                        Output::Timeout(t) => {
                            self.deadline = Some(t);
                            break;
                        }
                        Output::Done => {
                            self.done = true;
                            self.deadline = None;
                            break;
                        }
                    }
                }
                while let Some(o) = self.smsc.poll_output() {
                    busy = true;
                    match o {
                        SmscOutput::Transmit(octets) => {
                            if self.connected {
                                self.esme.handle_input(self.now, Input::Receive(&octets));
                            }
                        }
                        SmscOutput::Event(e) => self.smsc_events.push((self.now, e)),
                        SmscOutput::Close => {
                            if self.connected {
                                self.connected = false;
                                self.esme.handle_input(self.now, Input::Disconnected);
                            }
                        }
                    }
                }
                if !busy {
                    return;
                }
            }
            panic!("the two ends never settled");
        }

        fn record_sent(&mut self, octets: &[u8]) {
            let word = |i: usize| {
                u32::from_be_bytes([octets[i], octets[i + 1], octets[i + 2], octets[i + 3]])
            };
            self.sent.push((self.now, word(4), word(12)));
        }

        /// Jumps to the ESME's next deadline.
        fn progress(&mut self) {
            let t = self.deadline.expect("a deadline");
            assert!(t >= self.now, "deadline in the past");
            self.now = t;
            self.esme.handle_input(self.now, Input::Timeout);
            self.settle();
        }

        /// Steps through deadlines until `t`.
        fn run_until(&mut self, t: Instant) {
            while let Some(d) = self.deadline {
                if d > t {
                    break;
                }
                self.progress();
            }
            self.now = t;
            self.esme.handle_input(self.now, Input::Timeout);
            self.settle();
        }

        fn run_for(&mut self, ms_: u64) {
            self.run_until(self.now + ms(ms_));
        }

        fn release(&mut self) {
            self.hold = false;
            for octets in std::mem::take(&mut self.held) {
                self.smsc.handle_receive(self.now, &octets);
            }
            self.settle();
        }

        fn submit(&mut self, id: u64, text: &str) {
            self.esme
                .submit(
                    self.now,
                    Submit {
                        id,
                        to: "+491701234567".into(),
                        text: text.into(),
                    },
                )
                .unwrap();
            self.settle();
        }

        fn events_matching<T>(&self, f: impl Fn(&Event) -> Option<T>) -> Vec<T> {
            self.events.iter().filter_map(|(_, e)| f(e)).collect()
        }

        fn submitted(&self) -> Vec<super::super::test_smsc::Submitted> {
            self.smsc_events
                .iter()
                .filter_map(|(_, e)| match e {
                    SmscEvent::Submitted(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        }

        fn count_sent(&self, id: CommandId) -> usize {
            self.sent
                .iter()
                .filter(|(_, c, _)| *c == u32::from(id))
                .count()
        }
    }

    #[test]
    fn binds_as_transceiver_and_unbinds_cleanly() {
        let mut net = Net::new(config());
        assert!(net.esme.is_bound());
        assert_eq!(net.connects, 1);
        assert!(
            matches!(&net.events[0].1, Event::Bound { smsc_system_id } if smsc_system_id == "TESTSMSC")
        );
        assert!(matches!(
            &net.smsc_events[0].1,
            SmscEvent::Bind { mode: BindMode::Transceiver, system_id, accepted: true } if system_id == "telepay"
        ));
        net.esme.shutdown(net.now);
        net.settle();
        assert!(net.done);
        assert!(!net.connected);
        assert!(
            net.smsc_events
                .iter()
                .any(|(_, e)| *e == SmscEvent::Unbound)
        );
        assert_eq!(
            net.events.last().map(|(_, e)| e.clone()),
            Some(Event::Unbound)
        );
        assert_eq!(
            net.esme.submit(
                net.now,
                Submit {
                    id: 1,
                    to: "1".into(),
                    text: "x".into()
                }
            ),
            Err(SmsError::ShutDown)
        );
    }

    #[test]
    fn unbind_times_out_when_the_smsc_does_not_answer() {
        let mut net = Net::new(config());
        net.smsc.set_silent(true);
        net.esme.shutdown(net.now);
        net.settle();
        assert!(!net.done);
        let start = net.now;
        net.progress();
        assert!(net.done);
        assert_eq!(net.now - start, ms(5_000));
    }

    #[test]
    fn a_rejected_bind_backs_off_exponentially_with_jitter() {
        let mut cfg = config();
        cfg.password = "wrong".into();
        cfg.reconnect_backoff_ms = 1_000;
        cfg.reconnect_backoff_max_ms = 8_000;
        let mut net = Net::new(cfg);
        assert!(!net.esme.is_bound());
        let mut delays = Vec::new();
        for _ in 0..6 {
            let (at, reconnect_at) = net
                .events
                .iter()
                .rev()
                .find_map(|(t, e)| match e {
                    Event::LinkDown {
                        reason,
                        reconnect_at,
                    } => {
                        assert_eq!(*reason, LinkDownReason::BindRejected(0x0E));
                        Some((*t, *reconnect_at))
                    }
                    _ => None,
                })
                .unwrap();
            delays.push((reconnect_at - at).as_millis() as u64);
            let before = net.connects;
            net.progress();
            assert_eq!(
                net.connects,
                before + 1,
                "reconnects at the announced instant"
            );
            assert_eq!(net.now, reconnect_at);
        }
        // Equal jitter: attempt n waits between half and all of min(1 s * 2^n, 8 s).
        for (n, d) in delays.iter().enumerate() {
            let full = (1_000u64 << n).min(8_000);
            assert!(
                *d >= full / 2 && *d <= full,
                "attempt {n}: {d} ms not in [{}, {full}]",
                full / 2
            );
        }
        assert!(delays[5] >= 4_000, "capped delays stay large: {delays:?}");
    }

    #[test]
    fn the_smsc_being_down_is_retried_until_it_is_back() {
        let now = Instant::now();
        let mut net = Net::new(config());
        let _ = now;
        net.esme.handle_input(net.now, Input::Disconnected);
        net.connected = false;
        net.smsc_up = false;
        net.settle();
        net.submit(1, "queued while down");
        for _ in 0..4 {
            net.progress();
        }
        assert!(net.connects >= 4);
        assert!(!net.esme.is_bound());
        net.smsc_up = true;
        net.progress();
        assert!(net.esme.is_bound());
        assert_eq!(
            net.submitted().len(),
            1,
            "the queued message goes out once bound"
        );
        assert_eq!(net.submitted()[0].text, "queued while down");
    }

    #[test]
    fn enquire_link_keeps_the_link_and_detects_a_dead_one() {
        let mut net = Net::new(config());
        let bound_at = net.now;
        net.run_for(95_000);
        // Idle for 95 s with a 30 s interval: three enquire_links, all answered.
        assert_eq!(net.count_sent(CommandId::EnquireLink), 3);
        assert_eq!(
            net.smsc_events
                .iter()
                .filter(|(_, e)| *e == SmscEvent::EnquireLink)
                .count(),
            3
        );
        assert!(net.esme.is_bound());
        let first = net
            .sent
            .iter()
            .find(|(_, c, _)| *c == u32::from(CommandId::EnquireLink))
            .unwrap();
        assert_eq!(first.0 - bound_at, ms(30_000));

        net.smsc.set_silent(true);
        let silent_at = net.now;
        net.run_for(60_000);
        let (t, reason) = net
            .events
            .iter()
            .find_map(|(t, e)| match e {
                Event::LinkDown { reason, .. } => Some((*t, *reason)),
                _ => None,
            })
            .unwrap();
        assert_eq!(reason, LinkDownReason::DeadLink);
        // The next enquire_link is due 30 s after the last answer (at 90 s), the link is dead
        // 10 s after it went unanswered.
        assert_eq!(t - silent_at, ms(25_000 + 10_000));
        // The session reconnects to a (fresh, answering) SMSC.
        assert_eq!(net.connects, 2);
        assert!(net.esme.is_bound());
    }

    #[test]
    fn the_smsc_enquire_link_is_answered() {
        let mut net = Net::new(config());
        net.smsc.enquire_link();
        net.settle();
        assert_eq!(net.count_sent(CommandId::EnquireLinkResp), 1);
    }

    #[test]
    fn the_window_bounds_submits_in_flight() {
        let mut cfg = config();
        cfg.window_size = 2;
        let mut net = Net::new(cfg);
        net.hold = true;
        for id in 1..=5 {
            net.submit(id, &format!("message {id}"));
        }
        assert_eq!(net.count_sent(CommandId::SubmitSm), 2);
        assert_eq!(net.esme.parts_in_flight(), 2);
        net.release();
        assert_eq!(net.count_sent(CommandId::SubmitSm), 5);
        let accepted = net.events_matching(|e| match e {
            Event::SubmitAccepted { id, message_ids } => Some((*id, message_ids.len())),
            _ => None,
        });
        assert_eq!(accepted, vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
        assert_eq!(net.esme.pending_messages(), 0);
        // Sequence numbers are unique.
        let mut seqs: Vec<u32> = net.sent.iter().map(|(_, _, s)| *s).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), net.sent.len());
    }

    #[test]
    fn throttling_slows_down_then_retries() {
        let mut net = Net::new(config());
        net.smsc.refuse_next(2, CommandStatus::EsmeRthrottled);
        let start = net.now;
        net.submit(1, "hello");
        net.submit(2, "second");
        // The first refusal pauses sending for 500 ms; then both go out, the first is refused
        // again (a 1000 ms pause) and the second accepted; then the first goes through.
        net.run_for(5_000);
        let submits: Vec<Duration> = net
            .sent
            .iter()
            .filter(|(_, c, _)| *c == u32::from(CommandId::SubmitSm))
            .map(|(t, _, _)| *t - start)
            .collect();
        assert_eq!(submits, vec![ms(0), ms(500), ms(500), ms(1_500)]);
        let accepted = net.events_matching(|e| match e {
            Event::SubmitAccepted { id, .. } => Some(*id),
            _ => None,
        });
        assert_eq!(accepted.len(), 2);
        assert!(
            net.events_matching(|e| matches!(e, Event::SubmitFailed { .. }).then_some(()))
                .is_empty()
        );
    }

    #[test]
    fn a_full_queue_at_the_smsc_fails_after_the_retries() {
        let mut cfg = config();
        cfg.retries_max = 2;
        let mut net = Net::new(cfg);
        net.smsc.refuse_next(3, CommandStatus::EsmeRmsgqful);
        net.submit(9, "never");
        net.run_for(10_000);
        let failed = net.events_matching(|e| match e {
            Event::SubmitFailed { id, reason } => Some((*id, *reason)),
            _ => None,
        });
        assert_eq!(failed, vec![(9, SubmitFailure::RetriesExhausted(0x14))]);
        assert_eq!(net.count_sent(CommandId::SubmitSm), 3);
        assert_eq!(net.esme.pending_messages(), 0);
    }

    #[test]
    fn a_refused_submit_fails_at_once() {
        let mut net = Net::new(config());
        net.smsc.refuse_next(1, CommandStatus::EsmeRinvdstadr);
        net.submit(3, "x");
        let failed = net.events_matching(|e| match e {
            Event::SubmitFailed { id, reason } => Some((*id, *reason)),
            _ => None,
        });
        assert_eq!(failed, vec![(3, SubmitFailure::Refused(0x0B))]);
    }

    #[test]
    fn a_missing_response_times_the_submit_out() {
        let mut net = Net::new(config());
        net.hold = true;
        net.submit(4, "lost");
        net.held.clear();
        net.hold = false;
        net.run_for(10_000);
        let failed = net.events_matching(|e| match e {
            Event::SubmitFailed { id, reason } => Some((*id, *reason)),
            _ => None,
        });
        assert_eq!(failed, vec![(4, SubmitFailure::ResponseTimeout)]);
        assert!(net.esme.is_bound());
    }

    #[test]
    fn losing_the_link_fails_parts_in_flight_and_keeps_the_queue() {
        let mut cfg = config();
        cfg.window_size = 1;
        let mut net = Net::new(cfg);
        net.hold = true;
        net.submit(1, "in flight");
        net.submit(2, "queued");
        net.held.clear();
        net.hold = false;
        net.connected = false;
        net.esme.handle_input(net.now, Input::Disconnected);
        net.settle();
        let failed = net.events_matching(|e| match e {
            Event::SubmitFailed { id, reason } => Some((*id, *reason)),
            _ => None,
        });
        assert_eq!(failed, vec![(1, SubmitFailure::LinkLost)]);
        net.progress();
        assert!(net.esme.is_bound());
        let texts: Vec<String> = net.submitted().into_iter().map(|s| s.text).collect();
        assert_eq!(texts, vec!["queued".to_string()]);
    }

    #[test]
    fn an_unbind_from_the_smsc_is_answered_and_the_link_comes_back() {
        let mut net = Net::new(config());
        net.smsc.unbind();
        net.settle();
        assert_eq!(net.count_sent(CommandId::UnbindResp), 1);
        assert!(!net.connected);
        assert!(net.events.iter().any(|(_, e)| matches!(
            e,
            Event::LinkDown {
                reason: LinkDownReason::UnbindBySmsc,
                ..
            }
        )));
        net.progress();
        assert!(net.esme.is_bound());
        assert_eq!(net.connects, 2);
    }

    #[test]
    fn junk_gets_generic_nack_and_the_link_stays() {
        let mut net = Net::new(config());
        // Unknown command id.
        net.smsc
            .send_raw(&[0, 0, 0, 16, 0, 0, 0x0F, 0xFF, 0, 0, 0, 0, 0, 0, 0, 77]);
        // deliver_sm whose body is cut short.
        net.smsc.send_raw(&[
            0, 0, 0, 20, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 78, 0, 1, 1, b'4',
        ]);
        // A request we do not serve (query_sm).
        net.smsc.send_raw(&[
            0, 0, 0, 21, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 79, b'1', 0, 0, 0, 0,
        ]);
        net.settle();
        let nacks: Vec<(u32, u32)> = net
            .smsc_events
            .iter()
            .filter_map(|(_, e)| match e {
                SmscEvent::GenericNack {
                    sequence_number,
                    status,
                } => Some((*sequence_number, *status)),
                _ => None,
            })
            .collect();
        assert_eq!(nacks, vec![(77, 0x03), (78, 0x02), (79, 0x03)]);
        assert!(net.esme.is_bound());
        net.submit(1, "still works");
        assert_eq!(net.submitted().len(), 1);
    }

    #[test]
    fn an_impossible_command_length_closes_the_link() {
        let mut net = Net::new(config());
        net.smsc
            .send_raw(&[0, 0, 0, 4, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 5]);
        net.settle();
        assert!(!net.connected);
        assert!(net.events.iter().any(|(_, e)| matches!(
            e,
            Event::LinkDown {
                reason: LinkDownReason::Framing,
                ..
            }
        )));
        assert!(net.smsc_events.iter().any(|(_, e)| matches!(
            e,
            SmscEvent::GenericNack {
                sequence_number: 5,
                status: 0x02
            }
        )));
    }

    #[test]
    fn long_texts_are_split_and_joined_at_the_smsc() {
        let mut net = Net::new(config());
        let text: String = (0..400)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        net.submit(1, &text);
        let uni = format!("{}€ Płatność {}", "x".repeat(60), "y".repeat(80));
        net.submit(2, &uni);
        let submitted = net.submitted();
        assert_eq!(submitted.len(), 2);
        assert_eq!(
            (
                submitted[0].text.as_str(),
                submitted[0].parts,
                submitted[0].data_coding
            ),
            (text.as_str(), 3, 0)
        );
        assert_eq!(
            (
                submitted[1].text.as_str(),
                submitted[1].parts,
                submitted[1].data_coding
            ),
            (uni.as_str(), 3, 8)
        );
        assert_eq!(submitted[0].to, "491701234567");
        assert!(submitted[0].registered_delivery);
        let accepted = net.events_matching(|e| match e {
            Event::SubmitAccepted { id, message_ids } => Some((*id, message_ids.clone())),
            _ => None,
        });
        assert_eq!(accepted[0].1, submitted[0].message_ids);
        assert_eq!(accepted[0].1.len(), 3);
    }

    #[test]
    fn long_texts_from_payers_are_joined() {
        let mut net = Net::new(config());
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(100));
        let seqs = net.smsc.deliver_mo("491701234567", "4242", &text).unwrap();
        assert_eq!(seqs.len(), 2);
        net.settle();
        let delivered = net.events_matching(|e| match e {
            Event::Delivered(d) => Some(d.clone()),
            _ => None,
        });
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].text, text);
        assert_eq!(
            (
                delivered[0].from.as_str(),
                delivered[0].to.as_str(),
                delivered[0].parts
            ),
            ("491701234567", "4242", 2)
        );
        assert!(
            !format!("{:?}", delivered[0]).contains("aaa"),
            "Debug must not show the text"
        );
        let answered: Vec<u32> = net
            .smsc_events
            .iter()
            .filter_map(|(_, e)| match e {
                SmscEvent::DeliverAnswered { status, .. } => Some(*status),
                _ => None,
            })
            .collect();
        assert_eq!(answered, vec![0, 0]);
    }

    #[test]
    fn absurd_udh_from_the_smsc_is_refused_permanently() {
        let mut net = Net::new(config());
        // UDHI set, UDH claims part 3 of 2.
        net.smsc
            .deliver_raw(
                "491701234567",
                "4242",
                0x40,
                0,
                vec![5, 0, 3, 1, 2, 3, b'x'],
                Vec::new(),
            )
            .unwrap();
        // UCS-2 of odd length.
        net.smsc
            .deliver_raw(
                "491701234567",
                "4242",
                0x00,
                8,
                vec![0, 0x41, 0],
                Vec::new(),
            )
            .unwrap();
        net.settle();
        let answered: Vec<u32> = net
            .smsc_events
            .iter()
            .filter_map(|(_, e)| match e {
                SmscEvent::DeliverAnswered { status, .. } => Some(*status),
                _ => None,
            })
            .collect();
        assert_eq!(answered, vec![0x65, 0x65]);
        let rejected = net.events_matching(|e| match e {
            Event::InboundRejected { error, .. } => Some(error.clone()),
            _ => None,
        });
        assert!(matches!(rejected[0], SmsError::InvalidUdh { .. }));
        assert!(matches!(rejected[1], SmsError::InvalidUcs2 { .. }));
    }

    #[test]
    fn delivery_receipts_are_reported_against_message_ids() {
        let mut net = Net::new(config());
        net.submit(1, "your receipt");
        let ids = net.events_matching(|e| match e {
            Event::SubmitAccepted { message_ids, .. } => Some(message_ids.clone()),
            _ => None,
        });
        let id = ids[0][0].clone();
        net.smsc
            .deliver_receipt("491701234567", "4242", &id, ReceiptState::Delivered)
            .unwrap();
        net.settle();
        let receipts = net.events_matching(|e| match e {
            Event::DeliveryReceipt(r) => Some(r.clone()),
            _ => None,
        });
        assert_eq!(receipts.len(), 1);
        assert_eq!(
            (receipts[0].message_id.as_str(), receipts[0].state),
            (id.as_str(), ReceiptState::Delivered)
        );
    }

    #[test]
    fn a_kannel_style_deliver_sm_is_a_text() {
        // As Kannel's drive_smpp sends it: sequence number 0, esm_class 0, and a
        // receipted_message_id TLV although it is not a receipt.
        let mut net = Net::new(config());
        let mut pdu = vec![0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
        pdu.extend_from_slice(b"\0\0\0");
        pdu.extend_from_slice(b"456\0\0\0");
        pdu.extend_from_slice(
            b"123\0\0\0\0\0\0\0\0\0\0\x011\x00\x1e\x00\x15receipted_message_id\0",
        );
        let n = pdu.len() as u32;
        pdu[..4].copy_from_slice(&n.to_be_bytes());
        net.smsc.send_raw(&pdu);
        net.settle();
        let delivered = net.events_matching(|e| match e {
            Event::Delivered(d) => Some((d.from.clone(), d.text.clone())),
            _ => None,
        });
        assert_eq!(delivered, vec![("456".to_string(), "1".to_string())]);
    }

    #[test]
    fn incomplete_long_texts_expire() {
        let mut net = Net::new(config());
        net.smsc
            .deliver_raw(
                "491701234567",
                "4242",
                0x40,
                0,
                vec![5, 0, 3, 9, 2, 1, b'x'],
                Vec::new(),
            )
            .unwrap();
        net.settle();
        net.run_for(121_000);
        let expired = net.events_matching(|e| match e {
            Event::ReassemblyExpired(x) => Some((x.reference, x.received, x.total)),
            _ => None,
        });
        assert_eq!(expired, vec![(9, 1, 2)]);
        assert!(net.esme.is_bound(), "enquire_links kept it up meanwhile");
    }

    #[test]
    fn submit_refuses_what_cannot_be_sent() {
        let mut net = Net::new(EsmeConfig {
            parts_max: 2,
            submit_queue_max: 1,
            ..config()
        });
        let s = |id, to: &str, text: &str| Submit {
            id,
            to: to.into(),
            text: text.into(),
        };
        assert_eq!(
            net.esme.submit(net.now, s(1, "12ab", "x")),
            Err(SmsError::InvalidAddress)
        );
        assert_eq!(
            net.esme.submit(net.now, s(1, "", "x")),
            Err(SmsError::InvalidAddress)
        );
        assert!(matches!(
            net.esme.submit(net.now, s(1, "1", &"x".repeat(400))),
            Err(SmsError::TextTooLong { .. })
        ));
        net.hold = true;
        net.esme.submit(net.now, s(1, "1", "x")).unwrap();
        assert_eq!(
            net.esme.submit(net.now, s(1, "1", "x")),
            Err(SmsError::QueueFull { queue_max: 1 })
        );
        let mut rx = Net::new(EsmeConfig {
            bind_mode: BindMode::Receiver,
            ..config()
        });
        assert_eq!(
            rx.esme.submit(rx.now, s(1, "1", "x")),
            Err(SmsError::NotATransmitter)
        );
        rx.settle();
        assert_eq!(rx.smsc.bound(), Some(BindMode::Receiver));
    }

    #[test]
    fn config_is_validated_and_the_password_never_printed() {
        let bad = EsmeConfig {
            system_id: "a-system-id-that-is-too-long".into(),
            ..config()
        };
        assert!(matches!(
            Esme::new(bad, Instant::now()),
            Err(SmsError::Config {
                field: "system_id",
                ..
            })
        ));
        assert!(matches!(
            Esme::new(
                EsmeConfig {
                    window_size: 0,
                    ..config()
                },
                Instant::now()
            ),
            Err(SmsError::Config {
                field: "window_size",
                ..
            })
        ));
        assert!(!format!("{:?}", config()).contains("secret"));
        let submit = Submit {
            id: 1,
            to: "1".into(),
            text: "1234".into(),
        };
        assert!(!format!("{submit:?}").contains("1234"));
    }
}
