//! `telepay bench sms`: round trips through the SMS channel over SMPP on loopback.
//!
//! An SMSC (the sans-IO [`TestSmsc`] behind a TCP listener on 127.0.0.1) and the gateway's SMS
//! channel (link, dialogue driver, receipts outbox) run in this process on a fresh SQLite store.
//! Each of `payers` registered payers texts `BAL`; one round trip is: the SMSC sends the
//! `deliver_sm`, the gateway answers it, reassembles and parses the text, the dialogue asks the
//! settlement core for the available amount (a store read), and the reply comes back as a
//! `submit_sm` that the SMSC accepts. As soon as a payer's reply arrives, that payer texts again,
//! until `messages` round trips are done.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::settle::{BenchBackend, fresh_store};
use crate::app::{AppError, Context};
use crate::clock::SystemClock;
use crate::config::SmsConfig;
use crate::settlement::Service;
use crate::settlement::auth_policy::PayerDemand;
use crate::settlement::credentials::ServerSecret;
use crate::settlement::engine::{NewPayer, Op};
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
/// How long the whole run may take before it is given up.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn err(context: &str, message: impl Into<String>) -> AppError {
    AppError {
        context: context.into(),
        message: message.into(),
    }
}

pub async fn run(messages: usize, payers: usize, window: usize) -> Result<Figures, AppError> {
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
    // Payers as the SMSC writes them (no `+`) and as the core knows them.
    let numbers: Vec<String> = (0..payers).map(|i| format!("1999{i:07}")).collect();
    let mut set = tokio::task::JoinSet::new();
    for n in numbers.clone() {
        let svc = svc.clone();
        set.spawn(async move {
            let msisdn = format!("+{n}");
            svc.add_payer(NewPayer {
                msisdn: msisdn.clone(),
                display_name: "Bench Payer".into(),
                currency: "USD".into(),
                attributes: BTreeMap::new(),
                credit_limit_minor: 0,
                txn_limit_minor: None,
                demand: PayerDemand::default(),
            })
            .await?;
            svc.submit(Op::Credit {
                msisdn,
                amount_minor: 12_345,
            })
            .await?;
            Ok::<(), crate::store::writer::CoreError>(())
        });
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
    let result = tokio::time::timeout(RUN_TIMEOUT, drive(&mut stream, &numbers, messages))
        .await
        .map_err(|_| err("the benchmark", "did not finish in time"))?;
    // Unbind before the SMSC goes away, so the link ends quietly.
    link.shutdown().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(stream);
    result
}

/// Plays the SMSC: sends texts, answers submits, times the round trips.
async fn drive(
    stream: &mut tokio::net::TcpStream,
    numbers: &[String],
    messages: usize,
) -> Result<Figures, AppError> {
    let mut smsc = TestSmsc::new(SmscConfig::default());
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut latencies_ms: Vec<f64> = Vec::with_capacity(messages);
    let mut sent = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut started: Option<Instant> = None;
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
                        if sent < messages {
                            smsc.deliver_mo(n, SHORT_CODE, "BAL")
                                .map_err(|e| err("an MO text", e.to_string()))?;
                            sent_at.insert(n.clone(), Instant::now());
                            sent += 1;
                        }
                    }
                }
                SmscOutput::Event(SmscEvent::Submitted(s)) => {
                    if !s.text.contains("available amount") {
                        return Err(err("the benchmark", "a reply other than the balance"));
                    }
                    if let Some(t0) = sent_at.remove(&s.to) {
                        latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    if latencies_ms.len() >= messages {
                        let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
                        return Ok(figures(latencies_ms, numbers.len(), elapsed));
                    }
                    if sent < messages {
                        smsc.deliver_mo(&s.to, SHORT_CODE, "BAL")
                            .map_err(|e| err("an MO text", e.to_string()))?;
                        sent_at.insert(s.to.clone(), Instant::now());
                        sent += 1;
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
        let n = stream
            .read(&mut buf)
            .await
            .context("reading from the gateway")?;
        if n == 0 {
            return Err(err("the benchmark SMSC", "the gateway closed the link"));
        }
        smsc.handle_receive(Instant::now(), &buf[..n]);
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
