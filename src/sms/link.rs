//! The tokio driver of the SMPP link: one task that owns the TCP connection and the
//! [`Esme`] session, and moves octets, time and messages between them.
//!
//! The session decides everything (bind, keep-alive, window, throttling, reconnect backoff,
//! `generic_nack`); this task only connects when told to, writes what the session transmits,
//! reads what the SMSC sends, and wakes the session at its deadline. The rest of the gateway talks
//! to it through a [`LinkHandle`]:
//!
//! - [`LinkHandle::submit`] queues a text and waits for the SMSC's verdict (all parts accepted,
//!   with their message ids, or a [`SendError`]); [`LinkHandle::send`] queues a text and forgets
//!   it (dialogue replies: not worth a retry, never blocking the caller).
//! - [`LinkHandle::bound`] says whether the link is bound now (the receipts outbox sends only then).
//! - Payers' texts and delivery receipts arrive on the [`Inbound`] receiver returned by
//!   [`spawn`]. When its reader falls behind, this task stops reading the socket, so the SMSC
//!   slows down rather than our memory filling.

use super::stats::{self, SmsEvent};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::SmsError;
use super::dlr::DeliveryReceipt;
use super::session::{Delivered, Esme, EsmeConfig, Event, Input, Output, Submit, SubmitFailure};

/// Commands waiting for the link task.
const COMMANDS_MAX: usize = 1024;
/// Payers' texts and delivery receipts waiting for the gateway.
const INBOUND_MAX: usize = 1024;
/// Octets read at a time.
const READ_CHUNK: usize = 16 * 1024;
/// How long one write may take before the connection is given up as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the SMSC is and how to bind to it.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `host:port` of the SMSC.
    pub address: String,
    /// The session's settings.
    pub esme: EsmeConfig,
}

/// What the SMSC sent for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A payer's text (it may be a PIN: never log it).
    Text(Delivered),
    /// A delivery receipt for a text we submitted.
    Receipt(DeliveryReceipt),
}

/// Why a submitted text was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session refused the text (bad address, too long, queue full, shut down).
    #[error("not queued: {0}")]
    Rejected(#[from] SmsError),
    /// The SMSC refused it or the link failed while it was in flight.
    #[error("not accepted by the SMSC: {0:?}")]
    Failed(SubmitFailure),
    /// The link task has stopped.
    #[error("the SMPP link has stopped")]
    Stopped,
}

/// Where a submit's outcome goes: the message id of each part, or why it failed.
type Outcome = oneshot::Sender<Result<Vec<String>, SendError>>;

enum Command {
    Submit {
        to: String,
        text: String,
        done: Option<Outcome>,
    },
    Shutdown,
}

/// The gateway's side of the link. Cheap to clone.
#[derive(Clone)]
pub struct LinkHandle {
    tx: mpsc::Sender<Command>,
    bound: watch::Receiver<bool>,
}

impl std::fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkHandle")
            .field("bound", &*self.bound.borrow())
            .finish()
    }
}

impl LinkHandle {
    /// True while the link is bound.
    pub fn bound(&self) -> bool {
        *self.bound.borrow()
    }

    /// Waits until the link is bound or `timeout` passes; returns whether it is bound.
    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        let mut rx = self.bound.clone();
        tokio::time::timeout(timeout, rx.wait_for(|b| *b))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Queues a text and waits until the SMSC has accepted every part (their message ids) or
    /// it has failed.
    pub async fn submit(&self, to: &str, text: &str) -> Result<Vec<String>, SendError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Submit {
                to: to.to_owned(),
                text: text.to_owned(),
                done: Some(done),
            })
            .await
            .map_err(|_| SendError::Stopped)?;
        rx.await.map_err(|_| SendError::Stopped)?
    }

    /// Queues a text without waiting for the outcome. A full command queue drops it (with a
    /// warning): a dialogue reply must never block the dialogue.
    pub fn send(&self, to: &str, text: &str) {
        let command = Command::Submit {
            to: to.to_owned(),
            text: text.to_owned(),
            done: None,
        };
        if self.tx.try_send(command).is_err() {
            tracing::warn!(to, "SMS link busy or stopped; a reply was dropped");
        }
    }

    /// Unbinds cleanly and stops the task.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// Starts the link task. It connects at once and keeps reconnecting until shut down.
