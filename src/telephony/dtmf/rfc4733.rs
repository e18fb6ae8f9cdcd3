//! RFC 4733 telephone-events: the 4-byte payload, a receiver that turns a
//! stream of event packets into exactly one digit per key press, and a
//! sender that plans the packets for a digit.
//!
//! # Payload
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |     event     |E|R| volume    |          duration             |
//! ```
//!
//! Event codes 0–15 are the DTMF keys (`0`–`9`, `*`, `#`, `A`–`D`); others
//! (flash, modem tones) are parsed but yield no digit. The duration counts
//! RTP timestamp units (8 kHz for `telephone-event/8000`) since the event
//! began; every packet of one event carries the event's start as its RTP
//! timestamp.
//!
//! # Receiver loop
//!
//! The caller has already parsed the RTP header; it hands each packet's
//! header fields and payload to [`Rfc4733Receiver::handle_packet`] together
//! with the current `Instant`, then drains [`Rfc4733Receiver::poll_event`].
//! [`Rfc4733Receiver::poll_timeout`] tells when to call
//! [`Rfc4733Receiver::handle_timeout`], which ends an event whose end
//! packets were all lost. The payload type is whatever the SDP negotiated:
//! the receiver is told which one at creation, and packets of any other
//! type are ignored, not errors.
//!
//! An event is identified by its RTP timestamp. The digit is reported on
//! the first packet seen of a new event, whichever kind it is (a lost start
//! packet does not lose the digit); repeated updates (a long press), end
//! packets sent three times, retransmissions and duplicates with the same
//! sequence number all fall on a known timestamp and are absorbed. The last
//! [`SEEN_EVENTS_MAX`] event timestamps are remembered, and a packet older
//! than all of them, or more than [`STALE_TICKS`] behind the newest, is
//! dropped as stale, so no amount of replay can report an event twice.
//! A new event that arrives late (after a newer one) is still reported, in
//! arrival order. An event longer than the 16-bit duration field is sent
//! as segments with new timestamps (RFC 4733 §2.5.1.3); a segment that
//! continues the current event is recognised and not reported again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Digit;

/// Bytes in one event block.
pub const EVENT_LEN: usize = 4;
/// Longest payload accepted. Only the first block is read (as common
/// receivers do); anything longer than this is refused.
pub const PAYLOAD_LEN_MAX: usize = 64;
/// Event timestamps remembered for deduplication.
pub const SEEN_EVENTS_MAX: usize = 32;
/// A packet whose event started more than this many timestamp units
/// (5 s at 8 kHz) before the newest event is stale.
pub const STALE_TICKS: u32 = 40_000;
/// Events reported but not yet polled, beyond which the oldest are dropped.
pub const EVENTS_MAX: usize = 64;
/// An event without packets for this long is taken as ended.
pub const END_TIMEOUT_DEFAULT: Duration = Duration::from_millis(1_000);
/// How far a continuation segment may start from where the previous one
/// reached its maximum duration (packet loss, sender rounding).
const SEGMENT_SLACK_TICKS: u32 = 1_600;
/// Longest event the sender plans: eight full segments, 65 s at 8 kHz.
pub const SEND_DURATION_MAX_TICKS: u32 = 8 * 0xFFFF;

/// Refused payloads and sender requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rfc4733Error {
    /// Fewer than four bytes.
    #[error("telephone-event payload of {len} bytes is shorter than {EVENT_LEN}")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// More than [`PAYLOAD_LEN_MAX`] bytes.
    #[error("telephone-event payload of {len} bytes is longer than {PAYLOAD_LEN_MAX}")]
    TooLong {
        /// Bytes received.
        len: usize,
    },
    /// The sender was asked for a zero or over-long event.
    #[error("event duration of {ticks} timestamp units is outside 1..={SEND_DURATION_MAX_TICKS}")]
    BadDuration {
        /// Requested duration.
        ticks: u32,
    },
    /// The sender was asked for a zero packet interval.
    #[error("packet interval must be at least one timestamp unit")]
    BadInterval,
}

