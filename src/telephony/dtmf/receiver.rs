//! One call's DTMF: whichever carrier is in use, digits out, each once.
//!
//! # The loop
//!
//! The call driver creates a [`DigitReceiver`] when the call is answered,
//! with the configured [`DtmfMode`] and the telephone-event payload type of
//! the SDP offer (if any). It then feeds what arrives:
//! [`DigitReceiver::handle_rtp_event`] for RTP packets of the
//! telephone-event type, [`DigitReceiver::handle_g711`] (or
//! [`DigitReceiver::handle_audio`]) for audio packets while
//! [`DigitReceiver::wants_audio`] says so, and
//! [`DigitReceiver::handle_info`] for SIP INFO bodies; it calls
//! [`DigitReceiver::handle_timeout`] at [`DigitReceiver::poll_timeout`],
//! and drains [`DigitReceiver::poll_digit`], which the IVR reads for
//! barge-in and type-ahead.
//!
//! # Which carrier
//!
//! - `rfc4733`, `inband`, `info`: that carrier only.
//! - `auto`: RFC 4733 when the offer had telephone-event, in-band
//!   detection when it did not (as Asterisk's and FreeSWITCH's "auto" do);
//!   SIP INFO is accepted too, because some handsets send only INFO. The
//!   first carrier to deliver a digit is then the only one listened to for
//!   the rest of the call, so a handset that sends each key both ways
//!   (RFC 4733 and INFO) does not have it counted twice.
//!
//! In-band digits are reported when the tone has lasted the minimum time,
//! RFC 4733 digits on the first packet of an event, INFO digits on
//! arrival: as early as each carrier allows, which is what barge-in needs.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Instant;

use super::super::g711::Law;
use super::inband::{InbandDetector, InbandEvent};
use super::info::{InfoError, parse_info};
use super::rfc4733::{EventPacket, Handled, Rfc4733Error, Rfc4733Event, Rfc4733Receiver};
use super::{Digit, DtmfError};

/// Digits held for the IVR; beyond this the newest are refused (and
/// counted), so that the prefix the IVR will read stays intact.
pub const DIGITS_MAX: usize = 64;

/// How DTMF is taken from a call (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DtmfMode {
    /// RFC 4733 if offered, else in-band; INFO as well.
    #[default]
    Auto,
    /// RFC 4733 telephone-events only.
    Rfc4733,
    /// Tones in the audio only.
    Inband,
    /// SIP INFO only.
    Info,
}

impl DtmfMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DtmfMode::Auto => "auto",
            DtmfMode::Rfc4733 => "rfc4733",
            DtmfMode::Inband => "inband",
            DtmfMode::Info => "info",
        }
    }
}

impl FromStr for DtmfMode {
    type Err = DtmfError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DtmfMode::Auto),
            "rfc4733" | "rfc2833" => Ok(DtmfMode::Rfc4733),
            "inband" => Ok(DtmfMode::Inband),
            "info" => Ok(DtmfMode::Info),
            _ => Err(DtmfError::UnknownMode),
        }
    }
}

/// Where a digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtmfSource {
    /// RTP telephone-event.
    Rfc4733,
    /// Tones in the audio.
    Inband,
    /// SIP INFO.
    Info,
}

/// A digit for the IVR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedDigit {
    /// The key.
    pub digit: Digit,
    /// Its carrier.
    pub source: DtmfSource,
    /// When it was recognised (the `now` of the input that completed it).
    pub at: Instant,
}

/// Per-call DTMF collection across the three carriers.
#[derive(Debug, Clone)]
pub struct DigitReceiver {
    mode: DtmfMode,
    rfc4733: Option<Rfc4733Receiver>,
    inband: Option<InbandDetector>,
    info: bool,
    latched: Option<DtmfSource>,
    digits: VecDeque<ReceivedDigit>,
    digits_dropped: u64,
    digits_ignored: u64,
}

impl DigitReceiver {
    /// A receiver for a call whose offer carried telephone-event at
    /// `telephone_event_pt` (`None`: not offered).
    pub fn new(mode: DtmfMode, telephone_event_pt: Option<u8>) -> DigitReceiver {
        let mut receiver = DigitReceiver {
            mode,
            rfc4733: None,
            inband: None,
            info: false,
            latched: None,
            digits: VecDeque::new(),
            digits_dropped: 0,
            digits_ignored: 0,
        };
        receiver.renegotiate(telephone_event_pt);
        receiver
    }

