//! The link session: one merchant terminal's TCP connection, as a sans-IO state machine.
//!
//! # The loop
//!
//! The driver owns the socket and the clock. It feeds [`Session::handle_input`] with the bytes
//! it read ([`Input::Bytes`]), the core's answers ([`Input::CoreReply`]), advices to deliver
//! ([`Input::Advice`]) and [`Input::Timeout`] when the last deadline has passed, always with the
//! current `Instant`. After every input it drains [`Session::poll_output`] until that returns
//! [`Output::Timeout`], acting on each output: send [`Output::Transmit`] bytes, pass
//! [`Output::CoreRequest`] to the settlement core and come back with its reply under the same
//! [`RequestId`], mark an advice delivered on [`Output::AdviceAcked`], route advices to this
//! session after [`Output::SignedOn`] (and stop after [`Output::SignedOff`]), and close the
//! socket on [`Output::Close`], logging its reason. The session reads no clock and does no IO;
//! field 7 is computed from the wall-clock time given to [`Session::new`] plus elapsed `Instant`s.
//!
//! # Behaviour
//!
//! - Before sign-on only network management is served: sign-on (forwarded to the core), echo
//!   (answered), sign-off (answered). Any other request gets 39=`91`; sign on first. A
//!   connection that has not signed on within `sign_on_timeout_ms` is closed.
//! - Requests carry 41 and 42; they must be those of the sign-on, or get 39=`03`.
//! - Duplicates: requests are keyed by terminal id, STAN and MTI without its repeat mark. A
//!   request seen before gets the original response bytes again and no second core request; one
//!   whose original is still with the core waits for it and gets the same response; one with the
//!   same key but different content (field 7 aside) gets 39=`94`. The cache is bounded
//!   (`duplicates_max`, oldest finished entry evicted). Answers that say "not processed" (`91`
//!   for overload, core timeout or not signed on, `03`, `94`, `30`) are not cached, so a repeat
//!   is processed afresh.
//! - `0200` is answered when the core gives the final result, or after `hold_time_ms` with
//!   39=`09`; the final result then reaches the terminal as an advice from the core.
//! - Advices are sent one at a time in the order given, each with its own STAN, re-sent with the
//!   same STAN after `advice_ack_timeout_ms`, and done when a `0630` with that STAN arrives. After
//!   `advice_sends_max` sends without an answer the link is closed; the advice stays in the store
//!   and is sent again after the next sign-on.
//! - When nothing has been received for `echo_idle_ms` the gateway sends an echo `0800`; if
//!   nothing arrives within `echo_timeout_ms` after it, the link is closed as dead.
//! - Malformed input: a message whose MTI can be read and that expects an answer gets 39=`30`
//!   (with the STAN, 41 and 42 when they could be read); anything else (unreadable MTI, a bad
//!   length prefix, a malformed or unexpected response) closes the link with a reason. So do
//!   `format_errors_max` consecutive format errors and a frame left incomplete for
//!   `frame_timeout_ms`.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::codec::{CodecError, FrameReader, Malformed, Message, Mti};
use super::field48::Field48Error;
use super::message::{
    Advice, AdviceBody, AdviceResponse, Amount, AmountRequest, AmountResponse, AuthId, MerchantId,
    NetworkCode, NetworkRequest, NetworkResponse, OpenRequest, OpenResponse, OriginalData,
    ProfileError, ProfileMessage, ResponseCode, ReversalRequest, ReversalResponse, Secret, Stan,
    TerminalId, TransmissionTime, TxnRef,
};

/// Timers and bounds of one link. Values are clamped by [`Session::new`] (times to one day,
/// counts to at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long a `0200` waits for the final result before 39=`09`.
    pub hold_time_ms: u64,
    /// How long a sign-on, open or reversal waits for the core before 39=`91`.
    pub core_timeout_ms: u64,
    /// Silence after which the gateway sends an echo; `None` disables echoes.
    pub echo_idle_ms: Option<u64>,
    /// How long after an echo the link may stay silent before it is closed as dead.
    pub echo_timeout_ms: u64,
    pub advice_ack_timeout_ms: u64,
    /// Sends of one advice (first and re-sends) before the link is closed.
    pub advice_sends_max: u32,
    pub advices_queued_max: usize,
    pub requests_outstanding_max: usize,
    pub duplicates_max: usize,
    /// Repeats of one in-progress request that will each get the response.
    pub repeats_waiting_max: u32,
    /// Time a connection may stay without a successful sign-on.
    pub sign_on_timeout_ms: u64,
    /// Refused sign-ons before the link is closed.
    pub sign_on_attempts_max: u32,
    pub frame_size_max: usize,
    /// Time a partially received frame may wait for its remaining bytes.
    pub frame_timeout_ms: u64,
    /// Consecutive malformed messages before the link is closed.
    pub format_errors_max: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            hold_time_ms: 120_000,
            core_timeout_ms: 30_000,
            echo_idle_ms: Some(60_000),
            echo_timeout_ms: 10_000,
            advice_ack_timeout_ms: 15_000,
            advice_sends_max: 3,
            advices_queued_max: 1024,
            requests_outstanding_max: 16,
            duplicates_max: 256,
            repeats_waiting_max: 4,
            sign_on_timeout_ms: 30_000,
            sign_on_attempts_max: 3,
            frame_size_max: super::codec::FRAME_SIZE_MAX,
            frame_timeout_ms: 10_000,
            format_errors_max: 8,
        }
    }
}

const TIME_MAX_MS: u64 = 86_400_000;
/// Reported as the next deadline when nothing is scheduled.
const IDLE_WAKEUP: Duration = Duration::from_secs(3600);

impl Config {
    fn bounded(mut self) -> Config {
        for ms in [
            &mut self.hold_time_ms,
            &mut self.core_timeout_ms,
            &mut self.echo_timeout_ms,
            &mut self.advice_ack_timeout_ms,
            &mut self.sign_on_timeout_ms,
            &mut self.frame_timeout_ms,
        ] {
            *ms = (*ms).clamp(1, TIME_MAX_MS);
        }
        self.echo_idle_ms = self.echo_idle_ms.map(|ms| ms.clamp(1, TIME_MAX_MS));
        self.advice_sends_max = self.advice_sends_max.max(1);
        self.advices_queued_max = self.advices_queued_max.max(1);
        self.requests_outstanding_max = self.requests_outstanding_max.max(1);
        // In-progress entries are never evicted, so the cache must hold more than can be pending.
        self.duplicates_max = self.duplicates_max.max(self.requests_outstanding_max + 1);
        self.sign_on_attempts_max = self.sign_on_attempts_max.max(1);
        self.frame_size_max = self.frame_size_max.clamp(64, usize::from(u16::MAX));
        self.format_errors_max = self.format_errors_max.max(1);
        self
    }
}

/// Names a request to the core, so that its reply can be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// The durable id of an advice in the store, handed back on acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdviceId(pub u64);

/// What the driver feeds the session.
#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes read from the socket, in any chunking.
    Bytes(&'a [u8]),
    /// The deadline of the last [`Output::Timeout`] has passed.
    Timeout,
    /// The core's answer to an [`Output::CoreRequest`].
    CoreReply {
        request_id: RequestId,
        reply: CoreReply,
    },
    /// An event to deliver to this terminal as a `0620`, in order. Only while signed on.
    Advice {
        advice_id: AdviceId,
        body: AdviceBody,
    },
}

/// What the session asks of the settlement core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreRequest {
    /// Check the terminal's registration and credential. Replies: `SignedOn` or `Refused`
    /// (`03` unknown terminal or wrong key).
    SignOn {
        terminal_id: TerminalId,
        merchant_id: MerchantId,
        key: Secret,
    },
    /// Open a transaction, with its amount if known. Replies: `Opened` or `Refused`.
    Open {
        terminal_id: TerminalId,
        merchant_id: MerchantId,
        stan: Stan,
        amount: Option<Amount>,
    },
    /// Set the purchase amount and wait for the final result. Replies: `Approved` or `Refused`
    /// (a decline code). A reply after the hold time is dropped: the core sends the result as an
    /// advice anyway.
    SetAmount {
        terminal_id: TerminalId,
        merchant_id: MerchantId,
        stan: Stan,
        txn_ref: TxnRef,
        amount: Amount,
    },
    /// Cancel an unsettled transaction or reverse a settled one. Replies: `Reversed` or
    /// `Refused`.
    Reverse {
        terminal_id: TerminalId,
        merchant_id: MerchantId,
        stan: Stan,
        txn_ref: TxnRef,
        original: OriginalData,
    },
}

/// The core's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreReply {
    SignedOn,
    Opened {
        txn_ref: TxnRef,
        txn_number: String,
        expires_in_s: u32,
    },
    Approved {
        auth_id: AuthId,
    },
    Reversed,
    /// Any request refused with this code (`00` is treated as `96`).
    Refused(ResponseCode),
}

/// Why the session closed the link; the driver logs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    #[error("bad frame: {0}")]
    Framing(CodecError),
    #[error("unanswerable malformed message: {0}")]
    Malformed(CodecError),
    #[error("unusable {mti}: {error}")]
    Unusable { mti: Mti, error: ProfileError },
    #[error("unexpected {0} from the terminal")]
    UnexpectedMessage(Mti),
    #[error("frame incomplete for too long")]
    IncompleteFrame,
    #[error("too many consecutive format errors")]
    TooManyFormatErrors,
    #[error("no sign-on in time")]
    SignOnTimeout,
    #[error("sign-on refused too often")]
    SignOnRefused,
    #[error("no answer to echo: dead link")]
    DeadLink,
    #[error("advice {0:?} not acknowledged")]
    AdviceUnacknowledged(AdviceId),
}

