//! The group-commit writer: the only path by which the ledger and transaction tables change.
//!
//! Requests queue on a bounded channel (backpressure). The writer takes everything queued, up to
//! `BATCH_MAX`, into one database transaction: load the working set, apply each request in
//! arrival order, write back, commit. Only after the commit returns — the data is on disk — are
//! the callers answered and the events published. Many flows share one fsync, which is how a
//! durable gateway reaches thousands of flows per second.
//!
//! A batch that fails for a passing reason (a lock conflict, a deadlock between nodes, a random
//! number drawn twice at once) is retried whole, from a fresh load; nothing of the failed attempt
//! survives the rollback. A batch that keeps failing is split and its requests run one by one,
//! so one bad request cannot fail its neighbours.

use super::batch;
use super::sql::{RowExt, Sql};
use super::{Backend, Store, StoreError};
use crate::clock::Clock;
use crate::settlement::credentials::ServerSecret;
use crate::settlement::engine::{self, Ctx, EventRecord, Op, OpError, Reply, WorkingSet};
use crate::settlement::rules::Rules;
use sqlx::{AnyConnection, Executor};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

/// Requests in one database transaction, at most.
pub const BATCH_MAX: usize = 1024;
/// Requests waiting for the writer, at most (then callers wait: backpressure).
pub const QUEUE_MAX: usize = 8192;
/// Writer connections on PostgreSQL, each committing its own batches (`TELEPAY_PG_WRITERS`).
/// One is fastest on a small machine: more contend for the merchant accounts and the CPU.
pub const PG_WRITERS: usize = 1;
/// Attempts of a batch before it is split.
const ATTEMPTS_MAX: u32 = 4;
/// The PostgreSQL channel that carries events between gateway nodes.
pub const NOTIFY_CHANNEL: &str = "telepay_events";
/// PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more.
const NOTIFY_PAYLOAD_MAX: usize = 7_000;

/// Why a request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("the settlement store is unavailable: {0}")]
    Unavailable(String),
}

/// Work on the notice outboxes, done in the writer's transactions too.
#[derive(Debug, Clone)]
pub enum Housekeeping {
    /// Leases due notices of one channel (optionally one target) for `lease_ms`.
    LeaseOutbox {
        channel: &'static str,
        target: Option<String>,
        limit: usize,
        lease_ms: i64,
        /// Only the oldest pending notice per target (ordered delivery).
        head_only: bool,
    },
    OutboxDelivered {
        ids: Vec<i64>,
    },
    OutboxRetry {
        id: i64,
        next_ms: i64,
        error: String,
    },
    /// Drops claim-failure rows older than the rate-limit window.
    Prune {
        before_ms: i64,
    },
    /// The SMS channel: a receipt text was accepted by the SMSC. Records it with its parts'
    /// message ids and marks its outbox row delivered, in one transaction.
    SmsReceiptSent {
        outbox_id: i64,
        receipt_id: String,
        msisdn: String,
        message_ids: Vec<String>,
    },
    /// The SMS channel: the SMSC's delivery receipt for a part of a receipt text.
    SmsDeliveryReceipt {
        message_id: String,
        state: String,
        error: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub channel: String,
    pub target: String,
    pub txn_id: String,
    pub seq: i64,
    pub payload: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HouseReply {
    Leased(Vec<OutboxItem>),
    Done,
}

enum Request {
    Op {
        op: Op,
        reply: oneshot::Sender<Result<Reply, CoreError>>,
    },
    House {
        job: Housekeeping,
        reply: oneshot::Sender<Result<HouseReply, CoreError>>,
    },
}

/// Counters the writer keeps for `/metrics` and benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: std::sync::atomic::AtomicU64,
    pub requests: std::sync::atomic::AtomicU64,
    pub retries: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
    pub commit_us_total: std::sync::atomic::AtomicU64,
}

/// The handle channels use. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
    pub events: broadcast::Sender<Arc<EventRecord>>,
    /// Woken when new notices are in an outbox.
    pub outbox_ready: Arc<Notify>,
    pub stats: Arc<WriterStats>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

struct Core {
    store: Store,
    /// SQLite only: rows this writer committed (see `store::cache`).
    cache: std::sync::Mutex<Option<super::cache::RowCache>>,
    rules: Arc<Rules>,
    secret: Arc<ServerSecret>,
    clock: Arc<dyn Clock>,
    node_id: String,
    events: broadcast::Sender<Arc<EventRecord>>,
    outbox_ready: Arc<Notify>,
    stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer task on its own connection.
    pub async fn start(
        store: Store,
        rules: Arc<Rules>,
        secret: Arc<ServerSecret>,
        clock: Arc<dyn Clock>,
        node_id: String,
    ) -> Result<Writer, StoreError> {
        // SQLite has one writer at a time anyway; PostgreSQL takes several batches at once
        // (row locks keep them apart), so one batch's round trips and fsync overlap another's.
        let writers = match store.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => std::env::var("TELEPAY_PG_WRITERS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| (1..=32).contains(n))
                .unwrap_or(PG_WRITERS),
        };
        let mut conns = Vec::with_capacity(writers);
        for _ in 0..writers {
            let mut conn = store.connect().await?;
            if store.backend == Backend::Sqlite {
                // Checkpoints run beside the writer (below), not inside its commits, where
                // they would stall every caller of that batch.
                conn.execute("PRAGMA wal_autocheckpoint=0").await?;
            }
            conns.push(conn);
        }
        if store.backend == Backend::Sqlite {
            spawn_checkpointer(store.clone());
        }
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let (events, _) = broadcast::channel(16_384);
        let outbox_ready = Arc::new(Notify::new());
        let stats = Arc::new(WriterStats::default());
        let cache = std::sync::Mutex::new(
            (store.backend == Backend::Sqlite).then(super::cache::RowCache::default),
        );
        let core = Core {
            cache,
            store,
            rules,
            secret,
            clock,
            node_id,
            events: events.clone(),
            outbox_ready: outbox_ready.clone(),
            stats: stats.clone(),
        };
        let core = Arc::new(core);
        for conn in conns {
            tokio::spawn(core.clone().run(conn, rx.clone()));
        }
        Ok(Writer {
            tx,
            events,
            outbox_ready,
            stats,
        })
    }

