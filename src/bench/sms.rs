//! `telepay bench sms`: round trips through the SMS channel over SMPP on loopback.
//!
//! An SMSC (the sans-IO [`TestSmsc`] behind a TCP listener on 127.0.0.1) and the gateway's SMS
//! channel (link, dialogue driver, receipts outbox) run in this process on a fresh SQLite store.
//! One round trip: the SMSC sends a payer's text as `deliver_sm`, the gateway answers it, joins
//! and parses the text, runs the dialogue and the settlement core, and the answer comes back as
//! a `submit_sm` that the SMSC accepts. Each of `payers` payers texts again as soon as it has its
//! answer, until `messages` round trips are done.
//!
//! - [`BenchText::Bal`]: the payer texts `BAL`; the core reads the available amount.
//! - [`BenchText::Pay`]: a payment in two round trips: `PAY <number>` for a transaction the
//!   merchant opened (not timed) → the offer (the claim is a durable write); the PIN → the
//!   receipt (PIN check and settlement are durable writes, and the receipt comes through the
//!   persisted outbox).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::settle::{BenchBackend, fresh_store};
use crate::app::{AppError, Context};
use crate::clock::SystemClock;
use crate::config::SmsConfig;
use crate::settlement::Service;
use crate::settlement::credentials::ServerSecret;
use crate::settlement::lifecycle::Origin;
use crate::settlement::rules::Rules;
use crate::sms::test_smsc::{SmscConfig, SmscEvent, SmscOutput, TestSmsc};

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub messages: usize,
    pub payers: usize,
    pub elapsed_s: f64,
    pub round_trips_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

const SHORT_CODE: &str = "4242";
const TERMINAL: &str = "BENCHSMS";
const PIN: &str = "1234";

/// What the payers text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchText {
    /// `BAL`: one round trip, a store read.
    Bal,
    /// `PAY <number>` then the PIN: two round trips, a payment settled.
    Pay,
}
/// How long the whole run may take before it is given up.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn err(context: &str, message: impl Into<String>) -> AppError {
    AppError {
        context: context.into(),
        message: message.into(),
    }
}

pub async fn run(
    messages: usize,
    payers: usize,
    window: usize,
    text: BenchText,
) -> Result<Figures, AppError> {
    let messages = messages.max(1);
    let payers = payers.clamp(1, 10_000).min(messages);
    let (store, _) = fresh_store(BenchBackend::Sqlite, "sms").await?;
    let svc = Service::start(
        store,
        Rules::default(),
        ServerSecret::random().context("a random secret")?,
        Arc::new(SystemClock),
        "bench-sms".into(),
    )
    .await
    .context("starting the service")?;
    super::add_bench_merchant(
        &svc,
        TERMINAL,
        "BENCHSMSMERCH01",
        "bench-sms-key-0123456789",
    )
    .await
    .context("adding the merchant")?;
    // Payers as the SMSC writes them (no `+`) and as the core knows them.
    let numbers: Vec<String> = (0..payers).map(|i| format!("1999{i:07}")).collect();
    let mut set = tokio::task::JoinSet::new();
    for n in numbers.clone() {
        let svc = svc.clone();
        set.spawn(async move { super::add_bench_payer(&svc, &format!("+{n}"), PIN).await });
    }
    while let Some(r) = set.join_next().await {
        r.context("a setup task")?.context("registering payers")?;
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening for the benchmark SMSC")?;
    let port = listener
        .local_addr()
        .context("the benchmark SMSC's port")?
        .port();
    let config = SmsConfig {
        enabled: true,
        host: "127.0.0.1".into(),
        port,
        system_id: "telepay".into(),
        password: "secret".into(),
        source_addr: SHORT_CODE.into(),
        source_addr_ton: 3,
        window: window.clamp(1, 1000),
        registered_delivery: false,
        // A payment dialogue lasts from PAY to PIN; long enough under any load.
        dialogue_ttl_s: 600,
        ..SmsConfig::default()
    };
    let link = crate::sms::gateway::start(svc.clone(), &config)
        .map_err(|e| err("starting the SMS channel", e.to_string()))?;
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .map_err(|_| err("the benchmark SMSC", "the gateway did not connect"))?
        .context("accepting the gateway")?;
    let mut stream = stream;
    let _ = stream.set_nodelay(true);
    // The merchant's side: a transaction opened (with its amount) whenever a payer needs one.
    let (want_tx, mut want_rx) = mpsc::unbounded_channel::<String>();
    let (ready_tx, ready_rx) = mpsc::unbounded_channel::<(String, String)>();
    {
        let svc = svc.clone();
        tokio::spawn(async move {
            while let Some(payer) = want_rx.recv().await {
                let svc = svc.clone();
                let ready_tx = ready_tx.clone();
                tokio::spawn(async move {
                    match svc
                        .open(TERMINAL, Some(1_250), None, Origin::Http, None, None)
                        .await
                    {
                        Ok((t, _)) => {
                            let _ = ready_tx.send((payer, t.number));
                        }
                        Err(e) => tracing::error!(error = %e, "the bench merchant could not open"),
                    }
                });
            }
        });
    }
    let bench = Bench {
        text,
        messages,
        want: want_tx,
        ready: ready_rx,
    };
    let result = tokio::time::timeout(RUN_TIMEOUT, drive(&mut stream, &numbers, bench))
        .await
        .map_err(|_| err("the benchmark", "did not finish in time"))?;
    // Unbind before the SMSC goes away, so the link ends quietly.
    link.shutdown().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(stream);
    let figures = result?;
    let report = svc
        .store()
        .check_invariants()
        .await
        .context("checking the ledger")?;
    if !report.ok() {
        return Err(err(
            "after the benchmark",
            format!("ledger check failed: {:?}", report.violations),
        ));
    }
    Ok(figures)
}

struct Bench {
    text: BenchText,
    messages: usize,
    /// Asks the merchant for a transaction for this payer.
    want: mpsc::UnboundedSender<String>,
    /// A payer and the number of the transaction opened for them.
    ready: mpsc::UnboundedReceiver<(String, String)>,
}

/// What a payer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Balance,
    Offer,
    Receipt,
}