/// What the session asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes to write to the socket (a whole frame).
    Transmit(Vec<u8>),
    CoreRequest {
        request_id: RequestId,
        request: CoreRequest,
    },
    /// The terminal answered the advice (`00`, or a code the driver should log); it is done.
    AdviceAcked {
        advice_id: AdviceId,
        response: ResponseCode,
    },
    /// The terminal signed on: route its advices here, starting with the stored un-acked ones.
    SignedOn {
        terminal_id: TerminalId,
        merchant_id: MerchantId,
    },
    /// The terminal signed off (or lost its sign-on): route no more advices here.
    SignedOff,
    /// Close the socket; nothing more comes from this session.
    Close { reason: CloseReason },
    /// Call again with [`Input::Timeout`] at this instant, or earlier with other input.
    Timeout(Instant),
}

/// The driver misused the session (the peer's misbehaviour never shows up here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("the session is closed")]
    Closed,
    #[error("no request {0:?} was ever issued")]
    UnknownRequest(RequestId),
    #[error("reply to {0:?} does not fit the request; the terminal got 96")]
    ReplyMismatch(RequestId),
    #[error("advice given while the terminal is not signed on")]
    NotSignedOn,
    #[error("advice queue full")]
    AdviceQueueFull,
    #[error("advice cannot be encoded: {0}")]
    AdviceUnencodable(String),
}

impl From<Field48Error> for SessionError {
    fn from(e: Field48Error) -> SessionError {
        SessionError::AdviceUnencodable(e.to_string())
    }
}

/// Key of the duplicate cache: terminal, STAN and MTI without its repeat mark.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DuplicateKey {
    pub terminal_id: TerminalId,
    pub stan: Stan,
    pub mti: Mti,
}

#[derive(Debug, Clone)]
enum DuplicateEntry {
    InProgress { digest: u64, responses_owed: u32 },
    Done { digest: u64, frame: Vec<u8> },
}

impl DuplicateEntry {
    fn digest(&self) -> u64 {
        match self {
            DuplicateEntry::InProgress { digest, .. } | DuplicateEntry::Done { digest, .. } => {
                *digest
            }
        }
    }
}

/// Finished responses by request key, bounded, oldest evicted first. A driver may carry the
/// finished entries of a terminal over to its next connection with
/// [`Session::take_duplicates`] and [`Session::restore_duplicates`].
#[derive(Debug, Clone, Default)]
pub struct DuplicateCache {
    entries: HashMap<DuplicateKey, DuplicateEntry>,
    order: VecDeque<DuplicateKey>,
}

impl DuplicateCache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, key: DuplicateKey, entry: DuplicateEntry, max: usize) {
        if self.entries.insert(key.clone(), entry).is_none() {
            self.order.push_back(key);
        }
        let mut scanned = 0;
        while self.entries.len() > max && scanned < self.order.len() {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(DuplicateEntry::InProgress { .. }) = self.entries.get(&oldest) {
                self.order.push_back(oldest);
                scanned += 1;
            } else {
                self.entries.remove(&oldest);
            }
        }
    }

    fn remove(&mut self, key: &DuplicateKey) -> Option<DuplicateEntry> {
        let entry = self.entries.remove(key)?;
        self.order.retain(|k| k != key);
        Some(entry)
    }

    /// Keeps only finished entries (in-progress ones belong to the connection that ends).
    fn finished(mut self) -> DuplicateCache {
        let entries = &self.entries;
        self.order
            .retain(|k| matches!(entries.get(k), Some(DuplicateEntry::Done { .. })));
        self.entries
            .retain(|_, e| matches!(e, DuplicateEntry::Done { .. }));
        self
    }
}

/// A request from the terminal that goes to the core.
#[derive(Debug, Clone)]
enum Pending {
    SignOn(NetworkRequest),
    Open(OpenRequest),
    Amount(AmountRequest),
    Reversal(ReversalRequest),
}

#[derive(Debug)]
struct PendingRequest {
    request: Pending,
    /// The request as received, for generic answers.
    raw: Message,
    duplicate_key: Option<DuplicateKey>,
    deadline: Instant,
}

#[derive(Debug)]
enum Link {
    /// Not signed on; closed at `deadline` unless a sign-on succeeds.
    SignedOff { deadline: Instant },
    SignedOn {
        terminal_id: TerminalId,
        merchant_id: MerchantId,
    },
}

#[derive(Debug)]
struct AdviceInFlight {
    advice_id: AdviceId,
    stan: Stan,
    frame: Vec<u8>,
    sends: u32,
    deadline: Instant,
}

#[derive(Debug)]
struct EchoInFlight {
    stan: Stan,
    deadline: Instant,
}

/// One terminal's link. See the module documentation for the loop.
#[derive(Debug)]
pub struct Session {
    config: Config,
    link: Link,
    closed: bool,
    now: Instant,
    clock_anchor: Instant,
    clock_anchor_unix_s: u64,
    reader: FrameReader,
    partial_since: Option<Instant>,
    last_received: Instant,
    outputs: VecDeque<Output>,
    next_request_id: u64,
    last_stan: Stan,
    pending: BTreeMap<RequestId, PendingRequest>,
    duplicates: DuplicateCache,
    advices: VecDeque<(AdviceId, AdviceBody)>,
    advice_in_flight: Option<AdviceInFlight>,
    echo: Option<EchoInFlight>,
    format_errors: u32,
    sign_on_refusals: u32,
}

fn after(now: Instant, ms: u64) -> Instant {
    // Config times are clamped to a day, so this cannot overflow on any real clock.
    now.checked_add(Duration::from_millis(ms)).unwrap_or(now)
}

/// A digest of a request's content for duplicate matching: the MTI without repeat mark and every
/// field but 7 (which a repeat legitimately changes).
fn digest(message: &Message) -> u64 {
    let mut hasher = DefaultHasher::new();
    message.mti().without_repeat().hash(&mut hasher);
    for (field, value) in message.fields().filter(|(f, _)| *f != 7) {
        field.hash(&mut hasher);
        value.hash(&mut hasher);
    }
    hasher.finish()
}

/// Fields copied from a request into a generic response.
const ECHOED_FIELDS: [u8; 9] = [3, 4, 11, 37, 41, 42, 49, 70, 90];

impl Session {
    /// A new session for a fresh connection at `now`; `wall_clock` is the same moment as a
    /// calendar time, used for field 7.
    pub fn new(config: Config, now: Instant, wall_clock: SystemTime) -> Session {
        let config = config.bounded();
        let unix_s = wall_clock
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Session {
            link: Link::SignedOff {
                deadline: after(now, config.sign_on_timeout_ms),
            },
            reader: FrameReader::new(config.frame_size_max),
            config,
            closed: false,
            now,
            clock_anchor: now,
            clock_anchor_unix_s: unix_s,
            partial_since: None,
            last_received: now,
            outputs: VecDeque::new(),
            next_request_id: 1,
            last_stan: Stan::ZERO,
            pending: BTreeMap::new(),
            duplicates: DuplicateCache::default(),
            advices: VecDeque::new(),
            advice_in_flight: None,
            echo: None,
            format_errors: 0,
            sign_on_refusals: 0,
        }
    }

    /// The terminal signed on to this link, if any.
    pub fn terminal(&self) -> Option<(&TerminalId, &MerchantId)> {
        match &self.link {
            Link::SignedOn {
                terminal_id,
                merchant_id,
            } => Some((terminal_id, merchant_id)),
            Link::SignedOff { .. } => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Advices accepted but not yet acknowledged (queued or in flight).
    pub fn advices_pending(&self) -> usize {
        self.advices.len() + usize::from(self.advice_in_flight.is_some())
    }

    /// Takes the finished duplicate entries, e.g. to keep them for the terminal's next link.
    pub fn take_duplicates(&mut self) -> DuplicateCache {
        std::mem::take(&mut self.duplicates).finished()
    }

    /// Adds finished entries from an earlier link of the same terminal (call after
    /// [`Output::SignedOn`]). Entries already present win.
    pub fn restore_duplicates(&mut self, cache: DuplicateCache) {
        let max = self.config.duplicates_max;
        let DuplicateCache { mut entries, order } = cache.finished();
        for key in order {
            if let Some(entry) = entries.remove(&key) {
                if !self.duplicates.entries.contains_key(&key) {
                    self.duplicates.insert(key, entry, max);
                }
            }
        }
    }

    pub fn handle_input(&mut self, input: Input<'_>, now: Instant) -> Result<(), SessionError> {
        if self.closed {
            return Err(SessionError::Closed);
        }
        self.now = self.now.max(now);
        match input {
            Input::Bytes(bytes) => {
                self.on_bytes(bytes);
                Ok(())
            }
            Input::Timeout => {
                self.on_timeout();
                Ok(())
            }
            Input::CoreReply { request_id, reply } => self.on_reply(request_id, reply),
            Input::Advice { advice_id, body } => self.on_advice(advice_id, body),
        }
    }

    pub fn poll_output(&mut self) -> Output {
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        Output::Timeout(self.next_deadline())
    }

    fn next_deadline(&self) -> Instant {
        let idle = after(self.now, IDLE_WAKEUP.as_millis() as u64);
        if self.closed {
            return idle;
        }
        let mut deadlines = vec![idle];
        if let Link::SignedOff { deadline } = self.link {
            deadlines.push(deadline);
        }
        if let Some(since) = self.partial_since {
            deadlines.push(after(since, self.config.frame_timeout_ms));
        }
        deadlines.extend(self.pending.values().map(|p| p.deadline));
        if let Some(advice) = &self.advice_in_flight {
            deadlines.push(advice.deadline);
        }
        if let Link::SignedOn { .. } = self.link {
            match (&self.echo, self.config.echo_idle_ms) {
                (Some(echo), _) => deadlines.push(echo.deadline),
                (None, Some(idle_ms)) => deadlines.push(after(self.last_received, idle_ms)),
                (None, None) => {}
            }
        }
        deadlines.into_iter().min().unwrap_or(idle)
    }

    // ---- Helpers ----

    fn transmission_time(&self) -> TransmissionTime {
        let elapsed = self.now.saturating_duration_since(self.clock_anchor);
        TransmissionTime::from_unix_seconds(self.clock_anchor_unix_s + elapsed.as_secs())
    }

    fn next_stan(&mut self) -> Stan {
        self.last_stan = self.last_stan.next();
        self.last_stan
    }

    fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.outputs.push_back(Output::Close { reason });
        }
    }

