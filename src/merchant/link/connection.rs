//! One terminal connection: the thin loop around the sans-IO session.
//!
//! The loop owns the socket and the clock. It feeds the session what arrives (bytes, core
//! replies, advices, deadlines), and acts on what the session asks: frames are written, core
//! requests run as tasks against the [`Service`](crate::settlement::Service), acknowledged
//! advices are reported to the advice feeder. While the terminal is signed on, a feeder task
//! reads the terminal's advice rows in order and marks them delivered when acknowledged.

use super::{Shared, core};
use crate::merchant::iso8583::{
    AdviceId, CoreReply, Input, Output, RequestId, ResponseCode, Session, SessionError,
};
use crate::settlement::Service;
use crate::store::writer::{Housekeeping, OutboxItem};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// A write that takes longer than this means the terminal does not read: the link is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Advices handed to a link and not yet acknowledged, at most.
const ADVICES_IN_HAND_MAX: usize = 64;
/// The feeder looks for advices this often even without an event (changes made by another
/// process on the same SQLite file publish no event here).
const ADVICE_POLL: Duration = Duration::from_secs(1);

/// Ends a task when dropped.
struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The advice feeder of the terminal signed on over this connection.
struct Feeder {
    terminal_id: String,
    acks: mpsc::UnboundedSender<i64>,
    /// The feeder task; it finishes on its own (releasing what it holds) once `acks` closes.
    _task: tokio::task::JoinHandle<()>,
}

pub(crate) async fn run<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut session = Session::new(shared.session.clone(), Instant::now(), SystemTime::now());
    let (core_tx, mut core_rx) = mpsc::unbounded_channel::<(RequestId, CoreReply)>();
    let (advice_tx, mut advice_rx) = mpsc::channel::<OutboxItem>(ADVICES_IN_HAND_MAX);
    let mut feeder: Option<Feeder> = None;
    let mut kicked: Option<oneshot::Receiver<()>> = None;
    let mut core_tasks: Vec<TaskGuard> = Vec::new();
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 16 * 1024];
    let hold = Duration::from_millis(shared.session.hold_time_ms.saturating_add(5_000));
    tracing::debug!(%peer, conn_id, "merchant link connected");

    let end: String = 'conn: loop {
        // Act on everything the session has to say, up to its next deadline.
        let deadline = loop {
            match session.poll_output() {
                Output::Transmit(frame) => {
                    shared.metrics.link_frames.inc(&["out"]);
                    out.extend_from_slice(&frame);
                }
                Output::CoreRequest {
                    request_id,
                    request,
                } => {
                    let svc = shared.svc.clone();
                    let tx = core_tx.clone();
                    core_tasks.retain(|t| !t.0.is_finished());
                    core_tasks.push(TaskGuard(tokio::spawn(async move {
                        let reply = core::serve(&svc, request, hold).await;
                        let _ = tx.send((request_id, reply));
                    })));
                }
                Output::AdviceAcked {
                    advice_id,
                    response,
                } => {
                    if response != ResponseCode::Approved {
                        tracing::info!(%peer, ?advice_id, code = response.as_str(), "terminal answered an advice with a refusal; it counts as delivered");
                    }
                    shared.metrics.advices.inc(&["acknowledged"]);
                    if let Some(f) = &feeder {
                        let _ = f.acks.send(advice_id.0 as i64);
                    }
                }
                Output::SignedOn {
                    terminal_id,
                    merchant_id: _,
                } => {
                    let tid = terminal_id.as_str().to_string();
                    if feeder.as_ref().is_some_and(|f| f.terminal_id == tid) {
                        // A repeated sign-on on a signed-on link changes nothing.
                        continue;
                    }
                    if let Some(f) = feeder.take() {
                        leave(&shared, conn_id, &f.terminal_id, &mut session);
                    }
                    let (kick_tx, kick_rx) = oneshot::channel();
                    let duplicates = {
                        let mut terminals = match shared.terminals.lock() {
                            Ok(t) => t,
                            Err(p) => p.into_inner(),
                        };
                        let state = terminals.entry(tid.clone()).or_default();
                        // The newest link of a terminal is the one that counts.
                        if let Some((old_id, old)) = state.holder.replace((conn_id, kick_tx)) {
                            if old_id != conn_id {
                                let _ = old.send(());
                            }
                        }
                        std::mem::take(&mut state.duplicates)
                    };
                    session.restore_duplicates(duplicates);
                    kicked = Some(kick_rx);
                    feeder = Some(start_feeder(
                        shared.svc.clone(),
                        tid.clone(),
                        advice_tx.clone(),
                    ));
                    tracing::info!(%peer, terminal = %tid, "terminal signed on");
                }
                Output::SignedOff => {
                    if let Some(f) = feeder.take() {
                        tracing::info!(%peer, terminal = %f.terminal_id, "terminal signed off");
                        leave(&shared, conn_id, &f.terminal_id, &mut session);
                    }
                    kicked = None;
                }
                Output::Close { reason } => break 'conn reason.to_string(),
                Output::Timeout(at) => break at,
            }
        };
        if !out.is_empty() {
            match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&out)).await {
                Ok(Ok(())) => out.clear(),
                Ok(Err(e)) => break 'conn format!("write failed: {e}"),
                Err(_) => break 'conn "the terminal does not read".into(),
            }
        }
        let now = Instant::now();
        let result: Result<(), SessionError> = tokio::select! {
            read = rd.read(&mut buf) => match read {
                Ok(0) => break 'conn "closed by the terminal".into(),
                Ok(n) => {
                    session.handle_input(Input::Bytes(&buf[..n]), Instant::now())
                }
                Err(e) => break 'conn format!("read failed: {e}"),
            },
            Some((request_id, reply)) = core_rx.recv() => {
                session.handle_input(Input::CoreReply { request_id, reply }, Instant::now())
            }
            Some(item) = advice_rx.recv() => match core::advice_body(&item.payload) {
                Ok(body) => {
                    shared.metrics.advices.inc(&["sent"]);
                    session.handle_input(
                        Input::Advice { advice_id: AdviceId(item.id as u64), body },
                        Instant::now(),
                    )
                }
                Err(e) => {
                    // A row the link cannot send would block every later advice: it is logged
                    // and counted as done.
                    tracing::error!(id = item.id, error = %e, "advice row skipped");
                    if let Some(f) = &feeder {
                        let _ = f.acks.send(item.id);
                    }
                    Ok(())
                }
            },
            _ = tokio::time::sleep_until(deadline.max(now).into()) => {
                session.handle_input(Input::Timeout, Instant::now())
            }
            _ = async {
                match kicked.as_mut() {
                    Some(rx) => { let _ = rx.await; }
                    None => std::future::pending::<()>().await,
                }
            } => break 'conn "another link signed on as this terminal".into(),
        };
        match result {
            Ok(()) => {}
            // A reply that came after the session gave up on it, or an advice that arrived as
            // the terminal signed off: nothing to do, the store still holds what matters.
            Err(SessionError::UnknownRequest(_)) | Err(SessionError::NotSignedOn) => {}
            Err(SessionError::Closed) => break 'conn "session closed".into(),
            Err(e) => tracing::warn!(%peer, error = %e, "merchant link session"),
        }
    };
    // Last words (e.g. the response to a sign-off) before the socket closes.
    if !out.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(&out)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    if let Some(f) = feeder.take() {
        leave(&shared, conn_id, &f.terminal_id, &mut session);
    }
    tracing::info!(%peer, conn_id, reason = %end, "merchant link closed");
}

