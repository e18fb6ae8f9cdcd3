//! Payer calls against the real `telepay serve --demo --sip …` binary, with real SIP peers on
//! loopback: SIPp keys the transaction number, the PIN and `1` (RFC 4733 events, or in-band
//! tones in its audio), the merchant side runs over the HTTP API, and the payment settles.
//!
//! baresip pays the same way, driven over its `ctrl_tcp` module (`dial`, then `sndcode` per key).
//!
//! The peers are required: when `sipp` or `baresip` is missing the tests fail and say how to
//! install it (`scripts/test` does). SIPp's `play_dtmf` sends through raw sockets, so these run
//! as root.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use telepay::telephony::dtmf::generate::{RenderOptions, render_digits, ulaw_raw};

const KEY: &str = "demo-secret-key";
const PAYER: &str = "+15550100";
const PIN: &str = "1234";
const AMOUNT_MINOR: i64 = 250;
/// How long a whole payment may take before the test gives up.
const PAYMENT_WAIT: Duration = Duration::from_secs(90);

/// SIPp runs one at a time: its media and RTP-stream ports are per process.
static SIPP: Mutex<()> = Mutex::new(());

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_telepay")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is required for this test and was not found: install the Debian package \
         `{package}` (scripts/test installs it)"
    );
}

/// A port free on both UDP and TCP at 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(tcp) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = tcp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

fn scratch(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "telepay-calls-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// A running demo gateway; killed on drop. Its log is in `dir/gateway.log`.
struct Gateway {
    child: Child,
    dir: PathBuf,
    http: String,
    sip_port: u16,
}

impl Gateway {
    fn start(tag: &str, config: Option<&str>) -> Gateway {
        let dir = scratch(tag);
        let http_port = free_port();
        let sip_port = free_port();
        let log = std::fs::File::create(dir.join("gateway.log")).expect("creating the log file");
        let mut cmd = Command::new(bin());
        cmd.current_dir(repo())
            .env("TELEPAY_MERCHANT_LINK", "off")
            .arg("--data-dir")
            .arg(dir.join("data"));
        if let Some(text) = config {
            let path = dir.join("telepay.toml");
            std::fs::write(&path, text).expect("writing the config file");
            cmd.arg("--config").arg(path);
        }
        let child = cmd
            .args([
                "serve",
                "--demo",
                "--http",
                &format!("127.0.0.1:{http_port}"),
                "--sip",
                &format!("127.0.0.1:{sip_port}"),
                // Outside the ephemeral range, where the peers' ports come from.
                "--rtp-ports",
                "21000-22999",
            ])
            .env("TELEPAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting telepay");
        let gw = Gateway {
            child,
            dir,
            http: format!("http://127.0.0.1:{http_port}"),
            sip_port,
        };
        gw.wait_ready();
        gw
    }

    /// The gateway's log so far, without terminal colour codes.
    fn log(&self) -> String {
        let raw = std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI sequences end with a letter.
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.log().contains("telepay is ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the gateway did not start; its log:\n{}", self.log());
    }

    fn signal_hup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -HUP failed");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The merchant side, over the HTTP API.
struct Merchant {
    http: reqwest::Client,
    base: String,
}

impl Merchant {
    fn new(gw: &Gateway) -> Merchant {
        Merchant {
            http: reqwest::Client::new(),
            base: gw.http.clone(),
        }
    }

    /// Opens a transaction without an amount; returns its id and number.
    async fn open(&self) -> (String, String) {
        let v: serde_json::Value = self
            .http
            .post(format!("{}/v1/transactions", self.base))
            .bearer_auth(KEY)
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("opening a transaction")
            .json()
            .await
            .expect("the transaction as JSON");
        let id = v["id"].as_str().expect("an id").to_string();
        let number = v["number"].as_str().expect("a number").to_string();
        (id, number)
    }

    async fn state(&self, id: &str) -> String {
        let v: serde_json::Value = match self
            .http
            .get(format!("{}/v1/transactions/{id}", self.base))
            .bearer_auth(KEY)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        v["state"].as_str().unwrap_or("").to_string()
    }

    /// Polls until the transaction is in one of `states`; returns the state it ended in.
    async fn wait_state(&self, id: &str, states: &[&str]) -> String {
        let deadline = Instant::now() + PAYMENT_WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.state(id).await;
            if states.contains(&last.as_str())
                || ["settled", "declined", "cancelled", "expired"].contains(&last.as_str())
            {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    }

    async fn set_amount(&self, id: &str, amount_minor: i64) {
        let r = self
            .http
            .put(format!("{}/v1/transactions/{id}/amount", self.base))
            .bearer_auth(KEY)
            .json(&serde_json::json!({ "amount_minor": amount_minor }))
            .send()
            .await
            .expect("setting the amount");
        assert!(
            r.status().is_success(),
            "setting the amount: {}",
            r.status()
        );
    }
}

/// Runs SIPp to completion (on a blocking thread) and returns its exit status and output.
async fn sipp(args: Vec<String>, cwd: PathBuf) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let _one_at_a_time = SIPP.lock().unwrap_or_else(|p| p.into_inner());
        let err_file = cwd.join("sipp.err");
        let mut child = Command::new("sipp")
            .current_dir(&cwd)
            .args(&args)
            .args(["-trace_err", "-error_file"])
            .arg(&err_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sipp");
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut out);
        }
        let ok = child.wait().map(|s| s.success()).unwrap_or(false);
        let errors = std::fs::read_to_string(&err_file).unwrap_or_default();
        (ok, format!("{out}\n{errors}"))
    })
    .await
    .expect("the sipp thread")
}