    fn transmit(&mut self, frame: Vec<u8>) {
        self.outputs.push_back(Output::Transmit(frame));
    }

    /// A generic response to `request` (fields echoed, 7 and 39 set), for answers that have no
    /// typed form (format errors, unknown MTIs) or when a typed one cannot be encoded.
    fn generic_response(&self, request: &Message, code: ResponseCode) -> Option<Vec<u8>> {
        let mti = request.mti().response()?;
        let mut response = Message::new(mti);
        for field in ECHOED_FIELDS {
            if let Some(value) = request.get(field) {
                // The value passed the codec's checks for this field, so it cannot fail here.
                let _ = response.set(field, value);
            }
        }
        let _ = response.set(7, self.transmission_time().to_string());
        let _ = response.set(39, code.as_str());
        response.encode_frame(self.config.frame_size_max).ok()
    }

    /// Encodes a typed response; falls back to a generic 96 built from `request` if it cannot be
    /// encoded (e.g. a core-provided field 48 value too long).
    fn encode_response(&self, response: ProfileMessage, request: &Message) -> Option<Vec<u8>> {
        let frame = response
            .to_message()
            .ok()
            .and_then(|m| m.encode_frame(self.config.frame_size_max).ok());
        frame.or_else(|| {
            tracing::warn!(mti = %request.mti(), "response not encodable, answering 96");
            self.generic_response(request, ResponseCode::SystemMalfunction)
        })
    }

    fn respond(&mut self, response: ProfileMessage, request: &Message) {
        if let Some(frame) = self.encode_response(response, request) {
            self.transmit(frame);
        }
    }

    // ---- Input handlers ----

    fn on_bytes(&mut self, bytes: &[u8]) {
        self.last_received = self.now;
        // Any traffic proves the link alive.
        self.echo = None;
        self.reader.push(bytes);
        let mut frames_taken = false;
        while !self.closed {
            match self.reader.next_frame() {
                Ok(Some(frame)) => {
                    let frame = frame.to_vec();
                    frames_taken = true;
                    self.on_frame(&frame);
                }
                Ok(None) => break,
                Err(error) => self.close(CloseReason::Framing(error)),
            }
        }
        self.partial_since = match (self.reader.buffered_len(), self.partial_since) {
            (0, _) => None,
            (_, Some(since)) if !frames_taken => Some(since),
            _ => Some(self.now),
        };
    }

    fn on_frame(&mut self, frame: &[u8]) {
        match Message::decode(frame) {
            Ok(message) => match ProfileMessage::from_message(&message) {
                Ok(profile) => {
                    self.format_errors = 0;
                    self.on_message(profile, &message);
                }
                Err(error) => {
                    let reason = CloseReason::Unusable {
                        mti: message.mti(),
                        error,
                    };
                    self.on_format_error(Some(&message), reason);
                }
            },
            Err(Malformed { error, partial }) => {
                self.on_format_error(partial.as_ref(), CloseReason::Malformed(error));
            }
        }
    }

    /// Answers 39=`30` when the message expects an answer, else closes with `reason`.
    fn on_format_error(&mut self, message: Option<&Message>, reason: CloseReason) {
        self.format_errors += 1;
        if self.format_errors >= self.config.format_errors_max {
            self.close(CloseReason::TooManyFormatErrors);
            return;
        }
        let frame = message.and_then(|m| self.generic_response(m, ResponseCode::FormatError));
        match frame {
            Some(frame) => {
                tracing::debug!(%reason, "format error answered with 30");
                self.transmit(frame);
            }
            None => self.close(reason),
        }
    }

    fn on_message(&mut self, message: ProfileMessage, raw: &Message) {
        match message {
            ProfileMessage::NetworkRequest(request) => self.on_network_request(request, raw),
            ProfileMessage::NetworkResponse(response) => {
                if self.echo.as_ref().is_some_and(|e| e.stan == response.stan) {
                    self.echo = None;
                } else {
                    tracing::debug!(stan = %response.stan, "0810 matches no echo; ignored");
                }
            }
            ProfileMessage::OpenRequest(request) => self.on_request(Pending::Open(request), raw),
            ProfileMessage::AmountRequest(request) => {
                self.on_request(Pending::Amount(request), raw);
            }
            ProfileMessage::ReversalRequest(request) => {
                self.on_request(Pending::Reversal(request), raw);
            }
            ProfileMessage::AdviceResponse(response) => self.on_advice_response(response),
            ProfileMessage::Advice(_) => {
                // Advices flow from the gateway to the terminal only.
                if let Some(frame) = self.generic_response(raw, ResponseCode::InvalidTransaction) {
                    self.transmit(frame);
                }
            }
            ProfileMessage::OpenResponse(_)
            | ProfileMessage::AmountResponse(_)
            | ProfileMessage::ReversalResponse(_) => {
                self.close(CloseReason::UnexpectedMessage(raw.mti()));
            }
        }
    }

    fn on_network_request(&mut self, request: NetworkRequest, raw: &Message) {
        let time = self.transmission_time();
        let answer = |code| {
            ProfileMessage::NetworkResponse(NetworkResponse::answering(&request, code, time))
        };
        match request.code {
            NetworkCode::Echo => self.respond(answer(ResponseCode::Approved), raw),
            NetworkCode::SignOff => {
                self.respond(answer(ResponseCode::Approved), raw);
                self.sign_off();
            }
            NetworkCode::Other(_) => self.respond(answer(ResponseCode::InvalidTransaction), raw),
            NetworkCode::SignOn => {
                let (Some(terminal_id), Some(merchant_id), Some(key)) = (
                    request.terminal_id.clone(),
                    request.merchant_id.clone(),
                    request.key.clone(),
                ) else {
                    self.respond(answer(ResponseCode::FormatError), raw);
                    return;
                };
                let busy = self
                    .pending
                    .values()
                    .any(|p| matches!(p.request, Pending::SignOn(_)));
                if busy || self.pending.len() >= self.config.requests_outstanding_max {
                    self.respond(answer(ResponseCode::SystemUnavailable), raw);
                    return;
                }
                if let Some((t, m)) = self.terminal() {
                    if *t != terminal_id || *m != merchant_id {
                        // One terminal per link: sign off first.
                        self.respond(answer(ResponseCode::InvalidTransaction), raw);
                        return;
                    }
                }
                let request_id = self.issue(
                    Pending::SignOn(request),
                    raw,
                    None,
                    self.config.core_timeout_ms,
                );
                self.outputs.push_back(Output::CoreRequest {
                    request_id,
                    request: CoreRequest::SignOn {
                        terminal_id,
                        merchant_id,
                        key,
                    },
                });
            }
        }
    }

    fn sign_off(&mut self) {
        if let Link::SignedOn { .. } = self.link {
            self.link = Link::SignedOff {
                deadline: after(self.now, self.config.sign_on_timeout_ms),
            };
            // Un-acked advices stay in the store and are sent after the next sign-on.
            self.advices.clear();
            self.advice_in_flight = None;
            self.echo = None;
            self.outputs.push_back(Output::SignedOff);
        }
    }

    fn issue(
        &mut self,
        request: Pending,
        raw: &Message,
        duplicate_key: Option<DuplicateKey>,
        timeout_ms: u64,
    ) -> RequestId {
        let request_id = RequestId(self.next_request_id);
        self.next_request_id += 1;
        self.pending.insert(
            request_id,
            PendingRequest {
                request,
                raw: raw.clone(),
                duplicate_key,
                deadline: after(self.now, timeout_ms),
            },
        );
        request_id
    }

    /// A refusal of `request` with `code` in its typed response form.
    fn refusal(&self, request: &Pending, code: ResponseCode) -> ProfileMessage {
        let time = self.transmission_time();
        match request {
            Pending::SignOn(r) => {
                ProfileMessage::NetworkResponse(NetworkResponse::answering(r, code, time))
            }
            Pending::Open(r) => ProfileMessage::OpenResponse(OpenResponse::refusing(r, code, time)),
            Pending::Amount(r) => {
                ProfileMessage::AmountResponse(AmountResponse::answering(r, code, None, time))
            }
            Pending::Reversal(r) => {
                ProfileMessage::ReversalResponse(ReversalResponse::answering(r, code, time))
            }
        }
    }