/// One parsed event block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0–15 for DTMF keys).
    pub code: u8,
    /// The E bit: this packet reports the end of the event.
    pub end: bool,
    /// Power level in −dBm0, 0–63.
    pub volume: u8,
    /// Timestamp units since the event (or segment) began.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses a telephone-event payload (its first block).
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, Rfc4733Error> {
        if payload.len() > PAYLOAD_LEN_MAX {
            return Err(Rfc4733Error::TooLong { len: payload.len() });
        }
        let [code, flags, d_hi, d_lo] = match payload.get(..EVENT_LEN) {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => return Err(Rfc4733Error::TooShort { len: payload.len() }),
        };
        Ok(TelephoneEvent {
            code,
            end: flags & 0x80 != 0,
            // The R bit (0x40) is reserved and ignored on receipt.
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d_hi, d_lo]),
        })
    }

    /// The four payload bytes (R bit clear, volume clipped to 63).
    pub fn to_bytes(&self) -> [u8; EVENT_LEN] {
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3F);
        let [d_hi, d_lo] = self.duration.to_be_bytes();
        [self.code, flags, d_hi, d_lo]
    }

    /// The key, if this is a DTMF event.
    pub fn digit(&self) -> Option<Digit> {
        Digit::from_event_code(self.code)
    }
}

/// The fields of one received RTP packet that the receiver needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket<'a> {
    /// RTP payload type.
    pub payload_type: u8,
    /// RTP synchronisation source.
    pub ssrc: u32,
    /// RTP sequence number (informational: deduplication is by timestamp).
    pub sequence_number: u16,
    /// RTP timestamp: the start of the event (or of its segment).
    pub timestamp: u32,
    /// RTP marker bit (set on an event's first packet; informational).
    pub marker: bool,
    /// The RTP payload.
    pub payload: &'a [u8],
}

/// What the receiver made of one packet (for counters and tests; digits
/// come out of [`Rfc4733Receiver::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Not the telephone-event payload type.
    OtherPayloadType,
    /// The first packet of a new key press: a digit was reported.
    NewDigit(Digit),
    /// The first packet of a non-DTMF event (flash…): nothing reported.
    NewOtherEvent,
    /// A packet of the current event that extended or ended it.
    Update,
    /// A copy of what was already seen.
    Duplicate,
    /// A continuation segment of a long event.
    Continuation,
    /// Too old to tell from a replay.
    Stale,
}

/// What the receiver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rfc4733Event {
    /// A key was pressed (reported once per press).
    DigitStarted {
        /// The key.
        digit: Digit,
        /// RTP timestamp of the event's start.
        timestamp: u32,
        /// When its first packet arrived.
        at: Instant,
    },
    /// A key press ended (an end packet, a newer event, or the timeout).
    DigitEnded {
        /// The key.
        digit: Digit,
        /// RTP timestamp of the event's start.
        timestamp: u32,
        /// Its length in timestamp units, as far as packets told.
        duration_ticks: u32,
        /// When the end was noticed.
        at: Instant,
    },
}

/// The event being received.
#[derive(Debug, Clone, Copy)]
struct Current {
    /// Timestamp of the current segment.
    timestamp: u32,
    /// Timestamp of the first segment (what the events carry).
    first_timestamp: u32,
    code: u8,
    /// Duration of earlier segments plus the longest seen in this one.
    duration_before_segment: u32,
    segment_duration: u16,
    ended: bool,
    last_packet_at: Instant,
}

impl Current {
    fn duration(&self) -> u32 {
        self.duration_before_segment
            .saturating_add(u32::from(self.segment_duration))
    }
}

/// Turns telephone-event packets into one digit per key press.
#[derive(Debug, Clone)]
pub struct Rfc4733Receiver {
    payload_type: u8,
    end_timeout: Duration,
    ssrc: Option<u32>,
    current: Option<Current>,
    /// Newest event timestamp seen, the reference for staleness.
    newest: Option<u32>,
    /// Timestamps of recent events (and segments), any order.
    seen: VecDeque<u32>,
    events: VecDeque<Rfc4733Event>,
    events_dropped: u64,
}

/// How far `earlier` is behind `later` in RTP timestamp arithmetic
/// (negative when it is ahead).
fn behind(later: u32, earlier: u32) -> i64 {
    i64::from(later.wrapping_sub(earlier) as i32)
}

