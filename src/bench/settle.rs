//! `telepay bench settle`: complete flows through the settlement core, durable commits included.
//!
//! Each flow: open (issue) → claim (pair) → set amount → PIN → confirm (settle), five requests
//! through the group-commit writer, each answered only after its commit. `concurrency` flows
//! run at once, each from its own payer.

use crate::app::{AppError, Context};
use crate::clock::SystemClock;
use crate::settlement::Service;
use crate::settlement::credentials::{SecretDigits, ServerSecret};
use crate::settlement::engine::PayerChannel;
use crate::settlement::lifecycle::{Origin, TxnState};
use crate::settlement::rules::Rules;
use crate::store::Store;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
}

pub struct Figures {
    pub flows: usize,
    pub elapsed_s: f64,
    pub flows_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Database transactions the writer committed, and the mean requests and time per batch.
    pub batches: u64,
    pub batch_requests_mean: f64,
    pub batch_ms_mean: f64,
}

/// Opens a fresh store for a benchmark: a new SQLite file, or a new schema on `DATABASE_URL`.
pub async fn fresh_store(
    backend: BenchBackend,
    tag: &str,
) -> Result<(Store, Option<String>), AppError> {
    match backend {
        BenchBackend::Sqlite => {
            let dir =
                std::env::temp_dir().join(format!("telepay-bench-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let url = crate::store::default_sqlite_url(&dir);
            Ok((Store::open(&url, 4).await.context("opening SQLite")?, None))
        }
        BenchBackend::Postgres => {
            let base = std::env::var("DATABASE_URL")
                .ok()
                .filter(|u| u.starts_with("postgres"))
                .ok_or_else(|| AppError {
                    context: "bench --backend postgres".into(),
                    message: "set DATABASE_URL=postgres://…".into(),
                })?;
            let schema = format!("bench_{tag}_{}", std::process::id());
            let url = crate::store::postgres_schema_url(&base, &schema)
                .await
                .context("creating a benchmark schema")?;
            Ok((
                Store::open(&url, 8).await.context("opening PostgreSQL")?,
                Some(schema),
            ))
        }
    }
}

/// Removes what [`fresh_store`] made: the SQLite folder, or the PostgreSQL schema.
pub async fn drop_store(store: Store, tag: &str, schema: Option<String>) {
    store.pool.close().await;
    match schema {
        Some(schema) => {
            if let Ok(base) = std::env::var("DATABASE_URL") {
                let _ = crate::store::drop_postgres_schema(&base, &schema).await;
            }
        }
        None => {
            let dir =
                std::env::temp_dir().join(format!("telepay-bench-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub async fn run(
    backend: BenchBackend,
    flows: usize,
    concurrency: usize,
) -> Result<Figures, AppError> {
    let concurrency = concurrency.clamp(1, 10_000);
    let (store, schema) = fresh_store(backend, "settle").await?;
    let rules = Rules {
        // Enough numbers for any run: 10^10 random numbers.
        number_digits: 10,
        ..Rules::default()
    };
    let svc = Service::start(
        store.clone(),
        rules,
        ServerSecret::random().context("a random secret")?,
        Arc::new(SystemClock),
        "bench".into(),
    )
    .await
    .context("starting the service")?;
    super::add_bench_merchant(&svc, "BENCH001", "BENCHMERCHANT01", "bench-key-0123456789")
        .await
        .context("adding the merchant")?;
    let payers: Vec<String> = (0..concurrency).map(|i| format!("+1999{i:07}")).collect();
    // Register payers concurrently so setup itself is group-committed.
    let mut set = tokio::task::JoinSet::new();
    for m in payers.clone() {
        let svc = svc.clone();
        set.spawn(async move { super::add_bench_payer(&svc, &m, "1234").await });
    }
    while let Some(r) = set.join_next().await {
        r.context("a setup task")?.context("registering payers")?;
    }

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stats = svc.writer().stats.clone();
    let load = |s: &std::sync::atomic::AtomicU64| s.load(std::sync::atomic::Ordering::Relaxed);
    let (b0, r0, us0) = (
        load(&stats.batches),
        load(&stats.requests),
        load(&stats.commit_us_total),
    );
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for payer in payers {
        let svc = svc.clone();
        let next = next.clone();
        set.spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < flows {
                let t0 = Instant::now();
                let (txn, _) = svc
                    .open("BENCH001", None, None, Origin::Http, None, None)
                    .await?;
                let c = svc
                    .claim(&payer, &txn.number, PayerChannel::Sandbox)
                    .await?;
                svc.set_amount("BENCH001", &c.txn.id, 1_250, None).await?;
                let pin = SecretDigits::pin("1234")
                    .map_err(|e| crate::settlement::OpError::Invalid(e.to_string()))?;
                svc.submit_pin(&payer, &c.txn.id, pin).await?;
                let t = svc.confirm(&payer, &c.txn.id).await?;
                if t.state != TxnState::Settled {
                    return Err(crate::store::writer::CoreError::Unavailable(format!(
                        "flow ended {}",
                        t.state.as_str()
                    )));
                }
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<Vec<f64>, crate::store::writer::CoreError>(lat)
        });
    }
    let mut lat = Vec::with_capacity(flows);
    while let Some(r) = set.join_next().await {
        lat.extend(r.context("a flow task")?.context("a flow")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let batches = load(&stats.batches) - b0;
    let requests = load(&stats.requests) - r0;
    let us = load(&stats.commit_us_total) - us0;
    lat.sort_by(|a, b| a.total_cmp(b));
    let report = store
        .check_invariants()
        .await
        .context("checking the ledger")?;
    if !report.ok() || report.settled as usize != lat.len() {
        return Err(AppError {
            context: "after the benchmark".into(),
            message: format!(
                "ledger check failed: settled={} flows={} violations={:?}",
                report.settled,
                lat.len(),
                report.violations
            ),
        });
    }
    drop_store(store, "settle", schema).await;
    Ok(Figures {
        flows: lat.len(),
        elapsed_s: elapsed,
        flows_per_s: lat.len() as f64 / elapsed.max(1e-9),
        p50_ms: super::percentile(&lat, 50.0),
        p99_ms: super::percentile(&lat, 99.0),
        batches,
        batch_requests_mean: requests as f64 / batches.max(1) as f64,
        batch_ms_mean: us as f64 / 1000.0 / batches.max(1) as f64,
    })
}
