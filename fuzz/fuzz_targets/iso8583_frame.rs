//! Fuzz target for the merchant link: arbitrary bytes into the frame check, the message decoder,
//! the profile reader and a link session.
//!
//! Properties checked beyond "no panic":
//! - a message that decodes re-encodes to the same bytes (up to the case of bitmap hex digits)
//!   and decodes again to the same message;
//! - a profile message that reads re-writes to a message that reads back the same;
//! - everything a session transmits is a well-formed frame that decodes;
//! - a session's output per input is bounded.
#![no_main]

use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use telepay::merchant::iso8583::ResponseCode;
use telepay::merchant::iso8583::codec::{FRAME_SIZE_MAX, Message, check_frame};
use telepay::merchant::iso8583::message::{
    AdviceBody, AdviceEvent, AuthId, ProfileMessage, TxnRef,
};
use telepay::merchant::iso8583::session::{
    AdviceId, Config, CoreReply, Input, Output, RequestId, Session,
};

/// The sign-on a session gets before the fuzzed bytes, so that signed-on paths are reached too.
fn sign_on_frame() -> Vec<u8> {
    let mut m = Message::new(telepay::merchant::iso8583::message::mtis::NETWORK_REQUEST);
    let _ = m.set(11, "000001");
    let _ = m.set(41, "TERM0001");
    let _ = m.set(42, "SHOP42         ");
    let _ = m.set(48, "KEY=k");
    let _ = m.set(70, "001");
    m.encode_frame(FRAME_SIZE_MAX).unwrap_or_default()
}

fn check_message(data: &[u8]) {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    let bytes = message.encode();
    assert!(bytes.eq_ignore_ascii_case(data), "re-encoding differs");
    assert_eq!(Message::decode(&bytes).as_ref(), Ok(&message));
    if let Ok(profile) = ProfileMessage::from_message(&message) {
        if let Ok(rewritten) = profile.to_message() {
            assert_eq!(
                ProfileMessage::from_message(&rewritten).as_ref(),
                Ok(&profile)
            );
        }
    }
}

fn drain(session: &mut Session, requests: &mut Vec<RequestId>) {
    for _ in 0..1000 {
        match session.poll_output() {
            Output::Timeout(_) => return,
            Output::Transmit(frame) => {
                assert_eq!(check_frame(&frame, FRAME_SIZE_MAX), Ok(Some(frame.len())));
                assert!(
                    Message::decode(&frame[2..]).is_ok(),
                    "session sent a bad message"
                );
            }
            Output::CoreRequest { request_id, .. } => requests.push(request_id),
            _ => {}
        }
    }
    panic!("unbounded output");
}

fn reply_for(selector: u8) -> CoreReply {
    let txn_ref = TxnRef::new("000000004711");
    match (selector % 6, txn_ref) {
        (0, _) => CoreReply::SignedOn,
        (1, Some(txn_ref)) => CoreReply::Opened {
            txn_ref,
            txn_number: "4821937".into(),
            expires_in_s: 300,
        },
        (2, _) => match AuthId::new("A1B2C3") {
            Some(auth_id) => CoreReply::Approved { auth_id },
            None => CoreReply::Reversed,
        },
        (3, _) => CoreReply::Reversed,
        (4, _) => CoreReply::Refused(ResponseCode::DoNotHonour),
        _ => CoreReply::Refused(ResponseCode::Approved),
    }
}

fn run_session(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let start = Instant::now();
    let mut now = start;
    let mut session = Session::new(Config::default(), now, SystemTime::UNIX_EPOCH);
    let mut requests = Vec::new();
    if mode & 1 == 1 {
        let _ = session.handle_input(Input::Bytes(&sign_on_frame()), now);
        drain(&mut session, &mut requests);
        if let Some(id) = requests.pop() {
            let _ = session.handle_input(
                Input::CoreReply {
                    request_id: id,
                    reply: CoreReply::SignedOn,
                },
                now,
            );
            drain(&mut session, &mut requests);
        }
    }
    // The rest is read as a script: a control byte, then for byte input a chunk of the length it
    // names.
    let mut rest = rest;
    let mut advice_id = 0;
    while let Some((&control, tail)) = rest.split_first() {
        rest = tail;
        if session.is_closed() {
            return;
        }
        let result = match control % 4 {
            0 | 1 => {
                let len = usize::from(control / 4).min(rest.len());
                let (chunk, tail) = rest.split_at(len);
                rest = tail;
                session.handle_input(Input::Bytes(chunk), now)
            }
            2 => {
                now += Duration::from_millis(u64::from(control) * 1000);
                session.handle_input(Input::Timeout, now)
            }
            _ => match requests.pop() {
                Some(id) => session.handle_input(
                    Input::CoreReply {
                        request_id: id,
                        reply: reply_for(control / 4),
                    },
                    now,
                ),
                None => {
                    advice_id += 1;
                    match TxnRef::new("000000004711") {
                        Some(txn_ref) => session.handle_input(
                            Input::Advice {
                                advice_id: AdviceId(advice_id),
                                body: AdviceBody::new(txn_ref, AdviceEvent::Paired),
                            },
                            now,
                        ),
                        None => Ok(()),
                    }
                }
            },
        };
        // Misuse errors are fine here (e.g. an advice before sign-on); panics are not.
        let _ = result;
        drain(&mut session, &mut requests);
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = check_frame(data, FRAME_SIZE_MAX);
    check_message(data);
    if data.len() > 2 {
        check_message(&data[2..]);
    }
    run_session(data);
});