    fn on_request(&mut self, request: Pending, raw: &Message) {
        let (terminal_id, merchant_id, stan) = match &request {
            Pending::Open(r) => (&r.terminal_id, &r.merchant_id, r.stan),
            Pending::Amount(r) => (&r.terminal_id, &r.merchant_id, r.stan),
            Pending::Reversal(r) => (&r.terminal_id, &r.merchant_id, r.stan),
            Pending::SignOn(_) => return,
        };
        let Some((signed_terminal, signed_merchant)) = self.terminal() else {
            let refusal = self.refusal(&request, ResponseCode::SystemUnavailable);
            self.respond(refusal, raw);
            return;
        };
        if signed_terminal != terminal_id || signed_merchant != merchant_id {
            let refusal = self.refusal(&request, ResponseCode::InvalidMerchant);
            self.respond(refusal, raw);
            return;
        }
        let key = DuplicateKey {
            terminal_id: terminal_id.clone(),
            stan,
            mti: raw.mti().without_repeat(),
        };
        let digest = digest(raw);
        let repeats_max = self.config.repeats_waiting_max;
        match self.duplicates.entries.get_mut(&key) {
            Some(entry) if entry.digest() != digest => {
                let refusal = self.refusal(&request, ResponseCode::DuplicateTransmission);
                self.respond(refusal, raw);
                return;
            }
            Some(DuplicateEntry::Done { frame, .. }) => {
                let frame = frame.clone();
                self.transmit(frame);
                return;
            }
            Some(DuplicateEntry::InProgress { responses_owed, .. }) => {
                if *responses_owed <= repeats_max {
                    *responses_owed += 1;
                }
                return;
            }
            None => {}
        }
        if self.pending.len() >= self.config.requests_outstanding_max {
            let refusal = self.refusal(&request, ResponseCode::SystemUnavailable);
            self.respond(refusal, raw);
            return;
        }
        // Checks that need no core; their answers are final, so they are cached.
        let local_refusal = match &request {
            Pending::Open(r) if !r.processing.is_purchase() => {
                Some(ResponseCode::InvalidTransaction)
            }
            Pending::Open(r) if r.amount.is_some_and(|a| a.minor() == 0) => {
                Some(ResponseCode::InvalidAmount)
            }
            Pending::Amount(r) if !r.processing.is_purchase() => {
                Some(ResponseCode::InvalidTransaction)
            }
            Pending::Amount(r) if r.amount.minor() == 0 => Some(ResponseCode::InvalidAmount),
            _ => None,
        };
        if let Some(code) = local_refusal {
            let refusal = self.refusal(&request, code);
            if let Some(frame) = self.encode_response(refusal, raw) {
                let entry = DuplicateEntry::Done {
                    digest,
                    frame: frame.clone(),
                };
                self.duplicates
                    .insert(key, entry, self.config.duplicates_max);
                self.transmit(frame);
            }
            return;
        }
        let core_request = match &request {
            Pending::Open(r) => CoreRequest::Open {
                terminal_id: r.terminal_id.clone(),
                merchant_id: r.merchant_id.clone(),
                stan: r.stan,
                amount: r.amount,
            },
            Pending::Amount(r) => CoreRequest::SetAmount {
                terminal_id: r.terminal_id.clone(),
                merchant_id: r.merchant_id.clone(),
                stan: r.stan,
                txn_ref: r.txn_ref.clone(),
                amount: r.amount,
            },
            Pending::Reversal(r) => CoreRequest::Reverse {
                terminal_id: r.terminal_id.clone(),
                merchant_id: r.merchant_id.clone(),
                stan: r.stan,
                txn_ref: r.txn_ref.clone(),
                original: r.original.clone(),
            },
            Pending::SignOn(_) => return,
        };
        let timeout_ms = match request {
            Pending::Amount(_) => self.config.hold_time_ms,
            _ => self.config.core_timeout_ms,
        };
        self.duplicates.insert(
            key.clone(),
            DuplicateEntry::InProgress {
                digest,
                responses_owed: 1,
            },
            self.config.duplicates_max,
        );
        let request_id = self.issue(request, raw, Some(key), timeout_ms);
        self.outputs.push_back(Output::CoreRequest {
            request_id,
            request: core_request,
        });
    }

    /// Sends the response to a finished request, once per copy received, and caches it if
    /// `cache` (else forgets the key so that a repeat is processed afresh).
    fn finish(&mut self, key: Option<DuplicateKey>, frame: Option<Vec<u8>>, cache: bool) {
        let Some(frame) = frame else {
            if let Some(key) = key {
                self.duplicates.remove(&key);
            }
            return;
        };
        let mut copies = 1;
        if let Some(key) = key {
            if let Some(DuplicateEntry::InProgress {
                digest,
                responses_owed,
            }) = self.duplicates.entries.get(&key).cloned()
            {
                copies = responses_owed.max(1);
                if cache {
                    let entry = DuplicateEntry::Done {
                        digest,
                        frame: frame.clone(),
                    };
                    self.duplicates
                        .insert(key, entry, self.config.duplicates_max);
                } else {
                    self.duplicates.remove(&key);
                }
            }
        }
        for _ in 1..copies {
            self.transmit(frame.clone());
        }
        self.transmit(frame);
    }

    fn on_reply(&mut self, request_id: RequestId, reply: CoreReply) -> Result<(), SessionError> {
        let Some(pending) = self.pending.remove(&request_id) else {
            if request_id.0 < self.next_request_id {
                // Late: the request timed out or the terminal signed off. The core reports final
                // outcomes as advices, so nothing is lost.
                return Ok(());
            }
            return Err(SessionError::UnknownRequest(request_id));
        };
        let raw = pending.raw;
        let time = self.transmission_time();
        let mut mismatch = false;
        let (response, cache) = match (&pending.request, reply) {
            (Pending::SignOn(r), CoreReply::SignedOn) => {
                let (Some(terminal_id), Some(merchant_id)) =
                    (r.terminal_id.clone(), r.merchant_id.clone())
                else {
                    return Ok(());
                };
                self.sign_on_refusals = 0;
                let newly = self.terminal().is_none();
                self.link = Link::SignedOn {
                    terminal_id: terminal_id.clone(),
                    merchant_id: merchant_id.clone(),
                };
                self.last_received = self.now;
                let response = NetworkResponse::answering(r, ResponseCode::Approved, time);
                self.respond(ProfileMessage::NetworkResponse(response), &raw);
                if newly {
                    self.outputs.push_back(Output::SignedOn {
                        terminal_id,
                        merchant_id,
                    });
                }
                self.send_next_advice();
                return Ok(());
            }
            (Pending::SignOn(r), CoreReply::Refused(code)) => {
                let code = refusal_code(code);
                let response = NetworkResponse::answering(r, code, time);
                self.respond(ProfileMessage::NetworkResponse(response), &raw);
                self.sign_off();
                self.sign_on_refusals += 1;
                if self.sign_on_refusals >= self.config.sign_on_attempts_max {
                    self.close(CloseReason::SignOnRefused);
                }
                return Ok(());
            }
            (
                Pending::Open(r),
                CoreReply::Opened {
                    txn_ref,
                    txn_number,
                    expires_in_s,
                },
            ) => {
                let mut response = OpenResponse::refusing(r, ResponseCode::Approved, time);
                response.txn_ref = Some(txn_ref);
                response.txn_number = Some(txn_number);
                response.expires_in_s = Some(expires_in_s);
                (ProfileMessage::OpenResponse(response), true)
            }
            (Pending::Amount(r), CoreReply::Approved { auth_id }) => {
                let response =
                    AmountResponse::answering(r, ResponseCode::Approved, Some(auth_id), time);
                (ProfileMessage::AmountResponse(response), true)
            }
            (Pending::Reversal(r), CoreReply::Reversed) => {
                let response = ReversalResponse::answering(r, ResponseCode::Approved, time);
                (ProfileMessage::ReversalResponse(response), true)
            }
            (request, CoreReply::Refused(code)) => {
                let code = refusal_code(code);
                // 91 says "not processed": let a repeat try again.
                (
                    self.refusal(request, code),
                    code != ResponseCode::SystemUnavailable,
                )
            }
            (request, _) => {
                mismatch = true;
                (
                    self.refusal(request, ResponseCode::SystemMalfunction),
                    false,
                )
            }
        };
        let frame = self.encode_response(response, &raw);
        self.finish(pending.duplicate_key, frame, cache);
        if mismatch {
            return Err(SessionError::ReplyMismatch(request_id));
        }
        Ok(())
    }

    fn on_advice(&mut self, advice_id: AdviceId, body: AdviceBody) -> Result<(), SessionError> {
        let Some((terminal_id, merchant_id)) = self.terminal() else {
            return Err(SessionError::NotSignedOn);
        };
        if self.advices.len() >= self.config.advices_queued_max {
            return Err(SessionError::AdviceQueueFull);
        }
        // Check now that it encodes within the frame bound: STAN and time are fixed-width, so
        // the real message has the same length.
        let probe = Advice {
            stan: self.last_stan,
            transmitted: Some(self.transmission_time()),
            terminal_id: Some(terminal_id.clone()),
            merchant_id: Some(merchant_id.clone()),
            body,
        };
        ProfileMessage::Advice(probe.clone())
            .to_message()
            .map_err(|e| SessionError::AdviceUnencodable(e.to_string()))?
            .encode_frame(self.config.frame_size_max)
            .map_err(|e| SessionError::AdviceUnencodable(e.to_string()))?;
        self.advices.push_back((advice_id, probe.body));
        self.send_next_advice();
        Ok(())
    }

