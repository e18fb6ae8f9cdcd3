//! The UAS endpoint: transactions, dialogs and calls of a gateway that answers calls from SIP
//! trunks and softphones. See the parent module for the loop contract.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsipstack::sip as rsip;

use super::super::sdp::{self, Codec, Direction, LocalMedia, Negotiated, SessionDescription};
use super::framing::{FrameError, FrameOutcome, Framed, StreamFramer, Transport, frame_datagram};
use super::identity::{self, CallerIdentity, IdentitySources, IpNet, NumberPlan};
use super::info::{self, InfoError};
use super::message::{
    self, ALLOW, BRANCH_MAGIC_COOKIE, Incoming, IncomingRequest, IncomingResponse, Method,
    OutgoingRequest, ResponseContext, ResponseParts,
};
use super::transaction::{ACK_WAIT, Retransmit, TimeoutAction, Transaction, TxKey};

/// Default for [`EndpointConfig::rtp_timeout_ms`].
pub const RTP_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Default for [`EndpointConfig::answer_timeout_ms`].
pub const ANSWER_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Default for [`EndpointConfig::call_duration_max_ms`].
pub const CALL_DURATION_MAX_MS_DEFAULT: u64 = 3_600_000;
/// How far ahead `poll_output` schedules a wake-up when no timer runs.
pub const IDLE_POLL: Duration = Duration::from_secs(60);
/// `Retry-After` seconds sent with 503 at the call limit.
pub const RETRY_AFTER_S: u32 = 5;
/// Configured durations are clamped to this, so adding them to an `Instant` cannot overflow.
pub const CONFIG_DURATION_MS_MAX: u64 = 30 * 24 * 3_600_000;

fn config_duration(ms: u64) -> Duration {
    Duration::from_millis(ms.min(CONFIG_DURATION_MS_MAX))
}

/// Configuration of the endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The address we listen on and advertise in `Via` and `Contact` (UDP and TCP alike).
    pub local_addr: SocketAddr,
    /// The address written into SDP `c=` lines.
    pub media_address: IpAddr,
    /// Sources allowed to send requests; others get 403.
    pub allowed: Vec<IpNet>,
    /// Trunks whose `P-Asserted-Identity` we believe (also allowed).
    pub trusted: Vec<IpNet>,
    pub number_plan: NumberPlan,
    /// Codecs we accept, in no particular order (the offer's order decides).
    pub codecs: Vec<Codec>,
    /// Concurrent calls; the next INVITE gets 503.
    pub calls_max: usize,
    /// Live transactions; beyond this, new requests get a stateless 503.
    pub transactions_max: usize,
    /// TCP connections with framing state.
    pub streams_max: usize,
    /// An answered call with no RTP from the caller for this long is hung up.
    pub rtp_timeout_ms: u64,
    /// An offered call the application neither answers nor rejects in this time gets 480.
    pub answer_timeout_ms: u64,
    /// Longest call; then we hang up.
    pub call_duration_max_ms: u64,
    /// `Server`/`User-Agent` value.
    pub user_agent: String,
    /// Seed for tags, branches and SDP session ids (pass a random one in production).
    pub rng_seed: u64,
}

impl EndpointConfig {
    /// A configuration with the defaults for everything but the addresses.
    pub fn new(local_addr: SocketAddr, media_address: IpAddr) -> EndpointConfig {
        EndpointConfig {
            local_addr,
            media_address,
            allowed: Vec::new(),
            trusted: Vec::new(),
            number_plan: NumberPlan::default(),
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            calls_max: 500,
            transactions_max: 8192,
            streams_max: 1024,
            rtp_timeout_ms: RTP_TIMEOUT_MS_DEFAULT,
            answer_timeout_ms: ANSWER_TIMEOUT_MS_DEFAULT,
            call_duration_max_ms: CALL_DURATION_MAX_MS_DEFAULT,
            user_agent: "telepay".to_string(),
            rng_seed: 0,
        }
    }
}

/// Our handle for a call (not the SIP Call-ID, which the peer chose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

/// The media side of a call as negotiated; what the RTP session is configured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media {
    /// Where the caller's SDP says to send RTP (`None`: null address or port 0).
    pub remote_rtp: Option<SocketAddr>,
    pub codec: Codec,
    pub codec_payload_type: u8,
    pub telephone_event_payload_type: Option<u8>,
    /// Whether we send RTP (our direction allows it and there is an address).
    pub send: bool,
    /// Whether the caller has put the call on hold.
    pub on_hold: bool,
}

impl From<&Negotiated> for Media {
    fn from(n: &Negotiated) -> Media {
        Media {
            remote_rtp: n.remote_rtp,
            codec: n.codec,
            codec_payload_type: n.codec_payload_type,
            telephone_event_payload_type: n.telephone_event_payload_type,
            send: n.we_send(),
            on_hold: n.on_hold(),
        }
    }
}

/// How to signal progress before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// 180 Ringing.
    Ringing,
    /// 183 Session Progress with the SDP answer, for announcements before answering. The
    /// port must be the one later passed to [`Endpoint::answer`].
    EarlyMedia { rtp_port: u16 },
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller sent BYE.
    RemoteHangup,
    /// [`Endpoint::hangup`].
    LocalHangup,
    /// The caller sent CANCEL before we answered.
    Cancelled,
    /// [`Endpoint::reject`] with this status.
    Rejected { status: u16 },
    /// The application did not answer in time (480 sent).
    AnswerTimeout,
    /// Our 2xx was never acknowledged (BYE sent, RFC 3261 §13.3.1.4).
    AckTimeout,
    /// No RTP from the caller for the configured time (BYE sent).
    RtpTimeout,
    /// The call reached its maximum duration (BYE sent).
    DurationLimit,
}

/// What the endpoint reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new call passed every check; answer with [`Endpoint::answer`] or
    /// [`Endpoint::reject`], optionally after [`Endpoint::progress`].
    CallOffered {
        call_id: CallId,
        sip_call_id: String,
        caller: CallerIdentity,
        /// User part of the Request-URI (`pay` for `sip:pay@gateway`).
        called_user: String,
        media: Media,
        source: SocketAddr,
        transport: Transport,
    },
    /// The caller acknowledged our 200 OK: the call is up.
    CallAnswered { call_id: CallId },
    /// A re-INVITE or UPDATE changed the media (hold, unhold, codec, address).
    MediaChanged { call_id: CallId, media: Media },
    /// The call is over; every call that was offered ends with exactly one of these.
    CallEnded { call_id: CallId, reason: EndReason },
    /// A DTMF key from a SIP INFO (already answered 200).
    InfoDtmf {
        call_id: CallId,
        digit: char,
        duration_ms: Option<u32>,
    },
    /// The final response to [`Endpoint::send_options`], or `None` on timeout.
    OptionsResult {
        dest: SocketAddr,
        status: Option<u16>,
    },
}

/// Input to the endpoint.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A UDP datagram, or bytes read from a TCP connection (identified by its peer address).
    Receive {
        source: SocketAddr,
        transport: Transport,
        bytes: &'a [u8],
    },
    /// A TCP connection closed; its framing state is dropped.
    StreamClosed { peer: SocketAddr },
    /// The deadline from the last [`Output::Timeout`] passed.
    Timeout,
}

/// Output of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `bytes` to `dest` over `transport` (for TCP, on the connection to `dest`, opening
    /// one if there is none).
    Transmit {
        dest: SocketAddr,
        transport: Transport,
        bytes: Vec<u8>,
    },
    Event(Event),
    /// Close the TCP connection to `peer` (its stream is out of sync).
    Disconnect {
        peer: SocketAddr,
    },
    /// Call `handle_input(Input::Timeout, now)` at this instant.
    Timeout(Instant),
}