/// The terminal's link ends (or it signs off): keep its finished responses for its next link
/// and give up its sign-on unless a newer link holds it.
fn leave(shared: &Shared, conn_id: u64, terminal_id: &str, session: &mut Session) {
    let duplicates = session.take_duplicates();
    let mut terminals = match shared.terminals.lock() {
        Ok(t) => t,
        Err(p) => p.into_inner(),
    };
    let state = terminals.entry(terminal_id.to_string()).or_default();
    if state.holder.as_ref().is_some_and(|(id, _)| *id == conn_id) {
        state.holder = None;
        state.duplicates = duplicates;
    }
}

fn start_feeder(svc: Service, terminal_id: String, to_conn: mpsc::Sender<OutboxItem>) -> Feeder {
    let (acks, acks_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(feed(svc, terminal_id.clone(), to_conn, acks_rx));
    Feeder {
        terminal_id,
        acks,
        _task: task,
    }
}

/// Reads the terminal's undelivered advices in order, hands each to the connection once, and
/// marks them delivered as the terminal acknowledges them. Advices are not leased: the terminal's
/// one link holds them (a second link of the same terminal on another node might send an advice
/// again, which the profile allows). Ends when the connection lets go (the ack channel closes).
async fn feed(
    svc: Service,
    terminal_id: String,
    to_conn: mpsc::Sender<OutboxItem>,
    mut acks: mpsc::UnboundedReceiver<i64>,
) {
    let writer = svc.writer().clone();
    let mut events = svc.subscribe();
    let mut in_hand: BTreeSet<i64> = BTreeSet::new();
    let mut acked: Vec<i64> = Vec::new();
    let mut closed = false;
    let mut look = true;
    let mut window_full = false;
    loop {
        while let Ok(id) = acks.try_recv() {
            acked.push(id);
        }
        if !acked.is_empty() {
            let ids = std::mem::take(&mut acked);
            match writer
                .house(Housekeeping::OutboxDelivered { ids: ids.clone() })
                .await
            {
                Ok(_) => {
                    for id in &ids {
                        in_hand.remove(id);
                    }
                    // More may wait behind a full window; otherwise an event says when.
                    look |= window_full;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "marking advices delivered failed; retrying");
                    acked = ids;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        if closed {
            break;
        }
        if look && in_hand.len() < ADVICES_IN_HAND_MAX {
            look = false;
            match svc
                .store()
                .outbox_head("advice", &terminal_id, ADVICES_IN_HAND_MAX)
                .await
            {
                Ok(items) => {
                    window_full = items.len() >= ADVICES_IN_HAND_MAX;
                    for item in items {
                        // Rows in hand are still undelivered and come back: not sent twice.
                        if in_hand.insert(item.id) && to_conn.send(item).await.is_err() {
                            closed = true;
                            break;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading advices failed; will retry"),
            }
        }
        if closed {
            continue;
        }
        // Wait for an acknowledgement, an advised event of this terminal, or the poll.
        let poll = tokio::time::sleep(ADVICE_POLL);
        tokio::pin!(poll);
        loop {
            tokio::select! {
                id = acks.recv() => {
                    match id {
                        Some(id) => acked.push(id),
                        None => closed = true,
                    }
                    break;
                }
                ev = events.recv() => match ev {
                    Ok(e) if e.terminal_id == terminal_id && e.kind.is_advised() => {
                        look = true;
                        break;
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        look = true;
                        break;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        (&mut poll).await;
                        look = true;
                        break;
                    }
                },
                _ = &mut poll => {
                    look = true;
                    break;
                }
            }
        }
    }
}