fn scenario(name: &str) -> String {
    repo()
        .join("tests/peers/sipp")
        .join(name)
        .display()
        .to_string()
}

fn sipp_args(gw: &Gateway, scenario_file: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        format!("127.0.0.1:{}", gw.sip_port),
        "-sf".into(),
        scenario(scenario_file),
        "-s".into(),
        "pay".into(),
        "-m".into(),
        "1".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_port().to_string(),
        "-mp".into(),
        (free_port() & !1).to_string(),
        "-key".into(),
        "caller".into(),
        PAYER.into(),
        "-timeout".into(),
        "120s".into(),
        "-nostdin".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The merchant's side of one payment: waits for pairing, optionally does something while the
/// caller holds, sets the amount, and waits for the end. Returns the final state.
async fn merchant_side(m: &Merchant, id: &str, while_holding: impl FnOnce()) -> String {
    let state = m.wait_state(id, &["paired"]).await;
    if state != "paired" {
        return state;
    }
    while_holding();
    // The caller hears the hold prompt for a moment before the amount arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    m.set_amount(id, AMOUNT_MINOR).await;
    m.wait_state(id, &["settled"]).await
}

async fn pay_rfc4733(gw: &Gateway, while_holding: impl FnOnce()) {
    let m = Merchant::new(gw);
    let (id, number) = m.open().await;
    let digits = format!("{number}{PIN}1");
    let args = sipp_args(gw, "uac_pay_rfc4733.xml", &["-key", "digits", &digits]);
    let cwd = gw.dir.clone();
    let call = tokio::spawn(sipp(args, cwd));
    let state = merchant_side(&m, &id, while_holding).await;
    let (sipp_ok, sipp_out) = call.await.expect("the sipp task");
    assert_eq!(
        state,
        "settled",
        "the payment did not settle.\nSIPp:\n{sipp_out}\ngateway log:\n{}",
        gw.log()
    );
    assert!(
        sipp_ok,
        "SIPp failed (the gateway should hang up after the receipt):\n{sipp_out}\ngateway log:\n{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_pays_with_rfc4733_digits() {
    require("sipp", "sip-tester");
    let gw = Gateway::start("rfc4733", None);
    pay_rfc4733(&gw, || {}).await;
    // The IVR logs that a secret was collected, never its digits.
    let log = gw.log();
    assert!(log.contains("collect `pin`: 4 digit(s) (secret)"), "{log}");
    assert!(!log.contains("`pin` ="), "the PIN reached the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_pays_with_inband_tones() {
    require("sipp", "sip-tester");
    let gw = Gateway::start("inband", None);
    let m = Merchant::new(&gw);
    let (id, number) = m.open().await;
    // A second of silence (the greeting starts), then the keys as a handset sends them.
    let options = RenderOptions {
        lead_ms: 1_000,
        tail_ms: 500,
        ..RenderOptions::default()
    };
    let samples = render_digits(&format!("{number}{PIN}1"), &options).expect("DTMF audio");
    let media_dir = scratch("inband-media");
    std::fs::write(media_dir.join("digits.ulaw"), ulaw_raw(&samples)).expect("writing audio");
    let args = sipp_args(&gw, "uac_pay_inband.xml", &[]);
    let call = tokio::spawn(sipp(args, media_dir));
    let state = merchant_side(&m, &id, || {}).await;
    let (sipp_ok, sipp_out) = call.await.expect("the sipp task");
    assert_eq!(
        state,
        "settled",
        "the payment did not settle.\nSIPp:\n{sipp_out}\ngateway log:\n{}",
        gw.log()
    );
    assert!(
        sipp_ok,
        "SIPp failed:\n{sipp_out}\ngateway log:\n{}",
        gw.log()
    );
}

/// The FSDD recordings: `TELEPAY_FSDD_DIR` (set by scripts/test), else `../shared/data/fsdd`.
fn fsdd_dir() -> PathBuf {
    std::env::var_os("TELEPAY_FSDD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data/fsdd"))
}

/// `digits` spoken by one FSDD speaker, one recording per digit from takes `first_take` on,
/// with 300 ms pauses between them. The recognizer must hear the string offline (the call
/// test is about the path from RTP to pairing, not about the recognizer's accuracy, which
/// `telepay voice eval` measures); the first take set it hears is used.
fn spoken_number(digits: &str) -> Vec<i16> {
    let model = telepay::voice::VoiceModel::embedded().expect("the voice model");
    let dir = fsdd_dir();
    for (speaker, first_take) in [
        ("jackson", 20),
        ("theo", 20),
        ("jackson", 25),
        ("nicolas", 20),
        ("theo", 25),
        ("lucas", 20),
        ("george", 20),
        ("jackson", 30),
    ] {
        let mut audio = Vec::new();
        for (k, d) in digits.chars().enumerate() {
            if k > 0 {
                audio.extend(std::iter::repeat_n(0i16, 8 * 300));
            }
            let path = dir.join(format!("{d}_{speaker}_{}.wav", first_take + k));
            let samples = telepay::voice::wav::read_wav(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            audio.extend(samples);
        }
        let heard = model.recognizer.recognize(&audio);
        if heard.digits == digits {
            return audio;
        }
    }
    panic!("no FSDD take set of `{digits}` is recognized offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_pays_with_a_spoken_transaction_number() {
    require("sipp", "sip-tester");
    let gw = Gateway::start("speech", None);
    let m = Merchant::new(&gw);
    let (id, number) = m.open().await;
    // 1.5 s into the greeting the caller says the number (barge-in); 3 s of silence lets the
    // end-pointer close the answer before the PIN and `1` are keyed (in-band tones, which the
    // IVR keeps as type-ahead while the caller holds for the amount).
    let mut audio = vec![0i16; 8 * 1_500];
    audio.extend(spoken_number(&number));
    audio.extend(std::iter::repeat_n(0i16, 8 * 3_000));
    let keys = RenderOptions {
        lead_ms: 0,
        tail_ms: 500,
        ..RenderOptions::default()
    };
    audio.extend(render_digits(&format!("{PIN}1"), &keys).expect("DTMF audio"));
    let media_dir = scratch("speech-media");
    std::fs::write(media_dir.join("digits.ulaw"), ulaw_raw(&audio)).expect("writing audio");
    let args = sipp_args(&gw, "uac_pay_inband.xml", &[]);
    let call = tokio::spawn(sipp(args, media_dir));
    let state = merchant_side(&m, &id, || {}).await;
    let (sipp_ok, sipp_out) = call.await.expect("the sipp task");
    let log = gw.log();
    assert!(
        log.contains(&format!("collect `number` = {number}")),
        "the spoken number was not recognized:\n{log}"
    );
    assert_eq!(
        state, "settled",
        "the payment did not settle.\nSIPp:\n{sipp_out}\ngateway log:\n{log}"
    );
    assert!(sipp_ok, "SIPp failed:\n{sipp_out}\ngateway log:\n{log}");
    // The operator sees it: one call, one spoken answer understood.
    let metrics = reqwest::get(format!("{}/metrics", gw.http))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text");
    let value = |line: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{line}` in\n{metrics}"))
    };
    assert_eq!(value("telepay_calls_total{event=\"started\"}"), 1);
    assert_eq!(
        value("telepay_speech_answers_total{outcome=\"digits\"}")
            + value("telepay_speech_answers_total{outcome=\"corrected\"}"),
        1,
        "{metrics}"
    );
    assert_eq!(
        value("telepay_speech_answers_total{outcome=\"no_match\"}"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_dialplan_and_keeps_the_live_call() {
    require("sipp", "sip-tester");
    let plan_dir = scratch("reload-plan");
    let default = std::fs::read_to_string(repo().join("dialplan/default.toml"))
        .expect("reading the default dialplan");
    std::fs::write(plan_dir.join("default.toml"), &default).expect("writing the dialplan");
    let config = format!(
        "[sip]\ndialplan_dir = \"{}\"\nprompts_dir = \"{}\"\n",
        plan_dir.display(),
        repo().join("prompts/en").display()
    );
    let gw = Gateway::start("reload", Some(&config));
    let hup = || {
        // A changed file, then the signal, while the caller is on hold in the paying flow.
        let changed = default.replace("type_ahead_max = 32", "type_ahead_max = 31");
        std::fs::write(plan_dir.join("default.toml"), changed).expect("changing the dialplan");
        gw.signal_hup();
    };
    pay_rfc4733(&gw, hup).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("dialplan reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        gw.log().contains("dialplan reloaded"),
        "no reload was logged:\n{}",
        gw.log()
    );
    // A broken file on reload keeps the old dialplan, and the next call still pays.
    std::fs::write(plan_dir.join("default.toml"), "[settings\n").expect("breaking the dialplan");
    gw.signal_hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("dialplan reload failed") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.log().contains("dialplan reload failed"), "{}", gw.log());
    pay_rfc4733(&gw, || {}).await;
}

#[test]
fn a_broken_dialplan_stops_the_start_with_file_and_line() {
    let plan_dir = scratch("broken-plan");
    let default = std::fs::read_to_string(repo().join("dialplan/default.toml"))
        .expect("reading the default dialplan");
    // Line numbers: the bad step is appended after the file's last line.
    let lines = default.lines().count();
    let broken = format!("{default}\n[[flow.pay]]\nplay = [\"no_such_prompt_here\"]\n");
    let file = plan_dir.join("default.toml");
    std::fs::write(&file, broken).expect("writing the dialplan");
    let dir = scratch("broken");
    let config = dir.join("telepay.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\ndialplan_dir = \"{}\"\nprompts_dir = \"{}\"\n",
            plan_dir.display(),
            repo().join("prompts/en").display()
        ),
    )
    .expect("writing the config");
    let out = Command::new(bin())
        .env("TELEPAY_MERCHANT_LINK", "off")
        .current_dir(repo())
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "serve",
            "--demo",
            "--http",
            &format!("127.0.0.1:{}", free_port()),
            "--sip",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("running telepay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the gateway started: {stderr}");
    let located = (lines..=lines + 3).any(|l| stderr.contains(&format!("{}:{l}:", file.display())));
    assert!(
        located,
        "expected {}:LINE near line {} in:\n{stderr}",
        file.display(),
        lines + 2
    );
}

#[test]
fn dtmf_detect_prints_the_digits_of_each_file() {
    let dir = scratch("detect");
    let tones = render_digits("159#", &RenderOptions::default()).expect("DTMF audio");
    let a = dir.join("a.wav");
    std::fs::write(&a, telepay::telephony::dtmf::generate::pcm_wav(&tones)).expect("a.wav");
    let silence = dir.join("b.wav");
    std::fs::write(
        &silence,
        telepay::telephony::dtmf::generate::pcm_wav(&vec![0_i16; 8000]),
    )
    .expect("b.wav");
    let out = Command::new(bin())
        .args(["dtmf", "detect"])
        .arg(&a)
        .arg(&silence)
        .output()
        .expect("running telepay dtmf detect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        format!("{}\t159#\n{}\t\n", a.display(), silence.display())
    );
    // A file that is not a WAV: an error naming it, exit status 1, the others still printed.
    let junk = dir.join("junk.wav");
    std::fs::write(&junk, b"not audio").expect("junk.wav");
    let out = Command::new(bin())
        .args(["dtmf", "detect"])
        .arg(&junk)
        .arg(&a)
        .output()
        .expect("running telepay dtmf detect");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.wav"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\t159#\n", a.display())
    );
}

/// A netstring-framed JSON connection to baresip's `ctrl_tcp` module.
struct BaresipControl {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    seen: Vec<String>,
}

impl BaresipControl {
    async fn connect(port: u16) -> BaresipControl {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(stream) => {
                    return BaresipControl {
                        stream,
                        buf: Vec::new(),
                        seen: Vec::new(),
                    };
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!("baresip's ctrl_tcp did not listen on {port}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn command(&mut self, command: &str, params: &str) {
        use tokio::io::AsyncWriteExt;
        let json =
            serde_json::json!({"command": command, "params": params, "token": command}).to_string();
        let frame = format!("{}:{json},", json.len());
        self.stream
            .write_all(frame.as_bytes())
            .await
            .expect("writing to baresip");
    }

    /// Reads messages until one contains `needle`, or the time runs out.
    async fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(colon) = self.buf.iter().position(|&b| b == b':') {
                let Some(len) = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                else {
                    panic!("baresip sent a malformed netstring");
                };
                if self.buf.len() < colon + 1 + len + 1 {
                    break;
                }
                let msg =
                    String::from_utf8_lossy(&self.buf[colon + 1..colon + 1 + len]).to_string();
                self.buf.drain(..colon + 1 + len + 1);
                let hit = msg.contains(needle);
                self.seen.push(msg);
                if hit {
                    return true;
                }
            }
            let mut chunk = [0_u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return false,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

struct Baresip(Child);

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_pays_with_sndcode() {
    require("baresip", "baresip");
    let gw = Gateway::start("baresip", None);
    let m = Merchant::new(&gw);
    let (id, number) = m.open().await;

    // baresip takes TLS on its SIP port + 1, so the control port is picked apart from both.
    let dir = scratch("baresip");
    let sip_port = free_port();
    let mut ctrl_port = free_port();
    while ctrl_port == sip_port + 1 {
        ctrl_port = free_port();
    }
    let silence = dir.join("silence.wav");
    std::fs::write(
        &silence,
        telepay::telephony::dtmf::generate::pcm_wav(&vec![0_i16; 8000 * 120]),
    )
    .expect("silence.wav");
    let config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nsip_transports udp\n\
         audio_player aubridge,telepay\naudio_alert aubridge,telepay\n\
         audio_source aufile,{}\nrtp_ports 23000-23999\n\
         module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n\
         module aubridge.so\nmodule_app account.so\nmodule_app menu.so\n\
         module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl_port}\n",
        silence.display()
    );
    std::fs::write(dir.join("config"), config).expect("baresip config");
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:{PAYER}@127.0.0.1>;regint=0;audio_codecs=PCMU\n"),
    )
    .expect("baresip accounts");
    let log = std::fs::File::create(dir.join("baresip.log")).expect("baresip log");
    let _baresip = Baresip(
        Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("starting baresip"),
    );
    let baresip_log = || std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default();
    let mut ctl = BaresipControl::connect(ctrl_port).await;
    ctl.command("dial", &format!("sip:pay@127.0.0.1:{}", gw.sip_port))
        .await;
    assert!(
        ctl.wait_for("CALL_ESTABLISHED", Duration::from_secs(20))
            .await,
        "the call was not established: {:?}\nbaresip:\n{}\ngateway:\n{}",
        ctl.seen,
        baresip_log(),
        gw.log()
    );
    // One key at a time, each released, as a person presses them.
    for key in format!("{number}{PIN}1").chars() {
        ctl.command("sndcode", &key.to_string()).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let state = merchant_side(&m, &id, || {}).await;
    assert_eq!(
        state,
        "settled",
        "the payment did not settle: {:?}\nbaresip:\n{}\ngateway:\n{}",
        ctl.seen,
        baresip_log(),
        gw.log()
    );
    // The gateway hangs up after the receipt.
    assert!(
        ctl.wait_for("CALL_CLOSED", Duration::from_secs(60)).await,
        "the gateway did not hang up: {:?}\ngateway:\n{}",
        ctl.seen,
        gw.log()
    );
}

/// Runs one SIPp scenario from `caller` against the gateway and asserts it succeeds.
async fn scenario_passes(gw: &Gateway, file: &str, caller: &str) {
    let mut args = sipp_args(gw, file, &[]);
    if let Some(i) = args.iter().position(|a| a == PAYER) {
        args[i] = caller.to_string();
    }
    let (ok, out) = sipp(args, gw.dir.clone()).await;
    assert!(ok, "{file} failed:\n{out}\ngateway log:\n{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_options_cancel_hold_and_release() {
    require("sipp", "sip-tester");
    // The gateway rings for a while before answering, so a CANCEL can arrive in time.
    let gw = Gateway::start("dialogs", Some("[sip]\nring_ms = 1500\n"));
    scenario_passes(&gw, "uac_options.xml", PAYER).await;
    scenario_passes(&gw, "uac_cancel.xml", PAYER).await;
    assert!(gw.log().contains("reason=Cancelled"), "{}", gw.log());
    // Hold (sendonly → recvonly), unhold, codec change to PCMA, BYE from the caller.
    scenario_passes(&gw, "uac_hold_unhold.xml", PAYER).await;
    assert!(gw.log().contains("reason=RemoteHangup"), "{}", gw.log());
    // A withheld caller hears why and is released by the IVR (BYE from the gateway).
    scenario_passes(&gw, "uac_wait_for_bye.xml", "anonymous").await;
    let log = gw.log();
    assert!(log.contains("identify -> withheld"), "{log}");
    assert!(log.contains("reason=LocalHangup"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hangs_up_calls_with_bye_and_stops() {
    require("sipp", "sip-tester");
    let mut gw = Gateway::start("sigterm", Some("[sip]\nrtp_timeout_ms = 120000\n"));
    let mut args = sipp_args(&gw, "uac_wait_for_bye.xml", &[]);
    args.extend(["-recv_timeout".to_string(), "60000".to_string()]);
    let call = tokio::spawn(sipp(args, gw.dir.clone()));
    // SIPp runs one at a time: this call may wait for another test's to end.
    let deadline = Instant::now() + PAYMENT_WAIT;
    while !gw.log().contains("call answered") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.log().contains("call answered"), "{}", gw.log());
    // The caller is in the IVR, which would wait many seconds for the number.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped_at = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    let (sipp_ok, sipp_out) = call.await.expect("the sipp task");
    let waited = stopped_at.elapsed();
    assert!(
        sipp_ok,
        "the caller got no BYE:\n{sipp_out}\ngateway log:\n{}",
        gw.log()
    );
    assert!(waited < Duration::from_secs(5), "BYE after {waited:?}");
    let exit = gw.child.wait().expect("waiting for the gateway");
    assert!(exit.success(), "{exit:?}\n{}", gw.log());
    let log = gw.log();
    assert!(log.contains("closing: hanging up every call"), "{log}");
    assert!(log.contains("reason=LocalHangup"), "{log}");
    assert!(log.contains("telepay stopped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_rtp_is_hung_up() {
    require("sipp", "sip-tester");
    let gw = Gateway::start("rtp-timeout", Some("[sip]\nrtp_timeout_ms = 2000\n"));
    scenario_passes(&gw, "uac_wait_for_bye.xml", PAYER).await;
    assert!(gw.log().contains("reason=RtpTimeout"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_pays_over_tcp() {
    require("sipp", "sip-tester");
    let gw = Gateway::start("tcp", None);
    let m = Merchant::new(&gw);
    let (id, number) = m.open().await;
    let digits = format!("{number}{PIN}1");
    let args = sipp_args(
        &gw,
        "uac_pay_rfc4733.xml",
        &["-t", "t1", "-key", "digits", &digits],
    );
    let call = tokio::spawn(sipp(args, gw.dir.clone()));
    let state = merchant_side(&m, &id, || {}).await;
    let (sipp_ok, sipp_out) = call.await.expect("the sipp task");
    assert_eq!(
        state,
        "settled",
        "the payment did not settle.\nSIPp:\n{sipp_out}\ngateway log:\n{}",
        gw.log()
    );
    assert!(
        sipp_ok,
        "SIPp failed:\n{sipp_out}\ngateway log:\n{}",
        gw.log()
    );
}

/// A SIPp scenario that keys `digits` as SIP INFO (`application/dtmf-relay`), one request per
/// key, on a call whose offer has no telephone-event; then waits for the gateway's BYE.
fn info_scenario(digits: &str) -> String {
    let invite = r#"  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "payer" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=ptime:20
      a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      [routes]
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "payer" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="1000"/>
"#;
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n\
         <!DOCTYPE scenario SYSTEM \"sipp.dtd\">\n<scenario name=\"telepay payer, SIP INFO DTMF\">\n",
    );
    xml.push_str(invite);
    for (i, d) in digits.chars().enumerate() {
        xml.push_str(&format!(
            r#"  <send retrans="500">
    <![CDATA[
      INFO [next_url] SIP/2.0
      [routes]
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "payer" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {} INFO
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={d}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="150"/>
"#,
            i + 2
        ));
    }
    xml.push_str(
        r#"  <recv request="BYE" timeout="120000"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="200"/>
</scenario>
"#,
    );
    xml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_pays_with_sip_info_digits() {
    require("sipp", "sip-tester");
    let gw = Gateway::start("info", None);
    let m = Merchant::new(&gw);
    let (id, number) = m.open().await;
    let file = gw.dir.join("uac_pay_info.xml");
    std::fs::write(&file, info_scenario(&format!("{number}{PIN}1"))).expect("the scenario");
    let mut args = sipp_args(&gw, "uac_pay_rfc4733.xml", &[]);
    if let Some(i) = args.iter().position(|a| a.ends_with("uac_pay_rfc4733.xml")) {
        args[i] = file.display().to_string();
    }
    let call = tokio::spawn(sipp(args, gw.dir.clone()));
    let state = merchant_side(&m, &id, || {}).await;
    let (sipp_ok, sipp_out) = call.await.expect("the sipp task");
    assert_eq!(
        state,
        "settled",
        "the payment did not settle.\nSIPp:\n{sipp_out}\ngateway log:\n{}",
        gw.log()
    );
    assert!(
        sipp_ok,
        "SIPp failed:\n{sipp_out}\ngateway log:\n{}",
        gw.log()
    );
}

/// A SIPp scenario: one INVITE offering `formats` (`m=` payload types with their `a=rtpmap`
/// lines), expecting the final response `status`.
fn invite_expecting(status: u16, formats: &str, rtpmaps: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="telepay INVITE refused with {status}">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "payer" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag10[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP {formats}
{rtpmaps}
      a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="{status}"/>
</scenario>
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_limit_get_503_and_foreign_codecs_488() {
    require("sipp", "sip-tester");
    let gw = Gateway::start("limits", Some("[sip]\ncalls_max = 1\n"));
    let run = |name: &str, xml: String| {
        let file = gw.dir.join(name);
        std::fs::write(&file, xml).expect("the scenario");
        let mut args = sipp_args(&gw, "uac_options.xml", &[]);
        if let Some(i) = args.iter().position(|a| a.ends_with("uac_options.xml")) {
            args[i] = file.display().to_string();
        }
        sipp(args, gw.dir.clone())
    };
    // Only G.729 offered: nothing in common.
    let (ok, out) = run(
        "g729.xml",
        invite_expecting(488, "18", "      a=rtpmap:18 G729/8000"),
    )
    .await;
    assert!(ok, "expected 488:\n{out}\ngateway log:\n{}", gw.log());
    // One call up (the caller waits in the IVR), then a second one is refused.
    let mut first = sipp_args(&gw, "uac_wait_for_bye.xml", &[]);
    first.extend(["-recv_timeout".to_string(), "60000".to_string()]);
    let held = tokio::spawn(sipp(first, gw.dir.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gw.log().contains("call answered") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.log().contains("call answered"), "{}", gw.log());
    // SIPp runs one at a time, so the second caller is a plain UDP client here.
    let second = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let port = second.local_addr().expect("its address").port();
    let invite = format!(
        "INVITE sip:pay@127.0.0.1:{gp} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-limit-1\r\n\
         From: <sip:{PAYER}@127.0.0.1:{port}>;tag=l1\r\nTo: <sip:pay@127.0.0.1:{gp}>\r\n\
         Call-ID: limit-{port}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:{PAYER}@127.0.0.1:{port}>\r\n\
         Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
        gp = gw.sip_port,
        len = SECOND_SDP.len(),
        sdp = SECOND_SDP,
    );
    second
        .send_to(invite.as_bytes(), ("127.0.0.1", gw.sip_port))
        .expect("sending the INVITE");
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a timeout");
    let mut buf = [0_u8; 4096];
    let mut finals = Vec::new();
    while let Ok(n) = second.recv(&mut buf) {
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        let status = msg.split_whitespace().nth(1).unwrap_or("").to_string();
        if !status.starts_with('1') {
            finals.push(status);
            break;
        }
    }
    assert_eq!(finals, ["503"], "gateway log:\n{}", gw.log());
    // The first call is still up and ends normally.
    let (ok, out) = held.await.expect("the sipp task");
    assert!(
        ok,
        "the first call failed:\n{out}\ngateway log:\n{}",
        gw.log()
    );
}

const SECOND_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                          m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
