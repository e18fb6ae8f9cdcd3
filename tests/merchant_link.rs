//! The ISO 8583 merchant link against the real `telepay` binary: a pyiso8583 terminal paying end
//! to end, store-and-forward across cut links and a gateway restart, duplicates and repeats,
//! malformed frames, TLS.
//!
//! The payer's side is driven through the core's payer API by the demo gateway's sandbox
//! endpoint (`POST /sandbox/pay`), which claims the number, waits for the amount, enters the
//! PIN and confirms, as a handset would.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use telepay::merchant::iso8583::message::AdviceEvent;
use telepay::merchant::iso8583::{Amount, Currency, Message, ResponseCode, Stan};
use telepay::merchant::link::terminal::{Terminal, TerminalError};

const TID: &str = "DEMO0001";
const MID: &str = "DEMOSHOP0000001";
const KEY: &str = "demo-secret-key";
const PAYER: &str = "+15550100";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_telepay")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A demo gateway on free ports, in its own data directory, killed when dropped.
struct Gateway {
    child: Option<Child>,
    dir: tempdir::Dir,
    http: u16,
    link: u16,
    extra: Vec<String>,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "telepay-link-{tag}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&p).expect("a temp dir");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Gateway {
    async fn start(tag: &str, extra: &[&str]) -> Gateway {
        let mut g = Gateway {
            child: None,
            dir: tempdir::Dir::new(tag),
            http: free_port(),
            link: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        g.spawn().await;
        g
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.0.join("gateway.log")).expect("a log file");
        let child = Command::new(bin())
            .arg("--data-dir")
            .arg(&self.dir.0)
            .args(&self.extra)
            .args([
                "serve",
                "--demo",
                "--http",
                &format!("127.0.0.1:{}", self.http),
                "--merchant-link",
                &format!("127.0.0.1:{}", self.link),
            ])
            .env("TELEPAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start telepay");
        self.child = Some(child);
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = http.get(format!("{}/healthz", self.base())).send().await {
                if r.status().is_success() && std::net::TcpStream::connect(self.link_addr()).is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("telepay did not start:\n{}", self.log());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    fn link_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.link))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("gateway.log")).unwrap_or_default()
    }

    async fn terminal(&self) -> Terminal {
        let mut t = Terminal::connect(self.link_addr(), TID, MID)
            .await
            .expect("connect to the link");
        t.timeout = Duration::from_secs(20);
        t
    }

    /// The payer pays `number` through the sandbox (which waits up to 60 s for the amount).
    fn pay_in_background(&self, number: &str) -> tokio::task::JoinHandle<serde_json::Value> {
        let url = format!("{}/sandbox/pay", self.base());
        let body =
            serde_json::json!({"msisdn": PAYER, "number": number, "pin": "1234", "confirm": true});
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("sandbox/pay")
                .json()
                .await
                .expect("sandbox/pay JSON")
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

fn usd(minor: u64) -> Amount {
    Amount::new(minor, Currency::new(840).unwrap()).unwrap()
}

async fn signed_on(g: &Gateway) -> Terminal {
    let mut t = g.terminal().await;
    assert_eq!(
        t.sign_on(KEY).await.expect("sign-on"),
        ResponseCode::Approved
    );
    t
}

/// Reads the payer's balance through the admin CLI (the gateway shares the SQLite file).
fn payer_balance(g: &Gateway) -> i64 {
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(&g.dir.0)
        .args(["payer", "list"])
        .output()
        .expect("telepay payer list");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.contains(PAYER))
        .unwrap_or_else(|| panic!("no payer line in {text}"));
    // `MSISDN<TAB>NAME<TAB>STATUS<TAB>87.50 USD<TAB>pin=set`
    let amount = line
        .split('\t')
        .nth(3)
        .and_then(|b| b.split_whitespace().next())
        .unwrap_or_else(|| panic!("no balance in {line:?}"));
    amount
        .replace('.', "")
        .parse()
        .unwrap_or_else(|_| panic!("unreadable balance {amount:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pyiso8583_terminal_pays_end_to_end() {
    let g = Gateway::start("py", &[]).await;
    let script = repo().join("tests/peers/pyterminal/terminal.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &g.link.to_string(),
            "--terminal-id",
            TID,
            "--merchant-id",
            MID,
            "--key",
            KEY,
            "--timeout",
            "60",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with pyiso8583 (scripts/test installs it) must run terminal.py");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|_| serde_json::json!({"unparsed": line}));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut payer = None;
    let mut amount_code = None;
    let mut settled_auth = None;
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("terminal.py went quiet; saw {seen:?}\n{}", g.log()));
        let Some(v) = line else {
            break;
        };
        let event = v["event"].as_str().unwrap_or("").to_string();
        seen.push(v.clone());
        match event.as_str() {
            "opened" => {
                let number = v["txn"].as_str().expect("TXN in 0110").to_string();
                assert_eq!(number.len(), 9, "a 9-digit number: {v}");
                assert_eq!(v["rrn"].as_str().map(str::len), Some(12), "{v}");
                payer = Some(g.pay_in_background(&number));
            }
            "advice" if v["kind"] == "PAIRED" => {
                // The vending-machine order (claim 37): the amount comes after pairing.
                assert_eq!(v["data"]["PAYER"], "Demo Payer", "{v}");
                writeln!(stdin, "amount 1250 840").expect("write to terminal.py");
            }
            "amount_response" => amount_code = v["code"].as_str().map(str::to_string),
            "advice" if v["kind"] == "SETTLED" => {
                settled_auth = Some(v.clone());
            }
            "final" => break,
            "error" => panic!("terminal.py: {v}\n{}", g.log()),
            _ => {}
        }
    }
    let _ = writeln!(stdin, "quit");
    let status = child.wait().expect("terminal.py exit");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(status.success(), "terminal.py failed: {err}\nsaw {seen:?}");
    assert_eq!(amount_code.as_deref(), Some("00"), "saw {seen:?}");
    assert!(settled_auth.is_some(), "no SETTLED advice; saw {seen:?}");
    let outcome = payer
        .expect("the number was opened")
        .await
        .expect("payer task");
    assert_eq!(outcome["outcome"], "settled", "{outcome}");
    assert_eq!(payer_balance(&g), 10_000 - 1_250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_documented_example_decodes_with_pyiso8583() {
    let out = Command::new("python3")
        .arg(repo().join("tests/peers/pyterminal/check_doc_examples.py"))
        .output()
        .expect("python3 (scripts/test installs it)");
    assert!(
        out.status.success(),
        "check_doc_examples.py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn advices_wait_for_the_terminal_across_cut_links_and_a_gateway_restart() {
    let mut g = Gateway::start("cut", &[]).await;
    let mut t = signed_on(&g).await;
    let opened = t.open(None).await.expect("0100");
    assert_eq!(opened.response, ResponseCode::Approved);
    let txn_ref = opened.txn_ref.clone().expect("37");
    let number = opened.txn_number.clone().expect("TXN");
    // The link is cut before the payer calls.
    drop(t);
    let payer = g.pay_in_background(&number);

    // The PAIRED advice waits in the store. The terminal comes back, takes it, but restarts
    // before acknowledging it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut t = signed_on(&g).await;
    let a = t.advice().await.expect("PAIRED after sign-on");
    assert_eq!(a.body.event, AdviceEvent::Paired);
    assert_eq!(a.body.txn_ref, txn_ref);
    drop(t);

    // It is sent again on the next link, and acknowledged this time.
    let mut t = signed_on(&g).await;
    let a = t.advice().await.expect("PAIRED again");
    assert_eq!(
        a.body.event,
        AdviceEvent::Paired,
        "unacknowledged advice re-sent"
    );
    t.ack(&a).await.expect("0630");
    t.set_stan(Stan::new(500).unwrap());
    let answer = t.amount(&txn_ref, usd(700)).await.expect("0200");
    assert_eq!(answer.response, ResponseCode::Approved, "{answer:?}");
    assert!(answer.auth_id.is_some());
    let outcome = payer.await.expect("payer");
    assert_eq!(outcome["outcome"], "settled", "{outcome}");
    // The terminal goes away before the SETTLED advice is read; the gateway is killed.
    drop(t);
    g.kill();
    g.spawn().await;
    let mut t = signed_on(&g).await;
    let a = t.advice().await.expect("SETTLED after a gateway restart");
    assert_eq!(a.body.event, AdviceEvent::Settled);
    assert_eq!(a.body.txn_ref, txn_ref);
    assert_eq!(a.body.amount.map(|x| x.minor()), Some(700));
    t.ack(&a).await.expect("0630");
    // Nothing more: the PAIRED advice was acknowledged once and is not sent a third time.
    t.timeout = Duration::from_millis(1500);
    match t.advice().await {
        Err(TerminalError::Timeout(_)) => {}
        other => panic!("expected no more advices, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_and_repeats_get_the_original_response_and_one_settlement() {
    let g = Gateway::start("dup", &[]).await;
    let mut t = signed_on(&g).await;
    t.auto_ack = true;
    let open = t.open_request(None);
    let first = t.open_with(open.clone()).await.expect("0100");
    // A repeat (0101) of the open: the same transaction, not a second one.
    let again = t
        .open_with(telepay::merchant::iso8583::message::OpenRequest {
            repeat: true,
            ..open.clone()
        })
        .await
        .expect("0101");
    assert_eq!(first, again, "0101 gets the original 0110");
    let txn_ref = first.txn_ref.clone().expect("37");
    let payer = g.pay_in_background(first.txn_number.as_deref().expect("TXN"));

    let amount = t.amount_request(&txn_ref, usd(300));
    let original = t.amount_with(amount.clone()).await.expect("0200");
    assert_eq!(original.response, ResponseCode::Approved, "{original:?}");
    assert_eq!(payer.await.expect("payer")["outcome"], "settled");
    // The same 0200 again (duplicate STAN), and as a repeat 0201: the original response.
    let dup = t.amount_with(amount.clone()).await.expect("duplicate 0200");
    assert_eq!(dup, original);
    let rep = t
        .amount_with(telepay::merchant::iso8583::message::AmountRequest {
            repeat: true,
            ..amount.clone()
        })
        .await
        .expect("0201");
    assert_eq!(rep, original);
    // Same STAN, different content: 94.
    let mut other = amount.clone();
    other.amount = usd(301);
    let clash = t
        .amount_with(other)
        .await
        .expect("0200 with another amount");
    assert_eq!(clash.response, ResponseCode::DuplicateTransmission);
    // After a new link the terminal's finished responses still hold.
    drop(t);
    let mut t = signed_on(&g).await;
    t.auto_ack = true;
    let later = t
        .amount_with(telepay::merchant::iso8583::message::AmountRequest {
            repeat: true,
            ..amount.clone()
        })
        .await
        .expect("0201 on a new link");
    assert_eq!(later, original);
    // One settlement only.
    assert_eq!(payer_balance(&g), 10_000 - 300);
    let check = Command::new(bin())
        .arg("--data-dir")
        .arg(&g.dir.0)
        .arg("check")
        .output()
        .expect("telepay check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // A reversal, repeated: one compensating transfer.
    let rev = t.reversal_request(&txn_ref, amount.stan);
    let r1 = t.reverse_with(rev.clone()).await.expect("0400");
    assert_eq!(r1.response, ResponseCode::Approved, "{r1:?}");
    let r2 = t
        .reverse_with(telepay::merchant::iso8583::message::ReversalRequest {
            repeat: true,
            ..rev
        })
        .await
        .expect("0401");
    assert_eq!(r2, r1);
    assert_eq!(payer_balance(&g), 10_000);
}

/// An ISO 8583 ASCII message built by hand, so that it can be wrong: `fields` are written as
/// given (variable fields with their length prefix already in the value).
fn raw_message(mti: &str, fields: &[(u8, &str)]) -> Vec<u8> {
    let mut bitmap = [0u8; 16];
    let secondary = fields.iter().any(|(f, _)| *f > 64);
    if secondary {
        bitmap[0] |= 0x80;
    }
    for (f, _) in fields {
        let bit = usize::from(*f) - 1;
        bitmap[bit / 8] |= 0x80 >> (bit % 8);
    }
    let words = if secondary { 16 } else { 8 };
    let mut out = mti.as_bytes().to_vec();
    for b in &bitmap[..words] {
        out.extend_from_slice(format!("{b:02X}").as_bytes());
    }
    for (_, v) in fields {
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// What a link answers to `bytes` after a good sign-on: a message, or how the link ended.
async fn poke(g: &Gateway, bytes: &[u8]) -> Result<Message, TerminalError> {
    let mut t = signed_on(g).await;
    t.timeout = Duration::from_secs(5);
    t.send_raw(bytes).await?;
    t.read_message().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_frames_get_30_or_a_closed_link_and_never_hurt_the_gateway() {
    let cfg = tempdir::Dir::new("badcfg");
    let cfg_file = cfg.0.join("telepay.toml");
    std::fs::write(&cfg_file, "[merchant_link]\nframe_timeout_ms = 500\n").unwrap();
    let mut g = Gateway::start("bad", &["--config", cfg_file.to_str().unwrap()]).await;
    let tid = TID.to_string();
    let mid = format!("{MID:<15}");
    let answered_30 = |what: &str, m: &Message| {
        assert_eq!(m.get(39), Some("30"), "{what}: {m:?}");
    };

    // Answerable: the MTI can be read and expects an answer → 39=30.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "letters in the STAN (n6)",
            frame(&raw_message(
                "0100",
                &[
                    (3, "000000"),
                    (7, "1124120000"),
                    (11, "12A456"),
                    (41, &tid),
                    (42, &mid),
                ],
            )),
        ),
        (
            "letters in the amount (n12)",
            frame(&raw_message(
                "0200",
                &[
                    (3, "000000"),
                    (4, "0000000012X0"),
                    (7, "1124120000"),
                    (11, "000123"),
                    (37, "000000000001"),
                    (41, &tid),
                    (42, &mid),
                    (49, "840"),
                ],
            )),
        ),
        (
            "field 48 longer than the message",
            frame(&raw_message(
                "0800",
                &[
                    (7, "1124120000"),
                    (11, "000124"),
                    (41, &tid),
                    (42, &mid),
                    (48, "999KEY=x"),
                    (70, "301"),
                ],
            )),
        ),
        (
            "a bitmap that is not hex",
            frame(b"0800ZZZZZZZZZZZZZZZZ000125"),
        ),
        (
            "a missing required field",
            frame(&raw_message(
                "0200",
                &[(11, "000126"), (41, &tid), (42, &mid)],
            )),
        ),
    ];
    for (what, bytes) in cases {
        match poke(&g, &bytes).await {
            Ok(m) => answered_30(what, &m),
            Err(e) => panic!(
                "{what}: expected an answer with 39=30, got {e}\n{}",
                g.log()
            ),
        }
    }

    // Unanswerable: the link is closed (with a log line), never left hanging.
    let closing: Vec<(&str, Vec<u8>)> = vec![
        ("garbage where the MTI belongs", frame(b"\xff\xfe\x00hello")),
        ("a zero-length frame", vec![0, 0]),
        ("a length header that lies", {
            let mut f = 400u16.to_be_bytes().to_vec();
            f.extend_from_slice(b"0800");
            f
        }),
    ];
    for (what, bytes) in closing {
        let started = std::time::Instant::now();
        match poke(&g, &bytes).await {
            Err(TerminalError::Closed) => {}
            Ok(m) => answered_30(what, &m),
            Err(e) => panic!("{what}: expected a closed link, got {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{what}: the link hung"
        );
    }

    // A frame cut short by the terminal going away.
    {
        let mut t = signed_on(&g).await;
        let mut f = 60u16.to_be_bytes().to_vec();
        f.extend_from_slice(b"0100200000");
        t.send_raw(&f).await.unwrap();
    }

    // A storm of random frames on one link: no panic, no hang.
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let mut t = signed_on(&g).await;
    t.timeout = Duration::from_secs(2);
    for _ in 0..300 {
        let len = (next() % 120) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| (next() % 96 + 32) as u8).collect();
        if len >= 4 && next() % 2 == 0 {
            body[..4].copy_from_slice(b"0200");
        }
        if t.send_raw(&frame(&body)).await.is_err() {
            t = signed_on(&g).await;
            t.timeout = Duration::from_secs(2);
        }
    }
    drop(t);

    // The gateway is alive and serves a clean link.
    let status = g.child.as_mut().unwrap().try_wait().unwrap();
    assert!(
        status.is_none(),
        "the gateway exited: {status:?}\n{}",
        g.log()
    );
    let mut t = signed_on(&g).await;
    let opened = t.open(Some(usd(100))).await.expect("0100 after the storm");
    assert_eq!(opened.response, ResponseCode::Approved);
    assert!(!g.log().contains("panicked"), "{}", g.log());
    g.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_key_is_refused_and_nothing_is_served_before_sign_on() {
    let g = Gateway::start("key", &[]).await;
    let mut t = g.terminal().await;
    let before = t.open(None).await.expect("0100 before sign-on");
    assert_eq!(
        before.response,
        ResponseCode::SystemUnavailable,
        "{before:?}"
    );
    assert_eq!(
        t.sign_on("wrong-key").await.unwrap(),
        ResponseCode::InvalidMerchant
    );
    assert_eq!(t.sign_on(KEY).await.unwrap(), ResponseCode::Approved);
    let opened = t.open(None).await.unwrap();
    assert_eq!(opened.response, ResponseCode::Approved);
    assert_eq!(t.sign_off().await.unwrap(), ResponseCode::Approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_link_speaks_tls_when_configured() {
    use rustls_pki_types::pem::PemObject;
    let dir = tempdir::Dir::new("tls");
    let (cert, key) = (dir.0.join("link.crt"), dir.0.join("link.key"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.0.join("telepay.toml");
    std::fs::write(
        &cfg,
        format!(
            "[merchant_link]\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let g = Gateway::start("tls", &["--config", cfg.to_str().unwrap()]).await;

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(g.link_addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let mut t = Terminal::over(Box::new(tls), TID, MID).unwrap();
    assert_eq!(t.sign_on(KEY).await.unwrap(), ResponseCode::Approved);
    let opened = t.open(Some(usd(990))).await.unwrap();
    assert_eq!(opened.response, ResponseCode::Approved);
    assert_eq!(opened.txn_number.map(|n| n.len()), Some(9));

    // Plain TCP to a TLS link gets nowhere, and does not disturb it.
    let mut plain = g.terminal().await;
    plain.timeout = Duration::from_secs(12);
    assert!(plain.sign_on(KEY).await.is_err());
}