/// Errors. The first group reports what a peer did wrong, after the endpoint has already
/// answered or dropped it (log them); the second reports misuse of the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    #[error("unframeable input: {0}")]
    Frame(#[from] FrameError),
    #[error("request rejected with {status}: {reason}")]
    Rejected { status: u16, reason: &'static str },
    #[error("message dropped: {reason}")]
    Dropped { reason: &'static str },
    #[error("no such call: {0}")]
    UnknownCall(CallId),
    #[error("{operation} is not possible in the call's current state ({call_id})")]
    WrongState {
        call_id: CallId,
        operation: &'static str,
    },
    #[error("status {0} is not a final error status (300–699)")]
    InvalidStatus(u16),
    #[error("early media used RTP port {early}, answer used {answer}")]
    PortMismatch { early: u16, answer: u16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// INVITE received, 100 sent, waiting for the application.
    Offered,
    /// 180/183 sent.
    Early,
    /// 200 sent, waiting for the ACK.
    Answering,
    /// ACK received.
    Confirmed,
}

/// A 2xx we retransmit until its ACK arrives (RFC 3261 §13.3.1.4).
#[derive(Debug, Clone)]
struct PendingAck {
    cseq: u32,
    bytes: Vec<u8>,
    retransmit: Retransmit,
    give_up_at: Instant,
    /// The 2xx carried our offer (offerless re-INVITE); the ACK carries the answer.
    offer_in_2xx: bool,
    initial: bool,
}

#[derive(Debug)]
struct Call {
    state: CallState,
    sip_call_id: String,
    peer: SocketAddr,
    transport: Transport,
    local_tag: String,
    remote_tag: String,
    /// The INVITE's `To` value (our URI, without tag).
    local_uri: String,
    /// The INVITE's `From` value (their URI, with their tag).
    remote_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    remote_cseq: u32,
    local_cseq: u32,
    invite_tx: u64,
    invite_context: ResponseContext,
    invite_key: (String, String, u32),
    offer: SessionDescription,
    negotiated: Negotiated,
    local_media: Option<LocalMedia>,
    /// Our last SDP without its `o=` line, to tell whether the version must change.
    last_sdp_body: Option<String>,
    pending_ack: Option<PendingAck>,
    /// When set, the call is over for the application and only waits for the ACK of our 2xx
    /// before sending BYE (RFC 3261 §15: no BYE before the ACK).
    bye_after_ack: bool,
    answer_deadline: Instant,
    rtp_base: Option<Instant>,
    duration_deadline: Option<Instant>,
    scheduled: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxPurpose {
    Server,
    Bye,
    Options,
}

#[derive(Debug)]
struct TxEntry {
    tx: Transaction,
    call: Option<CallId>,
    purpose: TxPurpose,
    scheduled: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerOwner {
    Tx(u64),
    Call(CallId),
}

/// The SIP endpoint core. See the module docs for the loop.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    rng: StdRng,
    now: Instant,
    next_id: u64,
    transactions: HashMap<u64, TxEntry>,
    tx_index: HashMap<TxKey, u64>,
    calls: HashMap<CallId, Call>,
    dialogs: HashMap<(String, String, String), CallId>,
    /// (Call-ID, From tag, CSeq) of INVITEs in progress, to spot merged requests (§8.2.2.2).
    invites: HashMap<(String, String, u32), TxKey>,
    streams: HashMap<SocketAddr, StreamFramer>,
    outputs: VecDeque<Output>,
    timers: BinaryHeap<Reverse<(Instant, TimerOwner)>>,
}

impl Endpoint {
    /// A new endpoint; `now` anchors its clock.
    pub fn new(config: EndpointConfig, now: Instant) -> Endpoint {
        Endpoint {
            rng: StdRng::seed_from_u64(config.rng_seed),
            config,
            now,
            next_id: 1,
            transactions: HashMap::new(),
            tx_index: HashMap::new(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            invites: HashMap::new(),
            streams: HashMap::new(),
            outputs: VecDeque::new(),
            timers: BinaryHeap::new(),
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Calls the application knows about (offered and not yet ended).
    pub fn calls_active(&self) -> usize {
        self.calls.values().filter(|c| !c.bye_after_ack).count()
    }

    /// Live transactions (for tests and metrics).
    pub fn transactions_live(&self) -> usize {
        self.transactions.len()
    }

    /// Feeds bytes, a closed stream or a timeout. Errors describe input that was answered with
    /// an error response or dropped; the endpoint stays consistent either way.
    pub fn handle_input(&mut self, input: Input<'_>, now: Instant) -> Result<(), SipError> {
        self.now = self.now.max(now);
        match input {
            Input::Timeout => {
                self.handle_timeout(now);
                Ok(())
            }
            Input::StreamClosed { peer } => {
                self.streams.remove(&peer);
                Ok(())
            }
            Input::Receive {
                source,
                transport: Transport::Udp,
                bytes,
            } => match frame_datagram(bytes) {
                FrameOutcome::Message(framed) => {
                    self.handle_framed(framed, source, Transport::Udp, now)
                }
                FrameOutcome::KeepAlive { .. } => Ok(()),
                FrameOutcome::Error { error, head } => {
                    self.answer_unframeable(head.as_ref(), source, Transport::Udp);
                    Err(SipError::Frame(error))
                }
            },
            Input::Receive {
                source,
                transport: Transport::Tcp,
                bytes,
            } => self.handle_stream(source, bytes, now),
        }
    }

    /// The next output; ends with [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        // Drop stale timer entries so the deadline reported is a live one.
        while let Some(Reverse((at, owner))) = self.timers.peek().copied() {
            if self.owner_scheduled(owner) == Some(at) {
                return Output::Timeout(at);
            }
            self.timers.pop();
        }
        Output::Timeout(self.now + IDLE_POLL)
    }

    /// Sends 180 Ringing, or 183 Session Progress with the SDP answer.
    pub fn progress(
        &mut self,
        call_id: CallId,
        progress: Progress,
        now: Instant,
    ) -> Result<(), SipError> {
        self.now = self.now.max(now);
        let call = self
            .calls
            .get_mut(&call_id)
            .ok_or(SipError::UnknownCall(call_id))?;
        if !matches!(call.state, CallState::Offered | CallState::Early) || call.bye_after_ack {
            return Err(SipError::WrongState {
                call_id,
                operation: "progress",
            });
        }
        call.state = CallState::Early;
        let (status, body) = match progress {
            Progress::Ringing => (180, None),
            Progress::EarlyMedia { rtp_port } => {
                let body = self.answer_sdp(call_id, rtp_port)?;
                (183, Some(("application/sdp", body.into_bytes())))
            }
        };
        let Some(call) = self.calls.get(&call_id) else {
            return Err(SipError::UnknownCall(call_id));
        };
        let parts = ResponseParts {
            to_tag: Some(&call.local_tag),
            headers: vec![("Contact", self.contact(call.transport))],
            body,
        };
        let bytes =
            message::build_response(&call.invite_context, status, parts, &self.config.user_agent);
        let (tx_id, dest, transport) = (call.invite_tx, call.invite_context.dest, call.transport);
        if let Some(entry) = self.transactions.get_mut(&tx_id) {
            entry.tx.on_provisional(&bytes);
        }
        self.transmit(dest, transport, bytes);
        Ok(())
    }

    /// Answers with 200 OK and our SDP (receiving RTP on `rtp_port` at the media address).
    pub fn answer(&mut self, call_id: CallId, rtp_port: u16, now: Instant) -> Result<(), SipError> {
        self.now = self.now.max(now);
        let call = self
            .calls
            .get(&call_id)
            .ok_or(SipError::UnknownCall(call_id))?;
        if !matches!(call.state, CallState::Offered | CallState::Early) || call.bye_after_ack {
            return Err(SipError::WrongState {
                call_id,
                operation: "answer",
            });
        }
        let body = self.answer_sdp(call_id, rtp_port)?;
        let Some(call) = self.calls.get_mut(&call_id) else {
            return Err(SipError::UnknownCall(call_id));
        };
        let parts = ResponseParts {
            to_tag: Some(&call.local_tag),
            headers: vec![
                (
                    "Contact",
                    contact_value(self.config.local_addr, call.transport),
                ),
                ("Allow", ALLOW.to_string()),
            ],
            body: Some(("application/sdp", body.into_bytes())),
        };
        let bytes =
            message::build_response(&call.invite_context, 200, parts, &self.config.user_agent);
        call.state = CallState::Answering;
        call.pending_ack = Some(PendingAck {
            cseq: call.remote_cseq,
            bytes: bytes.clone(),
            retransmit: Retransmit::start(now),
            give_up_at: now + ACK_WAIT,
            offer_in_2xx: false,
            initial: true,
        });
        call.duration_deadline = Some(now + config_duration(self.config.call_duration_max_ms));
        let (tx_id, dest, transport) = (call.invite_tx, call.invite_context.dest, call.transport);
        self.finish_invite_tx(tx_id, 200, &bytes, now);
        self.transmit(dest, transport, bytes);
        self.schedule_call(call_id);
        Ok(())
    }

    /// Rejects an offered call with a final status (300–699).
    pub fn reject(&mut self, call_id: CallId, status: u16, now: Instant) -> Result<(), SipError> {
        self.now = self.now.max(now);
        if !(300..=699).contains(&status) {
            return Err(SipError::InvalidStatus(status));
        }
        let call = self
            .calls
            .get(&call_id)
            .ok_or(SipError::UnknownCall(call_id))?;
        if !matches!(call.state, CallState::Offered | CallState::Early) || call.bye_after_ack {
            return Err(SipError::WrongState {
                call_id,
                operation: "reject",
            });
        }
        self.fail_invite(call_id, status, now);
        self.end_call(call_id, EndReason::Rejected { status });
        Ok(())
    }

    /// Ends a call: 480 before answering, BYE after (deferred until the ACK of our 200).
    pub fn hangup(&mut self, call_id: CallId, now: Instant) -> Result<(), SipError> {
        self.now = self.now.max(now);
        let call = self
            .calls
            .get_mut(&call_id)
            .ok_or(SipError::UnknownCall(call_id))?;
        if call.bye_after_ack {
            return Err(SipError::WrongState {
                call_id,
                operation: "hangup",
            });
        }
        match call.state {
            CallState::Offered | CallState::Early => {
                self.fail_invite(call_id, 480, now);
                self.end_call(call_id, EndReason::LocalHangup);
            }
            CallState::Answering => {
                call.bye_after_ack = true;
                self.outputs.push_back(Output::Event(Event::CallEnded {
                    call_id,
                    reason: EndReason::LocalHangup,
                }));
            }
            CallState::Confirmed => self.bye_and_end(call_id, EndReason::LocalHangup, now),
        }
        Ok(())
    }

    /// Tells the endpoint RTP from the caller arrived at `at` (feeds the RTP timeout).
    pub fn rtp_activity(&mut self, call_id: CallId, at: Instant) -> Result<(), SipError> {
        let call = self
            .calls
            .get_mut(&call_id)
            .ok_or(SipError::UnknownCall(call_id))?;
        if let Some(base) = &mut call.rtp_base {
            *base = (*base).max(at);
        }
        // The RTP timer re-arms lazily when it fires, so no rescheduling here: this is called
        // for every packet and must stay cheap.
        Ok(())
    }

    /// Sends an OPTIONS ping (trunk monitoring); the result arrives as
    /// [`Event::OptionsResult`].
    pub fn send_options(
        &mut self,
        dest: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Result<(), SipError> {
        self.now = self.now.max(now);
        if self.transactions.len() >= self.config.transactions_max {
            return Err(SipError::Dropped {
                reason: "transaction table full",
            });
        }
        let branch = self.branch();
        let tag = self.token();
        let call_id = format!("{}@{}", self.token(), self.config.local_addr.ip());
        let target = format!("sip:{dest}");
        let request = OutgoingRequest {
            method: rsip::Method::Options,
            request_uri: &target,
            local_addr: self.config.local_addr,
            transport,
            branch: &branch,
            routes: &[],
            from: format!("<sip:telepay@{}>;tag={tag}", self.config.local_addr),
            to: format!("<{target}>"),
            call_id: &call_id,
            cseq: 1,
            extra_headers: vec![("Accept", "application/sdp".to_string())],
        };
        let bytes = message::build_request(request, &self.config.user_agent).map_err(|_| {
            SipError::Dropped {
                reason: "unbuildable OPTIONS target",
            }
        })?;
        self.start_client_tx(
            branch,
            "OPTIONS",
            dest,
            transport,
            bytes,
            None,
            TxPurpose::Options,
            now,
        );
        Ok(())
    }

    // ----- input -----

    fn handle_stream(
        &mut self,
        source: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), SipError> {
        if !self.streams.contains_key(&source) && self.streams.len() >= self.config.streams_max {
            self.outputs.push_back(Output::Disconnect { peer: source });
            return Err(SipError::Dropped {
                reason: "too many TCP connections",
            });
        }
        let framer = self.streams.entry(source).or_default();
        framer.push(bytes);
        let mut result = Ok(());
        while let Some(outcome) = self
            .streams
            .get_mut(&source)
            .and_then(StreamFramer::next_frame)
        {
            match outcome {
                FrameOutcome::Message(framed) => {
                    if let Err(e) = self.handle_framed(framed, source, Transport::Tcp, now) {
                        result = Err(e);
                    }
                }
                FrameOutcome::KeepAlive { pong } => {
                    if pong {
                        self.transmit(source, Transport::Tcp, b"\r\n".to_vec());
                    }
                }
                FrameOutcome::Error { error, head } => {
                    self.answer_unframeable(head.as_ref(), source, Transport::Tcp);
                    self.streams.remove(&source);
                    self.outputs.push_back(Output::Disconnect { peer: source });
                    return Err(SipError::Frame(error));
                }
            }
        }
        result
    }

    /// Answers 400 to a request whose header section scanned but whose framing failed.
    fn answer_unframeable(
        &mut self,
        head: Option<&super::framing::RawHead>,
        source: SocketAddr,
        transport: Transport,
    ) {
        let Some(head) = head else {
            return;
        };
        if head.start_line.starts_with("SIP/")
            || head.start_line.starts_with("ACK ")
            || !self.allowed(source.ip())
        {
            return;
        }
        if let Some(context) = ResponseContext::from_head(head, source, transport) {
            self.respond_stateless(&context, 400, "bad framing");
        }
    }

    fn handle_framed(
        &mut self,
        framed: Framed,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Result<(), SipError> {
        let is_response = framed.head.start_line.starts_with("SIP/");
        if !self.allowed(source.ip()) {
            let is_ack = framed.head.start_line.starts_with("ACK ");
            if !is_response && !is_ack {
                if let Some(context) = ResponseContext::from_head(&framed.head, source, transport) {
                    self.respond_stateless(&context, 403, "source not allowed");
                }
            }
            return Err(SipError::Rejected {
                status: 403,
                reason: "source not allowed",
            });
        }
        match message::parse(&framed, source, transport) {
            Ok(Incoming::Request(request)) => self.handle_request(*request, source, transport, now),
            Ok(Incoming::Response(response)) => self.handle_response(response, now),
            Err(rejection) => {
                let is_ack = framed.head.start_line.starts_with("ACK ");
                if let (Some(context), false) = (
                    rejection.context.as_deref(),
                    is_ack || rejection.status == 0,
                ) {
                    let mut parts = ResponseParts::default();
                    if rejection.status == 501 || rejection.status == 405 {
                        parts.headers.push(("Allow", ALLOW.to_string()));
                    }
                    parts
                        .headers
                        .push(("Warning", format!("399 telepay \"{}\"", rejection.reason)));
                    let bytes = message::build_response(
                        context,
                        rejection.status,
                        parts,
                        &self.config.user_agent,
                    );
                    self.transmit(context.dest, context.transport, bytes);
                }
                if rejection.status == 0 {
                    Err(SipError::Dropped {
                        reason: rejection.reason,
                    })
                } else {
                    Err(SipError::Rejected {
                        status: rejection.status,
                        reason: rejection.reason,
                    })
                }
            }
        }
    }

    fn handle_request(
        &mut self,
        request: IncomingRequest,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Result<(), SipError> {
        if request.method == Method::Ack {
            return self.handle_ack(&request, now);
        }
        let key = server_key(&request);
        if let Some(&tx_id) = self.tx_index.get(&key) {
            // A retransmission: the transaction answers it (or absorbs it).
            if let Some(entry) = self.transactions.get(&tx_id) {
                if let Some(bytes) = entry.tx.on_request_retransmission() {
                    let bytes = bytes.to_vec();
                    self.transmit(request.context.dest, request.context.transport, bytes);
                }
            }
            return Ok(());
        }
        if self.transactions.len() >= self.config.transactions_max {
            self.respond_stateless(&request.context, 503, "overloaded");
            return Err(SipError::Rejected {
                status: 503,
                reason: "transaction table full",
            });
        }
        if request.method == Method::Cancel {
            return self.handle_cancel(&request, key, now);
        }
        if request.max_forwards == Some(0) && request.method != Method::Options {
            return self.reject_request(&request, key, 483, "Max-Forwards reached zero", now);
        }
        if !request.require.is_empty() {
            // We support no extensions (RFC 3261 §8.2.2.3).
            let unsupported = request.require.join(", ");
            let tx_id = self.new_server_tx(&request, key);
            self.respond(
                tx_id,
                &request.context,
                420,
                ResponseParts {
                    headers: vec![("Unsupported", unsupported)],
                    ..Default::default()
                },
                now,
            );
            return Err(SipError::Rejected {
                status: 420,
                reason: "unsupported extension required",
            });
        }
        if request.to_tag.is_some() {
            return self.handle_in_dialog(request, key, now);
        }
        match &request.method {
            Method::Invite => self.handle_invite(request, key, source, transport, now),
            Method::Options => {
                let tx_id = self.new_server_tx(&request, key);
                let tag = self.token();
                self.respond(
                    tx_id,
                    &request.context,
                    200,
                    ResponseParts {
                        to_tag: Some(&tag),
                        headers: options_headers(),
                        body: None,
                    },
                    now,
                );
                Ok(())
            }
            Method::Bye | Method::Info | Method::Update => {
                self.reject_request(&request, key, 481, "no such dialog", now)
            }
            Method::NotAllowed(_) => {
                self.reject_request(&request, key, 405, "method not allowed", now)
            }
            // Parsing answered unknown methods, ACK and CANCEL are handled above.
            Method::Unknown(_) | Method::Ack | Method::Cancel => Ok(()),
        }
    }

    fn handle_invite(
        &mut self,
        request: IncomingRequest,
        key: TxKey,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Result<(), SipError> {
        let from_tag = request.from_tag.clone().unwrap_or_default();
        let merge_key = (request.call_id.clone(), from_tag.clone(), request.cseq);
        if let Some(existing) = self.invites.get(&merge_key) {
            if *existing != key {
                return self.reject_request(&request, key, 482, "merged request", now);
            }
        }
        if self.calls_active() >= self.config.calls_max {
            let tx_id = self.new_server_tx(&request, key);
            self.respond(
                tx_id,
                &request.context,
                503,
                ResponseParts {
                    headers: vec![("Retry-After", RETRY_AFTER_S.to_string())],
                    ..Default::default()
                },
                now,
            );
            return Err(SipError::Rejected {
                status: 503,
                reason: "call limit reached",
            });
        }
        if request.body.is_empty() {
            // A delayed offer would need our offer in the 200 and the answer in the ACK before
            // the application learns the media; trunks that do this can be configured not to.
            return self.reject_request(&request, key, 488, "INVITE without SDP offer", now);
        }
        let is_sdp = request
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.split(';').next().unwrap_or_default().trim() == "application/sdp");
        if !is_sdp {
            let tx_id = self.new_server_tx(&request, key);
            self.respond(
                tx_id,
                &request.context,
                415,
                ResponseParts {
                    headers: vec![("Accept", "application/sdp".to_string())],
                    ..Default::default()
                },
                now,
            );
            return Err(SipError::Rejected {
                status: 415,
                reason: "body is not SDP",
            });
        }
        let Some(contact) = request.contact.clone() else {
            return self.reject_request(&request, key, 400, "INVITE without Contact", now);
        };
        let offer = match SessionDescription::parse(&request.body) {
            Ok(offer) => offer,
            Err(_) => return self.reject_request(&request, key, 400, "malformed SDP", now),
        };
        let negotiated = match sdp::negotiate(&offer, &self.config.codecs) {
            Ok(n) => n,
            Err(e) => {
                let reason = if e.is_not_acceptable() {
                    "no common codec"
                } else {
                    "malformed SDP"
                };
                let status = if e.is_not_acceptable() { 488 } else { 400 };
                return self.reject_request(&request, key, status, reason, now);
            }
        };
        let tx_id = self.new_server_tx(&request, key.clone());
        self.respond(tx_id, &request.context, 100, ResponseParts::default(), now);
        let call_id = CallId(self.next_id);
        self.next_id += 1;
        if let Some(entry) = self.transactions.get_mut(&tx_id) {
            entry.call = Some(call_id);
        }
        let local_tag = self.token();
        let local_cseq = self.rng.random_range(1..0x4000_0000);
        let trusted = identity::list_contains(&self.config.trusted, source.ip());
        let asserted: Vec<&str> = request
            .asserted_identity
            .iter()
            .map(String::as_str)
            .collect();
        let privacy: Vec<&str> = request.privacy.iter().map(String::as_str).collect();
        let caller = identity::caller_identity(
            IdentitySources {
                asserted: &asserted,
                privacy: &privacy,
                from: &request.from,
                trusted,
            },
            &self.config.number_plan,
        );
        let called_user = request.request_user.clone().unwrap_or_default();
        self.dialogs.insert(
            (request.call_id.clone(), local_tag.clone(), from_tag.clone()),
            call_id,
        );
        self.invites.insert(merge_key.clone(), key);
        let media = Media::from(&negotiated);
        self.calls.insert(
            call_id,
            Call {
                state: CallState::Offered,
                sip_call_id: request.call_id.clone(),
                peer: request.context.dest,
                transport,
                local_tag,
                remote_tag: from_tag,
                local_uri: request.to.clone(),
                remote_uri: request.from.clone(),
                remote_target: contact,
                route_set: request.record_routes.clone(),
                remote_cseq: request.cseq,
                local_cseq,
                invite_tx: tx_id,
                invite_context: request.context.clone(),
                invite_key: merge_key,
                offer,
                negotiated,
                local_media: None,
                last_sdp_body: None,
                pending_ack: None,
                bye_after_ack: false,
                answer_deadline: now + config_duration(self.config.answer_timeout_ms),
                rtp_base: None,
                duration_deadline: None,
                scheduled: None,
            },
        );
        self.schedule_call(call_id);
        self.outputs.push_back(Output::Event(Event::CallOffered {
            call_id,
            sip_call_id: request.call_id,
            caller,
            called_user,
            media,
            source,
            transport,
        }));
        Ok(())
    }

    fn handle_cancel(
        &mut self,
        request: &IncomingRequest,
        key: TxKey,
        now: Instant,
    ) -> Result<(), SipError> {
        let invite_key = TxKey {
            method: "INVITE".to_string(),
            ..key.clone()
        };
        let invite_tx = self.tx_index.get(&invite_key).copied();
        let tx_id = self.new_server_tx(request, key);
        let Some(invite_tx) = invite_tx else {
            self.respond(tx_id, &request.context, 481, ResponseParts::default(), now);
            return Err(SipError::Rejected {
                status: 481,
                reason: "CANCEL matches no INVITE",
            });
        };
        let tag = self.token();
        self.respond(
            tx_id,
            &request.context,
            200,
            ResponseParts {
                to_tag: Some(&tag),
                ..Default::default()
            },
            now,
        );
        let call = self.transactions.get(&invite_tx).and_then(|e| e.call);
        let pending = self
            .transactions
            .get(&invite_tx)
            .is_some_and(|e| e.tx.awaiting_final());
        if let (Some(call_id), true) = (call, pending) {
            self.fail_invite(call_id, 487, now);
            self.end_call(call_id, EndReason::Cancelled);
        }
        Ok(())
    }

    fn handle_ack(&mut self, request: &IncomingRequest, now: Instant) -> Result<(), SipError> {
        // The ACK to a non-2xx shares the INVITE's branch (RFC 3261 §17.1.1.3).
        let key = TxKey {
            method: "INVITE".to_string(),
            ..server_key(request)
        };
        if let Some(&tx_id) = self.tx_index.get(&key) {
            if let Some(entry) = self.transactions.get_mut(&tx_id) {
                if entry.tx.on_ack(now) {
                    self.schedule_tx(tx_id);
                    return Ok(());
                }
            }
        }
        // The ACK to a 2xx is its own transaction, matched to the dialog (§13.2.2.4).
        let Some(call_id) = self.dialog_of(request) else {
            return Err(SipError::Dropped {
                reason: "stray ACK",
            });
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return Err(SipError::Dropped {
                reason: "stray ACK",
            });
        };
        let Some(pending) = &call.pending_ack else {
            return Ok(());
        };
        if pending.cseq != request.cseq {
            return Err(SipError::Dropped {
                reason: "ACK for another INVITE",
            });
        }
        let (initial, offer_in_2xx) = (pending.initial, pending.offer_in_2xx);
        call.pending_ack = None;
        if call.bye_after_ack {
            self.send_bye(call_id, now);
            self.remove_call(call_id);
            return Ok(());
        }
        if initial {
            call.state = CallState::Confirmed;
            call.rtp_base = Some(now);
            self.outputs
                .push_back(Output::Event(Event::CallAnswered { call_id }));
        }
        if offer_in_2xx && !request.body.is_empty() {
            self.apply_ack_answer(call_id, &request.body, now);
        }
        self.schedule_call(call_id);
        Ok(())
    }

    fn handle_in_dialog(
        &mut self,
        request: IncomingRequest,
        key: TxKey,
        now: Instant,
    ) -> Result<(), SipError> {
        let Some(call_id) = self.dialog_of(&request) else {
            return self.reject_request(&request, key, 481, "no such dialog", now);
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return self.reject_request(&request, key, 481, "no such dialog", now);
        };
        if call.bye_after_ack && request.method != Method::Bye {
            return self.reject_request(&request, key, 481, "dialog is ending", now);
        }
        if request.cseq <= call.remote_cseq {
            return self.reject_request(&request, key, 500, "CSeq out of order", now);
        }
        call.remote_cseq = request.cseq;
        match request.method.clone() {
            Method::Bye => {
                let tx_id = self.new_server_tx(&request, key);
                self.respond(tx_id, &request.context, 200, ResponseParts::default(), now);
                let already_ended = self.calls.get(&call_id).is_some_and(|c| c.bye_after_ack);
                if already_ended {
                    self.remove_call(call_id);
                } else {
                    self.end_call(call_id, EndReason::RemoteHangup);
                }
                Ok(())
            }
            Method::Invite => self.handle_reinvite(call_id, request, key, now),
            Method::Update => self.handle_update(call_id, request, key, now),
            Method::Info => self.handle_info(call_id, request, key, now),
            Method::Options => {
                let tx_id = self.new_server_tx(&request, key);
                self.respond(
                    tx_id,
                    &request.context,
                    200,
                    ResponseParts {
                        headers: options_headers(),
                        ..Default::default()
                    },
                    now,
                );
                Ok(())
            }
            Method::NotAllowed(_) => {
                self.reject_request(&request, key, 405, "method not allowed", now)
            }
            Method::Unknown(_) | Method::Ack | Method::Cancel => Ok(()),
        }
    }

    fn handle_reinvite(
        &mut self,
        call_id: CallId,
        request: IncomingRequest,
        key: TxKey,
        now: Instant,
    ) -> Result<(), SipError> {
        let Some(call) = self.calls.get(&call_id) else {
            return Err(SipError::UnknownCall(call_id));
        };
        if call.pending_ack.is_some() {
            // Our previous 2xx is not yet acknowledged: the offer/answer exchange is still open.
            let tx_id = self.new_server_tx(&request, key);
            self.respond(tx_id, &request.context, 491, ResponseParts::default(), now);
            return Err(SipError::Rejected {
                status: 491,
                reason: "re-INVITE while another is pending",
            });
        }
        if call.state != CallState::Confirmed {
            let tx_id = self.new_server_tx(&request, key);
            self.respond(
                tx_id,
                &request.context,
                500,
                ResponseParts {
                    headers: vec![("Retry-After", "1".to_string())],
                    ..Default::default()
                },
                now,
            );
            return Err(SipError::Rejected {
                status: 500,
                reason: "re-INVITE before the call is up",
            });
        }
        let (body, offer_in_2xx) = if request.body.is_empty() {
            (self.offer_sdp(call_id)?, true)
        } else {
            match self.renegotiate(call_id, &request) {
                Ok(body) => (body, false),
                Err((status, reason)) => {
                    return self.reject_request(&request, key, status, reason, now);
                }
            }
        };
        let tx_id = self.new_server_tx(&request, key);
        let Some(call) = self.calls.get_mut(&call_id) else {
            return Err(SipError::UnknownCall(call_id));
        };
        let parts = ResponseParts {
            to_tag: Some(&call.local_tag),
            headers: vec![
                (
                    "Contact",
                    contact_value(self.config.local_addr, call.transport),
                ),
                ("Allow", ALLOW.to_string()),
            ],
            body: Some(("application/sdp", body.into_bytes())),
        };
        let bytes = message::build_response(&request.context, 200, parts, &self.config.user_agent);
        call.pending_ack = Some(PendingAck {
            cseq: request.cseq,
            bytes: bytes.clone(),
            retransmit: Retransmit::start(now),
            give_up_at: now + ACK_WAIT,
            offer_in_2xx,
            initial: false,
        });
        self.finish_invite_tx(tx_id, 200, &bytes, now);
        self.transmit(request.context.dest, request.context.transport, bytes);
        self.schedule_call(call_id);
        Ok(())
    }

    fn handle_update(
        &mut self,
        call_id: CallId,
        request: IncomingRequest,
        key: TxKey,
        now: Instant,
    ) -> Result<(), SipError> {
        let body = if request.body.is_empty() {
            None
        } else {
            match self.renegotiate(call_id, &request) {
                Ok(body) => Some(("application/sdp", body.into_bytes())),
                Err((status, reason)) => {
                    return self.reject_request(&request, key, status, reason, now);
                }
            }
        };
        let tx_id = self.new_server_tx(&request, key);
        let contact = self
            .calls
            .get(&call_id)
            .map(|c| contact_value(self.config.local_addr, c.transport));
        self.respond(
            tx_id,
            &request.context,
            200,
            ResponseParts {
                headers: contact.map(|c| vec![("Contact", c)]).unwrap_or_default(),
                body,
                ..Default::default()
            },
            now,
        );
        Ok(())
    }

    fn handle_info(
        &mut self,
        call_id: CallId,
        request: IncomingRequest,
        key: TxKey,
        now: Instant,
    ) -> Result<(), SipError> {
        if request.body.is_empty() {
            // A bodiless INFO is a legacy keep-alive (RFC 6086 §4.2.2).
            let tx_id = self.new_server_tx(&request, key);
            self.respond(tx_id, &request.context, 200, ResponseParts::default(), now);
            return Ok(());
        }
        let content_type = request.content_type.clone().unwrap_or_default();
        match info::parse_dtmf_info(&content_type, &request.body) {
            Ok(digit) => {
                let tx_id = self.new_server_tx(&request, key);
                self.respond(tx_id, &request.context, 200, ResponseParts::default(), now);
                self.outputs.push_back(Output::Event(Event::InfoDtmf {
                    call_id,
                    digit: digit.digit,
                    duration_ms: digit.duration_ms,
                }));
                Ok(())
            }
            Err(InfoError::UnsupportedType) => {
                let tx_id = self.new_server_tx(&request, key);
                self.respond(
                    tx_id,
                    &request.context,
                    415,
                    ResponseParts {
                        headers: vec![("Accept", info::DTMF_CONTENT_TYPES.to_string())],
                        ..Default::default()
                    },
                    now,
                );
                Err(SipError::Rejected {
                    status: 415,
                    reason: "INFO content type",
                })
            }
            Err(_) => self.reject_request(&request, key, 400, "malformed DTMF INFO", now),
        }
    }

    fn handle_response(
        &mut self,
        response: IncomingResponse,
        now: Instant,
    ) -> Result<(), SipError> {
        let key = TxKey {
            branch: response.branch,
            sent_by: response.sent_by,
            method: response.cseq_method,
        };
        let Some(&tx_id) = self.tx_index.get(&key) else {
            return Err(SipError::Dropped {
                reason: "response matches no transaction",
            });
        };
        let Some(entry) = self.transactions.get_mut(&tx_id) else {
            return Err(SipError::Dropped {
                reason: "response matches no transaction",
            });
        };
        let is_first_final = entry.tx.on_response(response.status, now);
        if is_first_final && entry.purpose == TxPurpose::Options {
            let dest = entry.tx.peer;
            self.outputs.push_back(Output::Event(Event::OptionsResult {
                dest,
                status: Some(response.status),
            }));
        }
        self.schedule_tx(tx_id);
        Ok(())
    }

    // ----- timers -----

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, owner))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.owner_scheduled(owner) != Some(at) {
                continue;
            }
            match owner {
                TimerOwner::Tx(id) => {
                    if let Some(entry) = self.transactions.get_mut(&id) {
                        entry.scheduled = None;
                    }
                    self.tx_timeout(id, now);
                }
                TimerOwner::Call(id) => {
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.scheduled = None;
                    }
                    self.call_timeout(id, now);
                }
            }
        }
    }

    fn owner_scheduled(&self, owner: TimerOwner) -> Option<Instant> {
        match owner {
            TimerOwner::Tx(id) => self.transactions.get(&id).and_then(|e| e.scheduled),
            TimerOwner::Call(id) => self.calls.get(&id).and_then(|c| c.scheduled),
        }
    }

    fn tx_timeout(&mut self, tx_id: u64, now: Instant) {
        let Some(entry) = self.transactions.get_mut(&tx_id) else {
            return;
        };
        let (peer, transport) = (entry.tx.peer, entry.tx.transport);
        match entry.tx.on_timeout(now) {
            TimeoutAction::Retransmit(bytes) => self.transmit(peer, transport, bytes),
            TimeoutAction::TimedOut => {
                if entry.purpose == TxPurpose::Options {
                    self.outputs.push_back(Output::Event(Event::OptionsResult {
                        dest: peer,
                        status: None,
                    }));
                }
            }
            TimeoutAction::None => {}
        }
        self.schedule_tx(tx_id);
    }

    fn call_timeout(&mut self, call_id: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if matches!(call.state, CallState::Offered | CallState::Early)
            && now >= call.answer_deadline
        {
            self.fail_invite(call_id, 480, now);
            self.end_call(call_id, EndReason::AnswerTimeout);
            return;
        }
        if let Some(pending) = &mut call.pending_ack {
            if now >= pending.give_up_at {
                call.pending_ack = None;
                if call.bye_after_ack {
                    self.send_bye(call_id, now);
                    self.remove_call(call_id);
                } else {
                    self.bye_and_end(call_id, EndReason::AckTimeout, now);
                }
                return;
            }
            if now >= pending.retransmit.at {
                pending.retransmit = pending.retransmit.next(now);
                let bytes = pending.bytes.clone();
                let (dest, transport) = (call.peer, call.transport);
                self.transmit(dest, transport, bytes);
            }
        }
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if call.duration_deadline.is_some_and(|d| now >= d)
            && !call.bye_after_ack
            && call.state == CallState::Confirmed
        {
            self.bye_and_end(call_id, EndReason::DurationLimit, now);
            return;
        }
        if let Some(deadline) = self.rtp_deadline(call) {
            if now >= deadline {
                self.bye_and_end(call_id, EndReason::RtpTimeout, now);
                return;
            }
        }
        self.schedule_call(call_id);
    }

    fn rtp_deadline(&self, call: &Call) -> Option<Instant> {
        // Only a confirmed call whose caller is meant to send media can be silent for too long;
        // a caller who holds with a=inactive/recvonly sends nothing by design.
        if call.state != CallState::Confirmed
            || call.bye_after_ack
            || !call.negotiated.remote_direction.sends()
        {
            return None;
        }
        call.rtp_base
            .map(|base| base + config_duration(self.config.rtp_timeout_ms))
    }

    fn call_deadline(&self, call: &Call) -> Option<Instant> {
        let mut deadline: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
        };
        if matches!(call.state, CallState::Offered | CallState::Early) && !call.bye_after_ack {
            consider(Some(call.answer_deadline));
        }
        if let Some(pending) = &call.pending_ack {
            consider(Some(pending.retransmit.at));
            consider(Some(pending.give_up_at));
        }
        if call.state == CallState::Confirmed && !call.bye_after_ack {
            consider(call.duration_deadline);
        }
        consider(self.rtp_deadline(call));
        deadline
    }

    fn schedule_call(&mut self, call_id: CallId) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let Some(deadline) = self.call_deadline(call) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.scheduled.is_none_or(|s| deadline < s) {
            call.scheduled = Some(deadline);
            self.timers
                .push(Reverse((deadline, TimerOwner::Call(call_id))));
        }
    }

    fn schedule_tx(&mut self, tx_id: u64) {
        let Some(entry) = self.transactions.get_mut(&tx_id) else {
            return;
        };
        if entry.tx.is_terminated() {
            let key = entry.tx.key.clone();
            self.transactions.remove(&tx_id);
            if self.tx_index.get(&key) == Some(&tx_id) {
                self.tx_index.remove(&key);
            }
            self.invites.retain(|_, k| *k != key);
            return;
        }
        let Some(deadline) = entry.tx.deadline() else {
            return;
        };
        if entry.scheduled.is_none_or(|s| deadline < s) {
            entry.scheduled = Some(deadline);
            self.timers.push(Reverse((deadline, TimerOwner::Tx(tx_id))));
        }
    }

    // ----- helpers -----

    fn allowed(&self, ip: IpAddr) -> bool {
        identity::list_contains(&self.config.allowed, ip)
            || identity::list_contains(&self.config.trusted, ip)
    }

    fn dialog_of(&self, request: &IncomingRequest) -> Option<CallId> {
        let key = (
            request.call_id.clone(),
            request.to_tag.clone()?,
            request.from_tag.clone().unwrap_or_default(),
        );
        self.dialogs.get(&key).copied()
    }

    fn token(&mut self) -> String {
        format!("{:016x}", self.rng.random::<u64>())
    }

    fn branch(&mut self) -> String {
        format!("{BRANCH_MAGIC_COOKIE}{:016x}", self.rng.random::<u64>())
    }

    fn contact(&self, transport: Transport) -> String {
        contact_value(self.config.local_addr, transport)
    }

    fn transmit(&mut self, dest: SocketAddr, transport: Transport, bytes: Vec<u8>) {
        self.outputs.push_back(Output::Transmit {
            dest,
            transport,
            bytes,
        });
    }

    fn respond_stateless(&mut self, context: &ResponseContext, status: u16, reason: &str) {
        let mut parts = ResponseParts::default();
        parts
            .headers
            .push(("Warning", format!("399 telepay \"{reason}\"")));
        if status == 503 {
            parts
                .headers
                .push(("Retry-After", RETRY_AFTER_S.to_string()));
        }
        let bytes = message::build_response(context, status, parts, &self.config.user_agent);
        self.transmit(context.dest, context.transport, bytes);
    }

    fn new_server_tx(&mut self, request: &IncomingRequest, key: TxKey) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let tx = if request.method == Method::Invite {
            Transaction::server_invite(key.clone(), request.context.dest, request.context.transport)
        } else {
            Transaction::server_non_invite(
                key.clone(),
                request.context.dest,
                request.context.transport,
            )
        };
        self.transactions.insert(
            id,
            TxEntry {
                tx,
                call: None,
                purpose: TxPurpose::Server,
                scheduled: None,
            },
        );
        self.tx_index.insert(key, id);
        id
    }

    #[allow(clippy::too_many_arguments)]
    fn start_client_tx(
        &mut self,
        branch: String,
        method: &str,
        dest: SocketAddr,
        transport: Transport,
        bytes: Vec<u8>,
        call: Option<CallId>,
        purpose: TxPurpose,
        now: Instant,
    ) {
        let key = TxKey {
            branch,
            sent_by: self.config.local_addr.to_string(),
            method: method.to_string(),
        };
        let id = self.next_id;
        self.next_id += 1;
        let tx = Transaction::client_non_invite(key.clone(), dest, transport, bytes.clone(), now);
        self.transactions.insert(
            id,
            TxEntry {
                tx,
                call,
                purpose,
                scheduled: None,
            },
        );
        self.tx_index.insert(key, id);
        self.transmit(dest, transport, bytes);
        self.schedule_tx(id);
    }

    /// Sends a response on a server transaction and records it there.
    fn respond(
        &mut self,
        tx_id: u64,
        context: &ResponseContext,
        status: u16,
        mut parts: ResponseParts<'_>,
        now: Instant,
    ) {
        if status == 405 {
            parts.headers.push(("Allow", ALLOW.to_string()));
        }
        let bytes = message::build_response(context, status, parts, &self.config.user_agent);
        if let Some(entry) = self.transactions.get_mut(&tx_id) {
            if status < 200 {
                entry.tx.on_provisional(&bytes);
            } else {
                entry.tx.on_final(status, &bytes, now);
            }
        }
        self.transmit(context.dest, context.transport, bytes);
        self.schedule_tx(tx_id);
    }

    /// Answers a request with an error on a new server transaction.
    fn reject_request(
        &mut self,
        request: &IncomingRequest,
        key: TxKey,
        status: u16,
        reason: &'static str,
        now: Instant,
    ) -> Result<(), SipError> {
        let tx_id = self.new_server_tx(request, key);
        let mut parts = ResponseParts::default();
        if status == 488 {
            parts.headers.push((
                "Warning",
                "305 telepay \"Incompatible media format\"".to_string(),
            ));
        } else {
            parts
                .headers
                .push(("Warning", format!("399 telepay \"{reason}\"")));
        }
        // Errors to an INVITE carry a To tag so the ACK can match (RFC 3261 §8.2.6.2).
        let tag =
            (request.to_tag.is_none() && request.method == Method::Invite).then(|| self.token());
        parts.to_tag = tag.as_deref();
        self.respond(tx_id, &request.context, status, parts, now);
        Err(SipError::Rejected { status, reason })
    }

    fn finish_invite_tx(&mut self, tx_id: u64, status: u16, bytes: &[u8], now: Instant) {
        if let Some(entry) = self.transactions.get_mut(&tx_id) {
            entry.tx.on_final(status, bytes, now);
        }
        self.schedule_tx(tx_id);
    }

    /// Sends a final error response to the call's initial INVITE.
    fn fail_invite(&mut self, call_id: CallId, status: u16, now: Instant) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let parts = ResponseParts {
            to_tag: Some(&call.local_tag),
            ..Default::default()
        };
        let bytes =
            message::build_response(&call.invite_context, status, parts, &self.config.user_agent);
        let (tx_id, dest, transport) = (call.invite_tx, call.invite_context.dest, call.transport);
        self.finish_invite_tx(tx_id, status, &bytes, now);
        self.transmit(dest, transport, bytes);
    }

    fn end_call(&mut self, call_id: CallId, reason: EndReason) {
        if self.remove_call(call_id) {
            self.outputs
                .push_back(Output::Event(Event::CallEnded { call_id, reason }));
        }
    }

    fn remove_call(&mut self, call_id: CallId) -> bool {
        let Some(call) = self.calls.remove(&call_id) else {
            return false;
        };
        self.dialogs.remove(&(
            call.sip_call_id.clone(),
            call.local_tag.clone(),
            call.remote_tag.clone(),
        ));
        self.invites.remove(&call.invite_key);
        true
    }

    fn bye_and_end(&mut self, call_id: CallId, reason: EndReason, now: Instant) {
        self.send_bye(call_id, now);
        self.end_call(call_id, reason);
    }

    fn send_bye(&mut self, call_id: CallId, now: Instant) {
        if self.transactions.len() >= self.config.transactions_max {
            return;
        }
        let branch = self.branch();
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.local_cseq = call.local_cseq.wrapping_add(1);
        let request = OutgoingRequest {
            method: rsip::Method::Bye,
            request_uri: &call.remote_target,
            local_addr: self.config.local_addr,
            transport: call.transport,
            branch: &branch,
            routes: &call.route_set,
            from: format!("{};tag={}", call.local_uri, call.local_tag),
            to: call.remote_uri.clone(),
            call_id: &call.sip_call_id,
            cseq: call.local_cseq,
            extra_headers: Vec::new(),
        };
        // The remote target parsed when the INVITE was accepted, so this cannot fail.
        let Ok(bytes) = message::build_request(request, &self.config.user_agent) else {
            return;
        };
        let (dest, transport) = (call.peer, call.transport);
        self.start_client_tx(
            branch,
            "BYE",
            dest,
            transport,
            bytes,
            Some(call_id),
            TxPurpose::Bye,
            now,
        );
    }

    /// Writes our SDP answer to the call's current offer, bumping the version when it changed.
    fn answer_sdp(&mut self, call_id: CallId, rtp_port: u16) -> Result<String, SipError> {
        let session_id = u64::from(self.rng.random::<u32>());
        let media_address = self.config.media_address;
        let call = self
            .calls
            .get_mut(&call_id)
            .ok_or(SipError::UnknownCall(call_id))?;
        let local = match &mut call.local_media {
            Some(local) if local.rtp_port != rtp_port => {
                return Err(SipError::PortMismatch {
                    early: local.rtp_port,
                    answer: rtp_port,
                });
            }
            Some(local) => local,
            None => call.local_media.insert(LocalMedia {
                address: media_address,
                rtp_port,
                session_id,
                session_version: 1,
            }),
        };
        let body = versioned(&mut call.last_sdp_body, local, |l| {
            sdp::write_answer(&call.offer, &call.negotiated, l)
        });
        Ok(body)
    }

    /// Writes our offer for an offerless re-INVITE.
    fn offer_sdp(&mut self, call_id: CallId) -> Result<String, SipError> {
        let call = self
            .calls
            .get_mut(&call_id)
            .ok_or(SipError::UnknownCall(call_id))?;
        let Some(local) = &mut call.local_media else {
            return Err(SipError::WrongState {
                call_id,
                operation: "offer",
            });
        };
        let (codec, te) = (
            call.negotiated.codec,
            call.negotiated.telephone_event_payload_type,
        );
        let te = te.or(Some(sdp::TELEPHONE_EVENT_PT_DEFAULT));
        Ok(versioned(&mut call.last_sdp_body, local, |l| {
            sdp::write_offer(l, codec, te, Direction::SendRecv)
        }))
    }

    /// Negotiates a new offer in a re-INVITE or UPDATE; on success the call's media is updated
    /// (with `MediaChanged` when it differs) and our answer returned.
    fn renegotiate(
        &mut self,
        call_id: CallId,
        request: &IncomingRequest,
    ) -> Result<String, (u16, &'static str)> {
        let is_sdp = request
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.split(';').next().unwrap_or_default().trim() == "application/sdp");
        if !is_sdp {
            return Err((415, "body is not SDP"));
        }
        let offer = SessionDescription::parse(&request.body).map_err(|_| (400, "malformed SDP"))?;
        let negotiated = sdp::negotiate(&offer, &self.config.codecs).map_err(|e| {
            if e.is_not_acceptable() {
                (488, "no common codec")
            } else {
                (400, "malformed SDP")
            }
        })?;
        let now = self.now;
        let Some(call) = self.calls.get_mut(&call_id) else {
            return Err((481, "no such dialog"));
        };
        let Some(local) = &mut call.local_media else {
            return Err((500, "no local media yet"));
        };
        let body = versioned(&mut call.last_sdp_body, local, |l| {
            sdp::write_answer(&offer, &negotiated, l)
        });
        self.apply_media(call_id, offer, negotiated, now);
        Ok(body)
    }

    fn apply_ack_answer(&mut self, call_id: CallId, body: &[u8], now: Instant) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        // The answer may only choose what we offered: the call's codec.
        let codecs = [call.negotiated.codec];
        let Ok(answer) = SessionDescription::parse(body) else {
            return;
        };
        let Ok(mut negotiated) = sdp::negotiate(&answer, &codecs) else {
            return;
        };
        // In an answer, the direction is the answerer's own; ours was sendrecv.
        negotiated.local_direction = match negotiated.remote_direction {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        };
        self.apply_media(call_id, answer, negotiated, now);
    }

    fn apply_media(
        &mut self,
        call_id: CallId,
        offer: SessionDescription,
        negotiated: Negotiated,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let before = Media::from(&call.negotiated);
        let was_sending = call.negotiated.remote_direction.sends();
        call.offer = offer;
        call.negotiated = negotiated;
        let after = Media::from(&call.negotiated);
        if !was_sending && call.negotiated.remote_direction.sends() {
            // Unhold: the caller starts sending again; give it a full RTP timeout from now.
            call.rtp_base = Some(now);
        }
        if before != after {
            self.outputs.push_back(Output::Event(Event::MediaChanged {
                call_id,
                media: after,
            }));
        }
        self.schedule_call(call_id);
    }
}