    /// Submits a request and waits until it is durably committed (or refused).
    pub async fn submit(&self, op: Op) -> Result<Reply, CoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Op { op, reply })
            .await
            .map_err(|_| CoreError::Unavailable("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| CoreError::Unavailable("the writer has stopped".into()))?
    }

    pub async fn house(&self, job: Housekeeping) -> Result<HouseReply, CoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::House { job, reply })
            .await
            .map_err(|_| CoreError::Unavailable("the writer has stopped".into()))?;
        rx.await
            .map_err(|_| CoreError::Unavailable("the writer has stopped".into()))?
    }
}

/// Copies the SQLite write-ahead log into the database file every so often, without blocking
/// the writer (`PASSIVE`). Stops when the pool closes.
fn spawn_checkpointer(store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if store.pool.is_closed() {
                return;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&store.pool)
                .await
            {
                tracing::debug!(error = %e, "checkpoint skipped");
            }
        }
    });
}

/// Every this many batches the SQLite writer finishes a checkpoint itself, so that the log
/// restarts from its beginning.
const WAL_RESTART_BATCHES: u64 = 32;

/// How often the SQLite log is checkpointed.
const CHECKPOINT_PERIOD: Duration = Duration::from_millis(500);

/// The result of one attempt at a batch, held until the commit succeeds.
struct Outcome {
    replies: Vec<Result<Reply, OpError>>,
    house: Vec<HouseReply>,
    events: Vec<EventRecord>,
    outbox_written: bool,
}

impl Core {
    async fn run(
        self: Arc<Self>,
        mut conn: AnyConnection,
        rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>,
    ) {
        let mut batches: u64 = 0;
        loop {
            // Take everything queued; the next writer takes what arrives meanwhile.
            let requests = {
                let mut rx = rx.lock().await;
                let Some(first) = rx.recv().await else { break };
                let mut batch = Vec::with_capacity(BATCH_MAX.min(64));
                batch.push(first);
                while batch.len() < BATCH_MAX {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                batch
            };
            self.execute(&mut conn, requests).await;
            batches += 1;
            if self.store.backend == Backend::Sqlite && batches % WAL_RESTART_BATCHES == 0 {
                // The background checkpointer copies the log while batches keep appending to
                // it, so it never catches up and the log would grow without end (and every read
                // with it). Between two batches nothing appends: this checkpoint finishes the
                // few frames left, and the next batch starts the log from its beginning again.
                if let Err(e) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
                    tracing::debug!(error = %e, "writer checkpoint skipped");
                }
            }
        }
        tracing::info!("settlement writer stopped");
    }