    /// Follows a re-INVITE that adds, moves or removes telephone-event.
    pub fn renegotiate(&mut self, telephone_event_pt: Option<u8>) {
        let rfc4733 = match self.mode {
            DtmfMode::Auto | DtmfMode::Rfc4733 => telephone_event_pt,
            DtmfMode::Inband | DtmfMode::Info => None,
        };
        let inband = match self.mode {
            DtmfMode::Auto => telephone_event_pt.is_none(),
            DtmfMode::Inband => true,
            DtmfMode::Rfc4733 | DtmfMode::Info => false,
        };
        self.info = matches!(self.mode, DtmfMode::Auto | DtmfMode::Info);
        let changed = rfc4733 != self.rfc4733.as_ref().map(Rfc4733Receiver::payload_type)
            || inband != self.inband.is_some();
        match (rfc4733, self.rfc4733.as_mut()) {
            (Some(pt), Some(receiver)) => receiver.set_payload_type(pt),
            (Some(pt), None) => self.rfc4733 = Some(Rfc4733Receiver::new(pt)),
            (None, _) => self.rfc4733 = None,
        }
        if inband && self.inband.is_none() {
            self.inband = Some(InbandDetector::new());
        } else if !inband {
            self.inband = None;
        }
        if changed {
            // The carriers changed under the call: let the first to speak
            // choose again.
            self.latched = None;
        }
    }

    /// The configured mode.
    pub fn mode(&self) -> DtmfMode {
        self.mode
    }

    /// Whether audio should be fed to [`DigitReceiver::handle_audio`] (the
    /// caller can skip decoding it otherwise).
    pub fn wants_audio(&self) -> bool {
        self.inband.is_some() && self.accepts(DtmfSource::Inband)
    }

    /// The carrier digits are taken from, once one has delivered.
    pub fn active_source(&self) -> Option<DtmfSource> {
        self.latched
    }

    /// Digits refused because [`DIGITS_MAX`] were waiting.
    pub fn digits_dropped(&self) -> u64 {
        self.digits_dropped
    }

    /// Digits from a carrier that was not listened to (the other half of a
    /// handset's double reporting, or a carrier the mode excludes).
    pub fn digits_ignored(&self) -> u64 {
        self.digits_ignored
    }

    /// The next digit, oldest first.
    pub fn poll_digit(&mut self) -> Option<ReceivedDigit> {
        self.digits.pop_front()
    }

    /// When [`DigitReceiver::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.rfc4733
            .as_ref()
            .and_then(Rfc4733Receiver::poll_timeout)
    }

    /// Advances time-driven state (the RFC 4733 end timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(receiver) = self.rfc4733.as_mut() {
            receiver.handle_timeout(now);
        }
        self.drain_rfc4733();
    }

    /// Takes an RTP packet that may be a telephone-event. Packets of other
    /// payload types, or any when RFC 4733 is not in use, are ignored.
    pub fn handle_rtp_event(
        &mut self,
        packet: &EventPacket<'_>,
        now: Instant,
    ) -> Result<Handled, Rfc4733Error> {
        let Some(receiver) = self.rfc4733.as_mut() else {
            return Ok(Handled::OtherPayloadType);
        };
        let handled = receiver.handle_packet(packet, now);
        self.drain_rfc4733();
        handled
    }

    /// Takes decoded audio (8 kHz 16-bit linear) when in-band detection is
    /// on; ignored otherwise.
    pub fn handle_audio(&mut self, samples: &[i16], now: Instant) {
        let Some(detector) = self.inband.as_mut() else {
            return;
        };
        detector.push_samples(samples);
        while let Some(event) = self.inband.as_mut().and_then(InbandDetector::poll_event) {
            if let InbandEvent::Started { digit, .. } = event {
                self.offer(digit, DtmfSource::Inband, now);
            }
        }
    }

    /// Takes a G.711 audio payload when in-band detection is on.
    pub fn handle_g711(&mut self, law: Law, payload: &[u8], now: Instant) {
        if self.inband.is_none() {
            return;
        }
        let mut buffer = [0_i16; 160];
        for chunk in payload.chunks(buffer.len()) {
            let n = law.decode_to_slice(chunk, &mut buffer);
            self.handle_audio(&buffer[..n], now);
        }
    }

    /// Takes a SIP INFO body. `Ok` means the body was a valid DTMF body
    /// (answer 200), whether or not INFO is the carrier listened to;
    /// errors say why not (answer 415 or 400).
    pub fn handle_info(
        &mut self,
        content_type: &str,
        body: &[u8],
        now: Instant,
    ) -> Result<(), InfoError> {
        let info = parse_info(content_type, body)?;
        if self.info {
            self.offer(info.digit, DtmfSource::Info, now);
        } else {
            self.digits_ignored += 1;
        }
        Ok(())
    }

    fn drain_rfc4733(&mut self) {
        while let Some(event) = self.rfc4733.as_mut().and_then(Rfc4733Receiver::poll_event) {
            if let Rfc4733Event::DigitStarted { digit, at, .. } = event {
                self.offer(digit, DtmfSource::Rfc4733, at);
            }
        }
    }

    fn accepts(&self, source: DtmfSource) -> bool {
        self.latched.is_none_or(|latched| latched == source)
    }

    fn offer(&mut self, digit: Digit, source: DtmfSource, at: Instant) {
        if !self.accepts(source) {
            self.digits_ignored += 1;
            return;
        }
        self.latched = Some(source);
        if self.digits.len() >= DIGITS_MAX {
            self.digits_dropped += 1;
            return;
        }
        self.digits.push_back(ReceivedDigit { digit, source, at });
    }
}

