//! RFC 3261 §17 transactions, sans-IO: the INVITE server transaction (with the RFC 6026
//! `Accepted` state), the non-INVITE server transaction, and the non-INVITE client transaction
//! we use for BYE and OPTIONS.
//!
//! Each transaction is an enum whose variants are its states and hold only that state's data.
//! Methods take `now` and return what to send; nothing here reads a clock or touches a socket.
//! [`Transaction::deadline`] names the next instant [`Transaction::on_timeout`] must be called.
//!
//! The 2xx to an INVITE is retransmitted by the UAS core, not the transaction (RFC 3261
//! §13.3.1.4, RFC 6026 §7.1); the endpoint does that with [`Retransmit`] and [`ACK_WAIT`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::framing::Transport;

/// RTT estimate (RFC 3261 §17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
/// Maximum retransmission interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// Maximum time a message stays in the network.
pub const T4: Duration = Duration::from_secs(5);
/// 64·T1: the common transaction timeout.
const SIXTY_FOUR_T1: Duration = Duration::from_millis(64 * 500);
/// Non-INVITE client transaction timeout (no final response).
pub const TIMER_F: Duration = SIXTY_FOUR_T1;
/// INVITE server transaction: wait for the ACK of a non-2xx final response.
pub const TIMER_H: Duration = SIXTY_FOUR_T1;
/// INVITE server transaction: absorb ACK retransmissions after the ACK (unreliable transport).
pub const TIMER_I: Duration = T4;
/// Non-INVITE server transaction: absorb request retransmissions (unreliable transport).
pub const TIMER_J: Duration = SIXTY_FOUR_T1;
/// Non-INVITE client transaction: absorb response retransmissions (unreliable transport).
pub const TIMER_K: Duration = T4;
/// INVITE server transaction after a 2xx: absorb INVITE retransmissions (RFC 6026 §7.1).
pub const TIMER_L: Duration = SIXTY_FOUR_T1;
/// How long the UAS core retransmits a 2xx waiting for the ACK (RFC 3261 §13.3.1.4).
pub const ACK_WAIT: Duration = SIXTY_FOUR_T1;

/// A retransmission schedule: next send time and the current interval, doubling up to `T2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmit {
    pub at: Instant,
    pub interval: Duration,
}

impl Retransmit {
    /// The schedule after a first send at `now` (Timers E, G and the 2xx schedule start at T1).
    pub fn start(now: Instant) -> Retransmit {
        Retransmit {
            at: now + T1,
            interval: T1,
        }
    }

    /// The schedule after a retransmission at `now`.
    pub fn next(self, now: Instant) -> Retransmit {
        let interval = (self.interval * 2).min(T2);
        Retransmit {
            at: now + interval,
            interval,
        }
    }
}

/// Identifies a server or client transaction (RFC 3261 §17.2.3 for RFC 3261 branches; older
/// peers without the magic cookie are keyed on Call-ID, From tag and CSeq instead).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    pub branch: String,
    pub sent_by: String,
    /// `INVITE` (also for the ACK to a non-2xx and for CANCEL lookups) or the method name.
    pub method: String,
}

/// What a timeout asks of the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeoutAction {
    None,
    /// Send these bytes again.
    Retransmit(Vec<u8>),
    /// Timer H (no ACK for a non-2xx) or Timer F (no final response) fired.
    TimedOut,
}

/// States of the INVITE server transaction (RFC 3261 Figure 7, RFC 6026 Figure 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerInvite {
    Proceeding {
        last_provisional: Option<Vec<u8>>,
    },
    Completed {
        response: Vec<u8>,
        retransmit: Option<Retransmit>,
        timer_h: Instant,
    },
    Confirmed {
        timer_i: Instant,
    },
    Accepted {
        timer_l: Instant,
    },
    Terminated,
}

