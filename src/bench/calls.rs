//! `telepay bench calls --calls N`: N concurrent payer calls on loopback against the real SIP
//! driver, IVR and settlement service (a fresh SQLite file with the demo payer).
//!
//! Each call dials the main menu as the demo payer and keeps choosing `2` (available amount),
//! keyed as in-band tones in its μ-law audio every `digit_period_ms`: the gateway plays prompts
//! to every call all the time and runs the in-band detector on every incoming packet; each
//! key stops a prompt (barge-in), runs a read through the core and starts the next prompt.
//!
//! Figures: `lost_digits` is keys sent minus keys the calls' detectors heard;
//! `cpu_per_call_pct` is this process's CPU time (gateway and load generator together) over
//! the hold phase, per call, in percent of one core; `jitter_p99_ms` is the 99th percentile of
//! how late the gateway sent its RTP packets against their 20 ms slots; `cps` is call set-ups
//! (INVITE to 200 OK) per second while all N calls are placed at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::app::{AppError, Context};
use crate::clock::SystemClock;
use crate::settlement::Service;
use crate::settlement::credentials::ServerSecret;
use crate::settlement::rules::Rules;
use crate::telephony::driver::{SipGateway, SipSettings, stats};
use crate::telephony::dtmf::DtmfMode;
use crate::telephony::dtmf::generate::{RenderOptions, render_digits, ulaw_raw};
use crate::telephony::sip::NumberPlan;

/// What the benchmark is asked for.
#[derive(Debug, Clone)]
pub struct CallsBench {
    pub calls: usize,
    pub hold_s: u64,
    pub digit_period_ms: u64,
    pub dialplan_dir: PathBuf,
    pub prompts_dir: PathBuf,
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct CallsFigures {
    pub calls: usize,
    pub calls_up: usize,
    pub digits_sent: u64,
    pub lost_digits: i64,
    pub cpu_per_call_pct: f64,
    pub jitter_p99_ms: f64,
    pub jitter_p50_ms: f64,
    pub packets_sent: u64,
    pub cps: f64,
}

const FRAME: usize = 160;
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

fn cpu_seconds() -> f64 {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second on
    // Linux).
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

struct Leg {
    sip: UdpSocket,
    rtp: Arc<UdpSocket>,
    call_id: String,
    from_tag: String,
    to_header: String,
    remote_rtp: SocketAddr,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

async fn place_call(i: usize, gw: SocketAddr) -> Result<Leg, String> {
    let sip = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let rtp = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let lp = sip.local_addr().map_err(|e| e.to_string())?.port();
    let rp = rtp.local_addr().map_err(|e| e.to_string())?.port();
    let call_id = format!("bench-{i}-{}@127.0.0.1", std::process::id());
    let from_tag = format!("b{i}");
    let sdp = format!(
        "v=0\r\no=- {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rp} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    let invite = format!(
        "INVITE sip:menu@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-b{i}-1;rport\r\n\
         From: <sip:+15550100@127.0.0.1:{lp}>;tag={from_tag}\r\nTo: <sip:menu@{gw}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+15550100@127.0.0.1:{lp}>\r\n\
         Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let mut buf = vec![0_u8; 8192];
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut resend = Instant::now();
    loop {
        if Instant::now() >= deadline {
            return Err("no 200 OK".into());
        }
        if Instant::now() >= resend {
            sip.send_to(invite.as_bytes(), gw)
                .await
                .map_err(|e| e.to_string())?;
            resend = Instant::now() + Duration::from_millis(500);
        }
        let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(100), sip.recv_from(&mut buf)).await
        else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        let Some(status) = msg.split_whitespace().nth(1) else {
            continue;
        };
        if status.starts_with('1') {
            // Provisional: the INVITE arrived; stop retransmitting so fast.
            resend = deadline;
            continue;
        }
        if status != "200" {
            return Err(format!("answered {status}"));
        }
        let to_header = header(&msg, "To").unwrap_or_default().to_string();
        let port = msg
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or("no media port in the answer")?;
        let leg = Leg {
            sip,
            rtp: Arc::new(rtp),
            call_id,
            from_tag,
            to_header,
            remote_rtp: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        leg.send_in_dialog("ACK", 1, gw, lp).await;
        return Ok(leg);
    }
}

impl Leg {
    async fn send_in_dialog(&self, method: &str, cseq: u32, gw: SocketAddr, lp: u16) {
        let msg = format!(
            "{method} sip:menu@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-{}-{method}\r\n\
             From: <sip:+15550100@127.0.0.1:{lp}>;tag={}\r\nTo: {}\r\nCall-ID: {}\r\n\
             CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            self.from_tag, self.from_tag, self.to_header, self.call_id
        );
        let _ = self.sip.send_to(msg.as_bytes(), gw).await;
    }
}

/// Runs the benchmark.
pub async fn run(bench: CallsBench) -> Result<CallsFigures, AppError> {
    let calls = bench.calls.clamp(1, 5_000);
    let (store, _) =
        super::settle::fresh_store(super::settle::BenchBackend::Sqlite, "calls").await?;
    let svc = Service::start(
        store,
        Rules::default(),
        ServerSecret::random().context("a random secret")?,
        Arc::new(SystemClock),
        "bench".into(),
    )
    .await
    .context("starting the service")?;
    crate::app::seed_demo(&svc).await?;
    let settings = SipSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        media_address: None,
        rtp_port_low: 30_000,
        rtp_port_high: 30_000 + u16::try_from(calls * 2 + 200).unwrap_or(20_000).min(30_000),
        allowed: vec!["127.0.0.0/8".parse().context("loopback")?],
        trusted: Vec::new(),
        number_plan: NumberPlan {
            country_code: "1".into(),
            national_prefix: String::new(),
            international_prefix: "011".into(),
            bare_numbers_are_national: false,
        },
        calls_max: calls + 10,
        rtp_timeout_ms: 30_000,
        dtmf_mode: DtmfMode::Auto,
        ring_ms: 0,
        dialplan_dir: bench.dialplan_dir.clone(),
        prompts_dir: bench.prompts_dir.clone(),
        voice: Default::default(),
    };
    let gw = SipGateway::start(settings, svc)
        .await
        .context("starting SIP")?;
    let addr = gw.local_addr();

    // Set-up: every call at once.
    let setup_start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..calls {
        set.spawn(async move { place_call(i, addr).await });
    }
    let mut legs = Vec::with_capacity(calls);
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(leg)) => legs.push(leg),
            Ok(Err(e)) => tracing::warn!(error = %e, "a bench call failed to set up"),
            Err(e) => tracing::warn!(error = %e, "a bench call task failed"),
        }
    }
    let setup_s = setup_start.elapsed().as_secs_f64().max(1e-6);

