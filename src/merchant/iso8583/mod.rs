//! The merchant terminal link: ISO 8583:1987 over a persistent TCP connection.
//!
//! The contract with integrators is `docs/merchant-link.md`. This module is sans-IO and knows
//! nothing of the settlement core; the TCP driver joins the two.
//!
//! - [`codec`]: framing (2-byte big-endian length) and the ISO 8583 message codec, compatible
//!   with pyiso8583's `default_ascii` spec. Decoding never panics and says which part was wrong.
//! - [`field48`]: the `KEY=value;…` pairs of field 48.
//! - [`message`]: the profile's messages as types (0800 … 0630) and its response codes.
//! - [`session`]: one connection's state machine: feed it bytes, core replies, advices and
//!   timeouts with the current `Instant`; drain its outputs (bytes to send, core requests, advice
//!   acknowledgements, sign-on changes, close, next deadline).

#![forbid(unsafe_code)]

pub mod codec;
pub mod field48;
pub mod message;
pub mod session;

pub use codec::{CodecError, FRAME_SIZE_MAX, FrameReader, Malformed, Message, Mti};
pub use field48::{AdditionalData, Field48Error};
pub use message::{
    AdviceBody, AdviceEvent, Amount, AuthId, Currency, MerchantId, OriginalData, ProfileError,
    ProfileMessage, ResponseCode, Secret, Stan, TerminalId, TxnRef,
};
pub use session::{
    AdviceId, CloseReason, Config, CoreReply, CoreRequest, Input, Output, RequestId, Session,
    SessionError,
};

#[cfg(test)]
mod doc_examples {
    use std::collections::BTreeSet;
    use std::time::{Instant, SystemTime};

    use super::message::mtis;
    use super::*;

    const DOC: &str = include_str!("../../../docs/merchant-link.md");

    struct Example {
        title: String,
        /// A generic answer, valid ISO 8583 but not a complete profile message.
        raw_only: bool,
        frame: Vec<u8>,
    }

    fn from_hex(text: &str) -> Option<Vec<u8>> {
        let digits: Vec<u32> = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_digit(16))
            .collect::<Option<_>>()?;
        if digits.len() % 2 != 0 {
            return None;
        }
        Some(
            digits
                .chunks(2)
                .map(|pair| (pair[0] * 16 + pair[1]) as u8)
                .collect(),
        )
    }

    /// Every fenced block whose info string starts with `iso8583-hex`, with the `###` heading
    /// above it.
    fn examples() -> Vec<Example> {
        let mut examples = Vec::new();
        let mut title = String::new();
        let mut lines = DOC.lines();
        while let Some(line) = lines.next() {
            if let Some(heading) = line.strip_prefix("### ") {
                title = heading.to_string();
            }
            let Some(info) = line.trim().strip_prefix("```iso8583-hex") else {
                continue;
            };
            let body: String = lines
                .by_ref()
                .take_while(|l| l.trim() != "```")
                .collect::<Vec<_>>()
                .join("");
            let frame = from_hex(&body).unwrap_or_else(|| panic!("example {title:?} is not hex"));
            examples.push(Example {
                title: title.clone(),
                raw_only: info.trim() == "raw",
                frame,
            });
        }
        examples
    }

    #[test]
    fn every_example_decodes_and_re_encodes_byte_for_byte() {
        let examples = examples();
        assert!(
            examples.len() >= 20,
            "found only {} examples",
            examples.len()
        );
        for Example {
            title,
            raw_only,
            frame,
        } in &examples
        {
            let len = usize::from(u16::from_be_bytes([frame[0], frame[1]]));
            assert_eq!(len, frame.len() - 2, "{title}: length prefix");
            let message = Message::decode(&frame[2..]).unwrap_or_else(|e| panic!("{title}: {e}"));
            assert_eq!(
                message.encode_frame(FRAME_SIZE_MAX).unwrap(),
                *frame,
                "{title}: raw re-encoding"
            );
            assert!(
                title.starts_with(message.mti().as_str()),
                "{title}: heading names another MTI than {}",
                message.mti()
            );
            if *raw_only {
                continue;
            }
            let typed =
                ProfileMessage::from_message(&message).unwrap_or_else(|e| panic!("{title}: {e}"));
            assert_eq!(
                typed
                    .to_message()
                    .unwrap()
                    .encode_frame(FRAME_SIZE_MAX)
                    .unwrap(),
                *frame,
                "{title}: typed re-encoding"
            );
        }
    }

    #[test]
    fn every_message_of_the_profile_has_an_example() {
        let seen: BTreeSet<Mti> = examples()
            .iter()
            .filter(|e| !e.raw_only)
            .filter_map(|e| Message::decode(&e.frame[2..]).ok())
            .map(|m| m.mti())
            .collect();
        let profile = [
            mtis::NETWORK_REQUEST,
            mtis::NETWORK_RESPONSE,
            mtis::OPEN_REQUEST,
            mtis::OPEN_REPEAT,
            mtis::OPEN_RESPONSE,
            mtis::AMOUNT_REQUEST,
            mtis::AMOUNT_REPEAT,
            mtis::AMOUNT_RESPONSE,
            mtis::REVERSAL_REQUEST,
            mtis::REVERSAL_REPEAT,
            mtis::REVERSAL_RESPONSE,
            mtis::ADVICE,
            mtis::ADVICE_RESPONSE,
        ];
        for mti in profile {
            assert!(seen.contains(&mti), "no example of {mti}");
        }
    }

    #[test]
    fn the_session_serves_the_documented_sign_on() {
        let example = examples()
            .into_iter()
            .find(|e| e.title == "0800 sign-on")
            .expect("sign-on example");
        let now = Instant::now();
        let mut session = Session::new(Config::default(), now, SystemTime::UNIX_EPOCH);
        session
            .handle_input(Input::Bytes(&example.frame), now)
            .unwrap();
        match session.poll_output() {
            Output::CoreRequest {
                request:
                    CoreRequest::SignOn {
                        terminal_id, key, ..
                    },
                ..
            } => {
                assert_eq!(terminal_id.as_str(), "POS00017");
                assert_eq!(key.expose(), "7f3a9c2e41d8b605");
            }
            other => panic!("expected a sign-on request, got {other:?}"),
        }
    }
}