/// States of the non-INVITE server transaction (RFC 3261 Figure 8). We answer every non-INVITE
/// request at once, so `Proceeding` is never entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerNonInvite {
    Trying,
    Completed { response: Vec<u8>, timer_j: Instant },
    Terminated,
}

/// States of the non-INVITE client transaction (RFC 3261 Figure 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientNonInvite {
    Trying {
        request: Vec<u8>,
        retransmit: Option<Retransmit>,
        timer_f: Instant,
    },
    Proceeding {
        request: Vec<u8>,
        retransmit: Option<Retransmit>,
        timer_f: Instant,
    },
    Completed {
        timer_k: Instant,
    },
    Terminated,
}

/// The three kinds of transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxState {
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
    ClientNonInvite(ClientNonInvite),
}

/// One transaction and where its messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub key: TxKey,
    pub peer: SocketAddr,
    pub transport: Transport,
    pub state: TxState,
}

impl Transaction {
    pub fn server_invite(key: TxKey, peer: SocketAddr, transport: Transport) -> Transaction {
        Transaction {
            key,
            peer,
            transport,
            state: TxState::ServerInvite(ServerInvite::Proceeding {
                last_provisional: None,
            }),
        }
    }

    pub fn server_non_invite(key: TxKey, peer: SocketAddr, transport: Transport) -> Transaction {
        Transaction {
            key,
            peer,
            transport,
            state: TxState::ServerNonInvite(ServerNonInvite::Trying),
        }
    }

    /// A client transaction whose request is sent at `now` by the caller.
    pub fn client_non_invite(
        key: TxKey,
        peer: SocketAddr,
        transport: Transport,
        request: Vec<u8>,
        now: Instant,
    ) -> Transaction {
        // Timer E runs only on unreliable transports (RFC 3261 §17.1.2.2).
        let retransmit = (!transport.is_reliable()).then(|| Retransmit::start(now));
        Transaction {
            key,
            peer,
            transport,
            state: TxState::ClientNonInvite(ClientNonInvite::Trying {
                request,
                retransmit,
                timer_f: now + TIMER_F,
            }),
        }
    }

    /// The response to resend when the request arrives again, if the state calls for one.
    pub fn on_request_retransmission(&self) -> Option<&[u8]> {
        match &self.state {
            TxState::ServerInvite(ServerInvite::Proceeding { last_provisional }) => {
                last_provisional.as_deref()
            }
            TxState::ServerInvite(ServerInvite::Completed { response, .. }) => Some(response),
            TxState::ServerNonInvite(ServerNonInvite::Completed { response, .. }) => Some(response),
            // Accepted absorbs INVITE retransmissions (RFC 6026 §7.1); the core's 2xx
            // retransmissions cover a lost 2xx.
            _ => None,
        }
    }

    /// Whether a final response may still be sent (INVITE in Proceeding, non-INVITE in Trying).
    pub fn awaiting_final(&self) -> bool {
        matches!(
            self.state,
            TxState::ServerInvite(ServerInvite::Proceeding { .. })
                | TxState::ServerNonInvite(ServerNonInvite::Trying)
        )
    }

    /// Records a provisional response sent by an INVITE server transaction.
    pub fn on_provisional(&mut self, bytes: &[u8]) {
        if let TxState::ServerInvite(ServerInvite::Proceeding { last_provisional }) =
            &mut self.state
        {
            *last_provisional = Some(bytes.to_vec());
        }
    }

    /// Records a final response sent at `now`.
    pub fn on_final(&mut self, status: u16, bytes: &[u8], now: Instant) {
        let reliable = self.transport.is_reliable();
        match &mut self.state {
            TxState::ServerInvite(state @ ServerInvite::Proceeding { .. }) => {
                *state = if (200..300).contains(&status) {
                    ServerInvite::Accepted {
                        timer_l: now + TIMER_L,
                    }
                } else {
                    ServerInvite::Completed {
                        response: bytes.to_vec(),
                        retransmit: (!reliable).then(|| Retransmit::start(now)),
                        timer_h: now + TIMER_H,
                    }
                };
            }
            TxState::ServerNonInvite(state @ ServerNonInvite::Trying) => {
                let linger = if reliable { Duration::ZERO } else { TIMER_J };
                *state = ServerNonInvite::Completed {
                    response: bytes.to_vec(),
                    timer_j: now + linger,
                };
            }
            _ => {}
        }
    }