    fn send_next_advice(&mut self) {
        if self.advice_in_flight.is_some() {
            return;
        }
        let Some((terminal_id, merchant_id)) = self.terminal().map(|(t, m)| (t.clone(), m.clone()))
        else {
            return;
        };
        while let Some((advice_id, body)) = self.advices.pop_front() {
            let stan = self.next_stan();
            let advice = Advice {
                stan,
                transmitted: Some(self.transmission_time()),
                terminal_id: Some(terminal_id.clone()),
                merchant_id: Some(merchant_id.clone()),
                body,
            };
            let frame = ProfileMessage::Advice(advice)
                .to_message()
                .ok()
                .and_then(|m| m.encode_frame(self.config.frame_size_max).ok());
            // Checked when accepted, so this only skips on an internal inconsistency.
            let Some(frame) = frame else {
                tracing::error!(?advice_id, "advice no longer encodes; skipped");
                continue;
            };
            self.advice_in_flight = Some(AdviceInFlight {
                advice_id,
                stan,
                frame: frame.clone(),
                sends: 1,
                deadline: after(self.now, self.config.advice_ack_timeout_ms),
            });
            self.transmit(frame);
            return;
        }
    }

    fn on_advice_response(&mut self, response: AdviceResponse) {
        match &self.advice_in_flight {
            Some(advice) if advice.stan == response.stan => {
                let advice_id = advice.advice_id;
                self.advice_in_flight = None;
                self.outputs.push_back(Output::AdviceAcked {
                    advice_id,
                    response: response.response,
                });
                self.send_next_advice();
            }
            _ => {
                tracing::debug!(stan = %response.stan, "0630 matches no advice in flight; ignored")
            }
        }
    }

    fn on_timeout(&mut self) {
        let now = self.now;
        if let Link::SignedOff { deadline } = self.link {
            if now >= deadline {
                self.close(CloseReason::SignOnTimeout);
                return;
            }
        }
        if self
            .partial_since
            .is_some_and(|since| now >= after(since, self.config.frame_timeout_ms))
        {
            self.close(CloseReason::IncompleteFrame);
            return;
        }
        let expired: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(id, _)| *id)
            .collect();
        for request_id in expired {
            let Some(pending) = self.pending.remove(&request_id) else {
                continue;
            };
            let raw = pending.raw;
            // A held amount is answered "in progress" (final, cached); anything else "system
            // unavailable" (not processed, not cached).
            let (code, cache) = match pending.request {
                Pending::Amount(_) => (ResponseCode::InProgress, true),
                _ => (ResponseCode::SystemUnavailable, false),
            };
            let response = self.refusal(&pending.request, code);
            let frame = self.encode_response(response, &raw);
            self.finish(pending.duplicate_key, frame, cache);
        }
        if let Link::SignedOn { .. } = self.link {
            match &self.echo {
                Some(echo) if now >= echo.deadline => {
                    self.close(CloseReason::DeadLink);
                    return;
                }
                Some(_) => {}
                None => {
                    if let Some(idle_ms) = self.config.echo_idle_ms {
                        if now >= after(self.last_received, idle_ms) {
                            self.send_echo();
                        }
                    }
                }
            }
        }
        if let Some(advice) = &mut self.advice_in_flight {
            if now >= advice.deadline {
                if advice.sends >= self.config.advice_sends_max {
                    let advice_id = advice.advice_id;
                    self.close(CloseReason::AdviceUnacknowledged(advice_id));
                    return;
                }
                advice.sends += 1;
                advice.deadline = after(now, self.config.advice_ack_timeout_ms);
                let frame = advice.frame.clone();
                self.transmit(frame);
            }
        }
    }

    fn send_echo(&mut self) {
        let stan = self.next_stan();
        let echo = NetworkRequest {
            stan,
            transmitted: Some(self.transmission_time()),
            code: NetworkCode::Echo,
            terminal_id: None,
            merchant_id: None,
            key: None,
        };
        let frame = ProfileMessage::NetworkRequest(echo)
            .to_message()
            .ok()
            .and_then(|m| m.encode_frame(self.config.frame_size_max).ok());
        if let Some(frame) = frame {
            self.echo = Some(EchoInFlight {
                stan,
                deadline: after(self.now, self.config.echo_timeout_ms),
            });
            self.transmit(frame);
        }
    }
}