pub fn spawn(config: LinkConfig) -> Result<(LinkHandle, mpsc::Receiver<Inbound>), SmsError> {
    let esme = Esme::new(config.esme.clone(), Instant::now().into_std())?;
    let (tx, commands) = mpsc::channel(COMMANDS_MAX);
    let (inbound_tx, inbound) = mpsc::channel(INBOUND_MAX);
    let (bound_tx, bound) = watch::channel(false);
    let driver = Driver {
        address: config.address,
        esme,
        commands,
        inbound: inbound_tx,
        bound: bound_tx,
        waiting: HashMap::new(),
        next_id: 1,
        reader: None,
        writer: None,
        connecting: None,
    };
    tokio::spawn(driver.run());
    Ok((LinkHandle { tx, bound }, inbound))
}

type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TcpStream>> + Send>>;

struct Driver {
    address: String,
    esme: Esme,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<Inbound>,
    bound: watch::Sender<bool>,
    /// Submits whose sender waits for the outcome, by submit id.
    waiting: HashMap<u64, Option<Outcome>>,
    next_id: u64,
    reader: Option<OwnedReadHalf>,
    writer: Option<OwnedWriteHalf>,
    connecting: Option<Connecting>,
}

/// Reads from the connection if there is one; otherwise never completes.
async fn read_some(reader: &mut Option<OwnedReadHalf>, buf: &mut [u8]) -> std::io::Result<usize> {
    match reader {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Completes the pending connection attempt, if there is one; otherwise never completes.
async fn connected(connecting: &mut Option<Connecting>) -> std::io::Result<TcpStream> {
    match connecting {
        Some(c) => c.await,
        None => std::future::pending().await,
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut commands_open = true;
        loop {
            let Some(deadline) = self.drain().await else {
                break;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(Instant::from_std(deadline)) => {
                    self.esme.handle_input(now(), Input::Timeout);
                }
                r = read_some(&mut self.reader, &mut buf) => match r {
                    Ok(0) | Err(_) => self.lost(),
                    Ok(n) => self.esme.handle_input(now(), Input::Receive(&buf[..n])),
                },
                r = connected(&mut self.connecting) => {
                    self.connecting = None;
                    match r {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            let (r, w) = stream.into_split();
                            self.reader = Some(r);
                            self.writer = Some(w);
                            self.esme.handle_input(now(), Input::Connected);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, smsc = %self.address, "SMSC connection failed");
                            self.esme.handle_input(now(), Input::ConnectFailed);
                        }
                    }
                }
                c = self.commands.recv(), if commands_open => match c {
                    Some(Command::Submit { to, text, done }) => self.submit(to, text, done),
                    Some(Command::Shutdown) => self.esme.shutdown(now()),
                    None => {
                        // Every handle is gone: unbind and stop.
                        commands_open = false;
                        self.esme.shutdown(now());
                    }
                },
            }
        }
        let _ = self.bound.send(false);
        for (_, done) in self.waiting.drain() {
            if let Some(done) = done {
                let _ = done.send(Err(SendError::Stopped));
            }
        }
        tracing::info!("SMS link stopped");
    }

    fn submit(&mut self, to: String, text: String, done: Option<Outcome>) {
        let id = self.next_id;
        self.next_id += 1;
        match self.esme.submit(now(), Submit { id, to, text }) {
            Ok(()) => {
                self.waiting.insert(id, done);
            }
            Err(e) => {
                tracing::debug!(error = %e, "text not queued");
                if let Some(done) = done {
                    let _ = done.send(Err(SendError::Rejected(e)));
                }
            }
        }
    }

    fn lost(&mut self) {
        self.reader = None;
        self.writer = None;
        self.esme.handle_input(now(), Input::Disconnected);
    }

    /// Does what the session asks until it names its next deadline; `None` when it is done.
    /// Consecutive PDUs are written together.
    async fn drain(&mut self) -> Option<std::time::Instant> {
        let mut pending: Vec<u8> = Vec::new();
        loop {
            match self.esme.poll_output() {
                Output::Transmit(octets) => {
                    if self.writer.is_some() {
                        pending.extend_from_slice(&octets);
                    }
                }
                Output::Connect => {
                    self.flush(&mut pending).await;
                    let address = self.address.clone();
                    self.connecting = Some(Box::pin(TcpStream::connect(address)));
                }
                Output::Disconnect => {
                    // What was transmitted before goes out before the connection closes.
                    self.flush(&mut pending).await;
                    if let Some(mut w) = self.writer.take() {
                        let _ = w.shutdown().await;
                    }
                    self.reader = None;
                    self.connecting = None;
                }
                Output::Event(event) => {
                    // Handing a text to a full inbound queue waits: answer the SMSC first.
                    if matches!(event, Event::Delivered(_) | Event::DeliveryReceipt(_))
                        && self.inbound.capacity() == 0
                    {
                        self.flush(&mut pending).await;
                    }
                    self.event(event).await;
                }
                Output::Timeout(t) => {
                    self.flush(&mut pending).await;
                    return Some(t);
                }
                Output::Done => {
                    self.flush(&mut pending).await;
                    return None;
                }
            }
        }
    }

    /// Writes what is pending; a write that fails or stalls loses the connection.
    async fn flush(&mut self, pending: &mut Vec<u8>) {
        if pending.is_empty() {
            return;
        }
        let Some(w) = self.writer.as_mut() else {
            pending.clear();
            return;
        };
        let ok = matches!(
            tokio::time::timeout(WRITE_TIMEOUT, w.write_all(pending)).await,
            Ok(Ok(()))
        );
        pending.clear();
        if !ok {
            self.lost();
        }
    }

    async fn event(&mut self, event: Event) {
        match event {
            Event::Bound { smsc_system_id } => {
                tracing::info!(smsc = %self.address, smsc_system_id, "SMPP link bound");
                let _ = self.bound.send(true);
            }
            Event::LinkDown {
                reason,
                reconnect_at,
            } => {
                stats::record(SmsEvent::LinkDown);
                let _ = self.bound.send(false);
                let in_ms = reconnect_at.saturating_duration_since(now()).as_millis();
                tracing::warn!(smsc = %self.address, ?reason, reconnect_in_ms = in_ms as u64, "SMPP link down");
            }
            Event::Delivered(d) => {
                stats::record(SmsEvent::TextIn);
                // Waiting here stops reading the socket: backpressure towards the SMSC.
                let _ = self.inbound.send(Inbound::Text(d)).await;
            }
            Event::DeliveryReceipt(r) => {
                stats::record(SmsEvent::ReceiptIn);
                let _ = self.inbound.send(Inbound::Receipt(r)).await;
            }
            Event::SubmitAccepted { id, message_ids } => {
                stats::record(SmsEvent::AcceptedOut);
                if let Some(Some(done)) = self.waiting.remove(&id) {
                    let _ = done.send(Ok(message_ids));
                }
            }
            Event::SubmitFailed { id, reason } => {
                stats::record(SmsEvent::FailedOut);
                tracing::debug!(id, ?reason, "text not accepted by the SMSC");
                if let Some(Some(done)) = self.waiting.remove(&id) {
                    let _ = done.send(Err(SendError::Failed(reason)));
                }
            }
            Event::InboundRejected { from, error } => {
                stats::record(SmsEvent::RejectedIn);
                tracing::info!(from, %error, "payer's text rejected");
            }
            Event::ReassemblyExpired(e) => {
                tracing::info!(?e, "incomplete long text given up");
            }
            Event::PeerMalformed(m) => {
                stats::record(SmsEvent::MalformedIn);
                tracing::warn!(kind = ?m.kind, command_id = m.header.command_id, "malformed PDU from the SMSC");
            }
            Event::Unbound => {
                let _ = self.bound.send(false);
                tracing::info!("SMPP link unbound");
            }
        }
    }
}
