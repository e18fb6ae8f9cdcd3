//! The `telepay` binary under load, killed with SIGKILL at random moments, again and again.
//!
//! After every kill: `telepay check` finds the ledger sound (balances sum to zero, every settled
//! transaction has exactly one settlement transfer, nothing else has one), and every payment the
//! gateway acknowledged as settled before the kill is settled in the database. At the end, after
//! a last restart, every settled transaction's SETTLED webhook reaches the merchant.

mod common;

use rand::Rng;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KILLS: usize = 20;
const WORKERS: usize = 6;
const KEY: &str = "crash-key-0123456789";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_telepay")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where a gateway keeps its state: a data directory, and a PostgreSQL URL when not SQLite.
struct Gw {
    dir: std::path::PathBuf,
    url: String,
    postgres: bool,
}

impl Gw {
    fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--data-dir").arg(&self.dir);
        if self.postgres {
            c.arg("--database-url").arg(&self.url);
        }
        c
    }
}

fn admin(gw: &Gw, args: &[&str]) {
    let out = gw.cmd().args(args).output().expect("run telepay");
    assert!(
        out.status.success(),
        "telepay {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start(gw: &Gw, port: u16) -> Child {
    gw.cmd()
        .args(["serve", "--demo", "--http", &format!("127.0.0.1:{port}")])
        .args(["--merchant-link", "off"])
        .env("TELEPAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start telepay")
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("telepay did not become healthy at {base}");
}

/// One payment through the HTTP API and the sandbox; returns the transaction id when the
/// gateway acknowledged it as settled.
async fn one_payment(http: &reqwest::Client, base: &str, msisdn: &str) -> Option<String> {
    let t: serde_json::Value = http
        .post(format!("{base}/v1/transactions"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"amount_minor": 100}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let body = serde_json::json!({"msisdn": msisdn, "number": t["number"], "pin": "1234"});
    let out: serde_json::Value = http
        .post(format!("{base}/sandbox/pay"))
        .json(&body)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    (out["outcome"] == "settled").then(|| t["id"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_keeps_every_promise_sqlite() {
    sigkill_under_load(telepay::store::Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_keeps_every_promise_postgres() {
    sigkill_under_load(telepay::store::Backend::Postgres).await
}

async fn sigkill_under_load(backend: telepay::store::Backend) {
    let (url, _schema, _) = common::fresh_url(backend, "crash").await;
    let dir = std::env::temp_dir().join(format!(
        "telepay-crash-{}-{}",
        backend.as_str(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let url = if backend == telepay::store::Backend::Sqlite {
        telepay::store::default_sqlite_url(&dir)
    } else {
        url
    };
    let gw = Gw {
        dir: dir.clone(),
        url: url.clone(),
        postgres: backend == telepay::store::Backend::Postgres,
    };

    // A merchant whose webhooks land here; they survive the gateway's restarts.
    let settled_hooks = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let recv = {
        let hooks = settled_hooks.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let hooks = hooks.clone();
                async move {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                        if v["type"] == "SETTLED" {
                            if let Some(id) = v["transaction"]["id"].as_str() {
                                hooks.lock().unwrap().insert(id.to_string());
                            }
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, recv).await });

    admin(
        &gw,
        &[
            "merchant",
            "add",
            "--terminal-id",
            "CRASH001",
            "--merchant-id",
            "CRASHMERCHANT01",
            "--name",
            "Crash Shop",
            "--api-key",
            KEY,
            "--webhook-url",
            &hook_url,
            "--webhook-secret",
            "s3cret",
        ],
    );
    let payers: Vec<String> = (0..WORKERS).map(|i| format!("+1777000{i:04}")).collect();
    for p in &payers {
        admin(
            &gw,
            &["payer", "add", "--msisdn", p, "--name", "Crash Payer"],
        );
        admin(&gw, &["payer", "set-pin", p, "--pin", "1234"]);
        admin(&gw, &["payer", "credit", p, "1000.00"]);
    }

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut rng = rand::rng();
    for kill in 0..KILLS {
        let mut child = start(&gw, port);
        wait_healthy(&http, &base).await;
        let mut load = tokio::task::JoinSet::new();
        for p in payers.clone() {
            let http = http.clone();
            let base = base.clone();
            let ack = acknowledged.clone();
            load.spawn(async move {
                loop {
                    if let Some(id) = one_payment(&http, &base, &p).await {
                        ack.lock().unwrap().push(id);
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        child.kill().expect("SIGKILL"); // std's kill sends SIGKILL on Unix
        let _ = child.wait();
        load.abort_all();
        while load.join_next().await.is_some() {}

        let out = gw.cmd().arg("check").output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "after kill {kill}: {report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(report.contains("ledger ok"), "{report}");

        // Every acknowledged settlement is on disk.
        let store = telepay::store::Store::open(&url, 1).await.unwrap();
        let acks = acknowledged.lock().unwrap().clone();
        for id in &acks {
            let t = store
                .txn(id)
                .await
                .unwrap()
                .expect("acknowledged transaction exists");
            assert_eq!(
                t.state.as_str(),
                "settled",
                "acknowledged {id} after kill {kill}"
            );
        }
        store.pool.close().await;
    }
    let acks = acknowledged.lock().unwrap().len();
    assert!(acks >= KILLS, "the load settled payments ({acks})");

    // A last start: every settled transaction's webhook arrives.
    let mut child = start(&gw, port);
    wait_healthy(&http, &base).await;
    let store = telepay::store::Store::open(&url, 1).await.unwrap();
    let settled: BTreeSet<String> = sqlx::query_scalar::<_, String>(
        "SELECT id FROM transactions WHERE terminal_id = 'CRASH001' AND state = 'settled'",
    )
    .fetch_all(&store.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let missing: Vec<String> = settled
            .difference(&settled_hooks.lock().unwrap())
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{} of {} settled transactions never got their webhook, e.g. {:?}",
                missing.len(),
                settled.len(),
                &missing[..missing.len().min(3)]
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "crash test ({}): {KILLS} kills, {acks} acknowledged settlements, {} settled in all, every webhook delivered",
        backend.as_str(),
        settled.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