impl Rfc4733Receiver {
    /// A receiver for the telephone-event payload type the SDP negotiated.
    pub fn new(payload_type: u8) -> Rfc4733Receiver {
        Rfc4733Receiver {
            payload_type,
            end_timeout: END_TIMEOUT_DEFAULT,
            ssrc: None,
            current: None,
            newest: None,
            seen: VecDeque::with_capacity(SEEN_EVENTS_MAX),
            events: VecDeque::new(),
            events_dropped: 0,
        }
    }

    /// Changes how long an event may go without packets before it is
    /// taken as ended.
    pub fn with_end_timeout(mut self, end_timeout: Duration) -> Rfc4733Receiver {
        self.end_timeout = end_timeout;
        self
    }

    /// The telephone-event payload type in use.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Follows a renegotiation (re-INVITE) to another payload type.
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = payload_type;
    }

    /// Events lost because more than [`EVENTS_MAX`] were queued unpolled.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Rfc4733Event> {
        self.events.pop_front()
    }

    /// When [`Rfc4733Receiver::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current
            .filter(|c| !c.ended)
            .map(|c| c.last_packet_at + self.end_timeout)
    }

    /// Ends an event whose packets stopped without an end packet.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            self.end_current(now);
        }
    }

    /// Takes one received packet. Errors are malformed payloads (drop the
    /// packet and go on); everything else is an [`Handled`] outcome.
    pub fn handle_packet(
        &mut self,
        packet: &EventPacket<'_>,
        now: Instant,
    ) -> Result<Handled, Rfc4733Error> {
        if packet.payload_type != self.payload_type {
            return Ok(Handled::OtherPayloadType);
        }
        let event = TelephoneEvent::parse(packet.payload)?;
        if self.ssrc != Some(packet.ssrc) {
            // A new stream (the sender restarted or was replaced): its
            // timestamps have nothing to do with the old one's.
            if self.ssrc.is_some() {
                self.end_current(now);
            }
            self.ssrc = Some(packet.ssrc);
            self.current = None;
            self.newest = None;
            self.seen.clear();
        }
        let ts = packet.timestamp;

        if self.current.is_some_and(|current| current.timestamp == ts) {
            return Ok(self.update_current(&event, now));
        }
        if self.seen.contains(&ts) {
            return Ok(Handled::Duplicate);
        }
        if let Some(newest) = self.newest {
            let lag = behind(newest, ts);
            let oldest_lag = self.seen.iter().map(|&t| behind(newest, t)).max();
            let forgotten = self.seen.len() >= SEEN_EVENTS_MAX
                && oldest_lag.is_some_and(|oldest| lag >= oldest);
            if lag > i64::from(STALE_TICKS) || forgotten {
                return Ok(Handled::Stale);
            }
        }

        if self.is_continuation(&event, ts) {
            self.remember(ts);
            if let Some(current) = self.current.as_mut() {
                current.duration_before_segment = current.duration();
                current.timestamp = ts;
                current.segment_duration = event.duration;
                current.last_packet_at = now;
            }
            if event.end {
                self.end_current(now);
            }
            return Ok(Handled::Continuation);
        }

        let late = self.newest.is_some_and(|newest| behind(newest, ts) > 0);
        self.remember(ts);
        let digit = event.digit();
        let mut fresh = Current {
            timestamp: ts,
            first_timestamp: ts,
            code: event.code,
            duration_before_segment: 0,
            segment_duration: event.duration,
            ended: event.end,
            last_packet_at: now,
        };
        if late {
            // An event older than the current one whose earlier packets
            // were lost or delayed: report it, leave the current one be.
            if let Some(digit) = digit {
                self.emit(Rfc4733Event::DigitStarted {
                    digit,
                    timestamp: ts,
                    at: now,
                });
                self.emit(Rfc4733Event::DigitEnded {
                    digit,
                    timestamp: ts,
                    duration_ticks: u32::from(event.duration),
                    at: now,
                });
            }
        } else {
            // A newer event implies the current one ended.
            self.end_current(now);
            if let Some(digit) = digit {
                self.emit(Rfc4733Event::DigitStarted {
                    digit,
                    timestamp: ts,
                    at: now,
                });
            }
            fresh.ended = false;
            self.current = Some(fresh);
            if event.end {
                self.end_current(now);
            }
        }
        Ok(match digit {
            Some(digit) => Handled::NewDigit(digit),
            None => Handled::NewOtherEvent,
        })
    }

    /// A packet for the current event's timestamp.
    fn update_current(&mut self, event: &TelephoneEvent, now: Instant) -> Handled {
        let Some(current) = self.current.as_mut() else {
            return Handled::Duplicate;
        };
        if current.ended || event.code != current.code {
            // After the end nothing changes; a different code under the
            // same timestamp is a broken sender, and the first code stands.
            return Handled::Duplicate;
        }
        current.last_packet_at = now;
        let longer = event.duration > current.segment_duration;
        current.segment_duration = current.segment_duration.max(event.duration);
        if event.end {
            self.end_current(now);
            Handled::Update
        } else if longer {
            Handled::Update
        } else {
            Handled::Duplicate
        }
    }

    /// Whether a packet with a new timestamp continues the current event
    /// as its next segment: same code, the current segment at (about) the
    /// maximum duration, and the new one starting where it ran out.
    fn is_continuation(&self, event: &TelephoneEvent, ts: u32) -> bool {
        let Some(current) = self.current else {
            return false;
        };
        if current.ended || current.code != event.code {
            return false;
        }
        let reached = u32::from(current.segment_duration);
        let gap = behind(ts, current.timestamp);
        reached + SEGMENT_SLACK_TICKS >= 0xFFFF
            && gap >= i64::from(reached)
            && gap <= i64::from(0xFFFF + SEGMENT_SLACK_TICKS)
    }

    fn remember(&mut self, ts: u32) {
        if self.seen.len() >= SEEN_EVENTS_MAX {
            // Forget the oldest by timestamp, so that everything forgotten
            // is older than everything remembered.
            let reference = self.newest.unwrap_or(ts);
            if let Some((index, _)) = self
                .seen
                .iter()
                .enumerate()
                .max_by_key(|(_, t)| behind(reference, **t))
            {
                self.seen.remove(index);
            }
        }
        self.seen.push_back(ts);
        let newer = self.newest.is_none_or(|newest| behind(ts, newest) > 0);
        if newer {
            self.newest = Some(ts);
        }
    }

    fn end_current(&mut self, now: Instant) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if current.ended {
            return;
        }
        current.ended = true;
        let current = *current;
        if let Some(digit) = Digit::from_event_code(current.code) {
            self.emit(Rfc4733Event::DigitEnded {
                digit,
                timestamp: current.first_timestamp,
                duration_ticks: current.duration(),
                at: now,
            });
        }
    }

    fn emit(&mut self, event: Rfc4733Event) {
        if self.events.len() >= EVENTS_MAX {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }
}

