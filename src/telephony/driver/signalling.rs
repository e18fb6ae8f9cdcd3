//! The SIP task: the UDP socket, the TCP listener and its connections, all feeding one
//! [`Endpoint`]; it answers offered calls on an RTP port from the pool and starts their tasks.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use crate::settlement::Service;
use crate::telephony::dtmf::DtmfMode;
use crate::telephony::ivr::Dialplan;
use crate::telephony::sip::{
    CallId, CallerIdentity, Endpoint, Event, Input, Output, Progress, SipError, Transport,
};

use super::call::{self, CallEvent, CallSetup, SipCommand};
use super::speech::SpeechService;

/// Largest datagram read (SIP over UDP is bounded well below this by the framing layer).
const DATAGRAM_BYTES_MAX: usize = 65_535;
/// Bytes read from a TCP connection at once.
const TCP_READ_BYTES: usize = 16 * 1024;
/// Messages queued towards one TCP connection before further ones are dropped.
const TCP_WRITE_QUEUE_MAX: usize = 256;
/// Open TCP connections, incoming and outgoing; further peers wait to be accepted.
const TCP_CONNECTIONS_MAX: usize = 1024;

/// Even RTP ports of a range, handed out to calls and taken back when they end.
#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
}

impl PortPool {
    /// Every even port in `low..=high` (RTCP conventionally takes the odd one above).
    pub fn new(low: u16, high: u16) -> PortPool {
        let start = low + (low % 2);
        PortPool {
            free: (start..=high).step_by(2).collect(),
        }
    }

    /// Binds a socket on the first free port that can be bound.
    pub fn bind(&mut self, ip: IpAddr) -> Option<(u16, std::net::UdpSocket)> {
        for _ in 0..self.free.len() {
            let port = self.free.pop_front()?;
            match std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) if s.set_nonblocking(true).is_ok() => return Some((port, s)),
                _ => self.free.push_back(port),
            }
        }
        None
    }

    pub fn release(&mut self, port: u16) {
        self.free.push_back(port);
    }

    pub fn free(&self) -> usize {
        self.free.len()
    }
}

enum TcpEvent {
    Connected(SocketAddr, mpsc::Sender<Vec<u8>>),
    Data(SocketAddr, Vec<u8>),
    Closed(SocketAddr),
}

/// What the SIP task needs besides its sockets.
pub struct SignallingSetup {
    pub endpoint: Endpoint,
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    pub ports: PortPool,
    pub bind_ip: IpAddr,
    pub dialplan: Arc<RwLock<Arc<Dialplan>>>,
    pub dtmf_mode: DtmfMode,
    pub svc: Service,
    pub speech: Option<Arc<SpeechService>>,
    /// How long an offered call rings (180) before it is answered.
    pub ring_ms: u64,
    /// A request to close: refuse new calls, hang up the rest, and answer once none is left.
    pub shutdown: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
}

/// A call that rings and is not answered yet.
struct Offer {
    caller: CallerIdentity,
    called_user: String,
    media: crate::telephony::sip::Media,
}

struct Signalling {
    endpoint: Endpoint,
    udp: Arc<UdpSocket>,
    ports: PortPool,
    bind_ip: IpAddr,
    dialplan: Arc<RwLock<Arc<Dialplan>>>,
    dtmf_mode: DtmfMode,
    svc: Service,
    speech: Option<Arc<SpeechService>>,
    conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    calls: HashMap<CallId, (mpsc::UnboundedSender<CallEvent>, Option<u16>)>,
    tcp_tx: mpsc::Sender<TcpEvent>,
    cmd_tx: mpsc::UnboundedSender<SipCommand>,
    deadline: Instant,
    ring_ms: u64,
    ringing: HashMap<CallId, Offer>,
    /// Closing: new calls get 503, and this is answered when the last call has ended.
    closing: Option<Option<oneshot::Sender<()>>>,
}

