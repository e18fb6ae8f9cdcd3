//! Fuzzes everything DTMF that takes bytes from the network or audio from
//! a caller: the RFC 4733 payload parser and receiver, the SIP INFO body
//! parser, and the in-band detector. The first byte picks the target.
//!
//! Beyond "no panic", each branch checks an invariant: a payload that
//! parses prints back to the same fields; the receiver never ends more
//! digits than it started; the detector ends every digit it started, once,
//! within the audio it was given.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use telepay::telephony::dtmf::inband::{InbandDetector, InbandEvent};
use telepay::telephony::dtmf::info::parse_info;
use telepay::telephony::dtmf::rfc4733::{
    EventPacket, Rfc4733Event, Rfc4733Receiver, TelephoneEvent,
};

const CONTENT_TYPES: [&str; 6] = [
    "application/dtmf-relay",
    "application/dtmf",
    "audio/telephone-event",
    "Application/DTMF-Relay; charset=utf-8",
    "text/plain",
    "",
];

fn info(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    if let Ok(digit) = parse_info(content_type, body) {
        assert!(digit.duration_ms.is_none_or(|ms| ms <= 600_000));
    }
}

fn payload(data: &[u8]) {
    if let Ok(event) = TelephoneEvent::parse(data) {
        let again = TelephoneEvent::parse(&event.to_bytes());
        assert_eq!(again, Ok(event));
    }
}

/// Packets of 12 bytes: payload type, SSRC (1 byte), sequence number (2),
/// timestamp (4), marker and a clock step, payload length (0–7), then that
/// much payload taken from the rest.
fn receiver(data: &[u8]) {
    let mut receiver = Rfc4733Receiver::new(101);
    let mut now = Instant::now();
    let (mut started, mut ended) = (0_u64, 0_u64);
    let mut rest = data;
    while rest.len() >= 10 {
        let (header, tail) = rest.split_at(10);
        let len = usize::from(header[9] % 8).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        let packet = EventPacket {
            payload_type: if header[0] % 4 == 0 { 0 } else { 101 },
            ssrc: u32::from(header[1] % 3),
            sequence_number: u16::from_be_bytes([header[2], header[3]]),
            // Few distinct timestamps, so that events collide often.
            timestamp: u32::from_be_bytes([header[4], header[5], header[6], header[7]]) % 4096 * 97,
            marker: header[8] & 1 != 0,
            payload: body,
        };
        now += Duration::from_millis(u64::from(header[8] >> 1) * 10);
        let _ = receiver.handle_packet(&packet, now);
        if header[8] & 0x80 != 0 {
            receiver.handle_timeout(now + Duration::from_secs(2));
        }
        while let Some(event) = receiver.poll_event() {
            match event {
                Rfc4733Event::DigitStarted { .. } => started += 1,
                Rfc4733Event::DigitEnded { .. } => ended += 1,
            }
            assert!(ended <= started);
        }
    }
}

fn inband(data: &[u8]) {
    let samples: Vec<i16> = data
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut detector = InbandDetector::new();
    let mut open: Option<u64> = None;
    let mut check = |detector: &mut InbandDetector| {
        while let Some(event) = detector.poll_event() {
            match event {
                InbandEvent::Started { start_sample, .. } => {
                    assert!(open.is_none());
                    open = Some(start_sample);
                }
                InbandEvent::Ended(digit) => {
                    assert_eq!(open.take(), Some(digit.start_sample));
                    assert!(digit.start_sample + digit.duration_samples <= detector.samples_seen());
                }
            }
        }
    };
    // Chunk sizes from the data too, so that block edges fall anywhere.
    let mut rest = samples.as_slice();
    let mut size = 1 + usize::from(data.first().copied().unwrap_or(0));
    while !rest.is_empty() {
        let (now, later) = rest.split_at(size.min(rest.len()));
        detector.push_samples(now);
        check(&mut detector);
        rest = later;
        size = 1 + (size * 7 + 13) % 400;
    }
    detector.finish();
    check(&mut detector);
    assert!(open.is_none());
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => info(rest),
        1 => payload(rest),
        2 => receiver(rest),
        _ => inband(rest),
    }
});