    /// An ACK matched this (INVITE server) transaction. Returns whether it was the ACK to our
    /// non-2xx final response.
    pub fn on_ack(&mut self, now: Instant) -> bool {
        let linger = if self.transport.is_reliable() {
            Duration::ZERO
        } else {
            TIMER_I
        };
        match &mut self.state {
            TxState::ServerInvite(state @ ServerInvite::Completed { .. }) => {
                *state = ServerInvite::Confirmed {
                    timer_i: now + linger,
                };
                true
            }
            _ => false,
        }
    }

    /// A response arrived for this (client) transaction. Returns whether it is the first final
    /// response, which goes to the transaction user; retransmissions are absorbed.
    pub fn on_response(&mut self, status: u16, now: Instant) -> bool {
        let linger = if self.transport.is_reliable() {
            Duration::ZERO
        } else {
            TIMER_K
        };
        let TxState::ClientNonInvite(state) = &mut self.state else {
            return false;
        };
        match state {
            ClientNonInvite::Trying {
                request,
                retransmit,
                timer_f,
            }
            | ClientNonInvite::Proceeding {
                request,
                retransmit,
                timer_f,
            } => {
                if status < 200 {
                    // In Proceeding, retransmissions continue at T2 (RFC 3261 §17.1.2.2).
                    let retransmit = retransmit.map(|r| Retransmit {
                        at: r.at.max(now),
                        interval: T2,
                    });
                    *state = ClientNonInvite::Proceeding {
                        request: std::mem::take(request),
                        retransmit,
                        timer_f: *timer_f,
                    };
                    false
                } else {
                    *state = ClientNonInvite::Completed {
                        timer_k: now + linger,
                    };
                    true
                }
            }
            _ => false,
        }
    }