fn refusal_code(code: ResponseCode) -> ResponseCode {
    if code.is_approved() {
        ResponseCode::SystemMalfunction
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::{Message, Mti};
    use super::super::message::tests::{eur, merchant, terminal};
    use super::super::message::{AdviceEvent, ProcessingCode, mtis};
    use super::*;

    /// 2025-03-14T15:30:00Z, so field 7 of the first messages is `0314153000`.
    const WALL_CLOCK_S: u64 = 1_741_966_200;

    fn stan(n: u32) -> Stan {
        Stan::new(n).unwrap()
    }

    fn txn_ref() -> TxnRef {
        TxnRef::new("000000004711").unwrap()
    }

    /// Drives a session in virtual time: no sockets, no sleeps.
    struct Harness {
        session: Session,
        now: Instant,
        next_timeout: Instant,
    }

    impl Harness {
        fn new(config: Config) -> Harness {
            let now = Instant::now();
            let wall = UNIX_EPOCH + Duration::from_secs(WALL_CLOCK_S);
            let session = Session::new(config, now, wall);
            Harness {
                session,
                now,
                next_timeout: now,
            }
        }

        fn signed_on(config: Config) -> Harness {
            let mut h = Harness::new(config);
            let out = h.send(sign_on(1));
            let id = core_request_id(&out);
            let out = h.reply(id, CoreReply::SignedOn);
            assert_eq!(response_code(&out[0]), ResponseCode::Approved);
            h
        }

        fn drain(&mut self) -> Vec<Output> {
            let mut outputs = Vec::new();
            loop {
                match self.session.poll_output() {
                    Output::Timeout(at) => {
                        self.next_timeout = at;
                        return outputs;
                    }
                    other => outputs.push(other),
                }
            }
        }

        fn input(&mut self, input: Input<'_>) -> Vec<Output> {
            self.session.handle_input(input, self.now).unwrap();
            self.drain()
        }

        fn send_bytes(&mut self, bytes: &[u8]) -> Vec<Output> {
            self.input(Input::Bytes(bytes))
        }

        fn send_message(&mut self, message: &Message) -> Vec<Output> {
            self.send_bytes(&message.encode_frame(4096).unwrap())
        }

        fn send(&mut self, message: ProfileMessage) -> Vec<Output> {
            self.send_message(&message.to_message().unwrap())
        }

        fn reply(&mut self, request_id: RequestId, reply: CoreReply) -> Vec<Output> {
            self.input(Input::CoreReply { request_id, reply })
        }

        fn advice(&mut self, id: u64, event: AdviceEvent) -> Vec<Output> {
            let body = AdviceBody::new(txn_ref(), event);
            self.input(Input::Advice {
                advice_id: AdviceId(id),
                body,
            })
        }

        /// Moves the clock forward by `by`, firing every deadline on the way.
        fn advance(&mut self, by: Duration) -> Vec<Output> {
            let target = self.now + by;
            let mut outputs = self.drain();
            while self.next_timeout <= target && !self.session.is_closed() {
                self.now = self.now.max(self.next_timeout);
                outputs.extend(self.input(Input::Timeout));
            }
            self.now = target;
            outputs
        }
    }

    fn decode(output: &Output) -> ProfileMessage {
        let Output::Transmit(frame) = output else {
            panic!("expected Transmit, got {output:?}");
        };
        let len = usize::from(u16::from_be_bytes([frame[0], frame[1]]));
        assert_eq!(len, frame.len() - 2, "length prefix");
        ProfileMessage::from_message(&Message::decode(&frame[2..]).unwrap()).unwrap()
    }

    fn decode_raw(output: &Output) -> Message {
        let Output::Transmit(frame) = output else {
            panic!("expected Transmit, got {output:?}");
        };
        Message::decode(&frame[2..]).unwrap()
    }

    fn response_code(output: &Output) -> ResponseCode {
        let raw = decode_raw(output);
        ResponseCode::parse(raw.get(39).expect("field 39")).unwrap()
    }

    fn core_request_id(outputs: &[Output]) -> RequestId {
        match outputs {
            [Output::CoreRequest { request_id, .. }] => *request_id,
            other => panic!("expected one CoreRequest, got {other:?}"),
        }
    }

    fn sign_on(n: u32) -> ProfileMessage {
        ProfileMessage::NetworkRequest(NetworkRequest {
            stan: stan(n),
            transmitted: None,
            code: NetworkCode::SignOn,
            terminal_id: Some(terminal()),
            merchant_id: Some(merchant()),
            key: Some(Secret::new("k3y")),
        })
    }

    fn network(n: u32, code: NetworkCode) -> ProfileMessage {
        ProfileMessage::NetworkRequest(NetworkRequest {
            stan: stan(n),
            transmitted: None,
            code,
            terminal_id: Some(terminal()),
            merchant_id: Some(merchant()),
            key: None,
        })
    }

    fn open(n: u32, amount: Option<Amount>) -> OpenRequest {
        OpenRequest {
            repeat: false,
            stan: stan(n),
            transmitted: None,
            processing: ProcessingCode::purchase(),
            amount,
            terminal_id: terminal(),
            merchant_id: merchant(),
        }
    }

    fn amount(n: u32, minor: u64) -> AmountRequest {
        AmountRequest {
            repeat: false,
            stan: stan(n),
            transmitted: None,
            processing: ProcessingCode::purchase(),
            amount: eur(minor),
            txn_ref: txn_ref(),
            terminal_id: terminal(),
            merchant_id: merchant(),
        }
    }

    fn ack(n: Stan) -> ProfileMessage {
        ProfileMessage::AdviceResponse(AdviceResponse {
            stan: n,
            transmitted: None,
            txn_ref: Some(txn_ref()),
            response: ResponseCode::Approved,
            terminal_id: Some(terminal()),
            merchant_id: Some(merchant()),
        })
    }

    fn opened() -> CoreReply {
        CoreReply::Opened {
            txn_ref: txn_ref(),
            txn_number: "4821937".into(),
            expires_in_s: 300,
        }
    }

    #[test]
    fn sign_on_is_checked_by_the_core() {
        let mut h = Harness::new(Config::default());
        let out = h.send(sign_on(1));
        let [
            Output::CoreRequest {
                request_id,
                request,
            },
        ] = out.as_slice()
        else {
            panic!("{out:?}");
        };
        assert_eq!(
            *request,
            CoreRequest::SignOn {
                terminal_id: terminal(),
                merchant_id: merchant(),
                key: Secret::new("k3y"),
            }
        );
        let out = h.reply(*request_id, CoreReply::SignedOn);
        assert_eq!(out.len(), 2, "{out:?}");
        let ProfileMessage::NetworkResponse(r) = decode(&out[0]) else {
            panic!()
        };
        assert_eq!(r.response, ResponseCode::Approved);
        assert_eq!(r.stan, stan(1));
        assert_eq!(r.code, NetworkCode::SignOn);
        assert_eq!(r.transmitted.unwrap().to_string(), "0314153000");
        assert_eq!(
            out[1],
            Output::SignedOn {
                terminal_id: terminal(),
                merchant_id: merchant()
            }
        );
        assert!(h.session.terminal().is_some());
    }

    #[test]
    fn refused_sign_ons_close_the_link() {
        let mut h = Harness::new(Config::default());
        for attempt in 1..=3 {
            let id = core_request_id(&h.send(sign_on(attempt)));
            let out = h.reply(id, CoreReply::Refused(ResponseCode::InvalidMerchant));
            assert_eq!(response_code(&out[0]), ResponseCode::InvalidMerchant);
            assert_eq!(out.len() == 2, attempt == 3, "{out:?}");
        }
        assert!(h.session.is_closed());
        assert_eq!(
            h.session.handle_input(Input::Timeout, h.now),
            Err(SessionError::Closed)
        );
    }

    #[test]
    fn sign_on_without_key_is_a_format_error() {
        let mut h = Harness::new(Config::default());
        let out = h.send(network(1, NetworkCode::SignOn));
        assert_eq!(out.len(), 1);
        assert_eq!(response_code(&out[0]), ResponseCode::FormatError);
    }

    #[test]
    fn before_sign_on_only_network_management_is_served() {
        let mut h = Harness::new(Config::default());
        let out = h.send(ProfileMessage::OpenRequest(open(1, None)));
        assert_eq!(out.len(), 1, "no core request: {out:?}");
        let ProfileMessage::OpenResponse(r) = decode(&out[0]) else {
            panic!()
        };
        assert_eq!(r.response, ResponseCode::SystemUnavailable);
        assert_eq!(r.stan, stan(1));
        let out = h.send(network(2, NetworkCode::Echo));
        assert_eq!(response_code(&out[0]), ResponseCode::Approved);
        let out = h.send(network(3, NetworkCode::Other(999)));
        assert_eq!(response_code(&out[0]), ResponseCode::InvalidTransaction);
        assert_eq!(
            h.session.handle_input(
                Input::Advice {
                    advice_id: AdviceId(1),
                    body: AdviceBody::new(txn_ref(), AdviceEvent::Paired)
                },
                h.now
            ),
            Err(SessionError::NotSignedOn)
        );
    }

    #[test]
    fn no_sign_on_in_time_closes() {
        let mut h = Harness::new(Config::default());
        let out = h.advance(Duration::from_secs(29));
        assert!(out.is_empty());
        let out = h.advance(Duration::from_secs(1));
        assert_eq!(
            out,
            vec![Output::Close {
                reason: CloseReason::SignOnTimeout
            }]
        );
    }

    #[test]
    fn open_transaction_returns_reference_and_number() {
        let mut h = Harness::signed_on(Config::default());
        let out = h.send(ProfileMessage::OpenRequest(open(2, Some(eur(1250)))));
        let [
            Output::CoreRequest {
                request_id,
                request,
            },
        ] = out.as_slice()
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            *request,
            CoreRequest::Open {
                terminal_id: terminal(),
                merchant_id: merchant(),
                stan: stan(2),
                amount: Some(eur(1250))
            }
        );
        let out = h.reply(*request_id, opened());
        let ProfileMessage::OpenResponse(r) = decode(&out[0]) else {
            panic!()
        };
        assert_eq!(r.response, ResponseCode::Approved);
        assert_eq!(r.txn_ref, Some(txn_ref()));
        assert_eq!(r.txn_number.as_deref(), Some("4821937"));
        assert_eq!(r.expires_in_s, Some(300));
        assert_eq!(r.amount, Some(eur(1250)));
        assert_eq!(r.stan, stan(2));
    }

    #[test]
    fn requests_for_another_terminal_get_03() {
        let mut h = Harness::signed_on(Config::default());
        let mut request = open(2, None);
        request.terminal_id = TerminalId::new("OTHER").unwrap();
        let out = h.send(ProfileMessage::OpenRequest(request));
        assert_eq!(out.len(), 1);
        assert_eq!(response_code(&out[0]), ResponseCode::InvalidMerchant);
    }

    #[test]
    fn local_checks_answer_without_the_core() {
        let mut h = Harness::signed_on(Config::default());
        let mut request = open(2, None);
        request.processing = ProfileMessage::OpenRequest(open(2, None))
            .to_message()
            .map(|mut m| {
                m.set(3, "310000").unwrap();
                match ProfileMessage::from_message(&m).unwrap() {
                    ProfileMessage::OpenRequest(r) => r.processing,
                    _ => unreachable!(),
                }
            })
            .unwrap();
        let out = h.send(ProfileMessage::OpenRequest(request));
        assert_eq!(response_code(&out[0]), ResponseCode::InvalidTransaction);
        let out = h.send(ProfileMessage::AmountRequest(amount(3, 0)));
        assert_eq!(out.len(), 1);
        assert_eq!(response_code(&out[0]), ResponseCode::InvalidAmount);
    }

    #[test]
    fn advices_go_one_at_a_time_in_order() {
        let mut h = Harness::signed_on(Config::default());
        let out = h.advice(10, AdviceEvent::Paired);
        let ProfileMessage::Advice(first) = decode(&out[0]) else {
            panic!()
        };
        assert_eq!(first.body.event, AdviceEvent::Paired);
        assert_eq!(first.terminal_id, Some(terminal()));
        assert!(
            h.advice(11, AdviceEvent::Settled).is_empty(),
            "waits for the ack"
        );
        assert_eq!(h.session.advices_pending(), 2);
        // An ack with another STAN is ignored.
        assert!(h.send(ack(stan(999))).is_empty());
        let out = h.send(ack(first.stan));
        assert_eq!(
            out[0],
            Output::AdviceAcked {
                advice_id: AdviceId(10),
                response: ResponseCode::Approved
            }
        );
        let ProfileMessage::Advice(second) = decode(&out[1]) else {
            panic!()
        };
        assert_eq!(second.body.event, AdviceEvent::Settled);
        assert_ne!(second.stan, first.stan);
        let out = h.send(ack(second.stan));
        assert_eq!(
            out,
            vec![Output::AdviceAcked {
                advice_id: AdviceId(11),
                response: ResponseCode::Approved
            }]
        );
        assert_eq!(h.session.advices_pending(), 0);
    }

    #[test]
    fn unacknowledged_advice_is_resent_then_the_link_closes() {
        let config = Config {
            echo_idle_ms: None,
            ..Config::default()
        };
        let mut h = Harness::signed_on(config);
        let first = h.advice(10, AdviceEvent::Paired);
        let out = h.advance(Duration::from_secs(15));
        assert_eq!(out, first, "re-sent byte for byte, same STAN");
        let out = h.advance(Duration::from_secs(15));
        assert_eq!(out, first);
        let out = h.advance(Duration::from_secs(15));
        assert_eq!(
            out,
            vec![Output::Close {
                reason: CloseReason::AdviceUnacknowledged(AdviceId(10))
            }]
        );
    }

    #[test]
    fn amount_is_answered_09_after_the_hold_time() {
        let mut h = Harness::signed_on(Config {
            echo_idle_ms: None,
            ..Config::default()
        });
        let id = core_request_id(&h.send(ProfileMessage::AmountRequest(amount(3, 1250))));
        assert!(h.advance(Duration::from_secs(119)).is_empty());
        let out = h.advance(Duration::from_secs(1));
        let ProfileMessage::AmountResponse(r) = decode(&out[0]) else {
            panic!()
        };
        assert_eq!(r.response, ResponseCode::InProgress);
        assert_eq!(r.auth_id, None);
        assert_eq!(r.txn_ref, txn_ref());
        // The late final result is dropped: it reaches the terminal as an advice.
        let late = h.reply(
            id,
            CoreReply::Approved {
                auth_id: AuthId::new("A1B2C3").unwrap(),
            },
        );
        assert!(late.is_empty());
        // A repeat gets the original 09 again, no second core request.
        let mut repeat = amount(3, 1250);
        repeat.repeat = true;
        let again = h.send(ProfileMessage::AmountRequest(repeat));
        assert_eq!(again, out);
    }

    #[test]
    fn amount_approved_within_the_hold_time() {
        let mut h = Harness::signed_on(Config {
            echo_idle_ms: None,
            ..Config::default()
        });
        let id = core_request_id(&h.send(ProfileMessage::AmountRequest(amount(3, 1250))));
        h.advance(Duration::from_secs(30));
        let out = h.reply(
            id,
            CoreReply::Approved {
                auth_id: AuthId::new("A1B2C3").unwrap(),
            },
        );
        let ProfileMessage::AmountResponse(r) = decode(&out[0]) else {
            panic!()
        };
        assert_eq!(r.response, ResponseCode::Approved);
        assert_eq!(r.auth_id, AuthId::new("A1B2C3"));
        assert_eq!(r.amount, eur(1250));
        assert_eq!(r.transmitted.unwrap().to_string(), "0314153030");
        // Nothing fires at the old hold deadline.
        assert!(h.advance(Duration::from_secs(120)).is_empty());
    }

    #[test]
    fn duplicate_stan_gets_the_original_response_and_one_core_request() {
        let mut h = Harness::signed_on(Config::default());
        let id = core_request_id(&h.send(ProfileMessage::OpenRequest(open(5, None))));
        let original = h.reply(id, opened());
        assert_eq!(original.len(), 1);
        // Same message again: same bytes, no core request.
        assert_eq!(h.send(ProfileMessage::OpenRequest(open(5, None))), original);
        // A repeat MTI with a different field 7: same bytes.
        let mut repeat = open(5, None);
        repeat.repeat = true;
        repeat.transmitted = Some(TransmissionTime::parse("0314153100").unwrap());
        assert_eq!(h.send(ProfileMessage::OpenRequest(repeat)), original);
        // Same key, different content: 94, not cached, no core request.
        let out = h.send(ProfileMessage::OpenRequest(open(5, Some(eur(1)))));
        assert_eq!(out.len(), 1);
        assert_eq!(response_code(&out[0]), ResponseCode::DuplicateTransmission);
        // Same STAN under another MTI class is a new request.
        let out = h.send(ProfileMessage::AmountRequest(amount(5, 100)));
        assert!(matches!(out.as_slice(), [Output::CoreRequest { .. }]));
    }

    #[test]
    fn repeat_of_a_request_in_progress_waits_for_it() {
        let mut h = Harness::signed_on(Config::default());
        let id = core_request_id(&h.send(ProfileMessage::AmountRequest(amount(3, 1250))));
        let mut repeat = amount(3, 1250);
        repeat.repeat = true;
        assert!(h.send(ProfileMessage::AmountRequest(repeat)).is_empty());
        let out = h.reply(
            id,
            CoreReply::Approved {
                auth_id: AuthId::new("A1B2C3").unwrap(),
            },
        );
        assert_eq!(out.len(), 2, "one answer per copy received");
        assert_eq!(out[0], out[1]);
        assert_eq!(response_code(&out[0]), ResponseCode::Approved);
    }

    #[test]
    fn system_unavailable_is_not_cached() {
        let mut h = Harness::signed_on(Config::default());
        let id = core_request_id(&h.send(ProfileMessage::OpenRequest(open(5, None))));
        let out = h.reply(id, CoreReply::Refused(ResponseCode::SystemUnavailable));
        assert_eq!(response_code(&out[0]), ResponseCode::SystemUnavailable);
        let out = h.send(ProfileMessage::OpenRequest(open(5, None)));
        assert!(
            matches!(out.as_slice(), [Output::CoreRequest { .. }]),
            "processed afresh"
        );
    }

    #[test]
    fn core_timeout_answers_91() {
        let mut h = Harness::signed_on(Config {
            echo_idle_ms: None,
            ..Config::default()
        });
        let id = core_request_id(&h.send(ProfileMessage::OpenRequest(open(5, None))));
        let out = h.advance(Duration::from_secs(30));
        assert_eq!(response_code(&out[0]), ResponseCode::SystemUnavailable);
        assert!(h.reply(id, opened()).is_empty(), "late reply dropped");
        assert_eq!(
            h.session.handle_input(
                Input::CoreReply {
                    request_id: RequestId(999),
                    reply: opened()
                },
                h.now
            ),
            Err(SessionError::UnknownRequest(RequestId(999)))
        );
    }

    #[test]
    fn mismatched_reply_answers_96() {
        let mut h = Harness::signed_on(Config::default());
        let id = core_request_id(&h.send(ProfileMessage::OpenRequest(open(5, None))));
        assert_eq!(
            h.session.handle_input(
                Input::CoreReply {
                    request_id: id,
                    reply: CoreReply::Reversed
                },
                h.now
            ),
            Err(SessionError::ReplyMismatch(id))
        );
        let out = h.drain();
        assert_eq!(response_code(&out[0]), ResponseCode::SystemMalfunction);
    }

    #[test]
    fn outstanding_requests_are_bounded() {
        let mut h = Harness::signed_on(Config {
            requests_outstanding_max: 2,
            ..Config::default()
        });
        core_request_id(&h.send(ProfileMessage::OpenRequest(open(2, None))));
        core_request_id(&h.send(ProfileMessage::OpenRequest(open(3, None))));
        let out = h.send(ProfileMessage::OpenRequest(open(4, None)));
        assert_eq!(out.len(), 1);
        assert_eq!(response_code(&out[0]), ResponseCode::SystemUnavailable);
    }

    #[test]
    fn duplicate_cache_is_bounded() {
        let mut h = Harness::signed_on(Config {
            duplicates_max: 20,
            ..Config::default()
        });
        for n in 10..40 {
            let id = core_request_id(&h.send(ProfileMessage::OpenRequest(open(n, None))));
            h.reply(id, opened());
        }
        assert_eq!(h.session.duplicates.len(), 20);
        // The oldest was evicted and is processed again; a recent one is replayed.
        assert!(matches!(
            h.send(ProfileMessage::OpenRequest(open(10, None)))
                .as_slice(),
            [Output::CoreRequest { .. }]
        ));
        assert!(matches!(
            h.send(ProfileMessage::OpenRequest(open(39, None)))
                .as_slice(),
            [Output::Transmit(_)]
        ));
    }

    #[test]
    fn duplicates_carry_over_to_the_next_link() {
        let mut h = Harness::signed_on(Config::default());
        let id = core_request_id(&h.send(ProfileMessage::OpenRequest(open(5, None))));
        let original = h.reply(id, opened());
        let cache = h.session.take_duplicates();
        let mut next = Harness::signed_on(Config::default());
        next.session.restore_duplicates(cache);
        let mut repeat = open(5, None);
        repeat.repeat = true;
        assert_eq!(next.send(ProfileMessage::OpenRequest(repeat)), original);
    }

    #[test]
    fn echo_when_idle_and_dead_link_detection() {
        let mut h = Harness::signed_on(Config::default());
        let out = h.advance(Duration::from_secs(60));
        let ProfileMessage::NetworkRequest(echo) = decode(&out[0]) else {
            panic!("{out:?}")
        };
        assert_eq!(echo.code, NetworkCode::Echo);
        let answer = NetworkResponse::answering(
            &echo,
            ResponseCode::Approved,
            TransmissionTime::parse("0314153100").unwrap(),
        );
        assert!(h.send(ProfileMessage::NetworkResponse(answer)).is_empty());
        let out = h.advance(Duration::from_secs(60));
        assert!(matches!(decode(&out[0]), ProfileMessage::NetworkRequest(_)));
        let out = h.advance(Duration::from_secs(10));
        assert_eq!(
            out,
            vec![Output::Close {
                reason: CloseReason::DeadLink
            }]
        );
    }

    #[test]
    fn terminal_echo_is_answered() {
        let mut h = Harness::signed_on(Config::default());
        let out = h.send(network(7, NetworkCode::Echo));
        let ProfileMessage::NetworkResponse(r) = decode(&out[0]) else {
            panic!()
        };
        assert_eq!(
            (r.stan, r.code, r.response),
            (stan(7), NetworkCode::Echo, ResponseCode::Approved)
        );
    }

    #[test]
    fn sign_off_stops_service_and_advices() {
        let mut h = Harness::signed_on(Config::default());
        h.advice(10, AdviceEvent::Paired);
        let out = h.send(network(8, NetworkCode::SignOff));
        assert_eq!(response_code(&out[0]), ResponseCode::Approved);
        assert_eq!(out[1], Output::SignedOff);
        assert_eq!(h.session.advices_pending(), 0, "left to the store");
        let out = h.send(ProfileMessage::OpenRequest(open(9, None)));
        assert_eq!(response_code(&out[0]), ResponseCode::SystemUnavailable);
        // Signing on again brings the link back; the driver re-feeds the stored advice.
        let id = core_request_id(&h.send(sign_on(10)));
        let out = h.reply(id, CoreReply::SignedOn);
        assert!(matches!(out[1], Output::SignedOn { .. }));
        let out = h.advice(10, AdviceEvent::Paired);
        assert!(matches!(decode(&out[0]), ProfileMessage::Advice(_)));
    }

    // ---- Bad input ----

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut out = (message.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(message);
        out
    }

    fn closed_with(out: &[Output]) -> &CloseReason {
        match out.last() {
            Some(Output::Close { reason }) => reason,
            other => panic!("expected Close, got {other:?}"),
        }
    }

    #[test]
    fn truncated_frame_closes_after_the_frame_timeout() {
        let mut h = Harness::signed_on(Config::default());
        let full = ProfileMessage::OpenRequest(open(2, None))
            .to_message()
            .unwrap()
            .encode_frame(4096)
            .unwrap();
        assert!(h.send_bytes(&full[..full.len() - 3]).is_empty());
        let out = h.advance(Duration::from_secs(10));
        assert_eq!(*closed_with(&out), CloseReason::IncompleteFrame);
    }

    #[test]
    fn trickled_frame_still_completes() {
        let mut h = Harness::signed_on(Config::default());
        let full = ProfileMessage::OpenRequest(open(2, None))
            .to_message()
            .unwrap()
            .encode_frame(4096)
            .unwrap();
        let mut out = Vec::new();
        for b in &full {
            out.extend(h.send_bytes(std::slice::from_ref(b)));
            h.advance(Duration::from_millis(100));
        }
        assert!(matches!(out.as_slice(), [Output::CoreRequest { .. }]));
    }

    #[test]
    fn length_header_that_lies_short_gets_30_then_close() {
        let mut h = Harness::signed_on(Config::default());
        let message = ProfileMessage::OpenRequest(open(2, None))
            .to_message()
            .unwrap()
            .encode();
        // Announce 10 bytes fewer than sent: the message is truncated in field 42 (30 with the
        // STAN), then the leftover ASCII is read as a length prefix far above the bound.
        let mut bytes = ((message.len() - 10) as u16).to_be_bytes().to_vec();
        bytes.extend_from_slice(&message);
        let out = h.send_bytes(&bytes);
        let raw = decode_raw(&out[0]);
        assert_eq!(raw.mti(), mtis::OPEN_RESPONSE);
        assert_eq!(raw.get(39), Some("30"));
        assert_eq!(raw.get(11), Some("000002"));
        assert!(matches!(
            closed_with(&out),
            CloseReason::Framing(CodecError::FrameTooLong { .. })
        ));
    }

    #[test]
    fn length_header_that_lies_long_gets_30() {
        let mut h = Harness::signed_on(Config::default());
        let message = ProfileMessage::OpenRequest(open(2, None))
            .to_message()
            .unwrap()
            .encode();
        let mut bytes = ((message.len() + 4) as u16).to_be_bytes().to_vec();
        bytes.extend_from_slice(&message);
        bytes.extend_from_slice(b"XXXX");
        let out = h.send_bytes(&bytes);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(response_code(&out[0]), ResponseCode::FormatError);
        assert_eq!(decode_raw(&out[0]).get(11), Some("000002"));
    }

    #[test]
    fn zero_and_oversized_length_prefixes_close() {
        let mut h = Harness::signed_on(Config::default());
        let out = h.send_bytes(&[0, 0]);
        assert_eq!(
            *closed_with(&out),
            CloseReason::Framing(CodecError::EmptyFrame)
        );
        let mut h = Harness::signed_on(Config::default());
        let out = h.send_bytes(&[0xff, 0xff]);
        assert_eq!(
            *closed_with(&out),
            CloseReason::Framing(CodecError::FrameTooLong {
                len: 65535,
                max: 4096
            })
        );
    }

    #[test]
    fn bad_bitmap_gets_30_without_stan() {
        let mut h = Harness::signed_on(Config::default());
        let out = h.send_bytes(&frame(b"0100ZZ20000000C00000000000000002"));
        let raw = decode_raw(&out[0]);
        assert_eq!(raw.mti(), mtis::OPEN_RESPONSE);
        assert_eq!(raw.get(39), Some("30"));
        assert_eq!(raw.get(11), None);
    }

    #[test]
    fn over_long_field_gets_30() {
        let mut h = Harness::signed_on(Config::default());
        // Field 2 (LLVAR, at most 19) announced with 25 characters.
        let mut m = ProfileMessage::OpenRequest(open(2, None))
            .to_message()
            .unwrap();
        m.set(2, "4111111111111111").unwrap();
        let mut bytes = m.encode();
        let at = bytes
            .windows(18)
            .position(|w| w == b"164111111111111111")
            .unwrap();
        bytes.splice(at..at + 18, b"254111111111111111111111111".iter().copied());
        let out = h.send_bytes(&frame(&bytes));
        assert_eq!(response_code(&out[0]), ResponseCode::FormatError);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn letters_in_a_numeric_field_get_30_with_the_stan() {
        let mut h = Harness::signed_on(Config::default());
        let mut bytes = ProfileMessage::AmountRequest(amount(3, 1250))
            .to_message()
            .unwrap()
            .encode();
        let at = bytes
            .windows(12)
            .position(|w| w == b"000000001250")
            .unwrap();
        bytes[at + 5] = b'X';
        let out = h.send_bytes(&frame(&bytes));
        assert_eq!(out.len(), 1, "no core request: {out:?}");
        let raw = decode_raw(&out[0]);
        assert_eq!(raw.mti(), mtis::AMOUNT_RESPONSE);
        assert_eq!(raw.get(39), Some("30"));
        assert_eq!(raw.get(11), Some("000003"));
        assert_eq!(raw.get(41), Some("TERM0001"));
        assert_eq!(raw.get(4), None, "the bad field is not echoed");
    }

    #[test]
    fn unknown_mti_gets_30_when_answerable() {
        let mut h = Harness::signed_on(Config::default());
        let mut m = Message::new(Mti::from_number(300).unwrap());
        m.set(11, "000004").unwrap();
        let out = h.send_message(&m);
        let raw = decode_raw(&out[0]);
        assert_eq!(raw.mti().as_str(), "0310");
        assert_eq!(raw.get(39), Some("30"));
        assert_eq!(raw.get(11), Some("000004"));
        // 0110 from a terminal cannot be answered: close.
        let out = h.send_bytes(&frame(b"01100020000000000000000005"));
        assert!(matches!(
            closed_with(&out),
            CloseReason::Unusable { .. } | CloseReason::UnexpectedMessage(_)
        ));
    }

    #[test]
    fn unreadable_mti_closes() {
        let mut h = Harness::signed_on(Config::default());
        let out = h.send_bytes(&frame(b"X1000020000000000000000005"));
        assert_eq!(
            *closed_with(&out),
            CloseReason::Malformed(CodecError::BadMti)
        );
    }

    #[test]
    fn missing_required_field_gets_30() {
        let mut h = Harness::signed_on(Config::default());
        let mut m = ProfileMessage::AmountRequest(amount(3, 1250))
            .to_message()
            .unwrap();
        m.remove(37);
        let out = h.send_message(&m);
        assert_eq!(out.len(), 1);
        assert_eq!(response_code(&out[0]), ResponseCode::FormatError);
    }

    #[test]
    fn malformed_response_from_terminal_closes() {
        let mut h = Harness::signed_on(Config::default());
        // 0630 without field 39.
        let out = h.send_bytes(&frame(b"06300020000000000000000005"));
        assert!(matches!(
            closed_with(&out),
            CloseReason::Unusable {
                error: ProfileError::Missing { field: 39, .. },
                ..
            }
        ));
    }

    #[test]
    fn consecutive_format_errors_close() {
        let mut h = Harness::signed_on(Config::default());
        let bad = frame(b"0300002000000000000000000X");
        let mut closed = false;
        for i in 0..8 {
            let out = h.send_bytes(&bad);
            if i < 7 {
                assert_eq!(response_code(&out[0]), ResponseCode::FormatError);
            } else {
                closed = *closed_with(&out) == CloseReason::TooManyFormatErrors;
            }
        }
        assert!(closed);
    }

    #[test]
    fn advice_from_the_terminal_is_refused() {
        let mut h = Harness::signed_on(Config::default());
        let advice = ProfileMessage::Advice(Advice {
            stan: stan(3),
            transmitted: None,
            terminal_id: None,
            merchant_id: None,
            body: AdviceBody::new(txn_ref(), AdviceEvent::Paired),
        });
        let out = h.send(advice);
        let raw = decode_raw(&out[0]);
        assert_eq!(
            (raw.mti(), raw.get(39)),
            (mtis::ADVICE_RESPONSE, Some("12"))
        );
    }

    #[test]
    fn oversized_advice_is_refused_to_the_driver() {
        let mut h = Harness::signed_on(Config::default());
        let mut body = AdviceBody::new(txn_ref(), AdviceEvent::Paired);
        body.reason = Some(";".repeat(400));
        let result = h.session.handle_input(
            Input::Advice {
                advice_id: AdviceId(1),
                body,
            },
            h.now,
        );
        assert!(matches!(result, Err(SessionError::AdviceUnencodable(_))));
        assert_eq!(h.session.advices_pending(), 0);
    }
}