#[cfg(test)]
mod tests {
    use super::super::generate::{RenderOptions, render_digits};
    use super::super::rfc4733::Rfc4733Sender;
    use super::*;

    const PT: u8 = 101;

    fn digits(receiver: &mut DigitReceiver) -> String {
        std::iter::from_fn(|| receiver.poll_digit())
            .map(|d| d.digit.to_char())
            .collect()
    }

    /// Sends `keys` as RFC 4733 packets, each packet twice.
    fn send_events(receiver: &mut DigitReceiver, keys: &str, now: Instant) {
        send_events_from(receiver, keys, 0, now);
    }

    /// Sends `keys` as RFC 4733 packets from RTP timestamp `first_ts`.
    fn send_events_from(receiver: &mut DigitReceiver, keys: &str, first_ts: u32, now: Instant) {
        let sender = Rfc4733Sender::default();
        let mut ts = first_ts;
        for c in keys.chars() {
            let digit = Digit::from_char(c).unwrap_or(Digit::D0);
            for p in sender.plan(digit, ts, 800).unwrap_or_default() {
                let payload = p.payload();
                let packet = EventPacket {
                    payload_type: PT,
                    ssrc: 1,
                    sequence_number: 0,
                    timestamp: p.timestamp,
                    marker: p.marker,
                    payload: &payload,
                };
                for _ in 0..2 {
                    assert!(receiver.handle_rtp_event(&packet, now).is_ok());
                }
            }
            ts += 2000;
        }
    }

    /// Streams `keys` as in-band tones in 20 ms μ-law packets.
    fn send_tones(receiver: &mut DigitReceiver, keys: &str, now: Instant) {
        let audio = render_digits(keys, &RenderOptions::default()).unwrap_or_default();
        let mut codes = Vec::new();
        Law::Ulaw.encode_into(&audio, &mut codes);
        for packet in codes.chunks(160) {
            receiver.handle_g711(Law::Ulaw, packet, now);
        }
    }

    #[test]
    fn modes_parse_from_configuration() {
        for mode in [
            DtmfMode::Auto,
            DtmfMode::Rfc4733,
            DtmfMode::Inband,
            DtmfMode::Info,
        ] {
            assert_eq!(mode.as_str().parse::<DtmfMode>().ok(), Some(mode));
        }
        assert_eq!(
            " RFC2833 ".parse::<DtmfMode>().ok(),
            Some(DtmfMode::Rfc4733)
        );
        assert!(matches!(
            "tones".parse::<DtmfMode>(),
            Err(DtmfError::UnknownMode)
        ));
    }

    #[test]
    fn auto_with_telephone_event_takes_rfc4733_and_not_audio() {
        let now = Instant::now();
        let mut receiver = DigitReceiver::new(DtmfMode::Auto, Some(PT));
        assert!(!receiver.wants_audio());
        send_tones(&mut receiver, "99", now);
        send_events(&mut receiver, "1234#", now);
        assert_eq!(digits(&mut receiver), "1234#");
        assert_eq!(receiver.active_source(), Some(DtmfSource::Rfc4733));
    }

