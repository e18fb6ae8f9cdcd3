//! Fuzz target for the SMPP link: arbitrary bytes into the PDU reader (rusmpp's body decoder
//! behind our framing), a bound ESME session, the test SMSC, and the text-level parsers a
//! `deliver_sm` reaches (UDH, text encodings, delivery receipts, the payer dialogue).
//!
//! Properties checked beyond "no panic":
//! - a decoded PDU re-encodes to octets that decode to the same command;
//! - everything the session and the test SMSC transmit is a well-formed PDU that decodes;
//! - the session's output per input is bounded, and it never has more submits in flight than
//!   its window.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use telepay::sms::concat::parse_udh;
use telepay::sms::dialogue::{DialogueConfig, Dialogues};
use telepay::sms::dlr;
use telepay::sms::encoding::decode_text;
use telepay::sms::pdu::{self, Frame, PduReader};
use telepay::sms::session::{Esme, EsmeConfig, Input, Output, Submit};
use telepay::sms::test_smsc::{SmscConfig, SmscOutput, TestSmsc};

const PDU_SIZE_MAX: usize = 4096;
const WINDOW: usize = 4;

/// A `bind_transceiver_resp` (status 0, sequence 1, system_id "SMSC"), so that the fuzzed
/// octets reach the bound state.
const BIND_RESP: [u8; 21] = [
    0, 0, 0, 21, 0x80, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, b'S', b'M', b'S', b'C', 0,
];

/// Every transmitted buffer must hold whole, decodable PDUs.
fn check_transmitted(octets: &[u8]) {
    let mut reader = PduReader::new(usize::MAX >> 1);
    reader.push(octets);
    let mut count = 0;
    while let Some(frame) = reader.next_frame() {
        count += 1;
        assert!(
            matches!(frame, Frame::Command(_)),
            "transmitted a PDU that does not decode: {frame:?}"
        );
    }
    assert!(count >= 1, "transmitted an incomplete PDU");
    assert_eq!(reader.buffered(), 0, "transmitted trailing octets");
}

fn drain(esme: &mut Esme, inputs: usize) {
    let mut outputs = 0;
    loop {
        match esme.poll_output() {
            Output::Transmit(octets) => check_transmitted(&octets),
            Output::Timeout(_) | Output::Done => break,
            _ => {}
        }
        outputs += 1;
        // Each PDU received yields at most a response, an event and a few submits.
        assert!(outputs <= 16 + 8 * inputs, "unbounded output");
    }
    assert!(esme.parts_in_flight() <= WINDOW);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };

    // 1. The reader alone, with a round trip of everything it decodes.
    let mut reader = PduReader::new(PDU_SIZE_MAX);
    reader.push(data);
    while let Some(frame) = reader.next_frame() {
        if let Frame::Command(command) = frame {
            let octets = pdu::encode(&command);
            let mut again = PduReader::new(usize::MAX >> 1);
            again.push(&octets);
            match again.next_frame() {
                Some(Frame::Command(c)) => assert_eq!(c, command, "round trip changed the PDU"),
                other => panic!("re-encoded PDU does not decode: {other:?}"),
            }
        }
    }

    // 2. A bound session fed the octets in chunks, with time passing between them.
    let start = Instant::now();
    let config = EsmeConfig {
        system_id: "fuzz".into(),
        password: "pw".into(),
        window_size: WINDOW,
        pdu_size_max: PDU_SIZE_MAX,
        ..EsmeConfig::default()
    };
    let Ok(mut esme) = Esme::new(config, start) else {
        return;
    };
    drain(&mut esme, 1);
    esme.handle_input(start, Input::Connected);
    drain(&mut esme, 1);
    esme.handle_input(start, Input::Receive(&BIND_RESP));
    drain(&mut esme, 1);
    for id in 0..6u64 {
        let text = if mode & 1 == 0 {
            "PAY 123456785"
        } else {
            "Zahlung 12,50 € ✓"
        };
        let _ = esme.submit(
            start,
            Submit {
                id,
                to: "491701234567".into(),
                text: text.repeat(usize::from(mode % 4) * 20 + 1),
            },
        );
    }
    drain(&mut esme, 6);
    let chunk = usize::from(mode >> 2).max(1);
    let mut now = start;
    for (i, piece) in data.chunks(chunk).enumerate() {
        esme.handle_input(now, Input::Receive(piece));
        drain(&mut esme, piece.len() / 16 + 1);
        if i % 7 == 6 {
            now += Duration::from_millis(u64::from(piece[0]) * 250);
            esme.handle_input(now, Input::Timeout);
            drain(&mut esme, 1);
        }
    }
    esme.shutdown(now);
    drain(&mut esme, 1);

    // 3. The test SMSC reading the same octets from an ESME.
    let mut smsc = TestSmsc::new(SmscConfig::default());
    smsc.handle_receive(start, data);
    while let Some(output) = smsc.poll_output() {
        if let SmscOutput::Transmit(octets) = output {
            check_transmitted(&octets);
        }
    }

    // 4. What a deliver_sm's body reaches.
    if let Ok((_, text)) = parse_udh(data) {
        let _ = decode_text(mode, text);
    }
    let _ = decode_text(mode, data);
    let lossy = String::from_utf8_lossy(data);
    let _ = dlr::parse(&lossy, None, None);
    let mut dialogues = Dialogues::new(DialogueConfig::default());
    let _ = dialogues.handle_text(start, "491701234567", &lossy);
});
