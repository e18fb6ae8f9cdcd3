//! The SMS channel end to end: the real `telepay serve --demo` binary bound over SMPP to an SMSC
//! built here on `telepay::sms::test_smsc` (the same rusmpp types), on loopback.
//!
//! - Paying by text: the demo payer texts `PAY <number>` for a transaction opened over the HTTP
//!   API, is told the merchant and the amount, replies with the PIN, the payment settles and the
//!   receipt text arrives exactly once; its delivery receipt is recorded against it.
//! - Outage: the SMSC is down while a payment settles and the gateway restarts meanwhile; the
//!   receipt arrives exactly once after the SMSC is back.
//! - Bad input from the SMSC: unknown command ids, wrong command lengths and garbage get a
//!   `generic_nack` (or a reconnect when the stream cannot be framed); the gateway keeps serving.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rusmpp::CommandStatus;
use telepay::sms::dlr::ReceiptState;
use telepay::sms::test_smsc::{SmscConfig, SmscEvent, SmscOutput, Submitted, TestSmsc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const KEY: &str = "demo-secret-key";
/// The demo payer, as the SMSC writes it (international, without `+`).
const PAYER: &str = "15550100";
const SHORT_CODE: &str = "4242";
const SYSTEM_ID: &str = "telepay";
const PASSWORD: &str = "secret";
/// How long anything may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn unique_dir(tag: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("telepay-sms-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

// ---- The SMSC, over TCP -----------------------------------------------------------------------

enum SmscCmd {
    Mo {
        from: String,
        text: String,
    },
    Receipt {
        to: String,
        message_id: String,
    },
    Raw(Vec<u8>),
    /// Refuse the next `n` submits with this status.
    Refuse(usize, CommandStatus),
    /// A `deliver_sm` from the payer with this `esm_class`, `data_coding` and body.
    Deliver {
        esm_class: u8,
        data_coding: u8,
        body: Vec<u8>,
    },
}

/// The test SMSC listening on a port: one ESME connection at a time, a fresh session each.
struct Smsc {
    cmd: mpsc::UnboundedSender<SmscCmd>,
    events: mpsc::UnboundedReceiver<SmscEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Smsc {
    async fn start(port: u16) -> Smsc {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(([127, 0, 0, 1], port).into())
            .expect("the SMSC port");
        let listener = socket.listen(8).expect("listen");
        let (cmd, mut cmd_rx) = mpsc::unbounded_channel::<SmscCmd>();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut smsc = TestSmsc::new(SmscConfig {
                    accept_system_id: SYSTEM_ID.into(),
                    accept_password: PASSWORD.into(),
                    ..SmscConfig::default()
                });
                let mut buf = vec![0u8; 8192];
                'conn: loop {
                    tokio::select! {
                        r = stream.read(&mut buf) => match r {
                            Ok(0) | Err(_) => break 'conn,
                            Ok(n) => smsc.handle_receive(std::time::Instant::now(), &buf[..n]),
                        },
                        c = cmd_rx.recv() => match c {
                            None => return,
                            Some(SmscCmd::Mo { from, text }) => {
                                smsc.deliver_mo(&from, SHORT_CODE, &text).expect("an MO text");
                            }
                            Some(SmscCmd::Receipt { to, message_id }) => {
                                smsc.deliver_receipt(SHORT_CODE, &to, &message_id, ReceiptState::Delivered)
                                    .expect("a delivery receipt");
                            }
                            Some(SmscCmd::Raw(octets)) => smsc.send_raw(&octets),
                            Some(SmscCmd::Refuse(n, status)) => smsc.refuse_next(n, status),
                            Some(SmscCmd::Deliver { esm_class, data_coding, body }) => {
                                smsc.deliver_raw(PAYER, SHORT_CODE, esm_class, data_coding, body, Vec::new())
                                    .expect("a raw deliver_sm");
                            }
                        },
                    }
                    while let Some(out) = smsc.poll_output() {
                        match out {
                            SmscOutput::Transmit(octets) => {
                                if stream.write_all(&octets).await.is_err() {
                                    break 'conn;
                                }
                            }
                            SmscOutput::Event(e) => {
                                let _ = ev_tx.send(e);
                            }
                            SmscOutput::Close => break 'conn,
                        }
                    }
                }
            }
        });
        Smsc { cmd, events, task }
    }

    /// Takes the SMSC down: the listener and any connection close.
    fn stop(self) {
        self.task.abort();
    }

    fn mo(&self, text: &str) {
        let _ = self.cmd.send(SmscCmd::Mo {
            from: PAYER.into(),
            text: text.into(),
        });
    }

    /// The next event that `pick` accepts; panics after `PATIENCE`.
    async fn wait_for<T>(&mut self, what: &str, pick: impl FnMut(&SmscEvent) -> Option<T>) -> T {
        self.wait_for_within(PATIENCE, what, pick).await
    }

    /// The next event that `pick` accepts; panics after `patience`.
    async fn wait_for_within<T>(
        &mut self,
        patience: Duration,
        what: &str,
        mut pick: impl FnMut(&SmscEvent) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => {
                    if let Some(v) = pick(&e) {
                        return v;
                    }
                }
                Ok(None) => panic!("the SMSC stopped while waiting for {what}"),
                Err(_) => panic!("no {what} within {patience:?}"),
            }
        }
    }

    async fn wait_bound(&mut self) {
        self.wait_for("bind", |e| match e {
            SmscEvent::Bind { accepted: true, .. } => Some(()),
            _ => None,
        })
        .await
    }

    /// The next text submitted to the payer.
    async fn next_text(&mut self) -> Submitted {
        self.wait_for("text to the payer", |e| match e {
            SmscEvent::Submitted(s) if s.to == PAYER => Some(s.clone()),
            _ => None,
        })
        .await
    }

    /// Every text submitted within `d`.
    async fn texts_within(&mut self, d: Duration) -> Vec<Submitted> {
        let deadline = tokio::time::Instant::now() + d;
        let mut out = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            if let SmscEvent::Submitted(s) = e {
                out.push(s);
            }
        }
        out
    }
}