    async fn execute(&self, conn: &mut AnyConnection, requests: Vec<Request>) {
        let mut last_err = None;
        for attempt in 0..ATTEMPTS_MAX {
            match self.attempt(conn, &requests).await {
                Ok(out) => {
                    self.finish(requests, out);
                    return;
                }
                Err(e) => {
                    let _ = conn.execute("ROLLBACK").await;
                    self.stats
                        .retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let broken = matches!(e, StoreError::Db(sqlx::Error::Io(_)))
                        || matches!(e, StoreError::Db(sqlx::Error::Protocol(_)));
                    if broken {
                        self.reconnect(conn).await;
                    }
                    let retry = e.retryable() || broken;
                    tracing::warn!(error = %e, attempt, requests = requests.len(), "settlement batch failed");
                    last_err = Some(e);
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                }
            }
        }
        if requests.len() > 1 {
            // Run each request alone so one that cannot be written fails by itself.
            for r in requests {
                Box::pin(self.execute(conn, vec![r])).await;
            }
            return;
        }
        self.stats
            .failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let msg = last_err
            .map(|e| e.to_string())
            .unwrap_or_else(|| "unknown".into());
        for r in requests {
            match r {
                Request::Op { reply, .. } => {
                    let _ = reply.send(Err(CoreError::Unavailable(msg.clone())));
                }
                Request::House { reply, .. } => {
                    let _ = reply.send(Err(CoreError::Unavailable(msg.clone())));
                }
            }
        }
    }

