//! SIP for payer calls: a sans-IO user-agent server for a gateway behind SIP trunks.
//!
//! # The loop
//!
//! [`Endpoint`] owns no socket and reads no clock. The driver feeds it
//! [`Input::Receive`] for every UDP datagram and for every chunk read from a TCP connection
//! (TCP framing by `Content-Length` happens inside), [`Input::StreamClosed`] when a connection
//! ends, and [`Input::Timeout`] when the last deadline passes, each with the current `Instant`;
//! the application's decisions come in as calls ([`Endpoint::progress`], [`Endpoint::answer`],
//! [`Endpoint::reject`], [`Endpoint::hangup`], [`Endpoint::rtp_activity`]). After each, the
//! driver drains [`Endpoint::poll_output`] until [`Output::Timeout`]: it sends every
//! [`Output::Transmit`], closes the connection of every [`Output::Disconnect`], and hands every
//! [`Output::Event`] to the application. Tests drive it in virtual time: a minute of
//! retransmissions is simulated in microseconds.
//!
//! # Layers
//!
//! framing ([`framing`]: UDP/TCP, size limits, header scan) → parsing ([`message`]: rsipstack's
//! parser and message types) → transactions ([`transaction`]: RFC 3261 §17 state machines,
//! timers as named constants) → dialogs and calls ([`endpoint`]) → the application (the IVR),
//! which sees only [`Event`]s. SDP lives in `telephony::sdp`, RTP in `telephony::rtp`.
//!
//! # Why rsipstack's transaction and dialog layers are not used
//!
//! rsipstack 0.7.14 was the first choice. Its transaction and dialog layers cannot be driven
//! without their own tasks, sockets and the wall clock:
//!
//! - Timers are armed from the wall clock: `Timer::timeout` computes `Instant::now() + duration`
//!   (`src/transaction/timer.rs:47`), and `Instant` is `std::time::Instant` on the tokio backend
//!   (`src/platform/mod.rs:53`), so tokio's paused test clock cannot move it either.
//! - Timers fire only from an async loop that sleeps in real time
//!   (`Timer::wait_for_ready`, `src/transaction/timer.rs:109`–`132`), run by
//!   `EndpointInner::serve`, which selects over that loop, the transport reader and a
//!   cancellation token (`src/transaction/endpoint.rs:258`–`263`).
//! - A `Transaction` holds the endpoint and a `SipConnection` (`src/transaction/transaction.rs:172`–`173`)
//!   and sends by itself through `async fn reply`/`respond` (`:422`, `:456`); there is no
//!   "bytes to send" output to collect.
//! - Dialog handling wraps transactions in `platform::timeout`, a tokio timer
//!   (`src/dialog/dialog.rs:1748`).
//!
//! So rsipstack supplies the message layer only: its parser validates requests of known
//! methods and types their headers, and its `Request`/`Response`/`Headers` build everything we
//! send. Around it we frame and scan first, because its parser takes a malformed
//! `Content-Length` as 0 (`src/sip/parser.rs:46`, `:60`), cuts a short body silently (`:67`),
//! ends the header list at the first non-UTF-8 line without an error (`:184`), has no size
//! limits, and rejects any method it does not know (`:96`; `Method` has no extension variant),
//! which would leave us unable to answer 501. Building it needs `default-features = false,
//! features = ["std"]` (`src/platform/mod.rs:286` refuses to compile without a platform
//! backend); the tokio pieces that pulls in are compiled but never started.
//!
//! Our own layers: the INVITE server transaction (with RFC 6026's Accepted state), the
//! non-INVITE server transaction, the non-INVITE client transaction for BYE and OPTIONS, the UAS
//! side of dialogs, and 2xx retransmission until the ACK (RFC 3261 §13.3.1.4).
//!
//! # Behaviour
//!
//! - Requests from sources outside the allow-list get 403 (ACKs and responses are dropped).
//! - OPTIONS: 200 with `Allow`/`Accept`. Unknown methods: 501; known ones we do not serve
//!   (REGISTER, SUBSCRIBE, …): 405. Requests that fail to parse: 400 when `Via`, `From`, `To`,
//!   `Call-ID` and `CSeq` can be read, otherwise dropped. `Require`: 420. `Max-Forwards: 0`: 483.
//! - INVITE: 100 Trying at once; 503 at `calls_max`; 415 for a non-SDP body; 488 without an offer
//!   or without a common codec; then [`Event::CallOffered`]. The application may send 180 or 183
//!   (early media) and answers (200 with SDP, retransmitted until the ACK) or rejects.
//!   Unanswered calls get 480 after `answer_timeout_ms`.
//! - CANCEL: 200, and 487 to the INVITE if it has no final response yet.
//! - re-INVITE/UPDATE: answered at once (hold, unhold, codec or address change), with
//!   [`Event::MediaChanged`] when the media differs; 488 keeps the old media; an offerless
//!   re-INVITE gets our offer and the answer is read from the ACK.
//! - BYE from either side; ours runs on a client transaction. Calls with no RTP for
//!   `rtp_timeout_ms` (while the caller is meant to send) or longer than
//!   `call_duration_max_ms` are hung up with BYE.
//! - INFO with `application/dtmf-relay` or `application/dtmf`: 200 and [`Event::InfoDtmf`];
//!   other types 415, junk 400.
//! - The caller is identified by trusted `P-Asserted-Identity` or `From`, normalised to E.164
//!   ([`identity`]).
//! - In-dialog requests we send go to the address and transport the dialog's INVITE came from
//!   (the trunk's or softphone's flow): the core does no DNS, and this is what works through NAT.

pub mod endpoint;
pub mod framing;
pub mod identity;
pub mod info;
pub mod message;
pub mod transaction;

#[cfg(test)]
mod tests;

pub use endpoint::{
    CallId, EndReason, Endpoint, EndpointConfig, Event, Input, Media, Output, Progress, SipError,
};
pub use framing::{FrameError, Transport};
pub use identity::{CallerIdentity, IpNet, NumberPlan};