// ---- The gateway ------------------------------------------------------------------------------

struct Gateway {
    child: Child,
    dir: std::path::PathBuf,
    http_port: u16,
    base: String,
    http: reqwest::Client,
}

impl Gateway {
    fn config(dir: &std::path::Path, smsc_port: u16) -> std::path::PathBuf {
        let path = dir.join("telepay.toml");
        let text = format!(
            "[sms]\nenabled = true\nhost = \"127.0.0.1\"\nport = {smsc_port}\nsystem_id = \"{SYSTEM_ID}\"\npassword = \"{PASSWORD}\"\nsource_addr = \"{SHORT_CODE}\"\nsource_addr_ton = 3\nsource_addr_npi = 0\nreconnect_min_ms = 100\nreconnect_max_ms = 500\nresponse_timeout_ms = 3000\ncall_number = \"+1 555 0199\"\n"
        );
        std::fs::write(&path, text).expect("the config file");
        path
    }

    async fn start(tag: &str, smsc_port: u16) -> Gateway {
        Gateway::start_with(tag, smsc_port, &[]).await
    }

    /// Runs `telepay` admin commands on the fresh data directory, then starts the gateway.
    async fn start_with(tag: &str, smsc_port: u16, admin: &[&[&str]]) -> Gateway {
        let dir = unique_dir(tag);
        Gateway::config(&dir, smsc_port);
        for args in admin {
            let out = Command::new(env!("CARGO_BIN_EXE_telepay"))
                .arg("--data-dir")
                .arg(&dir)
                .args(*args)
                .env_remove("TELEPAY_CONFIG")
                .output()
                .expect("run telepay");
            assert!(
                out.status.success(),
                "telepay {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let http_port = free_port();
        let mut gw = Gateway {
            child: Gateway::spawn(&dir, http_port),
            dir,
            http_port,
            base: format!("http://127.0.0.1:{http_port}"),
            http: reqwest::Client::new(),
        };
        gw.wait_healthy().await;
        gw
    }

    fn spawn(dir: &std::path::Path, http_port: u16) -> Child {
        Command::new(env!("CARGO_BIN_EXE_telepay"))
            .arg("--config")
            .arg(dir.join("telepay.toml"))
            .arg("--data-dir")
            .arg(dir)
            .args([
                "serve",
                "--demo",
                "--http",
                &format!("127.0.0.1:{http_port}"),
            ])
            .env("TELEPAY_LOG", "warn")
            .env("TELEPAY_MERCHANT_LINK", "off")
            .env_remove("TELEPAY_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start telepay")
    }

    /// SIGKILL, then start again on the same data.
    async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Gateway::spawn(&self.dir, self.http_port);
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        for _ in 0..400 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("telepay exited: {status}");
            }
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("telepay did not become healthy at {}", self.base);
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Opens a transaction with an amount; returns its id and number.
    async fn open(&self, amount_minor: i64) -> (String, String) {
        self.open_with(serde_json::json!({ "amount_minor": amount_minor }))
            .await
    }

    /// Opens a transaction; returns its id and number.
    async fn open_with(&self, body: serde_json::Value) -> (String, String) {
        self.open_as(KEY, body).await
    }

    /// Opens a transaction as the terminal holding `key`; returns its id and number.
    async fn open_as(&self, key: &str, body: serde_json::Value) -> (String, String) {
        let t: serde_json::Value = self
            .http
            .post(format!("{}/v1/transactions", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("open a transaction")
            .json()
            .await
            .expect("a transaction");
        let id = t["id"].as_str().expect("an id").to_string();
        let number = t["number"].as_str().expect("a number").to_string();
        (id, number)
    }

    async fn state(&self, id: &str) -> String {
        let t: serde_json::Value = self
            .http
            .get(format!("{}/v1/transactions/{id}", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("read a transaction")
            .json()
            .await
            .expect("a transaction");
        t["state"].as_str().unwrap_or_default().to_string()
    }

    async fn reference(&self, id: &str) -> String {
        let t: serde_json::Value = self
            .http
            .get(format!("{}/v1/transactions/{id}", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("read a transaction")
            .json()
            .await
            .expect("a transaction");
        t["reference"].as_str().unwrap_or_default().to_string()
    }

    /// Reads one value from the gateway's database.
    async fn db_text(&self, sql: &str) -> Option<String> {
        let store = telepay::store::Store::open(&telepay::store::default_sqlite_url(&self.dir), 1)
            .await
            .expect("open the gateway's database");
        let v: Option<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_optional(&store.pool)
            .await
            .expect(sql);
        store.pool.close().await;
        v.flatten()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn receipts_for<'a>(texts: &'a [Submitted], reference: &str) -> Vec<&'a Submitted> {
    texts
        .iter()
        .filter(|s| s.text.starts_with("Paid ") && s.text.contains(reference))
        .collect()
}

// ---- The tests --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_by_text_settles_and_the_receipt_arrives_exactly_once() {
    let port = free_port();
    let mut smsc = Smsc::start(port).await;
    let gw = Gateway::start("pay", port).await;
    smsc.wait_bound().await;

    let (id, number) = gw.open(1250).await;
    smsc.mo(&format!("pay {number}"));
    let offer = smsc.next_text().await;
    assert_eq!(offer.from, SHORT_CODE);
    assert!(
        offer.text.contains("12.50 USD") && offer.text.contains("Demo Shop"),
        "the offer names the amount and the merchant: {}",
        offer.text
    );
    assert!(
        offer.text.contains("PIN"),
        "asks for the PIN: {}",
        offer.text
    );
    assert_eq!(gw.state(&id).await, "authenticating");

    // The SMSC throttles the next two submits: the receipt is held back, then goes out once.
    let _ = smsc
        .cmd
        .send(SmscCmd::Refuse(2, CommandStatus::EsmeRthrottled));
    smsc.mo("1234");
    let mut refused = 0;
    let receipt = smsc
        .wait_for("the receipt", |e| match e {
            SmscEvent::SubmitRefused { status } => {
                assert_eq!(*status, 0x58, "ESME_RTHROTTLED");
                refused += 1;
                None
            }
            SmscEvent::Submitted(s) if s.to == PAYER => Some(s.clone()),
            _ => None,
        })
        .await;
    assert_eq!(refused, 2, "both throttled submits were retried");
    let reference = gw.reference(&id).await;
    assert!(
        receipt.text.starts_with("Paid 12.50 USD to Demo Shop.")
            && receipt.text.contains(&reference),
        "receipt: {}",
        receipt.text
    );
    assert_eq!(gw.state(&id).await, "settled");
    assert!(
        receipt.registered_delivery,
        "a delivery receipt is asked for"
    );

    // The SMSC reports delivery; the gateway records it against the receipt.
    let message_id = receipt.message_ids.first().cloned().expect("a message id");
    let _ = smsc.cmd.send(SmscCmd::Receipt {
        to: SHORT_CODE.into(),
        message_id: message_id.clone(),
    });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let state = gw
            .db_text(&format!(
                "SELECT r.dlr_state FROM sms_receipts r JOIN sms_receipt_parts p ON p.receipt_id = r.receipt_id WHERE p.message_id = '{message_id}'"
            ))
            .await;
        if state.as_deref() == Some("DELIVRD") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery receipt not recorded: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Exactly once: nothing else goes out for this payment.
    let later = smsc.texts_within(Duration::from_secs(3)).await;
    assert!(
        receipts_for(&later, &reference).is_empty(),
        "a second receipt: {later:?}"
    );

    // A wrong number is answered, not paid.
    smsc.mo("PAY 000000000");
    let wrong = smsc.next_text().await;
    assert!(wrong.text.contains("not valid"), "{}", wrong.text);
    // The balance reflects the payment: 100.00 - 12.50.
    smsc.mo("BAL");
    let bal = smsc.next_text().await;
    assert!(bal.text.contains("87.50 USD"), "{}", bal.text);
    smsc.mo("hist");
    let hist = smsc.next_text().await;
    assert!(
        hist.text.starts_with("Recent payments:") && hist.text.contains("Demo Shop 12.50 USD"),
        "{}",
        hist.text
    );

    // SIGTERM: the gateway unbinds cleanly before it exits.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(gw.child.id().to_string())
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    smsc.wait_for("unbind", |e| matches!(e, SmscEvent::Unbound).then_some(()))
        .await;
    smsc.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_payment_waits_for_the_amount_counts_wrong_pins_and_can_be_cancelled() {
    let port = free_port();
    let mut smsc = Smsc::start(port).await;
    let gw = Gateway::start("wait", port).await;
    smsc.wait_bound().await;

    // The vending-machine order: the number first, the amount later.
    let (id, number) = gw.open_with(serde_json::json!({})).await;
    smsc.mo(&number);
    let waiting = smsc.next_text().await;
    assert!(
        waiting.text.contains("Waiting for the amount"),
        "{}",
        waiting.text
    );
    assert_eq!(gw.state(&id).await, "paired");
    let r = gw
        .http
        .put(format!("{}/v1/transactions/{id}/amount", gw.base))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"amount_minor": 300, "currency": "USD"}))
        .send()
        .await
        .expect("set the amount");
    assert!(r.status().is_success(), "{}", r.status());
    let offer = smsc.next_text().await;
    assert!(
        offer.text.contains("3.00 USD") && offer.text.contains("Demo Shop"),
        "{}",
        offer.text
    );
    // A wrong PIN is counted by the core and the payer may try again.
    smsc.mo("9999");
    let wrong = smsc.next_text().await;
    assert!(wrong.text.starts_with("Wrong PIN"), "{}", wrong.text);
    assert!(!wrong.text.contains("9999"), "a PIN is never echoed");
    smsc.mo("1234");
    let receipt = smsc.next_text().await;
    assert!(
        receipt.text.starts_with("Paid 3.00 USD to Demo Shop."),
        "{}",
        receipt.text
    );
    assert_eq!(gw.state(&id).await, "settled");

    // NO cancels; nothing is paid and no receipt follows.
    let (id, number) = gw.open(500).await;
    smsc.mo(&format!("PAY {number}"));
    let offer = smsc.next_text().await;
    assert!(offer.text.contains("5.00 USD"), "{}", offer.text);
    smsc.mo("no");
    let cancelled = smsc.next_text().await;
    assert!(
        cancelled.text.contains("cancelled") && cancelled.text.contains("Nothing was paid"),
        "{}",
        cancelled.text
    );
    assert_eq!(gw.state(&id).await, "cancelled");
    // The merchant cancels while the payer is being asked for the PIN: the payer is told.
    let (id, number) = gw.open(400).await;
    smsc.mo(&format!("PAY {number}"));
    let offer = smsc.next_text().await;
    assert!(offer.text.contains("4.00 USD"), "{}", offer.text);
    let r = gw
        .http
        .post(format!("{}/v1/transactions/{id}/cancel", gw.base))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("cancel");
    assert!(r.status().is_success(), "{}", r.status());
    let told = smsc.next_text().await;
    assert!(told.text.contains("merchant cancelled"), "{}", told.text);
    let later = smsc.texts_within(Duration::from_secs(2)).await;
    assert!(
        later.iter().all(|s| !s.text.starts_with("Paid ")),
        "{later:?}"
    );
    smsc.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_settled_during_an_smsc_outage_arrives_once_it_is_back() {
    let port = free_port();
    let mut smsc = Smsc::start(port).await;
    let mut gw = Gateway::start("outage", port).await;
    smsc.wait_bound().await;
    smsc.stop();
    // Let the gateway notice (it reads the connection's end at once).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The payment settles (through the demo sandbox) while the SMSC is away.
    let (id, number) = gw.open(700).await;
    let out: serde_json::Value = gw
        .http
        .post(format!("{}/sandbox/pay", gw.base))
        .json(&serde_json::json!({"msisdn": "+15550100", "number": number, "pin": "1234"}))
        .send()
        .await
        .expect("sandbox pay")
        .json()
        .await
        .expect("an outcome");
    assert_eq!(out["outcome"], "settled", "{out}");
    let reference = gw.reference(&id).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // And the gateway restarts before the SMSC comes back: the receipt waits in the database.
    gw.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut smsc = Smsc::start(port).await;
    smsc.wait_bound().await;
    // Had the killed gateway leased the row already, it goes out when that lease ends (30 s).
    let receipt = smsc
        .wait_for_within(Duration::from_secs(45), "the receipt", |e| match e {
            SmscEvent::Submitted(s) if s.to == PAYER => Some(s.clone()),
            _ => None,
        })
        .await;
    assert!(
        receipt.text.starts_with("Paid 7.00 USD to Demo Shop.")
            && receipt.text.contains(&reference),
        "receipt: {}",
        receipt.text
    );
    let later = smsc.texts_within(Duration::from_secs(4)).await;
    assert!(
        receipts_for(&later, &reference).is_empty(),
        "the receipt went out twice: {later:?}"
    );
    assert!(gw.alive());
    smsc.stop();
}

/// A PDU header: command_length, command_id, command_status, sequence_number.
fn header(length: u32, id: u32, status: u32, seq: u32) -> Vec<u8> {
    [length, id, status, seq]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pdus_from_the_smsc_get_generic_nack_and_the_gateway_keeps_running() {
    let port = free_port();
    let mut smsc = Smsc::start(port).await;
    let mut gw = Gateway::start("malformed", port).await;
    smsc.wait_bound().await;

    let nack = |seq: u32| {
        move |e: &SmscEvent| match e {
            SmscEvent::GenericNack {
                sequence_number,
                status,
            } if *sequence_number == seq => Some(*status),
            _ => None,
        }
    };
    // An unknown command id: ESME_RINVCMDID (3).
    let _ = smsc.cmd.send(SmscCmd::Raw(header(16, 0x0000_0999, 0, 77)));
    assert_eq!(
        smsc.wait_for("nack of an unknown command", nack(77)).await,
        0x03
    );
    // A deliver_sm whose command_length leaves its body short: ESME_RINVCMDLEN (2).
    let mut short = header(20, 0x0000_0005, 0, 78);
    short.extend_from_slice(&[0, 1, 1, b'1']);
    let _ = smsc.cmd.send(SmscCmd::Raw(short));
    assert_eq!(smsc.wait_for("nack of a short body", nack(78)).await, 0x02);
    // A deliver_sm with a non-ASCII address: a content error, nacked too.
    let mut bad = header(0, 0x0000_0005, 0, 79);
    bad.extend_from_slice(&[0, 1, 1]);
    bad.extend_from_slice(&[0xFF, 0xFE, 0]);
    bad.extend_from_slice(&[0, 0, b'4', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let len = bad.len() as u32;
    bad[..4].copy_from_slice(&len.to_be_bytes());
    let _ = smsc.cmd.send(SmscCmd::Raw(bad));
    assert_ne!(smsc.wait_for("nack of a bad field", nack(79)).await, 0);
    // An absurd command_length: nacked, skipped, and the link goes on.
    let mut huge = header(5000, 0x0000_0004, 0, 80);
    huge.resize(5000, 0);
    let _ = smsc.cmd.send(SmscCmd::Raw(huge));
    assert_eq!(
        smsc.wait_for("nack of an oversized PDU", nack(80)).await,
        0x02
    );

    // Text that cannot be read: UCS-2 of odd length, and a user data header longer than the
    // message. Both are answered with ESME_RX_P_APPN (0x65): the SMSC must not retry them.
    let answered = |e: &SmscEvent| match e {
        SmscEvent::DeliverAnswered { status, .. } => Some(*status),
        _ => None,
    };
    let _ = smsc.cmd.send(SmscCmd::Deliver {
        esm_class: 0,
        data_coding: 0x08,
        body: vec![0x00, 0x41, 0x00],
    });
    assert_eq!(smsc.wait_for("answer to odd UCS-2", answered).await, 0x65);
    let _ = smsc.cmd.send(SmscCmd::Deliver {
        esm_class: 0x40,
        data_coding: 0,
        body: vec![0x7F, 0x00, 0x03, 0x01, 0x02, 0x01, b'A'],
    });
    assert_eq!(
        smsc.wait_for("answer to an absurd UDH", answered).await,
        0x65
    );

    // Still bound and serving: a text gets its answer.
    smsc.mo("HELP");
    let help = smsc.next_text().await;
    assert!(help.text.contains("PAY"), "{}", help.text);

    // A command_length below the header cannot be framed: nacked, then the gateway drops the
    // connection and binds again.
    let _ = smsc.cmd.send(SmscCmd::Raw(header(8, 0x0000_0015, 0, 81)));
    smsc.wait_for("nack of a too-short PDU", nack(81)).await;
    smsc.wait_bound().await;
    smsc.mo("BAL");
    let bal = smsc.next_text().await;
    assert!(bal.text.contains("USD"), "{}", bal.text);
    assert!(gw.alive(), "the gateway must survive malformed PDUs");
    gw.wait_healthy().await;
    // The operator sees it in the metrics: texts in and out, and the malformed PDUs.
    let metrics = gw
        .http
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text");
    let value = |labels: &str| -> u64 {
        let prefix = format!("telepay_sms_total{{{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{metrics}"))
    };
    assert!(
        value("direction=\"in\",result=\"malformed\"") >= 3,
        "{metrics}"
    );
    assert!(value("direction=\"in\",result=\"text\"") >= 2, "{metrics}");
    assert!(
        value("direction=\"out\",result=\"accepted\"") >= 2,
        "{metrics}"
    );
    assert!(
        value("direction=\"link\",result=\"down\"") >= 1,
        "{metrics}"
    );
    smsc.stop();
}

// ---- Kannel's drive_smpp as the SMSC ------------------------------------------------------------

/// The gateway's SMPP link (`telepay::sms::link`) against Kannel's `drive_smpp` (Debian
/// `kannel-extras`; `scripts/test` installs it): bind as transmitter and as receiver (it does not
/// answer `bind_transceiver`), `submit_sm` accepted, `deliver_sm` of payers' texts received,
/// `enquire_link` answered, clean `unbind`. See tests/peers/kannel/README.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kannel_drive_smpp_binds_keeps_alive_takes_submits_and_delivers() {
    use telepay::sms::link::{self, Inbound, LinkConfig};
    use telepay::sms::session::{BindMode, EsmeConfig};

    let tool = std::path::Path::new("/usr/lib/kannel/test/drive_smpp");
    assert!(
        tool.exists(),
        "{} is missing: install the Debian package kannel-extras (scripts/test does)",
        tool.display()
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/kannel/drive-smpp.sh");
    let dir = unique_dir("kannel");
    let log = dir.join("drive_smpp.log");
    let port = free_port();
    const DELIVERIES: usize = 3;
    let mut child = Command::new("setsid")
        .arg(&script)
        .arg(port.to_string())
        .arg(DELIVERIES.to_string())
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start drive-smpp.sh");
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // The script runs in its own session: end its process group.
            let _ = Command::new("kill")
                .arg("--")
                .arg(format!("-{}", self.0))
                .status();
        }
    }
    let _kill = Kill(child.id());
    // Wait for it to listen without connecting (a connection that closes ends drive_smpp).
    let listening = |port: u16| {
        std::fs::read_to_string("/proc/net/tcp")
            .map(|t| {
                t.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[3] == "0A" && f[1].ends_with(&format!(":{port:04X}"))
                })
            })
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    while !listening(port) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("drive-smpp.sh exited early: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drive_smpp never listened on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let session = |mode| LinkConfig {
        address: format!("127.0.0.1:{port}"),
        esme: EsmeConfig {
            system_id: SYSTEM_ID.into(),
            password: PASSWORD.into(),
            source_addr: SHORT_CODE.into(),
            bind_mode: mode,
            enquire_link_interval_ms: 1_000,
            ..EsmeConfig::default()
        },
    };
    let (tx_link, _tx_inbound) =
        link::spawn(session(BindMode::Transmitter)).expect("a transmitter");
    let (rx_link, mut rx_inbound) = link::spawn(session(BindMode::Receiver)).expect("a receiver");
    assert!(
        tx_link.wait_bound(PATIENCE).await,
        "bind_transmitter answered"
    );
    assert!(rx_link.wait_bound(PATIENCE).await, "bind_receiver answered");

    for i in 0..3 {
        let ids = tx_link
            .submit("+15550100", &format!("Paid {i}.00 USD to Demo Shop."))
            .await
            .expect("submit_sm accepted");
        assert_eq!(ids.len(), 1, "one part, one (empty) message id");
    }
    let mut texts = Vec::new();
    while texts.len() < DELIVERIES {
        match tokio::time::timeout(PATIENCE, rx_inbound.recv()).await {
            Ok(Some(Inbound::Text(d))) => texts.push((d.from, d.text)),
            Ok(Some(Inbound::Receipt(_))) => {}
            other => panic!("deliveries stopped after {texts:?}: {other:?}"),
        }
    }
    assert_eq!(
        texts,
        (1..=DELIVERIES)
            .map(|i| ("456".to_string(), i.to_string()))
            .collect::<Vec<_>>()
    );
    // Idle past the keep-alive interval: our enquire_link goes out and is answered.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(tx_link.bound() && rx_link.bound(), "the links stay bound");
    tx_link.shutdown().await;
    rx_link.shutdown().await;
    // drive_smpp exits once a connection closes.
    let deadline = std::time::Instant::now() + PATIENCE;
    while child.try_wait().ok().flatten().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "drive_smpp did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = std::fs::read_to_string(&log).expect("drive_smpp's log");
    // One log line per PDU it handled, ending in the PDU's type.
    let count = |pdu: &str| {
        let tail = format!("Handling SMPP PDU of type {pdu}");
        text.lines()
            .filter(|l| l.trim_end().ends_with(&tail))
            .count()
    };
    assert_eq!(count("bind_transmitter"), 1, "{text}");
    assert_eq!(count("bind_receiver"), 1, "{text}");
    assert_eq!(count("submit_sm"), 3, "{text}");
    // Ours, after the idle interval (its own are answered with enquire_link_resp).
    assert!(count("enquire_link") >= 1, "{text}");
    assert!(count("enquire_link_resp") >= DELIVERIES, "{text}");
    assert!(count("unbind") >= 1, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- The receipt records, on both backends ------------------------------------------------------

/// What the receipts sender writes: the receipt with its parts' message ids and its outbox row
/// delivered in one transaction, recorded once however often it is reported; a delivery receipt
/// lands on the newest submission of its message id.
async fn receipt_records_are_written_once_with_their_delivery_receipts(
    backend: telepay::store::Backend,
) {
    use telepay::settlement::credentials::SecretDigits;
    use telepay::settlement::engine::PayerChannel;
    use telepay::settlement::lifecycle::{Origin, TxnState};
    use telepay::store::writer::{HouseReply, Housekeeping};

    let env = common::Env::new(backend, "smsrec").await;
    let svc = &env.svc;
    let (txn, _) = svc
        .open(common::TERMINAL, Some(1250), None, Origin::Http, None, None)
        .await
        .unwrap();
    svc.claim(common::PAYER, &txn.number, PayerChannel::Sms)
        .await
        .unwrap();
    svc.submit_pin(
        common::PAYER,
        &txn.id,
        SecretDigits::pin(common::PIN).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        svc.confirm(common::PAYER, &txn.id).await.unwrap().state,
        TxnState::Settled
    );
    let lease = || Housekeeping::LeaseOutbox {
        channel: telepay::sms::outbox::CHANNEL,
        target: None,
        limit: 10,
        lease_ms: 1,
        head_only: false,
    };
    let Ok(HouseReply::Leased(items)) = svc.writer().house(lease()).await else {
        panic!("lease failed");
    };
    assert_eq!(items.len(), 1, "one receipt for one settlement");
    let item = &items[0];
    let payload: telepay::sms::outbox::ReceiptPayload =
        serde_json::from_str(&item.payload).unwrap();
    assert_eq!(payload.msisdn, common::PAYER);
    assert!(telepay::sms::outbox::render(&payload, "telepay").starts_with("Paid 12.50 USD to "));
    for _ in 0..2 {
        svc.writer()
            .house(Housekeeping::SmsReceiptSent {
                outbox_id: item.id,
                receipt_id: payload.receipt_id.clone(),
                msisdn: payload.msisdn.clone(),
                message_ids: vec!["m1".into(), "m2".into()],
            })
            .await
            .unwrap();
    }
    env.clock.advance_ms(10);
    let Ok(HouseReply::Leased(again)) = svc.writer().house(lease()).await else {
        panic!("lease failed");
    };
    assert!(again.is_empty(), "a sent receipt is not leased again");
    svc.writer()
        .house(Housekeeping::SmsDeliveryReceipt {
            message_id: "m2".into(),
            state: "DELIVRD".into(),
            error: None,
        })
        .await
        .unwrap();
    assert_eq!(
        env.count("SELECT CAST(COUNT(*) AS BIGINT) FROM sms_receipts")
            .await,
        1
    );
    assert_eq!(
        env.count("SELECT CAST(COUNT(*) AS BIGINT) FROM sms_receipt_parts")
            .await,
        2
    );
    assert_eq!(
        env.count(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM sms_receipts WHERE dlr_state = 'DELIVRD' AND dlr_ms IS NOT NULL"
        )
        .await,
        1
    );
    env.cleanup().await;
}
on_both_backends!(receipt_records_are_written_once_with_their_delivery_receipts);

// ---- A payment that text cannot authenticate ---------------------------------------------------

/// The SMS channel in process (`telepay::sms::gateway::start`) on a store where the merchant
/// strictly demands a voice print and the payer has one: text cannot carry it, so the payer is
/// told to call and given the number to key, and the claim is kept for that call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_that_needs_a_voice_print_is_sent_to_the_phone_line() {
    use telepay::settlement::auth_policy::Method;
    use telepay::settlement::engine::Op;
    use telepay::settlement::lifecycle::{Origin, TxnState};

    let env = common::Env::new(telepay::store::Backend::Sqlite, "smsvoice").await;
    env.merchant(
        "VOICE001",
        "VOICEMERCHANT01",
        "voice-key-0123456789",
        Method::Voice,
        true,
    )
    .await;
    env.svc
        .submit(Op::SetVoicePrint {
            msisdn: common::PAYER.into(),
            template: Some(vec![1, 2, 3, 4]),
        })
        .await
        .expect("a voice print");
    let port = free_port();
    let mut smsc = Smsc::start(port).await;
    let config = telepay::config::SmsConfig {
        enabled: true,
        port,
        system_id: SYSTEM_ID.into(),
        password: PASSWORD.into(),
        source_addr: SHORT_CODE.into(),
        call_number: "+1 555 0199".into(),
        ..telepay::config::SmsConfig::default()
    };
    let link = telepay::sms::gateway::start(env.svc.clone(), &config).expect("the SMS channel");
    smsc.wait_bound().await;
    let (txn, _) = env
        .svc
        .open("VOICE001", Some(900), None, Origin::Http, None, None)
        .await
        .expect("open");
    smsc.mo(&format!("PAY {}", txn.number));
    let told = smsc.next_text().await;
    assert!(
        told.text.contains("cannot be done by text")
            && told.text.contains("+1 555 0199")
            && told.text.contains(&txn.number),
        "{}",
        told.text
    );
    // Nothing was paid or cancelled: the payer may still call in with the number.
    let t = env.svc.store().txn(&txn.id).await.unwrap().unwrap();
    assert!(
        matches!(t.state, TxnState::Paired | TxnState::Authenticating),
        "{:?}",
        t.state
    );
    assert_eq!(t.payer_msisdn.as_deref(), Some(common::PAYER));
    link.shutdown().await;
    smsc.stop();
    env.cleanup().await;
}

/// A dialogue left unanswered expires: the payer is told and the claimed payment is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_dialogue_expires_and_its_payment_is_cancelled() {
    use telepay::settlement::lifecycle::{Origin, TxnState};

    let env = common::Env::new(telepay::store::Backend::Sqlite, "smsexpire").await;
    let port = free_port();
    let mut smsc = Smsc::start(port).await;
    let config = telepay::config::SmsConfig {
        enabled: true,
        port,
        system_id: SYSTEM_ID.into(),
        password: PASSWORD.into(),
        source_addr: SHORT_CODE.into(),
        // Below what a configuration file may say, to keep the test short.
        dialogue_ttl_s: 2,
        ..telepay::config::SmsConfig::default()
    };
    let link = telepay::sms::gateway::start(env.svc.clone(), &config).expect("the SMS channel");
    smsc.wait_bound().await;
    let (txn, _) = env
        .svc
        .open(common::TERMINAL, Some(250), None, Origin::Http, None, None)
        .await
        .expect("open");
    smsc.mo(&format!("PAY {}", txn.number));
    let offer = smsc.next_text().await;
    assert!(offer.text.contains("2.50 USD"), "{}", offer.text);
    let expired = smsc.next_text().await;
    assert!(
        expired.text.contains("expired") && expired.text.contains("Nothing was paid"),
        "{}",
        expired.text
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let t = env.svc.store().txn(&txn.id).await.unwrap().unwrap();
        if t.state == TxnState::Cancelled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?}",
            t.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A late PIN finds no payment waiting: the payer gets the help text, nothing is paid.
    smsc.mo("1234");
    let help = smsc.next_text().await;
    assert!(help.text.contains("PAY"), "{}", help.text);
    link.shutdown().await;
    smsc.stop();
    env.cleanup().await;
}

/// Long texts and UCS-2 both ways through the channel: the payer's `PAY` arrives in UCS-2 split
/// over two `deliver_sm` (joined by the gateway), and the offer and receipt naming a merchant in
/// Japanese go out in UCS-2 split over several `submit_sm` (joined by the SMSC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_ucs2_texts_are_split_and_joined_both_ways() {
    use telepay::settlement::auth_policy::{MerchantDemand, Method};
    use telepay::settlement::engine::NewMerchant;
    use telepay::settlement::lifecycle::Origin;

    const NAME: &str = "東京ラーメン本店 新宿西口";
    let env = common::Env::new(telepay::store::Backend::Sqlite, "smsucs2").await;
    env.svc
        .add_merchant(NewMerchant {
            terminal_id: "RAMEN001".into(),
            merchant_id: "RAMENMERCHANT01".into(),
            name: NAME.into(),
            currency: "USD".into(),
            api_key: "ramen-key-0123456789".into(),
            demand: MerchantDemand {
                method: Method::Pin,
                strict: false,
            },
            visible_attributes: vec![],
            webhook_url: None,
            webhook_secret: None,
            account_id: None,
        })
        .await
        .expect("a merchant");
    let port = free_port();
    let mut smsc = Smsc::start(port).await;
    let config = telepay::config::SmsConfig {
        enabled: true,
        port,
        system_id: SYSTEM_ID.into(),
        password: PASSWORD.into(),
        source_addr: SHORT_CODE.into(),
        ..telepay::config::SmsConfig::default()
    };
    let link = telepay::sms::gateway::start(env.svc.clone(), &config).expect("the SMS channel");
    smsc.wait_bound().await;
    let (txn, _) = env
        .svc
        .open("RAMEN001", Some(1250), None, Origin::Http, None, None)
        .await
        .expect("open");
    // Ideographic spaces make it UCS-2 and longer than one part (70 units).
    let text = format!("PAY {}{}", txn.number, "\u{3000}".repeat(80));
    let _ = smsc.cmd.send(SmscCmd::Mo {
        from: PAYER.into(),
        text,
    });
    let offer = smsc.next_text().await;
    assert!(offer.text.contains(NAME), "{}", offer.text);
    assert!(offer.text.contains("12.50 USD"), "{}", offer.text);
    assert_eq!(offer.data_coding, 0x08, "UCS-2");
    assert!(offer.parts >= 2, "{} parts", offer.parts);
    smsc.mo("1234");
    let receipt = smsc.next_text().await;
    assert!(
        receipt
            .text
            .starts_with(&format!("Paid 12.50 USD to {NAME}.")),
        "{}",
        receipt.text
    );
    assert_eq!(receipt.data_coding, 0x08, "UCS-2");
    assert!(receipt.parts >= 2, "{} parts", receipt.parts);
    link.shutdown().await;
    smsc.stop();
    env.cleanup().await;
}