    #[test]
    fn auto_without_telephone_event_detects_tones() {
        let now = Instant::now();
        let mut receiver = DigitReceiver::new(DtmfMode::Auto, None);
        assert!(receiver.wants_audio());
        send_events(&mut receiver, "77", now);
        send_tones(&mut receiver, "0123456789*#", now);
        let got: Vec<_> = std::iter::from_fn(|| receiver.poll_digit()).collect();
        assert_eq!(
            got.iter().map(|d| d.digit.to_char()).collect::<String>(),
            "0123456789*#"
        );
        assert!(got.iter().all(|d| d.source == DtmfSource::Inband));
    }

    #[test]
    fn a_handset_reporting_each_key_twice_gives_each_once() {
        let now = Instant::now();
        for info_first in [false, true] {
            let mut receiver = DigitReceiver::new(DtmfMode::Auto, Some(PT));
            for (i, c) in "4815".chars().enumerate() {
                let body = format!("Signal={c}\r\nDuration=100\r\n");
                let ts = 10_000 * i as u32;
                if info_first {
                    assert!(
                        receiver
                            .handle_info("application/dtmf-relay", body.as_bytes(), now)
                            .is_ok()
                    );
                    send_events_from(&mut receiver, &c.to_string(), ts, now);
                } else {
                    send_events_from(&mut receiver, &c.to_string(), ts, now);
                    assert!(
                        receiver
                            .handle_info("application/dtmf-relay", body.as_bytes(), now)
                            .is_ok()
                    );
                }
            }
            let expected = if info_first {
                DtmfSource::Info
            } else {
                DtmfSource::Rfc4733
            };
            assert_eq!(receiver.active_source(), Some(expected));
            let got: Vec<_> = std::iter::from_fn(|| receiver.poll_digit()).collect();
            assert_eq!(
                got.iter().map(|d| d.digit.to_char()).collect::<String>(),
                "4815"
            );
            assert!(got.iter().all(|d| d.source == expected));
            assert_eq!(receiver.digits_ignored(), 4);
        }
    }

    #[test]
    fn fixed_modes_take_only_their_carrier() {
        let now = Instant::now();
        let mut info_only = DigitReceiver::new(DtmfMode::Info, Some(PT));
        send_events(&mut info_only, "12", now);
        send_tones(&mut info_only, "3", now);
        assert!(info_only.handle_info("application/dtmf", b"9", now).is_ok());
        assert_eq!(digits(&mut info_only), "9");

        let mut inband_only = DigitReceiver::new(DtmfMode::Inband, Some(PT));
        assert!(inband_only.wants_audio());
        send_events(&mut inband_only, "12", now);
        assert!(
            inband_only
                .handle_info("application/dtmf", b"9", now)
                .is_ok()
        );
        send_tones(&mut inband_only, "3", now);
        assert_eq!(digits(&mut inband_only), "3");

        let mut rfc_only = DigitReceiver::new(DtmfMode::Rfc4733, Some(PT));
        send_tones(&mut rfc_only, "3", now);
        assert!(rfc_only.handle_info("application/dtmf", b"9", now).is_ok());
        send_events(&mut rfc_only, "12", now);
        assert_eq!(digits(&mut rfc_only), "12");
        // A junk INFO body is an error for the SIP layer to answer.
        assert!(
            rfc_only
                .handle_info("application/dtmf", b"junk", now)
                .is_err()
        );
    }

    #[test]
    fn renegotiation_switches_carriers() {
        let now = Instant::now();
        let mut receiver = DigitReceiver::new(DtmfMode::Auto, Some(PT));
        send_events(&mut receiver, "1", now);
        receiver.renegotiate(None);
        assert!(receiver.wants_audio());
        send_tones(&mut receiver, "2", now);
        receiver.renegotiate(Some(96));
        assert!(!receiver.wants_audio());
        assert_eq!(digits(&mut receiver), "12");
    }

    #[test]
    fn the_queue_is_bounded_and_keeps_the_oldest() {
        let now = Instant::now();
        let mut receiver = DigitReceiver::new(DtmfMode::Info, None);
        for i in 0..DIGITS_MAX + 5 {
            let body = [b'0' + (i % 10) as u8];
            assert!(receiver.handle_info("application/dtmf", &body, now).is_ok());
        }
        assert_eq!(receiver.digits_dropped(), 5);
        let got = digits(&mut receiver);
        assert_eq!(got.len(), DIGITS_MAX);
        assert!(got.starts_with("0123456789"));
    }
}