/// Runs the SIP side of the gateway until the process ends.
pub async fn run(setup: SignallingSetup) {
    let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpEvent>(1024);
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<SipCommand>();
    tokio::spawn(accept_loop(setup.tcp, tcp_tx.clone()));
    let mut s = Signalling {
        endpoint: setup.endpoint,
        udp: Arc::new(setup.udp),
        ports: setup.ports,
        bind_ip: setup.bind_ip,
        dialplan: setup.dialplan,
        dtmf_mode: setup.dtmf_mode,
        svc: setup.svc,
        speech: setup.speech,
        conns: HashMap::new(),
        calls: HashMap::new(),
        tcp_tx,
        cmd_tx,
        deadline: Instant::now(),
        ring_ms: setup.ring_ms,
        ringing: HashMap::new(),
        closing: None,
    };
    let mut shutdown = setup.shutdown;
    s.drain();
    let mut buf = vec![0_u8; DATAGRAM_BYTES_MAX];
    loop {
        let udp = Arc::clone(&s.udp);
        tokio::select! {
            received = udp.recv_from(&mut buf) => {
                if let Ok((n, source)) = received {
                    let input = Input::Receive { source, transport: Transport::Udp, bytes: &buf[..n] };
                    let result = s.endpoint.handle_input(input, Instant::now());
                    log_peer_error(result, source);
                }
            }
            Some(event) = tcp_rx.recv() => match event {
                TcpEvent::Connected(peer, writer) => { s.conns.insert(peer, writer); }
                TcpEvent::Data(peer, bytes) => {
                    let input = Input::Receive { source: peer, transport: Transport::Tcp, bytes: &bytes };
                    let result = s.endpoint.handle_input(input, Instant::now());
                    log_peer_error(result, peer);
                }
                TcpEvent::Closed(peer) => {
                    s.conns.remove(&peer);
                    let _ = s.endpoint.handle_input(Input::StreamClosed { peer }, Instant::now());
                }
            },
            Some(command) = cmd_rx.recv() => match command {
                SipCommand::Answer(id) => s.answer(id),
                SipCommand::Hangup(id) => { let _ = s.endpoint.hangup(id, Instant::now()); }
                SipCommand::RtpActivity(id, at) => { let _ = s.endpoint.rtp_activity(id, at); }
            },
            Some(done) = shutdown.recv() => s.close(done),
            _ = tokio::time::sleep_until(s.deadline.into()) => {
                let _ = s.endpoint.handle_input(Input::Timeout, Instant::now());
            }
        }
        s.drain();
        s.check_closed();
    }
}