/// One packet the sender plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedPacket {
    /// When to send it, in timestamp units after the event's start.
    pub send_offset_ticks: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// RTP timestamp.
    pub timestamp: u32,
    /// The event block.
    pub event: TelephoneEvent,
}

impl PlannedPacket {
    /// The RTP payload.
    pub fn payload(&self) -> [u8; EVENT_LEN] {
        self.event.to_bytes()
    }
}

/// Plans the packets of telephone events. Sequence numbers, SSRC and the
/// payload type are the RTP sender's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc4733Sender {
    /// Time between updates (RFC 4733 suggests 50 ms; 20 ms matches the
    /// audio packetisation).
    pub interval_ticks: u32,
    /// How many times the end packet is sent (RFC 4733: three).
    pub end_repeats: u8,
    /// Volume field, −dBm0.
    pub volume: u8,
}

impl Default for Rfc4733Sender {
    fn default() -> Self {
        Rfc4733Sender {
            interval_ticks: 400,
            end_repeats: 3,
            volume: 10,
        }
    }
}

impl Rfc4733Sender {
    /// The packets for one key press of `duration_ticks` starting at RTP
    /// timestamp `start_timestamp`: an update every interval (the first
    /// with the marker bit), then the end packet `end_repeats` times. An
    /// event longer than 0xFFFF units is split into segments, each with
    /// its own timestamp (RFC 4733 §2.5.1.3).
    pub fn plan(
        &self,
        digit: Digit,
        start_timestamp: u32,
        duration_ticks: u32,
    ) -> Result<Vec<PlannedPacket>, Rfc4733Error> {
        if duration_ticks == 0 || duration_ticks > SEND_DURATION_MAX_TICKS {
            return Err(Rfc4733Error::BadDuration {
                ticks: duration_ticks,
            });
        }
        if self.interval_ticks == 0 {
            return Err(Rfc4733Error::BadInterval);
        }
        let mut packets = Vec::new();
        let mut elapsed = 0_u32;
        let mut first = true;
        // Updates while the key is down.
        while elapsed < duration_ticks {
            let segment_start = elapsed / 0xFFFF * 0xFFFF;
            let in_segment = elapsed - segment_start;
            packets.push(PlannedPacket {
                send_offset_ticks: elapsed,
                marker: first,
                timestamp: start_timestamp.wrapping_add(segment_start),
                event: TelephoneEvent {
                    code: digit.event_code(),
                    end: false,
                    volume: self.volume,
                    duration: u16::try_from(in_segment).unwrap_or(u16::MAX),
                },
            });
            first = false;
            let next = elapsed.saturating_add(self.interval_ticks);
            // A segment closes with a packet at the full 0xFFFF duration.
            let boundary = segment_start + 0xFFFF;
            if next > boundary && boundary < duration_ticks && elapsed != boundary {
                packets.push(PlannedPacket {
                    send_offset_ticks: boundary,
                    marker: false,
                    timestamp: start_timestamp.wrapping_add(segment_start),
                    event: TelephoneEvent {
                        code: digit.event_code(),
                        end: false,
                        volume: self.volume,
                        duration: 0xFFFF,
                    },
                });
            }
            elapsed = next;
        }
        // The end, repeated so that one loss does not lose it.
        let segment_start = (duration_ticks - 1) / 0xFFFF * 0xFFFF;
        for _ in 0..self.end_repeats.max(1) {
            packets.push(PlannedPacket {
                send_offset_ticks: duration_ticks,
                marker: false,
                timestamp: start_timestamp.wrapping_add(segment_start),
                event: TelephoneEvent {
                    code: digit.event_code(),
                    end: true,
                    volume: self.volume,
                    duration: u16::try_from(duration_ticks - segment_start).unwrap_or(u16::MAX),
                },
            });
        }
        Ok(packets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT: u8 = 101;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A packet as it would arrive, with owned payload.
    #[derive(Debug, Clone)]
    struct Wire {
        seq: u16,
        ts: u32,
        marker: bool,
        payload: [u8; 4],
        ssrc: u32,
        pt: u8,
    }

    fn send(rx: &mut Rfc4733Receiver, wire: &Wire, now: Instant) -> Result<Handled, Rfc4733Error> {
        rx.handle_packet(
            &EventPacket {
                payload_type: wire.pt,
                ssrc: wire.ssrc,
                sequence_number: wire.seq,
                timestamp: wire.ts,
                marker: wire.marker,
                payload: &wire.payload,
            },
            now,
        )
    }

    /// The packets of a digit string as a sender would emit them.
    fn wire_for(keys: &str, sender: &Rfc4733Sender, press_ticks: u32) -> Vec<Wire> {
        let mut out = Vec::new();
        let mut ts = 0xFFFF_F000_u32; // wraps during the test
        let mut seq = 0xFFF0_u16;
        for c in keys.chars() {
            let digit = Digit::from_char(c).unwrap_or(Digit::D0);
            for p in sender.plan(digit, ts, press_ticks).unwrap_or_default() {
                out.push(Wire {
                    seq,
                    ts: p.timestamp,
                    marker: p.marker,
                    payload: p.payload(),
                    ssrc: 0xCAFE,
                    pt: PT,
                });
                seq = seq.wrapping_add(1);
            }
            ts = ts.wrapping_add(press_ticks + 800);
        }
        out
    }

    fn digits_started(rx: &mut Rfc4733Receiver) -> String {
        let mut s = String::new();
        while let Some(e) = rx.poll_event() {
            if let Rfc4733Event::DigitStarted { digit, .. } = e {
                s.push(digit.to_char());
            }
        }
        s
    }

    #[test]
    fn payload_round_trips_and_refuses_bad_lengths() {
        let bytes = [11, 0x8A, 0x03, 0x20];
        let Ok(event) = TelephoneEvent::parse(&bytes) else {
            panic!("valid payload refused");
        };
        assert_eq!(event.digit(), Some(Digit::Hash));
        assert!(event.end);
        assert_eq!(event.volume, 10);
        assert_eq!(event.duration, 800);
        assert_eq!(event.to_bytes(), bytes);
        // The reserved bit is ignored.
        assert_eq!(
            TelephoneEvent::parse(&[5, 0xC0, 0, 1]).map(|e| e.volume),
            Ok(0)
        );
        assert_eq!(
            TelephoneEvent::parse(&[16, 0, 0, 0]).map(|e| e.digit()),
            Ok(None)
        );
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(Rfc4733Error::TooShort { len: 3 })
        );
        assert_eq!(
            TelephoneEvent::parse(&[]),
            Err(Rfc4733Error::TooShort { len: 0 })
        );
        assert_eq!(
            TelephoneEvent::parse(&[0; PAYLOAD_LEN_MAX + 1]),
            Err(Rfc4733Error::TooLong {
                len: PAYLOAD_LEN_MAX + 1
            })
        );
        assert!(TelephoneEvent::parse(&[0; 8]).is_ok());
    }

    #[test]
    fn a_clean_stream_gives_each_digit_once_with_its_duration() {
        let sender = Rfc4733Sender::default();
        let wire = wire_for("0123456789*#ABCD", &sender, 800);
        let mut rx = Rfc4733Receiver::new(PT);
        let now = Instant::now();
        let mut ended = Vec::new();
        let mut started = String::new();
        for w in &wire {
            assert!(send(&mut rx, w, now).is_ok());
            while let Some(e) = rx.poll_event() {
                match e {
                    Rfc4733Event::DigitStarted { digit, .. } => started.push(digit.to_char()),
                    Rfc4733Event::DigitEnded {
                        digit,
                        duration_ticks,
                        ..
                    } => {
                        ended.push((digit, duration_ticks));
                    }
                }
            }
        }
        assert_eq!(started, "0123456789*#ABCD");
        assert_eq!(ended.len(), 16);
        assert!(ended.iter().all(|&(_, d)| d == 800));
    }

    #[test]
    fn duplicates_of_every_kind_give_one_digit_per_press() {
        let sender = Rfc4733Sender::default();
        let wire = wire_for("5", &sender, 4000);
        let mut rx = Rfc4733Receiver::new(PT);
        let now = Instant::now();
        let mut outcomes = Vec::new();
        // Every packet three times, the end packets (same sequence number
        // too) five more times.
        for w in &wire {
            for _ in 0..3 {
                outcomes.push(send(&mut rx, w, now));
            }
        }
        for _ in 0..5 {
            if let Some(last) = wire.last() {
                outcomes.push(send(&mut rx, last, now));
            }
        }
        assert_eq!(digits_started(&mut rx), "5");
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| matches!(o, Ok(Handled::NewDigit(_))))
                .count(),
            1
        );
        assert!(outcomes.iter().all(Result::is_ok));
    }

    #[test]
    fn the_same_key_twice_is_two_digits() {
        let wire = wire_for("77", &Rfc4733Sender::default(), 800);
        let mut rx = Rfc4733Receiver::new(PT);
        let now = Instant::now();
        for w in &wire {
            let _ = send(&mut rx, w, now);
        }
        assert_eq!(digits_started(&mut rx), "77");
    }

    #[test]
    fn a_lost_start_still_gives_the_digit_when_only_the_end_arrives() {
        let wire = wire_for("9", &Rfc4733Sender::default(), 800);
        let mut rx = Rfc4733Receiver::new(PT);
        let now = Instant::now();
        let ends: Vec<_> = wire.iter().filter(|w| w.payload[1] & 0x80 != 0).collect();
        assert_eq!(ends.len(), 3);
        assert_eq!(
            send(&mut rx, ends[0], now),
            Ok(Handled::NewDigit(Digit::D9))
        );
        assert_eq!(send(&mut rx, ends[1], now), Ok(Handled::Duplicate));
        let events: Vec<_> = std::iter::from_fn(|| rx.poll_event()).collect();
        assert!(matches!(
            events[..],
            [
                Rfc4733Event::DigitStarted {
                    digit: Digit::D9,
                    ..
                },
                Rfc4733Event::DigitEnded {
                    digit: Digit::D9,
                    duration_ticks: 800,
                    ..
                }
            ]
        ));
        // An update arriving after the end does not reopen the event.
        assert_eq!(send(&mut rx, &wire[0], now), Ok(Handled::Duplicate));
        assert_eq!(rx.poll_event(), None);
    }

    #[test]
    fn a_long_press_is_one_digit_even_across_segments() {
        let sender = Rfc4733Sender::default();
        // 20 s: two full segments and part of a third.
        let wire = wire_for("0", &sender, 160_000);
        let timestamps: std::collections::BTreeSet<u32> = wire.iter().map(|w| w.ts).collect();
        assert_eq!(timestamps.len(), 3);
        let mut rx = Rfc4733Receiver::new(PT);
        let start = Instant::now();
        let mut ended = Vec::new();
        for w in &wire {
            let _ = send(&mut rx, w, start);
            while let Some(e) = rx.poll_event() {
                match e {
                    Rfc4733Event::DigitStarted { digit, .. } => assert_eq!(digit, Digit::D0),
                    Rfc4733Event::DigitEnded { duration_ticks, .. } => ended.push(duration_ticks),
                }
            }
        }
        assert_eq!(ended, [160_000]);
        // A new press of the same key after it is a new digit.
        let mut again = Wire {
            ts: wire[0].ts.wrapping_add(200_000),
            ..wire[0].clone()
        };
        again.payload = [0, 0, 0, 160];
        assert_eq!(
            send(&mut rx, &again, start),
            Ok(Handled::NewDigit(Digit::D0))
        );
    }

    #[test]
    fn loss_duplication_and_reordering_never_add_or_drop_a_digit() {
        let keys = "0123456789*#ABCD4815162342";
        let sender = Rfc4733Sender {
            interval_ticks: 160,
            ..Rfc4733Sender::default()
        };
        let wire = wire_for(keys, &sender, 960);
        let mut rng = Rng(0x00C0_FFEE);
        for round in 0..200 {
            // Each press keeps at least one packet (a press whose every
            // packet is lost cannot be heard by anyone).
            let mut kept: Vec<Wire> = Vec::new();
            let mut press_has_packet = std::collections::HashMap::new();
            for w in &wire {
                let lost = rng.below(100) < 30;
                let copies = if lost {
                    0
                } else {
                    1 + usize::from(rng.below(100) < 20) * 2
                };
                for _ in 0..copies {
                    kept.push(w.clone());
                }
                press_has_packet.entry(w.ts).or_insert(false);
                if copies > 0 {
                    press_has_packet.insert(w.ts, true);
                }
            }
            // Reorder within a window of four packets.
            for i in 0..kept.len() {
                let j = (i + rng.below(4)).min(kept.len() - 1);
                kept.swap(i, j);
            }
            let mut rx = Rfc4733Receiver::new(PT);
            let now = Instant::now();
            for w in &kept {
                let _ = send(&mut rx, w, now);
            }
            let mut got: Vec<char> = digits_started(&mut rx).chars().collect();
            let mut want: Vec<char> = Vec::new();
            let mut seen_ts = std::collections::HashSet::new();
            for w in &wire {
                if seen_ts.insert(w.ts) && press_has_packet.get(&w.ts) == Some(&true) {
                    want.push(char::from(b"0123456789*#ABCD"[usize::from(w.payload[0])]));
                }
            }
            // Reordering may swap neighbouring presses; the multiset of
            // digits is exact.
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "round {round}");
        }
    }

    #[test]
    fn other_payload_types_and_streams() {
        let wire = wire_for("3", &Rfc4733Sender::default(), 800);
        let mut rx = Rfc4733Receiver::new(96);
        let now = Instant::now();
        // PT 101 is audio on this call: ignored.
        assert_eq!(send(&mut rx, &wire[0], now), Ok(Handled::OtherPayloadType));
        rx.set_payload_type(PT);
        assert_eq!(
            send(&mut rx, &wire[0], now),
            Ok(Handled::NewDigit(Digit::D3))
        );
        // Malformed payloads are errors, and change nothing.
        let mut bad = wire[1].clone();
        bad.payload = [0; 4];
        let short = rx.handle_packet(
            &EventPacket {
                payload_type: PT,
                ssrc: bad.ssrc,
                sequence_number: 1,
                timestamp: 5,
                marker: false,
                payload: &[1],
            },
            now,
        );
        assert_eq!(short, Err(Rfc4733Error::TooShort { len: 1 }));
        // A new SSRC is a new stream: the same timestamp is a new press.
        let other = Wire {
            ssrc: 0xBEEF,
            ..wire[0].clone()
        };
        assert_eq!(send(&mut rx, &other, now), Ok(Handled::NewDigit(Digit::D3)));
        assert_eq!(digits_started(&mut rx), "33");
    }

    #[test]
    fn replays_of_old_events_are_stale_not_new() {
        let keys: String = std::iter::repeat_n("0123456789", 5).collect();
        let wire = wire_for(&keys, &Rfc4733Sender::default(), 800);
        let mut rx = Rfc4733Receiver::new(PT);
        let now = Instant::now();
        let mut started = String::new();
        for w in &wire {
            let _ = send(&mut rx, w, now);
            started.push_str(&digits_started(&mut rx));
        }
        assert_eq!(started, keys);
        assert_eq!(rx.events_dropped(), 0);
        // Replay everything: the recent ones are duplicates, the forgotten
        // ones are stale, none is new.
        for w in &wire {
            let outcome = send(&mut rx, w, now);
            assert!(
                matches!(outcome, Ok(Handled::Duplicate | Handled::Stale)),
                "{outcome:?}"
            );
        }
        assert_eq!(digits_started(&mut rx), "");
    }

    #[test]
    fn a_press_without_end_packets_ends_at_the_timeout() {
        let wire = wire_for("8", &Rfc4733Sender::default(), 2400);
        let mut rx = Rfc4733Receiver::new(PT);
        let start = Instant::now();
        let updates: Vec<_> = wire.iter().filter(|w| w.payload[1] & 0x80 == 0).collect();
        for w in &updates {
            let _ = send(&mut rx, w, start);
        }
        assert!(matches!(
            rx.poll_event(),
            Some(Rfc4733Event::DigitStarted {
                digit: Digit::D8,
                ..
            })
        ));
        assert_eq!(rx.poll_event(), None);
        let deadline = rx.poll_timeout();
        assert_eq!(deadline, Some(start + END_TIMEOUT_DEFAULT));
        rx.handle_timeout(start + Duration::from_millis(999));
        assert_eq!(rx.poll_event(), None);
        rx.handle_timeout(start + END_TIMEOUT_DEFAULT);
        assert!(matches!(
            rx.poll_event(),
            Some(Rfc4733Event::DigitEnded {
                duration_ticks: 2000,
                ..
            })
        ));
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn the_sender_refuses_nonsense() {
        let sender = Rfc4733Sender::default();
        assert_eq!(
            sender.plan(Digit::D1, 0, 0),
            Err(Rfc4733Error::BadDuration { ticks: 0 })
        );
        assert!(
            sender
                .plan(Digit::D1, 0, SEND_DURATION_MAX_TICKS + 1)
                .is_err()
        );
        let zero = Rfc4733Sender {
            interval_ticks: 0,
            ..sender
        };
        assert_eq!(zero.plan(Digit::D1, 0, 800), Err(Rfc4733Error::BadInterval));
        let packets = sender.plan(Digit::Star, 1000, 800).unwrap_or_default();
        // Updates at 0 and 400, then three ends at 800.
        assert_eq!(packets.len(), 5);
        assert!(packets[0].marker && !packets[1].marker);
        assert!(
            packets
                .iter()
                .all(|p| p.timestamp == 1000 && p.event.code == 10)
        );
        assert_eq!(packets[4].payload(), [10, 0x8A, 0x03, 0x20]);
    }
}