/// Plays the SMSC and the payers: sends texts, answers submits, times the round trips.
async fn drive(
    stream: &mut tokio::net::TcpStream,
    numbers: &[String],
    mut bench: Bench,
) -> Result<Figures, AppError> {
    let messages = bench.messages;
    let mut smsc = TestSmsc::new(SmscConfig::default());
    let mut waiting: HashMap<String, (Instant, Awaiting)> = HashMap::new();
    let mut latencies_ms: Vec<f64> = Vec::with_capacity(messages);
    let mut sent = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut started: Option<Instant> = None;
    // Sends a payer's next text, if round trips remain.
    let mut text = |smsc: &mut TestSmsc,
                    waiting: &mut HashMap<String, (Instant, Awaiting)>,
                    payer: &str,
                    body: &str,
                    awaiting: Awaiting|
     -> Result<(), AppError> {
        if sent >= messages {
            return Ok(());
        }
        smsc.deliver_mo(payer, SHORT_CODE, body)
            .map_err(|e| err("an MO text", e.to_string()))?;
        waiting.insert(payer.to_owned(), (Instant::now(), awaiting));
        sent += 1;
        Ok(())
    };
    loop {
        while let Some(o) = smsc.poll_output() {
            match o {
                SmscOutput::Transmit(octets) => out.extend_from_slice(&octets),
                SmscOutput::Close => return Err(err("the benchmark SMSC", "closed the link")),
                SmscOutput::Event(SmscEvent::Bind { accepted, .. }) => {
                    if !accepted {
                        return Err(err("the benchmark SMSC", "the bind was refused"));
                    }
                    started = Some(Instant::now());
                    for n in numbers {
                        match bench.text {
                            BenchText::Bal => {
                                text(&mut smsc, &mut waiting, n, "BAL", Awaiting::Balance)?
                            }
                            BenchText::Pay => {
                                let _ = bench.want.send(n.clone());
                            }
                        }
                    }
                }
                SmscOutput::Event(SmscEvent::Submitted(s)) => {
                    let Some((t0, awaiting)) = waiting.remove(&s.to) else {
                        continue;
                    };
                    let expected = match awaiting {
                        Awaiting::Balance => "Your available amount",
                        Awaiting::Offer => "Pay 12.50 USD to Bench Shop?",
                        Awaiting::Receipt => "Paid 12.50 USD to Bench Shop.",
                    };
                    if !s.text.starts_with(expected) {
                        return Err(err(
                            "the benchmark",
                            format!("expected {expected:?}, got another text"),
                        ));
                    }
                    latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                    if latencies_ms.len() >= messages {
                        let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
                        return Ok(figures(latencies_ms, numbers.len(), elapsed));
                    }
                    match awaiting {
                        Awaiting::Balance => {
                            text(&mut smsc, &mut waiting, &s.to, "BAL", Awaiting::Balance)?
                        }
                        Awaiting::Offer => {
                            text(&mut smsc, &mut waiting, &s.to, PIN, Awaiting::Receipt)?
                        }
                        Awaiting::Receipt => {
                            let _ = bench.want.send(s.to.clone());
                        }
                    }
                }
                SmscOutput::Event(_) => {}
            }
        }
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .context("writing to the gateway")?;
            out.clear();
        }
        tokio::select! {
            r = stream.read(&mut buf) => {
                let n = r.context("reading from the gateway")?;
                if n == 0 {
                    return Err(err("the benchmark SMSC", "the gateway closed the link"));
                }
                smsc.handle_receive(Instant::now(), &buf[..n]);
            }
            Some((payer, number)) = bench.ready.recv() => {
                text(&mut smsc, &mut waiting, &payer, &format!("PAY {number}"), Awaiting::Offer)?;
            }
        }
    }
}

fn figures(mut latencies_ms: Vec<f64>, payers: usize, elapsed: Duration) -> Figures {
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let elapsed_s = elapsed.as_secs_f64().max(1e-9);
    Figures {
        messages: latencies_ms.len(),
        payers,
        elapsed_s,
        round_trips_per_s: latencies_ms.len() as f64 / elapsed_s,
        p50_ms: super::percentile(&latencies_ms, 50.0),
        p99_ms: super::percentile(&latencies_ms, 99.0),
    }
}
