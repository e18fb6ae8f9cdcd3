//! Fuzzes the SIP/SDP input path: datagram framing and parsing, SDP parsing, negotiation and
//! answer writing, and the endpoint itself fed a sequence of messages over UDP and TCP.
//!
//! The input is split on NUL bytes into messages. Each message is fed as a UDP datagram, then
//! as TCP bytes in two chunks, with virtual time advancing between them. `TOTAG` in a message is
//! replaced by the To tag of the last response we sent, so a seed of INVITE, ACK, re-INVITE,
//! INFO and BYE reaches the in-dialog code. Every offered call is answered, so dialogs exist.
//! The target asserts only that nothing panics and that outputs stay within the size limit.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use telepay::telephony::rtp;
use telepay::telephony::sdp::{self, Codec, SessionDescription};
use telepay::telephony::sip::framing::{self, FrameOutcome};
use telepay::telephony::sip::{Endpoint, EndpointConfig, Event, Input, Output, Transport, message};

const MESSAGES_MAX: usize = 16;

fuzz_target!(|data: &[u8]| {
    let source: SocketAddr = "10.0.0.7:5062".parse().unwrap();

    // SDP on its own.
    if let Ok(offer) = SessionDescription::parse(data) {
        if let Ok(negotiated) = sdp::negotiate(&offer, &[Codec::Pcmu, Codec::Pcma]) {
            let local = sdp::LocalMedia {
                address: "192.0.2.10".parse().unwrap(),
                rtp_port: 20000,
                session_id: 1,
                session_version: 1,
            };
            let answer = sdp::write_answer(&offer, &negotiated, &local);
            // Our answer must parse and negotiate back.
            let back = SessionDescription::parse(answer.as_bytes()).expect("our answer parses");
            sdp::negotiate(&back, &[negotiated.codec]).expect("our answer negotiates");
        }
    }

    // RTP parsing of the same bytes is cheap and shares the "bad lengths" concern.
    let _ = rtp::parse_packet(data);

    // Framing and parsing on their own.
    if let FrameOutcome::Message(framed) = framing::frame_datagram(data) {
        let _ = message::parse(&framed, source, Transport::Udp);
    }

    // The endpoint, fed a sequence.
    let start = Instant::now();
    let mut now = start;
    let mut config = EndpointConfig::new(
        "192.0.2.10:5060".parse().unwrap(),
        "192.0.2.10".parse().unwrap(),
    );
    config.allowed = vec!["10.0.0.0/8".parse().unwrap()];
    config.trusted = vec!["10.0.0.0/8".parse().unwrap()];
    config.calls_max = 4;
    let mut endpoint = Endpoint::new(config, now);
    let mut to_tag = String::from("none");
    for chunk in data.split(|b| *b == 0).take(MESSAGES_MAX) {
        let bytes = if chunk.windows(5).any(|w| w == b"TOTAG") {
            String::from_utf8_lossy(chunk)
                .replace("TOTAG", &to_tag)
                .into_bytes()
        } else {
            chunk.to_vec()
        };
        let _ = endpoint.handle_input(
            Input::Receive {
                source,
                transport: Transport::Udp,
                bytes: &bytes,
            },
            now,
        );
        drain(&mut endpoint, &mut to_tag, now);
        let split = bytes.len() / 2;
        let _ = endpoint.handle_input(
            Input::Receive {
                source,
                transport: Transport::Tcp,
                bytes: &bytes[..split],
            },
            now,
        );
        let _ = endpoint.handle_input(
            Input::Receive {
                source,
                transport: Transport::Tcp,
                bytes: &bytes[split..],
            },
            now,
        );
        drain(&mut endpoint, &mut to_tag, now);
        now += Duration::from_millis(700);
        let _ = endpoint.handle_input(Input::Timeout, now);
        drain(&mut endpoint, &mut to_tag, now);
    }
    // Run every timer out.
    now += Duration::from_secs(120);
    let _ = endpoint.handle_input(Input::Timeout, now);
    drain(&mut endpoint, &mut to_tag, now);
});

fn drain(endpoint: &mut Endpoint, to_tag: &mut String, now: Instant) {
    loop {
        match endpoint.poll_output() {
            Output::Transmit { bytes, .. } => {
                assert!(bytes.len() <= framing::MESSAGE_SIZE_MAX);
                if let Some(tag) = to_tag_of(&bytes) {
                    *to_tag = tag;
                }
            }
            Output::Event(Event::CallOffered { call_id, .. }) => {
                let _ = endpoint.answer(call_id, 20000, now);
            }
            Output::Event(_) | Output::Disconnect { .. } => {}
            Output::Timeout(_) => return,
        }
    }
}

fn to_tag_of(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let to = text.lines().find(|l| l.starts_with("To:"))?;
    let tag = to.split(";tag=").nth(1)?;
    Some(tag.split(';').next()?.trim().to_string())
}