/// Writes an SDP body with `write`, incrementing the session version only when the body (less
/// its `o=` line) differs from the last one sent (RFC 3264 §8).
fn versioned(
    last: &mut Option<String>,
    local: &mut LocalMedia,
    write: impl Fn(&LocalMedia) -> String,
) -> String {
    let candidate = write(local);
    let stripped = without_origin(&candidate);
    match last {
        Some(previous) if *previous == stripped => candidate,
        Some(_) => {
            local.session_version += 1;
            let body = write(local);
            *last = Some(stripped);
            body
        }
        None => {
            *last = Some(stripped);
            candidate
        }
    }
}

fn without_origin(body: &str) -> String {
    body.split("\r\n")
        .filter(|l| !l.starts_with("o="))
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn contact_value(local_addr: SocketAddr, transport: Transport) -> String {
    match transport {
        Transport::Udp => format!("<sip:telepay@{local_addr}>"),
        Transport::Tcp => format!("<sip:telepay@{local_addr};transport=tcp>"),
    }
}

fn options_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Allow", ALLOW.to_string()),
        ("Accept", "application/sdp".to_string()),
    ]
}

/// The server transaction key of a request.
fn server_key(request: &IncomingRequest) -> TxKey {
    let method = match request.method {
        Method::Ack => "INVITE".to_string(),
        ref m => m.as_str().to_string(),
    };
    match &request.via.branch {
        Some(branch) if branch.starts_with(BRANCH_MAGIC_COOKIE) => TxKey {
            branch: branch.clone(),
            sent_by: request.via.sent_by(),
            method,
        },
        // RFC 2543 peers: Call-ID, From tag and CSeq number identify the transaction (and
        // its ACK and CANCEL, which share the CSeq number).
        _ => TxKey {
            branch: format!(
                "rfc2543:{}:{}:{}",
                request.call_id,
                request.from_tag.as_deref().unwrap_or_default(),
                request.cseq
            ),
            sent_by: request.via.sent_by(),
            method,
        },
    }
}