    async fn reconnect(&self, conn: &mut AnyConnection) {
        for i in 0..50u32 {
            match self.store.connect().await {
                Ok(c) => {
                    *conn = c;
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "settlement writer cannot reconnect");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(i.min(20) + 1))).await;
                }
            }
        }
    }

    async fn attempt(
        &self,
        conn: &mut AnyConnection,
        requests: &[Request],
    ) -> Result<Outcome, StoreError> {
        let started = Instant::now();
        let backend = self.store.backend;
        conn.execute(match backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        })
        .await?;
        let now = self.clock.now_ms();
        let mut ws = WorkingSet::new(now);
        let mut cache = self.cache.lock().map(|mut c| c.take()).unwrap_or(None);
        let result = async {
            if let Some(c) = cache.as_mut() {
                // Another connection committed since our last batch: what we hold may be stale.
                let v: i64 = sqlx::query_scalar("PRAGMA data_version")
                    .fetch_one(&mut *conn)
                    .await?;
                if c.data_version != Some(v) {
                    c.clear();
                    c.data_version = Some(v);
                }
            }
            self.attempt_inner(conn, requests, started, now, &mut ws, cache.as_mut())
                .await
        }
        .await;
        if let Some(mut c) = cache {
            if result.is_ok() {
                c.absorb(&ws);
            } else {
                c.clear();
            }
            if let Ok(mut slot) = self.cache.lock() {
                *slot = Some(c);
            }
        }
        result.map(|(replies, house, outbox_written)| Outcome {
            replies,
            house,
            outbox_written,
            events: std::mem::take(&mut ws.events),
        })
    }

    #[allow(clippy::type_complexity)]
    async fn attempt_inner(
        &self,
        conn: &mut AnyConnection,
        requests: &[Request],
        started: Instant,
        now: i64,
        ws: &mut WorkingSet,
        cache: Option<&mut super::cache::RowCache>,
    ) -> Result<(Vec<Result<Reply, OpError>>, Vec<HouseReply>, bool), StoreError> {
        let backend = self.store.backend;
        let ops: Vec<&Op> = requests
            .iter()
            .filter_map(|r| match r {
                Request::Op { op, .. } => Some(op),
                Request::House { .. } => None,
            })
            .collect();
        let mut replies = Vec::with_capacity(ops.len());
        let t_begin = started.elapsed();
        let (mut t_load, mut t_apply, mut t_flush) = Default::default();
        if !ops.is_empty() {
            batch::load(conn, backend, ws, &ops, &self.rules, cache).await?;
            t_load = started.elapsed();
            let ctx = Ctx {
                rules: &self.rules,
                secret: &self.secret,
            };
            for op in &ops {
                replies.push(engine::apply(ws, &ctx, (*op).clone()));
            }
            t_apply = started.elapsed();
            let notices = match backend {
                Backend::Postgres => self.notify_bodies(&ws.events),
                Backend::Sqlite => Vec::new(),
            };
            batch::flush(conn, backend, ws, &notices).await?;
            t_flush = started.elapsed();
        }
        let mut house = Vec::new();
        for r in requests {
            if let Request::House { job, .. } = r {
                house.push(self.housekeeping(conn, job, now).await?);
            }
        }
        conn.execute("COMMIT").await?;
        tracing::debug!(
            requests = requests.len(),
            begin_us = t_begin.as_micros() as u64,
            load_us = t_load.as_micros() as u64,
            apply_us = t_apply.as_micros() as u64,
            flush_us = t_flush.as_micros() as u64,
            commit_us = started.elapsed().as_micros() as u64,
            "batch committed"
        );
        self.stats.commit_us_total.fetch_add(
            started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok((replies, house, !ws.outbox.is_empty()))
    }

    /// Answers the callers and publishes the events: the commit has returned.
    fn finish(&self, requests: Vec<Request>, out: Outcome) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.batches.fetch_add(1, Relaxed);
        self.stats
            .requests
            .fetch_add(requests.len() as u64, Relaxed);
        let mut replies = out.replies.into_iter();
        let mut house = out.house.into_iter();
        for r in requests {
            match r {
                Request::Op { reply, .. } => {
                    if let Some(res) = replies.next() {
                        let _ = reply.send(res.map_err(CoreError::Op));
                    }
                }
                Request::House { reply, .. } => {
                    if let Some(res) = house.next() {
                        let _ = reply.send(Ok(res));
                    }
                }
            }
        }
        for e in out.events {
            let _ = self.events.send(Arc::new(e));
        }
        if out.outbox_written {
            self.outbox_ready.notify_waiters();
        }
    }

    async fn housekeeping(
        &self,
        conn: &mut AnyConnection,
        job: &Housekeeping,
        now: i64,
    ) -> Result<HouseReply, StoreError> {
        match job {
            Housekeeping::LeaseOutbox {
                channel,
                target,
                limit,
                lease_ms,
                head_only,
            } => {
                let mut q = Sql::new(
                    "SELECT id, channel, target, txn_id, seq, payload, attempts, next_ms, lease_ms FROM outbox WHERE delivered_ms IS NULL AND channel = ",
                );
                q.bind(*channel);
                if let Some(t) = target {
                    q.push(" AND target = ").bind(t);
                }
                q.push(" ORDER BY id LIMIT ")
                    .bind((*limit as i64).saturating_mul(if *head_only { 64 } else { 1 }));
                let rows = q.query(self.store.backend).fetch_all(&mut *conn).await?;
                let mut items = Vec::new();
                let mut seen_targets: HashMap<String, ()> = HashMap::new();
                for r in rows {
                    let target = r.t("target")?;
                    if *head_only {
                        // Only the oldest pending notice of each target may go out.
                        if seen_targets.insert(target.clone(), ()).is_some() {
                            continue;
                        }
                    }
                    if r.i("next_ms")? > now || r.i("lease_ms")? > now {
                        continue;
                    }
                    items.push(OutboxItem {
                        id: r.i("id")?,
                        channel: r.t("channel")?,
                        target,
                        txn_id: r.t("txn_id")?,
                        seq: r.i("seq")?,
                        payload: r.t("payload")?,
                        attempts: r.i("attempts")? + 1,
                    });
                    if items.len() >= *limit {
                        break;
                    }
                }
                if !items.is_empty() {
                    let mut q = Sql::new("UPDATE outbox SET attempts = attempts + 1, lease_ms = ");
                    q.bind(now + lease_ms)
                        .push(" WHERE id IN ")
                        .list(items.iter().map(|i| i.id));
                    q.query(self.store.backend).execute(&mut *conn).await?;
                }
                Ok(HouseReply::Leased(items))
            }
            Housekeeping::OutboxDelivered { ids } => {
                if !ids.is_empty() {
                    let mut q = Sql::new("UPDATE outbox SET delivered_ms = ");
                    q.bind(now).push(" WHERE id IN ").list(ids.iter().copied());
                    q.query(self.store.backend).execute(&mut *conn).await?;
                }
                Ok(HouseReply::Done)
            }
            Housekeeping::OutboxRetry { id, next_ms, error } => {
                let mut q = Sql::new("UPDATE outbox SET lease_ms = 0, next_ms = ");
                q.bind(*next_ms)
                    .push(", last_error = ")
                    .bind(error.chars().take(300).collect::<String>())
                    .push(" WHERE id = ")
                    .bind(*id);
                q.query(self.store.backend).execute(&mut *conn).await?;
                Ok(HouseReply::Done)
            }
            Housekeeping::Prune { before_ms } => {
                let mut q = Sql::new("DELETE FROM claim_failures WHERE at_ms < ");
                q.bind(*before_ms);
                q.query(self.store.backend).execute(&mut *conn).await?;
                let mut q = Sql::new("DELETE FROM caller_blocks WHERE until_ms < ");
                q.bind(now);
                q.query(self.store.backend).execute(&mut *conn).await?;
                Ok(HouseReply::Done)
            }
            Housekeeping::SmsReceiptSent {
                outbox_id,
                receipt_id,
                msisdn,
                message_ids,
            } => {
                let mut q = Sql::new(
                    "INSERT INTO sms_receipts (receipt_id, outbox_id, msisdn, parts, submitted_ms) VALUES (",
                );
                q.bind(receipt_id.clone())
                    .push(", ")
                    .bind(*outbox_id)
                    .push(", ")
                    .bind(msisdn.clone())
                    .push(", ")
                    .bind(message_ids.len() as i64)
                    .push(", ")
                    .bind(now)
                    .push(") ON CONFLICT (receipt_id) DO NOTHING");
                q.query(self.store.backend).execute(&mut *conn).await?;
                for (part, message_id) in message_ids.iter().enumerate() {
                    let mut q = Sql::new(
                        "INSERT INTO sms_receipt_parts (message_id, receipt_id, part, submitted_ms) VALUES (",
                    );
                    q.bind(message_id.clone())
                        .push(", ")
                        .bind(receipt_id.clone())
                        .push(", ")
                        .bind(part as i64)
                        .push(", ")
                        .bind(now)
                        .push(") ON CONFLICT (receipt_id, part) DO NOTHING");
                    q.query(self.store.backend).execute(&mut *conn).await?;
                }
                let mut q = Sql::new("UPDATE outbox SET delivered_ms = ");
                q.bind(now).push(" WHERE id = ").bind(*outbox_id);
                q.query(self.store.backend).execute(&mut *conn).await?;
                Ok(HouseReply::Done)
            }
            Housekeeping::SmsDeliveryReceipt {
                message_id,
                state,
                error,
            } => {
                let mut q = Sql::new("UPDATE sms_receipts SET dlr_state = ");
                q.bind(state.clone())
                    .push(", dlr_error = ")
                    .bind(error.clone())
                    .push(", dlr_ms = ")
                    .bind(now)
                    .push(
                        " WHERE receipt_id = (SELECT receipt_id FROM sms_receipt_parts WHERE message_id = ",
                    )
                    .bind(message_id.clone())
                    .push(" ORDER BY submitted_ms DESC LIMIT 1)");
                q.query(self.store.backend).execute(&mut *conn).await?;
                Ok(HouseReply::Done)
            }
        }
    }

    /// Notification payloads telling the other gateway nodes about this batch's events; they go
    /// out with the batch's write-back and PostgreSQL delivers them only if it commits.
    fn notify_bodies(&self, events: &[EventRecord]) -> Vec<String> {
        let mut chunk: Vec<serde_json::Value> = Vec::new();
        let mut size = 0usize;
        let mut payloads = Vec::new();
        for e in events {
            let v = crate::settlement::events::to_wire(e);
            let len = v.to_string().len();
            if size + len > NOTIFY_PAYLOAD_MAX && !chunk.is_empty() {
                payloads.push(std::mem::take(&mut chunk));
                size = 0;
            }
            size += len;
            chunk.push(v);
        }
        if !chunk.is_empty() {
            payloads.push(chunk);
        }
        let mut out = Vec::new();
        for p in payloads {
            let body = serde_json::json!({ "node": self.node_id, "events": p }).to_string();
            if body.len() >= 8_000 {
                // A single event too large to travel: waiters on other nodes re-read the store.
                tracing::warn!(bytes = body.len(), "event too large for NOTIFY; skipped");
                continue;
            }
            out.push(body);
        }
        out
    }
}
