//! Call flows through the endpoint in virtual time: a scripted caller on one side, the
//! endpoint's outputs inspected on the other. No sockets, no sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::super::sdp::Codec;
use super::*;

const GATEWAY: &str = "192.0.2.10:5060";
const PHONE: &str = "10.0.0.7:5062";
const PHONE_SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\n\
    m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n";

#[derive(Debug, Clone)]
struct Sent {
    dest: SocketAddr,
    transport: Transport,
    text: String,
}

impl Sent {
    fn status(&self) -> Option<u16> {
        self.text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }
    fn method(&self) -> &str {
        self.text.split(' ').next().unwrap_or_default()
    }
    fn header(&self, name: &str) -> Option<String> {
        header(&self.text, name)
    }
    fn body(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

fn header(text: &str, name: &str) -> Option<String> {
    let head = text.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn tag_of(value: &str) -> Option<String> {
    message::header_param(value, "tag").map(str::to_string)
}

struct Harness {
    ep: Endpoint,
    now: Instant,
    deadline: Instant,
    sent: Vec<Sent>,
    events: Vec<Event>,
    disconnects: Vec<SocketAddr>,
}

fn config() -> EndpointConfig {
    let mut c = EndpointConfig::new(GATEWAY.parse().unwrap(), "192.0.2.10".parse().unwrap());
    c.allowed = vec![
        "10.0.0.0/8".parse().unwrap(),
        "127.0.0.0/8".parse().unwrap(),
    ];
    c.trusted = vec!["198.51.100.0/24".parse().unwrap()];
    c.rng_seed = 7;
    c
}

impl Harness {
    fn new() -> Harness {
        Harness::with(config())
    }

    fn with(config: EndpointConfig) -> Harness {
        let now = Instant::now();
        let mut h = Harness {
            ep: Endpoint::new(config, now),
            now,
            deadline: now,
            sent: Vec::new(),
            events: Vec::new(),
            disconnects: Vec::new(),
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        loop {
            match self.ep.poll_output() {
                Output::Transmit {
                    dest,
                    transport,
                    bytes,
                } => self.sent.push(Sent {
                    dest,
                    transport,
                    text: String::from_utf8(bytes).expect("we send UTF-8"),
                }),
                Output::Event(e) => self.events.push(e),
                Output::Disconnect { peer } => self.disconnects.push(peer),
                Output::Timeout(t) => {
                    self.deadline = t;
                    return;
                }
            }
        }
    }

    fn recv_from(
        &mut self,
        source: &str,
        transport: Transport,
        bytes: &[u8],
    ) -> Result<(), SipError> {
        let r = self.ep.handle_input(
            Input::Receive {
                source: source.parse().unwrap(),
                transport,
                bytes,
            },
            self.now,
        );
        self.drain();
        r
    }

    fn recv(&mut self, text: &str) -> Result<(), SipError> {
        self.recv_from(PHONE, Transport::Udp, text.as_bytes())
    }

    /// Runs every timer up to `now + d` in order.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while self.deadline <= target {
            self.now = self.now.max(self.deadline);
            self.ep.handle_input(Input::Timeout, self.now).unwrap();
            self.drain();
        }
        self.now = target;
    }

    fn take_sent(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.sent)
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn only_sent(&mut self) -> Sent {
        let sent = self.take_sent();
        assert_eq!(sent.len(), 1, "{sent:#?}");
        sent.into_iter().next().unwrap()
    }

    fn statuses(&mut self) -> Vec<u16> {
        self.take_sent().iter().filter_map(Sent::status).collect()
    }

    fn offered(&mut self) -> (CallId, Event) {
        let events = self.take_events();
        assert_eq!(events.len(), 1, "{events:#?}");
        match &events[0] {
            Event::CallOffered { call_id, .. } => (*call_id, events[0].clone()),
            other => panic!("{other:?}"),
        }
    }

    fn call_ended(&mut self) -> EndReason {
        let events = self.take_events();
        match events.as_slice() {
            [Event::CallEnded { reason, .. }] => *reason,
            other => panic!("{other:#?}"),
        }
    }
}

/// A scripted caller (UAC).
struct Phone {
    addr: String,
    transport: Transport,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    cseq: u32,
    branches: u32,
}

impl Phone {
    fn new(call_id: &str) -> Phone {
        Phone {
            addr: PHONE.to_string(),
            transport: Transport::Udp,
            call_id: call_id.to_string(),
            from_tag: "ph1".to_string(),
            to_tag: None,
            cseq: 1,
            branches: 0,
        }
    }

    fn branch(&mut self) -> String {
        self.branches += 1;
        format!("z9hG4bKph{}{}", self.call_id, self.branches)
    }

    fn message(
        &self,
        method: &str,
        branch: &str,
        cseq: u32,
        extra: &str,
        body: Option<(&str, &str)>,
    ) -> String {
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let (ct, body) = match body {
            Some((ct, b)) => (format!("Content-Type: {ct}\r\n"), b),
            None => (String::new(), ""),
        };
        format!(
            "{method} sip:pay@192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/{t} {addr};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Caller\" <sip:+4930111222@10.0.0.7>;tag={ft}\r\n\
             To: <sip:pay@192.0.2.10>{to_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:caller@{addr}>\r\n{extra}{ct}Content-Length: {len}\r\n\r\n{body}",
            t = self.transport.via_token(),
            addr = self.addr,
            ft = self.from_tag,
            cid = self.call_id,
            len = body.len(),
        )
    }

    fn invite(&mut self, sdp: &str) -> (String, String) {
        let branch = self.branch();
        (
            self.message(
                "INVITE",
                &branch,
                self.cseq,
                "",
                Some(("application/sdp", sdp)),
            ),
            branch,
        )
    }

    /// The next in-dialog request with a new branch and CSeq.
    fn next(&mut self, method: &str, body: Option<(&str, &str)>) -> (String, String) {
        self.cseq += 1;
        let branch = self.branch();
        (self.message(method, &branch, self.cseq, "", body), branch)
    }

    fn ack_2xx(&mut self, cseq: u32, body: Option<(&str, &str)>) -> String {
        let branch = self.branch();
        self.message("ACK", &branch, cseq, "", body)
    }

    fn learn_tag(&mut self, response: &Sent) {
        self.to_tag = response.header("To").as_deref().and_then(tag_of);
    }
}

/// INVITE → 100, offered, answered with 200, ACKed: returns the established call.
fn established(h: &mut Harness, phone: &mut Phone) -> CallId {
    let (invite, _) = phone.invite(PHONE_SDP);
    h.recv(&invite).unwrap();
    assert_eq!(h.statuses(), [100]);
    let (call, _) = h.offered();
    h.ep.answer(call, 20000, h.now).unwrap();
    h.drain();
    let ok = h.only_sent();
    assert_eq!(ok.status(), Some(200));
    phone.learn_tag(&ok);
    let ack = phone.ack_2xx(phone.cseq, None);
    h.recv(&ack).unwrap();
    assert_eq!(h.take_events(), [Event::CallAnswered { call_id: call }]);
    call
}

#[test]
fn basic_call_invite_ringing_answer_ack_bye() {
    let mut h = Harness::new();
    let mut phone = Phone::new("basic");
    let (invite, _) = phone.invite(PHONE_SDP);
    h.recv(&invite).unwrap();
    let trying = h.only_sent();
    assert_eq!(trying.status(), Some(100));
    assert_eq!(
        trying.dest,
        PHONE.parse().unwrap(),
        "rport: reply to the source port"
    );
    assert!(trying.header("Via").unwrap().contains("rport=5062"));
    let (call, offered) = h.offered();
    let Event::CallOffered {
        caller,
        called_user,
        media,
        transport,
        ..
    } = offered
    else {
        unreachable!()
    };
    assert_eq!(
        caller,
        CallerIdentity::Number {
            e164: "+4930111222".into(),
            privacy_requested: false
        }
    );
    assert_eq!(called_user, "pay");
    assert_eq!(transport, Transport::Udp);
    assert_eq!(media.codec, Codec::Pcmu);
    assert_eq!(media.telephone_event_payload_type, Some(101));
    assert_eq!(media.remote_rtp, Some("10.0.0.7:4000".parse().unwrap()));
    assert!(media.send && !media.on_hold);

    h.ep.progress(call, Progress::Ringing, h.now).unwrap();
    h.drain();
    let ringing = h.only_sent();
    assert_eq!(ringing.status(), Some(180));
    let tag = tag_of(&ringing.header("To").unwrap()).expect("180 carries our tag");

    h.advance(Duration::from_secs(2));
    assert!(
        h.take_sent().is_empty(),
        "provisionals are not retransmitted"
    );
    h.ep.answer(call, 20000, h.now).unwrap();
    h.drain();
    let ok = h.only_sent();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        tag_of(&ok.header("To").unwrap()),
        Some(tag.clone()),
        "same tag on 180 and 200"
    );
    assert!(ok.header("Contact").unwrap().contains("192.0.2.10:5060"));
    assert_eq!(
        ok.header("Content-Type").as_deref(),
        Some("application/sdp")
    );
    assert!(
        ok.body().contains("m=audio 20000 RTP/AVP 0 101\r\n"),
        "{}",
        ok.body()
    );
    assert!(ok.body().contains("c=IN IP4 192.0.2.10\r\n"));
    assert_eq!(
        ok.header("Content-Length").unwrap(),
        ok.body().len().to_string()
    );
    phone.learn_tag(&ok);

    let ack = phone.ack_2xx(1, None);
    h.recv(&ack).unwrap();
    assert_eq!(h.take_events(), [Event::CallAnswered { call_id: call }]);
    h.advance(Duration::from_secs(5));
    assert!(
        h.take_sent().is_empty(),
        "no 200 retransmission after the ACK"
    );

    let (bye, _) = phone.next("BYE", None);
    h.recv(&bye).unwrap();
    let ok = h.only_sent();
    assert_eq!(
        (ok.status(), ok.header("CSeq").as_deref()),
        (Some(200), Some("2 BYE"))
    );
    assert_eq!(h.call_ended(), EndReason::RemoteHangup);
    assert_eq!(h.ep.calls_active(), 0);
    // A retransmitted BYE is answered by its transaction.
    h.recv(&bye).unwrap();
    assert_eq!(h.statuses(), [200]);
    assert!(h.take_events().is_empty());
    // Every transaction ends once its timers run out.
    h.advance(Duration::from_secs(40));
    assert_eq!(h.ep.transactions_live(), 0);
}

#[test]
fn invite_retransmissions_are_absorbed_by_the_transaction() {
    let mut h = Harness::new();
    let mut phone = Phone::new("retrans");
    let (invite, _) = phone.invite(PHONE_SDP);
    h.recv(&invite).unwrap();
    assert_eq!(h.statuses(), [100]);
    let (call, _) = h.offered();
    h.recv(&invite).unwrap();
    assert_eq!(h.statuses(), [100], "the last provisional is resent");
    assert!(h.take_events().is_empty(), "no second offer");
    h.ep.progress(call, Progress::Ringing, h.now).unwrap();
    h.drain();
    h.take_sent();
    h.recv(&invite).unwrap();
    assert_eq!(h.statuses(), [180]);
    h.ep.answer(call, 20000, h.now).unwrap();
    h.drain();
    h.take_sent();
    // In Accepted the INVITE retransmission is absorbed; the 2xx schedule covers a lost 200.
    h.recv(&invite).unwrap();
    assert!(h.take_sent().is_empty());
    assert_eq!(h.ep.calls_active(), 1);
}

#[test]
fn ok_is_retransmitted_until_ack_then_bye_when_none_comes() {
    let mut h = Harness::new();
    let mut phone = Phone::new("noack");
    let (invite, _) = phone.invite(PHONE_SDP);
    h.recv(&invite).unwrap();
    h.take_sent();
    let (call, _) = h.offered();
    let start = h.now;
    h.ep.answer(call, 20000, h.now).unwrap();
    h.drain();
    let ok = h.only_sent();
    phone.learn_tag(&ok);
    // Collect send times of 200 retransmissions until just before 64·T1.
    let mut times = Vec::new();
    for _ in 0..319 {
        h.advance(Duration::from_millis(100));
        for s in h.take_sent() {
            assert_eq!(s.status(), Some(200));
            assert_eq!(s.text, ok.text, "the same 200 is retransmitted");
            times.push((h.now - start).as_millis().div_ceil(100) * 100);
        }
    }
    assert_eq!(
        times,
        [
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert!(h.take_events().is_empty());
    // At 64·T1 without an ACK the call is hung up with BYE (RFC 3261 §13.3.1.4).
    h.advance(Duration::from_millis(100));
    let bye = h.only_sent();
    assert_eq!(bye.method(), "BYE");
    assert_eq!(h.now - start, Duration::from_secs(32));
    assert_eq!(h.call_ended(), EndReason::AckTimeout);
}

#[test]
fn ack_mid_retransmission_stops_it() {
    let mut h = Harness::new();
    let mut phone = Phone::new("lateack");
    let (invite, _) = phone.invite(PHONE_SDP);
    h.recv(&invite).unwrap();
    h.take_sent();
    let (call, _) = h.offered();
    h.ep.answer(call, 20000, h.now).unwrap();
    h.drain();
    let ok = h.only_sent();
    phone.learn_tag(&ok);
    h.advance(Duration::from_millis(1600));
    assert_eq!(h.statuses(), [200, 200]);
    h.recv(&phone.ack_2xx(1, None)).unwrap();
    assert_eq!(h.take_events(), [Event::CallAnswered { call_id: call }]);
    h.advance(Duration::from_secs(20));
    assert!(h.take_sent().is_empty());
}

#[test]
fn cancel_before_answer_gives_487_and_absorbs_the_ack() {
    let mut h = Harness::new();
    let mut phone = Phone::new("cancel");
    let (invite, branch) = phone.invite(PHONE_SDP);
    h.recv(&invite).unwrap();
    h.take_sent();
    let (call, _) = h.offered();
    h.ep.progress(call, Progress::Ringing, h.now).unwrap();
    h.drain();
    h.take_sent();
    let cancel = phone.message("CANCEL", &branch, 1, "", None);
    h.recv(&cancel).unwrap();
    let sent = h.take_sent();
    let statuses: Vec<_> = sent
        .iter()
        .map(|s| (s.status().unwrap(), s.header("CSeq").unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [(200, "1 CANCEL".to_string()), (487, "1 INVITE".to_string())]
    );
    assert_eq!(h.call_ended(), EndReason::Cancelled);
    // The application's late answer is refused cleanly.
    assert_eq!(
        h.ep.answer(call, 20000, h.now),
        Err(SipError::UnknownCall(call))
    );
    // 487 is retransmitted (Timer G) until the ACK, which shares the INVITE's branch.
    h.advance(Duration::from_millis(600));
    assert_eq!(h.statuses(), [487]);
    let mut acker = Phone::new("cancel");
    acker.to_tag = tag_of(&sent[1].header("To").unwrap());
    h.recv(&acker.message("ACK", &branch, 1, "", None)).unwrap();
    h.advance(Duration::from_secs(40));
    assert!(h.take_sent().is_empty());
    assert_eq!(h.ep.transactions_live(), 0);
    // A CANCEL that matches nothing gets 481.
    let stray = phone.message("CANCEL", "z9hG4bKnothing", 1, "", None);
    assert!(h.recv(&stray).is_err());
    assert_eq!(h.statuses(), [481]);
}

#[test]
fn cancel_after_answer_does_not_end_the_call() {
    let mut h = Harness::new();
    let mut phone = Phone::new("cancel2");
    let (invite, branch) = phone.invite(PHONE_SDP);
    h.recv(&invite).unwrap();
    h.take_sent();
    let (call, _) = h.offered();
    h.ep.answer(call, 20000, h.now).unwrap();
    h.drain();
    h.take_sent();
    h.recv(&phone.message("CANCEL", &branch, 1, "", None))
        .unwrap();
    assert_eq!(h.statuses(), [200]);
    assert!(h.take_events().is_empty());
    assert_eq!(h.ep.calls_active(), 1);
}

fn hold_sdp(direction: &str, version: u32) -> String {
    format!(
        "v=0\r\no=- 1 {version} IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\n\
         m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )
}

#[test]
fn reinvite_hold_unhold_codec_change_and_488() {
    let mut h = Harness::new();
    let mut phone = Phone::new("hold");
    let call = established(&mut h, &mut phone);
    let origin_version = |s: &Sent| {
        s.body()
            .lines()
            .find(|l| l.starts_with("o="))
            .unwrap()
            .split(' ')
            .nth(2)
            .unwrap()
            .to_string()
    };

    // Hold with sendonly: we answer recvonly and stop sending.
    let hold = hold_sdp("sendonly", 2);
    let (reinvite, _) = phone.next("INVITE", Some(("application/sdp", &hold)));
    h.recv(&reinvite).unwrap();
    let ok = h.only_sent();
    assert_eq!(ok.status(), Some(200));
    assert!(ok.body().contains("a=recvonly\r\n"));
    assert!(ok.body().contains("m=audio 20000 "), "the port is kept");
    assert_eq!(origin_version(&ok), "2", "changed SDP, new version");
    let events = h.take_events();
    let [Event::MediaChanged { call_id, media }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(*call_id, call);
    assert!(media.on_hold && !media.send);
    h.recv(&phone.ack_2xx(phone.cseq, None)).unwrap();
    h.advance(Duration::from_secs(3));
    assert!(h.take_sent().is_empty());

    // The same offer again (a session refresh): same answer, same version, no event.
    let (refresh, _) = phone.next("INVITE", Some(("application/sdp", &hold)));
    h.recv(&refresh).unwrap();
    let ok = h.only_sent();
    assert_eq!(origin_version(&ok), "2");
    assert!(h.take_events().is_empty());
    h.recv(&phone.ack_2xx(phone.cseq, None)).unwrap();

    // Unhold.
    let (unhold, _) = phone.next(
        "INVITE",
        Some(("application/sdp", &hold_sdp("sendrecv", 3))),
    );
    h.recv(&unhold).unwrap();
    let ok = h.only_sent();
    assert!(ok.body().contains("a=sendrecv\r\n"));
    assert_eq!(origin_version(&ok), "3");
    let events = h.take_events();
    assert!(
        matches!(events.as_slice(), [Event::MediaChanged { media, .. }] if !media.on_hold && media.send)
    );
    h.recv(&phone.ack_2xx(phone.cseq, None)).unwrap();

    // Codec change to PCMA.
    let pcma = "v=0\r\no=- 1 4 IN IP4 10.0.0.8\r\ns=-\r\nc=IN IP4 10.0.0.8\r\nt=0 0\r\nm=audio 4100 RTP/AVP 8\r\n";
    let (change, _) = phone.next("INVITE", Some(("application/sdp", pcma)));
    h.recv(&change).unwrap();
    let ok = h.only_sent();
    assert!(
        ok.body().contains("m=audio 20000 RTP/AVP 8\r\n"),
        "{}",
        ok.body()
    );
    let events = h.take_events();
    let [Event::MediaChanged { media, .. }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(media.codec, Codec::Pcma);
    assert_eq!(media.remote_rtp, Some("10.0.0.8:4100".parse().unwrap()));
    assert_eq!(media.telephone_event_payload_type, None);
    h.recv(&phone.ack_2xx(phone.cseq, None)).unwrap();

    // No common codec: 488, the call and its media stay.
    let g729 = "v=0\r\nc=IN IP4 10.0.0.8\r\nm=audio 4100 RTP/AVP 18\r\n";
    let (bad, branch) = phone.next("INVITE", Some(("application/sdp", g729)));
    h.recv(&bad).unwrap_err();
    let rejected = h.only_sent();
    assert_eq!(rejected.status(), Some(488));
    assert!(h.take_events().is_empty());
    h.recv(&phone.message("ACK", &branch, phone.cseq, "", None))
        .unwrap();
    h.advance(Duration::from_secs(2));
    assert!(
        h.take_sent().is_empty(),
        "ACK stopped the 488 retransmissions"
    );
    assert_eq!(h.ep.calls_active(), 1);

    // Offerless re-INVITE: our offer in the 200, the answer in the ACK.
    let (offerless, _) = phone.next("INVITE", None);
    h.recv(&offerless).unwrap();
    let ok = h.only_sent();
    assert!(
        ok.body().contains("m=audio 20000 RTP/AVP 8 101\r\n"),
        "{}",
        ok.body()
    );
    let answer = "v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 4200 RTP/AVP 8\r\na=sendrecv\r\n";
    h.recv(&phone.ack_2xx(phone.cseq, Some(("application/sdp", answer))))
        .unwrap();
    let events = h.take_events();
    assert!(
        matches!(events.as_slice(), [Event::MediaChanged { media, .. }] if media.remote_rtp == Some("10.0.0.9:4200".parse().unwrap()))
    );
}

#[test]
fn initial_invite_rejections() {
    // No common codec: 488 with a Warning, and the ACK is absorbed.
    let mut h = Harness::new();
    let mut phone = Phone::new("488");
    let g729 = "v=0\r\nc=IN IP4 10.0.0.7\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let (invite, branch) = phone.invite(g729);
    assert!(matches!(
        h.recv(&invite),
        Err(SipError::Rejected { status: 488, .. })
    ));
    let r = h.only_sent();
    assert_eq!(r.status(), Some(488));
    assert!(r.header("Warning").unwrap().starts_with("305 "));
    assert!(h.take_events().is_empty());
    phone.learn_tag(&r);
    h.recv(&phone.message("ACK", &branch, 1, "", None)).unwrap();
    h.advance(Duration::from_secs(40));
    assert!(h.take_sent().is_empty());

    // Offerless initial INVITE, non-SDP body, malformed SDP, Require, Max-Forwards 0.
    type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a str, u16);
    let cases: [Case; 5] = [
        ("a", None, "", 488),
        ("b", Some(("text/plain", "hello")), "", 415),
        (
            "c",
            Some(("application/sdp", "v=0\r\nm=audio x\r\n")),
            "",
            400,
        ),
        (
            "d",
            Some(("application/sdp", PHONE_SDP)),
            "Require: 100rel\r\n",
            420,
        ),
        (
            "e",
            Some(("application/sdp", PHONE_SDP)),
            "Max-Forwards: 0\r\n",
            483,
        ),
    ];
    for (id, body, extra, status) in cases {
        let mut p = Phone::new(id);
        let branch = p.branch();
        let mut text = p.message("INVITE", &branch, 1, extra, body);
        if id == "e" {
            text = text.replace("Max-Forwards: 70\r\n", "");
        }
        h.recv(&text).unwrap_err();
        let r = h.only_sent();
        assert_eq!(r.status(), Some(status), "{id}");
        if status == 420 {
            assert_eq!(r.header("Unsupported").as_deref(), Some("100rel"));
        }
        if status == 415 {
            assert_eq!(r.header("Accept").as_deref(), Some("application/sdp"));
        }
    }
    assert!(h.take_events().is_empty());
    assert_eq!(h.ep.calls_active(), 0);
}

#[test]
fn call_limit_gives_503() {
    let mut c = config();
    c.calls_max = 1;
    let mut h = Harness::with(c);
    let mut first = Phone::new("one");
    h.recv(&first.invite(PHONE_SDP).0).unwrap();
    h.take_sent();
    h.offered();
    let mut second = Phone::new("two");
    assert!(h.recv(&second.invite(PHONE_SDP).0).is_err());
    let r = h.only_sent();
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.header("Retry-After").as_deref(), Some("5"));
    assert!(h.take_events().is_empty());
}

#[test]
fn sources_outside_the_allow_list_get_403() {
    let mut h = Harness::new();
    let mut phone = Phone::new("stranger");
    phone.addr = "203.0.113.66:5060".into();
    let (invite, _) = phone.invite(PHONE_SDP);
    let r = h.recv_from("203.0.113.66:5060", Transport::Udp, invite.as_bytes());
    assert!(matches!(r, Err(SipError::Rejected { status: 403, .. })));
    assert_eq!(h.statuses(), [403]);
    assert!(h.take_events().is_empty());
    // ACKs and responses from strangers are dropped silently; no state is kept.
    let ack = phone.message("ACK", "z9hG4bKx", 1, "", None);
    h.recv_from("203.0.113.66:5060", Transport::Udp, ack.as_bytes())
        .unwrap_err();
    assert!(h.take_sent().is_empty());
    assert_eq!(h.ep.transactions_live(), 0);
    // Trusted trunks are allowed too.
    let text = fixture(include_str!("fixtures/trunk_invite_pai.sip"));
    h.recv_from("198.51.100.20:5060", Transport::Udp, text.as_bytes())
        .unwrap();
    assert_eq!(h.statuses(), [100]);
}

#[test]
fn options_are_answered() {
    let mut h = Harness::new();
    let mut phone = Phone::new("opt");
    let branch = phone.branch();
    h.recv(&phone.message("OPTIONS", &branch, 1, "", None))
        .unwrap();
    let r = h.only_sent();
    assert_eq!(r.status(), Some(200));
    assert!(r.header("Allow").unwrap().contains("INVITE"));
    assert!(h.take_events().is_empty());
    // Max-Forwards 0 does not stop an OPTIONS (RFC 3261 §8.2.2 lets it be answered).
    let branch = phone.branch();
    let text = phone
        .message("OPTIONS", &branch, 2, "", None)
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    h.recv(&text).unwrap();
    assert_eq!(h.statuses(), [200]);
}

#[test]
fn our_options_ping_reports_result_or_timeout() {
    let mut h = Harness::new();
    let trunk: SocketAddr = "10.9.9.9:5060".parse().unwrap();
    h.ep.send_options(trunk, Transport::Udp, h.now).unwrap();
    h.drain();
    let ping = h.only_sent();
    assert_eq!(ping.method(), "OPTIONS");
    assert_eq!(ping.dest, trunk);
    // Answer it.
    let via = ping.header("Via").unwrap();
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag=t\r\nCall-ID: {}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ping.header("From").unwrap(),
        ping.header("To").unwrap(),
        ping.header("Call-ID").unwrap()
    );
    h.recv_from("10.9.9.9:5060", Transport::Udp, reply.as_bytes())
        .unwrap();
    assert_eq!(
        h.take_events(),
        [Event::OptionsResult {
            dest: trunk,
            status: Some(200)
        }]
    );
    h.recv_from("10.9.9.9:5060", Transport::Udp, reply.as_bytes())
        .unwrap();
    assert!(
        h.take_events().is_empty(),
        "retransmitted response absorbed"
    );
    // Unanswered: Timer E retransmissions, then a timeout result at 64·T1.
    h.ep.send_options(trunk, Transport::Udp, h.now).unwrap();
    h.drain();
    h.take_sent();
    h.advance(Duration::from_secs(33));
    assert_eq!(h.take_sent().len(), 10);
    assert_eq!(
        h.take_events(),
        [Event::OptionsResult {
            dest: trunk,
            status: None
        }]
    );
}

#[test]
fn bye_from_our_side_runs_its_transaction() {
    let mut h = Harness::new();
    let mut phone = Phone::new("ourbye");
    // Give the dialog a route set.
    let (invite, _) = phone.invite(PHONE_SDP);
    let invite = invite.replace(
        "Contact:",
        "Record-Route: <sip:10.0.0.1;lr>\r\nRecord-Route: <sip:10.0.0.2;lr>\r\nContact:",
    );
    h.recv(&invite).unwrap();
    h.take_sent();
    let (call, _) = h.offered();
    h.ep.answer(call, 20000, h.now).unwrap();
    h.drain();
    let ok = h.only_sent();
    phone.learn_tag(&ok);
    h.recv(&phone.ack_2xx(1, None)).unwrap();
    h.take_events();

    h.ep.hangup(call, h.now).unwrap();
    h.drain();
    assert_eq!(h.call_ended(), EndReason::LocalHangup);
    let bye = h.only_sent();
    assert_eq!(bye.method(), "BYE");
    assert!(
        bye.text
            .starts_with("BYE sip:caller@10.0.0.7:5062 SIP/2.0\r\n"),
        "{}",
        bye.text
    );
    assert_eq!(bye.dest, PHONE.parse().unwrap());
    let our_tag = tag_of(&ok.header("To").unwrap()).unwrap();
    assert_eq!(tag_of(&bye.header("From").unwrap()), Some(our_tag));
    assert_eq!(tag_of(&bye.header("To").unwrap()).as_deref(), Some("ph1"));
    assert_eq!(bye.header("Call-ID").as_deref(), Some("ourbye"));
    let routes: Vec<&str> = bye
        .text
        .lines()
        .filter(|l| l.starts_with("Route:"))
        .collect();
    assert_eq!(
        routes,
        ["Route: <sip:10.0.0.1;lr>", "Route: <sip:10.0.0.2;lr>"]
    );
    // Timer E retransmits until the 200.
    h.advance(Duration::from_millis(1600));
    assert_eq!(
        h.take_sent().iter().filter(|s| s.method() == "BYE").count(),
        2
    );
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: ourbye\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        bye.header("Via").unwrap(),
        bye.header("From").unwrap(),
        bye.header("To").unwrap(),
        bye.header("CSeq").unwrap()
    );
    h.recv(&reply).unwrap();
    h.advance(Duration::from_secs(40));
    assert!(h.take_sent().is_empty());
    assert_eq!(h.ep.transactions_live(), 0);
    // A late request in the ended dialog gets 481.
    let (info, _) = phone.next("INFO", None);
    h.recv(&info).unwrap_err();
    assert_eq!(h.statuses(), [481]);
}

#[test]
fn hangup_before_ack_waits_for_it() {
    let mut h = Harness::new();
    let mut phone = Phone::new("early-hangup");
    h.recv(&phone.invite(PHONE_SDP).0).unwrap();
    h.take_sent();
    let (call, _) = h.offered();
    h.ep.answer(call, 20000, h.now).unwrap();
    h.drain();
    let ok = h.only_sent();
    phone.learn_tag(&ok);
    h.ep.hangup(call, h.now).unwrap();
    h.drain();
    assert_eq!(h.call_ended(), EndReason::LocalHangup);
    assert!(
        h.take_sent().is_empty(),
        "no BYE before the ACK (RFC 3261 §15)"
    );
    assert_eq!(h.ep.calls_active(), 0);
    h.recv(&phone.ack_2xx(1, None)).unwrap();
    assert_eq!(h.only_sent().method(), "BYE");
    assert!(
        h.take_events().is_empty(),
        "CallAnswered is not reported for an ended call"
    );
}

#[test]
fn hangup_and_reject_before_answer() {
    let mut h = Harness::new();
    let mut phone = Phone::new("rej");
    h.recv(&phone.invite(PHONE_SDP).0).unwrap();
    h.take_sent();
    let (call, _) = h.offered();
    assert_eq!(
        h.ep.reject(call, 200, h.now),
        Err(SipError::InvalidStatus(200))
    );
    h.ep.reject(call, 486, h.now).unwrap();
    h.drain();
    assert_eq!(h.statuses(), [486]);
    assert_eq!(h.call_ended(), EndReason::Rejected { status: 486 });

    let mut phone = Phone::new("hang");
    h.recv(&phone.invite(PHONE_SDP).0).unwrap();
    h.take_sent();
    let (call, _) = h.offered();
    h.ep.hangup(call, h.now).unwrap();
    h.drain();
    assert_eq!(h.statuses(), [480]);
    assert_eq!(h.call_ended(), EndReason::LocalHangup);
    assert_eq!(h.ep.hangup(call, h.now), Err(SipError::UnknownCall(call)));
}

#[test]
fn unanswered_calls_time_out_with_480() {
    let mut h = Harness::new();
    let mut phone = Phone::new("slow");
    h.recv(&phone.invite(PHONE_SDP).0).unwrap();
    h.take_sent();
    h.offered();
    h.advance(Duration::from_millis(ANSWER_TIMEOUT_MS - 1));
    assert!(h.take_sent().is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.statuses(), [480]);
    assert_eq!(h.call_ended(), EndReason::AnswerTimeout);
}

const ANSWER_TIMEOUT_MS: u64 = endpoint::ANSWER_TIMEOUT_MS_DEFAULT;

#[test]
fn silent_calls_are_hung_up_after_the_rtp_timeout() {
    let mut h = Harness::new();
    let mut phone = Phone::new("silent");
    let call = established(&mut h, &mut phone);
    h.advance(Duration::from_secs(10));
    h.ep.rtp_activity(call, h.now).unwrap();
    h.advance(Duration::from_millis(29_999));
    assert!(h.take_sent().is_empty());
    h.advance(Duration::from_millis(1));
    let bye = h.only_sent();
    assert_eq!(bye.method(), "BYE");
    assert_eq!(h.call_ended(), EndReason::RtpTimeout);
}

#[test]
fn a_caller_on_inactive_hold_is_not_timed_out() {
    let mut c = config();
    c.rtp_timeout_ms = 5_000;
    let mut h = Harness::with(c);
    let mut phone = Phone::new("holdsilent");
    let call = established(&mut h, &mut phone);
    let (hold, _) = phone.next(
        "INVITE",
        Some(("application/sdp", &hold_sdp("inactive", 2))),
    );
    h.recv(&hold).unwrap();
    h.take_sent();
    h.take_events();
    h.recv(&phone.ack_2xx(phone.cseq, None)).unwrap();
    h.advance(Duration::from_secs(60));
    assert!(h.take_events().is_empty());
    // Unhold restarts the clock from the unhold.
    let (unhold, _) = phone.next(
        "INVITE",
        Some(("application/sdp", &hold_sdp("sendrecv", 3))),
    );
    h.recv(&unhold).unwrap();
    h.take_sent();
    h.take_events();
    h.recv(&phone.ack_2xx(phone.cseq, None)).unwrap();
    h.advance(Duration::from_millis(4_999));
    assert!(h.take_events().is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(
        h.take_events(),
        [Event::CallEnded {
            call_id: call,
            reason: EndReason::RtpTimeout
        }]
    );
}

#[test]
fn long_calls_reach_the_duration_limit() {
    let mut c = config();
    c.call_duration_max_ms = 120_000;
    let mut h = Harness::with(c);
    let mut phone = Phone::new("long");
    let call = established(&mut h, &mut phone);
    for _ in 0..11 {
        h.advance(Duration::from_secs(10));
        h.ep.rtp_activity(call, h.now).unwrap();
    }
    assert!(h.take_events().is_empty());
    h.advance(Duration::from_secs(10));
    assert_eq!(h.call_ended(), EndReason::DurationLimit);
}

#[test]
fn info_dtmf_events_and_errors() {
    let mut h = Harness::new();
    let mut phone = Phone::new("info");
    let call = established(&mut h, &mut phone);
    let (info, _) = phone.next(
        "INFO",
        Some(("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")),
    );
    h.recv(&info).unwrap();
    assert_eq!(h.statuses(), [200]);
    assert_eq!(
        h.take_events(),
        [Event::InfoDtmf {
            call_id: call,
            digit: '5',
            duration_ms: Some(160)
        }]
    );
    let (info, _) = phone.next("INFO", Some(("application/dtmf", "#")));
    h.recv(&info).unwrap();
    assert_eq!(
        h.take_events(),
        [Event::InfoDtmf {
            call_id: call,
            digit: '#',
            duration_ms: None
        }]
    );
    h.take_sent();
    let (junk, _) = phone.next("INFO", Some(("application/dtmf-relay", "Signal=ZZ")));
    h.recv(&junk).unwrap_err();
    assert_eq!(h.statuses(), [400]);
    let (other, _) = phone.next("INFO", Some(("application/media_control+xml", "<x/>")));
    h.recv(&other).unwrap_err();
    let r = h.only_sent();
    assert_eq!(r.status(), Some(415));
    assert!(
        r.header("Accept")
            .unwrap()
            .contains("application/dtmf-relay")
    );
    let (empty, _) = phone.next("INFO", None);
    h.recv(&empty).unwrap();
    assert_eq!(h.statuses(), [200]);
    assert!(h.take_events().is_empty());
    // An old CSeq is refused (RFC 3261 §12.2.2).
    let old = phone.message("INFO", "z9hG4bKold", 2, "", Some(("application/dtmf", "1")));
    h.recv(&old).unwrap_err();
    assert_eq!(h.statuses(), [500]);
    assert_eq!(h.ep.calls_active(), 1);
}

#[test]
fn methods_we_do_not_serve() {
    let mut h = Harness::new();
    let mut phone = Phone::new("methods");
    for (method, status) in [
        ("REGISTER", 405),
        ("SUBSCRIBE", 405),
        ("FOOBAR", 501),
        ("BYE", 481),
        ("UPDATE", 481),
    ] {
        let branch = phone.branch();
        h.recv(&phone.message(method, &branch, 1, "", None))
            .unwrap_err();
        let r = h.only_sent();
        assert_eq!(r.status(), Some(status), "{method}");
        if status != 481 {
            assert_eq!(
                r.header("Allow").as_deref(),
                Some(message::ALLOW),
                "{method}"
            );
        }
    }
}

#[test]
fn update_with_and_without_sdp() {
    let mut h = Harness::new();
    let mut phone = Phone::new("update");
    established(&mut h, &mut phone);
    let (update, _) = phone.next("UPDATE", None);
    h.recv(&update).unwrap();
    assert_eq!(h.statuses(), [200]);
    let (update, _) = phone.next(
        "UPDATE",
        Some(("application/sdp", &hold_sdp("sendonly", 2))),
    );
    h.recv(&update).unwrap();
    let ok = h.only_sent();
    assert!(ok.body().contains("a=recvonly"));
    assert!(
        matches!(h.take_events().as_slice(), [Event::MediaChanged { media, .. }] if media.on_hold)
    );
    // No ACK for UPDATE: nothing is retransmitted.
    h.advance(Duration::from_secs(5));
    assert!(h.take_sent().is_empty());
}

#[test]
fn early_media_uses_183_with_the_answer_sdp() {
    let mut h = Harness::new();
    let mut phone = Phone::new("early");
    h.recv(&phone.invite(PHONE_SDP).0).unwrap();
    h.take_sent();
    let (call, _) = h.offered();
    h.ep.progress(call, Progress::EarlyMedia { rtp_port: 30000 }, h.now)
        .unwrap();
    h.drain();
    let progress = h.only_sent();
    assert_eq!(progress.status(), Some(183));
    assert!(progress.body().contains("m=audio 30000 "));
    assert_eq!(
        h.ep.answer(call, 30002, h.now),
        Err(SipError::PortMismatch {
            early: 30000,
            answer: 30002
        })
    );
    h.ep.answer(call, 30000, h.now).unwrap();
    h.drain();
    let ok = h.only_sent();
    assert_eq!(
        ok.body(),
        progress.body(),
        "the 200 repeats the early answer"
    );
}

#[test]
fn tcp_calls_frame_by_content_length_and_do_not_retransmit_responses() {
    let mut h = Harness::new();
    let mut phone = Phone::new("tcp");
    phone.transport = Transport::Tcp;
    let (invite, _) = phone.invite(PHONE_SDP);
    // Two segments, split in the middle of a header.
    let (a, b) = invite.as_bytes().split_at(57);
    h.recv_from(PHONE, Transport::Tcp, a).unwrap();
    assert!(h.take_sent().is_empty());
    h.recv_from(PHONE, Transport::Tcp, b).unwrap();
    let trying = h.only_sent();
    assert_eq!(
        (trying.status(), trying.transport, trying.dest),
        (Some(100), Transport::Tcp, PHONE.parse().unwrap())
    );
    let (call, offered) = h.offered();
    assert!(matches!(
        offered,
        Event::CallOffered {
            transport: Transport::Tcp,
            ..
        }
    ));
    h.ep.reject(call, 486, h.now).unwrap();
    h.drain();
    assert_eq!(h.statuses(), [486]);
    h.take_events();
    h.advance(Duration::from_secs(10));
    assert!(h.take_sent().is_empty(), "no Timer G on TCP");
    // Keep-alive ping gets a pong; garbage closes the connection.
    h.recv_from(PHONE, Transport::Tcp, b"\r\n\r\n").unwrap();
    assert_eq!(h.only_sent().text, "\r\n");
    h.recv_from(
        PHONE,
        Transport::Tcp,
        b"INVITE sip:x SIP/2.0\r\nCall-ID: x\r\n\r\n",
    )
    .unwrap_err();
    assert_eq!(h.disconnects, [PHONE.parse::<SocketAddr>().unwrap()]);
}

/// Substitutes SIPp-style `[len]` and turns LF into CRLF.
fn fixture(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\n', "\r\n");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    format!(
        "{}\r\n\r\n{body}",
        head.replace("[len]", &body.len().to_string())
    )
}

#[test]
fn real_peer_messages_are_understood() {
    let mut h = Harness::new();
    // SIPp's uac scenario as it goes on the wire.
    let sipp = fixture(include_str!("fixtures/sipp_uac_invite.sip"));
    h.recv_from("127.0.0.1:5061", Transport::Udp, sipp.as_bytes())
        .unwrap();
    let trying = h.only_sent();
    assert_eq!(trying.status(), Some(100));
    assert_eq!(
        trying.dest,
        "127.0.0.1:5061".parse().unwrap(),
        "no rport: the Via port"
    );
    let (_, offered) = h.offered();
    let Event::CallOffered {
        caller,
        called_user,
        media,
        ..
    } = offered
    else {
        unreachable!()
    };
    assert_eq!(
        caller,
        CallerIdentity::Unknown,
        "SIPp's From user is 'sipp'"
    );
    assert_eq!(called_user, "pay");
    assert_eq!(
        (media.codec, media.telephone_event_payload_type),
        (Codec::Pcmu, None)
    );
    assert_eq!(media.remote_rtp, Some("127.0.0.1:6000".parse().unwrap()));

    // baresip over TCP: empty Supported header, opus first, national From number.
    let baresip = fixture(include_str!("fixtures/baresip_invite_tcp.sip"));
    h.recv_from("10.0.2.15:38397", Transport::Tcp, baresip.as_bytes())
        .unwrap();
    assert_eq!(h.statuses(), [100]);
    let (_, offered) = h.offered();
    let Event::CallOffered {
        caller,
        called_user,
        media,
        ..
    } = offered
    else {
        unreachable!()
    };
    assert_eq!(
        caller,
        CallerIdentity::Number {
            e164: "+49301234567".into(),
            privacy_requested: false
        }
    );
    assert_eq!(called_user, "+4930555000");
    assert_eq!(
        (media.codec, media.telephone_event_payload_type),
        (Codec::Pcmu, Some(101))
    );

    // A carrier SBC: trusted PAI, Privacy: id, anonymous From, PCMA first.
    let trunk = fixture(include_str!("fixtures/trunk_invite_pai.sip"));
    h.recv_from("198.51.100.20:5060", Transport::Udp, trunk.as_bytes())
        .unwrap();
    assert_eq!(h.statuses(), [100]);
    let (call, offered) = h.offered();
    let Event::CallOffered { caller, media, .. } = offered else {
        unreachable!()
    };
    assert_eq!(
        caller,
        CallerIdentity::Number {
            e164: "+4917612345678".into(),
            privacy_requested: true
        }
    );
    assert_eq!(media.codec, Codec::Pcma);
    // BYE from us goes through the Record-Route to the SBC's flow.
    h.ep.answer(call, 20000, h.now).unwrap();
    h.drain();
    let ok = h.only_sent();
    let to = ok.header("To").unwrap();
    let ack = format!(
        "ACK sip:198.51.100.20:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bKsbcack\r\n\
         From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=as12\r\nTo: {to}\r\nCall-ID: 7e1c0a@198.51.100.20\r\n\
         CSeq: 102 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    h.recv_from("198.51.100.20:5060", Transport::Udp, ack.as_bytes())
        .unwrap();
    assert_eq!(h.take_events(), [Event::CallAnswered { call_id: call }]);
    h.ep.hangup(call, h.now).unwrap();
    h.drain();
    let bye = h.only_sent();
    assert!(
        bye.text
            .starts_with("BYE sip:198.51.100.20:5060 SIP/2.0\r\n"),
        "{}",
        bye.text
    );
    assert_eq!(
        bye.header("Route").as_deref(),
        Some("<sip:198.51.100.20;lr;ftag=as12>")
    );
    assert_eq!(bye.dest, "198.51.100.20:5060".parse().unwrap());
}

#[test]
fn malformed_input_never_panics_and_gets_the_right_answer() {
    let mut h = Harness::new();
    let head = "Via: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKbad;rport\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:pay@gw>\r\nCall-ID: bad\r\n";
    let huge_header = format!(
        "OPTIONS sip:pay@gw SIP/2.0\r\n{head}CSeq: 1 OPTIONS\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let many_headers = format!(
        "OPTIONS sip:pay@gw SIP/2.0\r\n{head}CSeq: 1 OPTIONS\r\n{}\r\n",
        "X: y\r\n".repeat(200)
    );
    let cases: Vec<(Vec<u8>, Option<u16>)> = vec![
        (b"".to_vec(), None),
        (b"\r\n\r\n".to_vec(), None),
        (vec![0xff; 300], None),
        (b"garbage without structure".to_vec(), None),
        (b"INVITE sip:pay@gw SIP/2.0\r\n\r\n".to_vec(), None),
        (format!("INVITE sip:pay@gw SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nContent-Length: 500\r\n\r\nv=0").into_bytes(), Some(400)),
        (format!("FROB sip:pay@gw SIP/2.0\r\n{head}CSeq: 1 FROB\r\n\r\n").into_bytes(), Some(501)),
        (format!("INVITE sip:pay@gw SIP/2.0\r\n{head}CSeq: one INVITE\r\n\r\n").into_bytes(), Some(400)),
        (format!("INVITE sip:pay@gw SIP/2.0\r\n{head}\r\n").into_bytes(), None),
        (format!("INVITE sip:pay@gw SIP/7.0\r\n{head}CSeq: 1 INVITE\r\n\r\n").into_bytes(), Some(505)),
        (format!("INVITE mailto:pay@gw SIP/2.0\r\n{head}CSeq: 1 INVITE\r\n\r\n").into_bytes(), Some(416)),
        (format!("INVITE sip:pay@gw SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nContact: <sip:a@10.0.0.7>\r\nContent-Type: application/sdp\r\nContent-Length: 9\r\n\r\nnot sdp!!").into_bytes(), Some(400)),
        (format!("INVITE sip:pay@gw SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0").into_bytes(), Some(400)),
        (huge_header.into_bytes(), None),
        (many_headers.into_bytes(), None),
        (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnone\r\nCSeq: 1 BYE\r\nCall-ID: x\r\n\r\n".to_vec(), None),
        (b"SIP/2.0 999999 Huh\r\n\r\n".to_vec(), None),
        (format!("ACK sip:pay@gw SIP/2.0\r\n{head}CSeq: x ACK\r\n\r\n").into_bytes(), None),
        (vec![b'A'; 70 * 1024], None),
    ];
    for (bytes, expected) in cases {
        let _ = h.recv(&String::from_utf8_lossy(&bytes));
        let _ = h.recv_from(PHONE, Transport::Udp, &bytes);
        let statuses: Vec<Option<u16>> = h.take_sent().iter().map(Sent::status).collect();
        let want: Vec<Option<u16>> = match expected {
            Some(s) => vec![Some(s), Some(s)],
            None => vec![],
        };
        // The lossy copy may differ from the raw bytes only for non-UTF-8 input, which is
        // dropped either way.
        assert_eq!(
            statuses,
            want,
            "{:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        );
    }
    assert!(h.take_events().is_empty());
    assert_eq!(h.ep.calls_active(), 0);
}
