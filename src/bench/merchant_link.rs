//! `telepay bench merchant-link`: complete forward flows over the ISO 8583 link on loopback.
//!
//! K terminals sign on over their own TCP connections to an in-process link listener. Each runs
//! flows one after another: `0100` open → `0110` with the number → `0200` amount, while the
//! payer side (claim, wait for the amount, PIN, confirm) runs through the core's payer API →
//! `0210` approved; the `PAIRED` and `SETTLED` advices are acknowledged as they arrive. A flow's
//! latency runs from the `0100` sent to the `0210` read. Every commit is durable.

use super::settle::{BenchBackend, fresh_store};
use crate::app::{AppError, Context};
use crate::clock::SystemClock;
use crate::merchant::iso8583::{Amount, Currency, ResponseCode};
use crate::merchant::link::terminal::Terminal;
use crate::merchant::link::{self, LinkConfig};
use crate::metrics::Metrics;
use crate::settlement::Service;
use crate::settlement::credentials::{SecretDigits, ServerSecret};
use crate::settlement::engine::PayerChannel;
use crate::settlement::lifecycle::TxnState;
use crate::settlement::rules::Rules;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Figures {
    pub flows: usize,
    pub terminals: usize,
    pub elapsed_s: f64,
    pub flows_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub advices_acked: usize,
}

fn bench_err(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError {
        context: what.to_string(),
        message: e.to_string(),
    }
}

pub async fn run(
    backend: BenchBackend,
    terminals: usize,
    flows: usize,
) -> Result<Figures, AppError> {
    let terminals = terminals.clamp(1, 2_000);
    let (store, schema) = fresh_store(backend, "link").await?;
    let rules = Rules {
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
    let mut set = tokio::task::JoinSet::new();
    for i in 0..terminals {
        let svc = svc.clone();
        set.spawn(async move {
            super::add_bench_merchant(
                &svc,
                &format!("BL{i:06}"),
                &format!("BENCHLINK{i:06}"),
                &format!("bench-link-key-{i:06}"),
            )
            .await?;
            super::add_bench_payer(&svc, &format!("+1998{i:07}"), "1234").await
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("a setup task")?
            .context("registering terminals and payers")?;
    }
    let server = link::start(
        svc.clone(),
        LinkConfig {
            listen: "127.0.0.1:0".into(),
            ..LinkConfig::default()
        },
        Arc::new(Metrics::default()),
    )
    .await
    .context("starting the link")?
    .ok_or_else(|| bench_err("starting the link", "the link is off"))?;

    let usd = Currency::new(840).ok_or_else(|| bench_err("currency", "840"))?;
    let amount = Amount::new(1_250, usd).ok_or_else(|| bench_err("amount", "1250"))?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..terminals {
        let svc = svc.clone();
        let next = next.clone();
        let addr = server.local_addr;
        set.spawn(async move {
            let mut t = Terminal::connect(addr, &format!("BL{i:06}"), &format!("BENCHLINK{i:06}"))
                .await
                .map_err(|e| bench_err("connecting", e))?;
            t.auto_ack = true;
            let code = t
                .sign_on(&format!("bench-link-key-{i:06}"))
                .await
                .map_err(|e| bench_err("sign-on", e))?;
            if code != ResponseCode::Approved {
                return Err(bench_err("sign-on", code.as_str()));
            }
            let payer = format!("+1998{i:07}");
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < flows {
                let t0 = Instant::now();
                let opened = t.open(None).await.map_err(|e| bench_err("0100", e))?;
                let (Some(txn_ref), Some(number)) = (opened.txn_ref.clone(), opened.txn_number)
                else {
                    return Err(bench_err("0110", opened.response.as_str()));
                };
                let payer_side = tokio::spawn(pay(svc.clone(), payer.clone(), number));
                let answer = t
                    .amount(&txn_ref, amount)
                    .await
                    .map_err(|e| bench_err("0200", e))?;
                let elapsed = t0.elapsed();
                payer_side
                    .await
                    .map_err(|e| bench_err("payer task", e))?
                    .map_err(|e| bench_err("payer side", e))?;
                if answer.response != ResponseCode::Approved {
                    return Err(bench_err("0210", answer.response.as_str()));
                }
                lat.push(elapsed.as_secs_f64() * 1000.0);
            }
            // Wait for the last advices, then leave cleanly.
            t.timeout = Duration::from_secs(10);
            let _ = t.sign_off().await;
            Ok::<(Vec<f64>, usize), AppError>((lat, t.advices.len()))
        });
    }
    let mut lat = Vec::with_capacity(flows);
    let mut advices_acked = 0;
    while let Some(r) = set.join_next().await {
        let (l, a) = r.context("a terminal task")??;
        lat.extend(l);
        advices_acked += a;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let report = store
        .check_invariants()
        .await
        .context("checking the ledger")?;
    if !report.ok() || report.settled as usize != lat.len() {
        return Err(bench_err(
            "after the benchmark",
            format!(
                "ledger check failed: settled={} flows={} violations={:?}",
                report.settled,
                lat.len(),
                report.violations
            ),
        ));
    }
    super::settle::drop_store(store, "link", schema).await;
    Ok(Figures {
        flows: lat.len(),
        terminals,
        elapsed_s: elapsed,
        flows_per_s: lat.len() as f64 / elapsed.max(1e-9),
        p50_ms: super::percentile(&lat, 50.0),
        p99_ms: super::percentile(&lat, 99.0),
        advices_acked,
    })
}

/// The payer's side of one flow, through the core's payer API as the IVR does it.
async fn pay(svc: Service, payer: String, number: String) -> Result<(), String> {
    let c = svc
        .claim(&payer, &number, PayerChannel::Sandbox)
        .await
        .map_err(|e| e.to_string())?;
    svc.wait_amount(&c.txn.id, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let pin = SecretDigits::pin("1234").map_err(|e| e.to_string())?;
    svc.submit_pin(&payer, &c.txn.id, pin)
        .await
        .map_err(|e| e.to_string())?;
    let t = svc
        .confirm(&payer, &c.txn.id)
        .await
        .map_err(|e| e.to_string())?;
    if t.state != TxnState::Settled {
        return Err(format!("flow ended {}", t.state.as_str()));
    }
    Ok(())
}