    // One period of the caller's audio: silence, then the key `2`.
    let period_ms = u32::try_from(bench.digit_period_ms.clamp(400, 60_000)).unwrap_or(3_000);
    let samples = render_digits(
        "2",
        &RenderOptions {
            tone_ms: 100,
            pause_ms: 0,
            lead_ms: period_ms - 300,
            tail_ms: 200,
            ..RenderOptions::default()
        },
    )
    .context("DTMF audio")?;
    let audio = ulaw_raw(&samples);

    // Hold: one pacing task sends every call's audio, 20 ms at a time.
    let digits_before = stats::digits();
    stats::reset_lateness();
    let cpu_before = cpu_seconds();
    let hold_start = Instant::now();
    let frames_per_period = audio.len() / FRAME;
    let hold_frames = (bench.hold_s.max(1) * 50) as usize;
    let mut digits_sent = 0_u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let ssrc_base = 0x7e1e_0000_u32;
    let mut packet = Vec::with_capacity(12 + FRAME);
    let mut drain = vec![0_u8; 1500];
    for n in 0..hold_frames {
        tick.tick().await;
        let k = n % frames_per_period.max(1);
        let frame = &audio[k * FRAME..(k + 1) * FRAME];
        if k == frames_per_period.saturating_sub(1) {
            // The key's tone ends with this period: count it once per call.
            digits_sent += legs.len() as u64;
        }
        for (i, leg) in legs.iter().enumerate() {
            packet.clear();
            packet.extend_from_slice(&[0x80, 0x00]);
            packet.extend_from_slice(&(n as u16).to_be_bytes());
            packet.extend_from_slice(&((n as u32).wrapping_mul(160)).to_be_bytes());
            packet.extend_from_slice(&(ssrc_base + i as u32).to_be_bytes());
            packet.extend_from_slice(frame);
            let _ = leg.rtp.try_send_to(&packet, leg.remote_rtp);
            // The gateway's audio is read and dropped, as a handset's speaker would.
            while leg.rtp.try_recv_from(&mut drain).is_ok() {}
        }
    }
    // Keys still sounding at the end are not counted as sent; let the last ones be heard.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hold_s = hold_start.elapsed().as_secs_f64().max(1e-6);
    let cpu_s = cpu_seconds() - cpu_before;
    let heard = stats::digits() - digits_before;
    let (packets_sent, jitter_p99_ms) = stats::lateness_percentile_ms(99.0);
    let (_, jitter_p50_ms) = stats::lateness_percentile_ms(50.0);

    let lp = |leg: &Leg| leg.sip.local_addr().map(|a| a.port()).unwrap_or(0);
    for leg in &legs {
        leg.send_in_dialog("BYE", 2, addr, lp(leg)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let up = legs.len();
    Ok(CallsFigures {
        calls,
        calls_up: up,
        digits_sent,
        lost_digits: digits_sent as i64 - heard as i64,
        cpu_per_call_pct: if up == 0 {
            0.0
        } else {
            cpu_s / hold_s * 100.0 / up as f64
        },
        jitter_p99_ms,
        jitter_p50_ms,
        packets_sent,
        cps: up as f64 / setup_s,
    })
}