/// Accepts TCP connections, a permit first: at the limit, new peers wait in the backlog.
async fn accept_loop(listener: TcpListener, events: mpsc::Sender<TcpEvent>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(TCP_CONNECTIONS_MAX));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                spawn_connection(stream, peer, events.clone(), None, Some(permit))
            }
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(error = %e, "accepting a SIP TCP connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

fn log_peer_error(result: Result<(), SipError>, source: SocketAddr) {
    if let Err(e) = result {
        tracing::debug!(%source, error = %e, "SIP input answered with an error or dropped");
    }
}

/// Runs a TCP connection: its reads go to the SIP task, the SIP task's writes to it. `first`
/// is sent before anything else (the message an outgoing connection was opened for).
fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
    first: Option<Vec<u8>>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_WRITE_QUEUE_MAX);
    if let Some(bytes) = first {
        let _ = tx.try_send(bytes);
    }
    tokio::spawn(async move {
        if events.send(TcpEvent::Connected(peer, tx)).await.is_err() {
            return;
        }
        let write = async move {
            while let Some(bytes) = rx.recv().await {
                if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
        };
        let events_read = events.clone();
        let read = async move {
            let mut buf = vec![0_u8; TCP_READ_BYTES];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if events_read
                            .send(TcpEvent::Data(peer, buf[..n].to_vec()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = read => {},
            _ = write => {},
        }
        let _ = events.send(TcpEvent::Closed(peer)).await;
        drop(permit);
    });
}

impl Signalling {
    fn drain(&mut self) {
        loop {
            match self.endpoint.poll_output() {
                Output::Transmit {
                    dest,
                    transport,
                    bytes,
                } => self.transmit(dest, transport, bytes),
                Output::Event(event) => self.on_event(event),
                Output::Disconnect { peer } => {
                    // Dropping the writer ends the connection's task, which reports Closed.
                    self.conns.remove(&peer);
                }
                Output::Timeout(at) => {
                    self.deadline = at;
                    return;
                }
            }
        }
    }

    fn transmit(&mut self, dest: SocketAddr, transport: Transport, bytes: Vec<u8>) {
        match transport {
            Transport::Udp => {
                if let Err(e) = self.udp.try_send_to(&bytes, dest) {
                    tracing::debug!(%dest, error = %e, "SIP datagram not sent");
                }
            }
            Transport::Tcp => match self.conns.get(&dest) {
                Some(writer) => {
                    let _ = writer.try_send(bytes);
                }
                None => {
                    let events = self.tcp_tx.clone();
                    tokio::spawn(async move {
                        if let Ok(stream) = TcpStream::connect(dest).await {
                            spawn_connection(stream, dest, events, Some(bytes), None);
                        }
                    });
                    tracing::debug!(%dest, "no TCP connection to the peer; opening one");
                }
            },
        }
    }

    /// Starts closing: every call is hung up (BYE, or 480 while ringing), and new ones are
    /// refused with 503 until the process ends.
    fn close(&mut self, done: oneshot::Sender<()>) {
        let now = Instant::now();
        let ids: Vec<CallId> = self
            .calls
            .keys()
            .chain(self.ringing.keys())
            .copied()
            .collect();
        tracing::info!(calls = ids.len(), "closing: hanging up every call");
        for id in ids {
            let _ = self.endpoint.hangup(id, now);
        }
        self.closing = Some(Some(done));
        self.drain();
        self.check_closed();
    }

    fn check_closed(&mut self) {
        if self.calls.is_empty()
            && self.ringing.is_empty()
            && let Some(done) = self.closing.as_mut().and_then(Option::take)
        {
            let _ = done.send(());
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::CallOffered {
                call_id,
                caller,
                called_user,
                media,
                ..
            } => self.offered(call_id, caller, called_user, media),
            Event::CallAnswered { call_id } => self.forward(call_id, CallEvent::Answered),
            Event::MediaChanged { call_id, media } => {
                self.forward(call_id, CallEvent::MediaChanged(media))
            }
            Event::InfoDtmf { call_id, digit, .. } => {
                self.forward(call_id, CallEvent::InfoDigit(digit))
            }
            Event::CallEnded { call_id, reason } => {
                tracing::info!(call = %call_id, ?reason, "call ended");
                self.ringing.remove(&call_id);
                if let Some((tx, port)) = self.calls.remove(&call_id) {
                    let _ = tx.send(CallEvent::Ended);
                    if let Some(port) = port {
                        self.ports.release(port);
                    }
                }
            }
            _ => {}
        }
    }

    fn forward(&self, call_id: CallId, event: CallEvent) {
        if let Some((tx, _)) = self.calls.get(&call_id) {
            let _ = tx.send(event);
        }
    }

    fn offered(
        &mut self,
        call_id: CallId,
        caller: CallerIdentity,
        called_user: String,
        media: crate::telephony::sip::Media,
    ) {
        let now = Instant::now();
        if self.closing.is_some() {
            let _ = self.endpoint.reject(call_id, 503, now);
            return;
        }
        if let Err(e) = self.endpoint.progress(call_id, Progress::Ringing, now) {
            tracing::debug!(call = %call_id, error = %e, "180 not sent");
        }
        self.ringing.insert(
            call_id,
            Offer {
                caller,
                called_user,
                media,
            },
        );
        if self.ring_ms == 0 {
            self.answer(call_id);
        } else {
            let commands = self.cmd_tx.clone();
            let ring = std::time::Duration::from_millis(self.ring_ms);
            tokio::spawn(async move {
                tokio::time::sleep(ring).await;
                let _ = commands.send(SipCommand::Answer(call_id));
            });
        }
    }

    /// Answers a ringing call on a fresh RTP port and starts its task.
    fn answer(&mut self, call_id: CallId) {
        // A call cancelled while ringing is no longer here.
        let Some(Offer {
            caller,
            called_user,
            media,
        }) = self.ringing.remove(&call_id)
        else {
            return;
        };
        let now = Instant::now();
        let Some((port, socket)) = self.ports.bind(self.bind_ip) else {
            tracing::warn!(call = %call_id, "no free RTP port; call rejected");
            let _ = self.endpoint.reject(call_id, 503, now);
            return;
        };
        let socket = match UdpSocket::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(call = %call_id, error = %e, "RTP socket unusable; call rejected");
                self.ports.release(port);
                let _ = self.endpoint.reject(call_id, 503, now);
                return;
            }
        };
        if let Err(e) = self.endpoint.answer(call_id, port, now) {
            tracing::warn!(call = %call_id, error = %e, "answering failed");
            self.ports.release(port);
            return;
        }
        let msisdn = match caller {
            CallerIdentity::Number { e164, .. } => Some(e164),
            _ => None,
        };
        tracing::info!(call = %call_id, user = %called_user, rtp_port = port, "call answered");
        let dialplan = match self.dialplan.read() {
            Ok(d) => Arc::clone(&d),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.calls.insert(call_id, (tx, Some(port)));
        tokio::spawn(call::run(CallSetup {
            call_id,
            socket,
            media,
            called_user,
            msisdn,
            dialplan,
            dtmf_mode: self.dtmf_mode,
            svc: self.svc.clone(),
            speech: self.speech.clone(),
            events: rx,
            commands: self.cmd_tx.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_hands_out_even_ports_skips_busy_ones_and_takes_them_back() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        // Find a free even port with its neighbour range, then occupy the first one.
        let base = (40_001..60_000)
            .step_by(2)
            .map(|p| p + 1)
            .find(|p| (0..6).all(|i| std::net::UdpSocket::bind(SocketAddr::new(ip, p + i)).is_ok()))
            .expect("a free range");
        let busy = std::net::UdpSocket::bind(SocketAddr::new(ip, base)).expect("occupy");
        let mut pool = PortPool::new(base - 1, base + 3);
        assert_eq!(
            pool.free(),
            2,
            "even ports of {}..={} only",
            base - 1,
            base + 3
        );
        let (port, _socket) = pool.bind(ip).expect("a port");
        assert_eq!(port, base + 2, "the busy port is skipped");
        assert!(pool.bind(ip).is_none(), "the busy one stays busy");
        drop(busy);
        pool.release(port);
        assert_eq!(pool.free(), 2);
    }
}