    /// When [`Transaction::on_timeout`] must next run; `None` once terminated.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            TxState::ServerInvite(s) => match s {
                ServerInvite::Proceeding { .. } => None,
                ServerInvite::Completed {
                    retransmit,
                    timer_h,
                    ..
                } => Some(retransmit.map_or(*timer_h, |r| r.at.min(*timer_h))),
                ServerInvite::Confirmed { timer_i } => Some(*timer_i),
                ServerInvite::Accepted { timer_l } => Some(*timer_l),
                ServerInvite::Terminated => None,
            },
            TxState::ServerNonInvite(s) => match s {
                ServerNonInvite::Completed { timer_j, .. } => Some(*timer_j),
                _ => None,
            },
            TxState::ClientNonInvite(s) => match s {
                ClientNonInvite::Trying {
                    retransmit,
                    timer_f,
                    ..
                }
                | ClientNonInvite::Proceeding {
                    retransmit,
                    timer_f,
                    ..
                } => Some(retransmit.map_or(*timer_f, |r| r.at.min(*timer_f))),
                ClientNonInvite::Completed { timer_k } => Some(*timer_k),
                ClientNonInvite::Terminated => None,
            },
        }
    }

    /// Runs the timers that are due at `now`.
    pub fn on_timeout(&mut self, now: Instant) -> TimeoutAction {
        match &mut self.state {
            TxState::ServerInvite(state) => match state {
                ServerInvite::Completed {
                    response,
                    retransmit,
                    timer_h,
                } => {
                    if now >= *timer_h {
                        *state = ServerInvite::Terminated;
                        return TimeoutAction::TimedOut;
                    }
                    match retransmit {
                        Some(r) if now >= r.at => {
                            *r = r.next(now);
                            TimeoutAction::Retransmit(response.clone())
                        }
                        _ => TimeoutAction::None,
                    }
                }
                ServerInvite::Confirmed { timer_i: until }
                | ServerInvite::Accepted { timer_l: until } => {
                    if now >= *until {
                        *state = ServerInvite::Terminated;
                    }
                    TimeoutAction::None
                }
                _ => TimeoutAction::None,
            },
            TxState::ServerNonInvite(state) => {
                if let ServerNonInvite::Completed { timer_j, .. } = state {
                    if now >= *timer_j {
                        *state = ServerNonInvite::Terminated;
                    }
                }
                TimeoutAction::None
            }
            TxState::ClientNonInvite(state) => match state {
                ClientNonInvite::Trying {
                    request,
                    retransmit,
                    timer_f,
                }
                | ClientNonInvite::Proceeding {
                    request,
                    retransmit,
                    timer_f,
                } => {
                    if now >= *timer_f {
                        *state = ClientNonInvite::Terminated;
                        return TimeoutAction::TimedOut;
                    }
                    match retransmit {
                        Some(r) if now >= r.at => {
                            *r = r.next(now);
                            TimeoutAction::Retransmit(request.clone())
                        }
                        _ => TimeoutAction::None,
                    }
                }
                ClientNonInvite::Completed { timer_k } => {
                    if now >= *timer_k {
                        *state = ClientNonInvite::Terminated;
                    }
                    TimeoutAction::None
                }
                ClientNonInvite::Terminated => TimeoutAction::None,
            },
        }
    }

    pub fn is_terminated(&self) -> bool {
        matches!(
            self.state,
            TxState::ServerInvite(ServerInvite::Terminated)
                | TxState::ServerNonInvite(ServerNonInvite::Terminated)
                | TxState::ClientNonInvite(ClientNonInvite::Terminated)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(method: &str) -> TxKey {
        TxKey {
            branch: "z9hG4bK1".into(),
            sent_by: "10.0.0.1:5060".into(),
            method: method.into(),
        }
    }

    const PEER: &str = "10.0.0.1:5060";

    /// Runs a transaction's timers to completion, returning the offsets (ms) of retransmissions
    /// and of the timeout.
    fn run(tx: &mut Transaction, start: Instant) -> (Vec<u128>, Option<u128>) {
        let mut sends = Vec::new();
        let mut timed_out = None;
        while let Some(at) = tx.deadline() {
            match tx.on_timeout(at) {
                TimeoutAction::Retransmit(_) => sends.push((at - start).as_millis()),
                TimeoutAction::TimedOut => timed_out = Some((at - start).as_millis()),
                TimeoutAction::None => {}
            }
        }
        (sends, timed_out)
    }

    #[test]
    fn invite_non_2xx_over_udp_follows_timers_g_and_h() {
        let start = Instant::now();
        let mut tx =
            Transaction::server_invite(key("INVITE"), PEER.parse().unwrap(), Transport::Udp);
        tx.on_provisional(b"100");
        assert_eq!(tx.on_request_retransmission(), Some(&b"100"[..]));
        tx.on_final(486, b"486", start);
        assert_eq!(tx.on_request_retransmission(), Some(&b"486"[..]));
        let (sends, timed_out) = run(&mut tx, start);
        assert_eq!(
            sends,
            [
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(timed_out, Some(32_000));
        assert!(tx.is_terminated());
    }

    #[test]
    fn ack_stops_retransmission_and_timer_i_absorbs() {
        let start = Instant::now();
        let mut tx =
            Transaction::server_invite(key("INVITE"), PEER.parse().unwrap(), Transport::Udp);
        tx.on_final(487, b"487", start);
        assert!(tx.on_ack(start + Duration::from_millis(700)));
        assert!(
            !tx.on_ack(start + Duration::from_millis(800)),
            "a second ACK is absorbed"
        );
        assert_eq!(
            tx.deadline(),
            Some(start + Duration::from_millis(700) + TIMER_I)
        );
        let (sends, timed_out) = run(&mut tx, start);
        assert!(sends.is_empty());
        assert_eq!(timed_out, None);
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_2xx_goes_to_accepted_and_absorbs() {
        let start = Instant::now();
        let mut tx =
            Transaction::server_invite(key("INVITE"), PEER.parse().unwrap(), Transport::Udp);
        tx.on_final(200, b"200", start);
        assert_eq!(tx.on_request_retransmission(), None);
        assert!(!tx.awaiting_final());
        assert_eq!(tx.deadline(), Some(start + TIMER_L));
        assert_eq!(run(&mut tx, start), (vec![], None));
    }

    #[test]
    fn tcp_has_no_retransmissions() {
        let start = Instant::now();
        let mut tx =
            Transaction::server_invite(key("INVITE"), PEER.parse().unwrap(), Transport::Tcp);
        tx.on_final(488, b"488", start);
        let (sends, timed_out) = run(&mut tx, start);
        assert!(sends.is_empty());
        assert_eq!(timed_out, Some(32_000));
        let mut tx =
            Transaction::server_non_invite(key("BYE"), PEER.parse().unwrap(), Transport::Tcp);
        tx.on_final(200, b"200", start);
        assert_eq!(tx.deadline(), Some(start));
        let mut tx = Transaction::client_non_invite(
            key("BYE"),
            PEER.parse().unwrap(),
            Transport::Tcp,
            b"BYE".to_vec(),
            start,
        );
        assert_eq!(run(&mut tx, start), (vec![], Some(32_000)));
    }

    #[test]
    fn non_invite_server_resends_its_response_until_timer_j() {
        let start = Instant::now();
        let mut tx =
            Transaction::server_non_invite(key("BYE"), PEER.parse().unwrap(), Transport::Udp);
        assert!(tx.awaiting_final());
        assert_eq!(tx.on_request_retransmission(), None);
        tx.on_final(200, b"200", start);
        assert_eq!(tx.on_request_retransmission(), Some(&b"200"[..]));
        assert_eq!(tx.deadline(), Some(start + TIMER_J));
        run(&mut tx, start);
        assert!(tx.is_terminated());
    }

    #[test]
    fn non_invite_client_follows_timers_e_f_k() {
        let start = Instant::now();
        let mut tx = Transaction::client_non_invite(
            key("BYE"),
            PEER.parse().unwrap(),
            Transport::Udp,
            b"BYE".to_vec(),
            start,
        );
        let (sends, timed_out) = run(&mut tx, start);
        assert_eq!(
            sends,
            [
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(timed_out, Some(32_000));

        let mut tx = Transaction::client_non_invite(
            key("BYE"),
            PEER.parse().unwrap(),
            Transport::Udp,
            b"BYE".to_vec(),
            start,
        );
        assert!(matches!(
            tx.on_timeout(start + T1),
            TimeoutAction::Retransmit(_)
        ));
        // A provisional moves to Proceeding, where the interval is T2.
        assert!(!tx.on_response(100, start + Duration::from_millis(600)));
        assert_eq!(tx.deadline(), Some(start + Duration::from_millis(1500)));
        assert!(matches!(
            tx.on_timeout(start + Duration::from_millis(1500)),
            TimeoutAction::Retransmit(_)
        ));
        assert_eq!(tx.deadline(), Some(start + Duration::from_millis(5500)));
        assert!(tx.on_response(200, start + Duration::from_secs(2)));
        assert!(
            !tx.on_response(200, start + Duration::from_secs(3)),
            "retransmitted final is absorbed"
        );
        assert_eq!(
            tx.deadline(),
            Some(start + Duration::from_secs(2) + TIMER_K)
        );
        assert_eq!(run(&mut tx, start), (vec![], None));
    }
}
