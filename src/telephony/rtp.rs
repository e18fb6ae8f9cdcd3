//! RTP for one G.711 call, without IO: packet parsing and building (on `rtp-rs`), and a session
//! that paces our outgoing stream and sorts the caller's incoming one.
//!
//! # The loop
//!
//! The driver owns the UDP socket and the clock. It feeds [`RtpSession::handle_input`] with
//! [`RtpInput::Receive`] for every datagram on the call's port and [`RtpInput::Timeout`] when the
//! last deadline passes, then drains [`RtpSession::poll_output`] until it returns
//! [`RtpOutput::Timeout`]: every [`RtpOutput::Transmit`] is sent as one datagram, every
//! [`RtpOutput::Event`] goes to the call's media consumer (DTMF detectors, the IVR).
//!
//! # Pacing
//!
//! Packet slot `n` is due at exactly `start + n × 20 ms`; the deadline is always computed from
//! `start` and `n`, never by adding 20 ms to the previous deadline, so late wake-ups do not
//! accumulate drift over a long call. A driver that wakes late gets every slot that fell due
//! since (each `Transmit` names its `due` instant, so the driver can measure its send jitter),
//! up to [`CATCH_UP_PACKETS_MAX`]; slots beyond that are skipped rather than burst out, the
//! timestamps jump with the clock and the next packet carries the marker bit.
//!
//! Timestamps are `timestamp_start + 160 × n` (8 kHz), so they advance across silence and holds.
//! Sequence numbers count packets actually sent. SSRC, first sequence number and first timestamp
//! are random ([`RtpIdentity::random`]). The marker bit is set on the first packet sent and on
//! the first packet of each talkspurt: the first audio frame after the queue ran dry, and the
//! first packet after a gap in sending (hold, skipped slots).
//!
//! When the application has queued no audio, we send silence frames: many SBCs and carriers
//! treat a silent RTP stream as a dead call, and continuous packets keep NAT bindings open.
//! The application feeds 160-byte G.711 frames with [`RtpSession::enqueue_frame`].
//!
//! # Symmetric RTP (latching)
//!
//! We send to the address in the caller's SDP until the first valid RTP packet arrives (version
//! 2, consistent lengths, not RTCP), from any source; from then on we send to the source address
//! of that packet and accept packets only from it. If the latched source has been silent for
//! `relatch_after_ms` and a valid packet arrives from another source, we latch to the new one
//! (NAT rebinding, media server change). A new SDP address from a re-INVITE clears the latch.
//!
//! # Incoming
//!
//! Valid packets from the latched source are sorted by payload type into
//! [`RtpEvent::Audio`] and [`RtpEvent::TelephoneEvent`]; everything else is dropped with a typed
//! [`DropReason`]. [`RtpSession::last_received_at`] feeds the SIP layer's RTP timeout, and
//! [`RtpStats`] holds counters and the RFC 3550 interarrival jitter.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::sdp::Codec;

/// Sampling clock of G.711, in Hz.
pub const CLOCK_RATE_HZ: u32 = 8000;
/// Samples (and bytes) in one 20 ms G.711 frame.
pub const FRAME_SAMPLES: u32 = 160;
/// Bytes in one 20 ms G.711 frame.
pub const FRAME_BYTES: usize = 160;
/// The packet interval, in microseconds (ptime 20).
pub const FRAME_INTERVAL_US: u64 = 20_000;
/// Largest incoming datagram accepted, in bytes (an Ethernet MTU).
pub const PACKET_SIZE_MAX: usize = 1500;
/// Most packets sent at once when the driver wakes late; older due slots are skipped.
pub const CATCH_UP_PACKETS_MAX: u64 = 5;
/// Most frames the playout queue holds (30 s of audio).
pub const PLAYOUT_QUEUE_FRAMES_MAX: usize = 1500;
/// Default for [`RtpSessionConfig::relatch_after_ms`].
pub const RELATCH_AFTER_MS_DEFAULT: u64 = 1000;

const RTP_HEADER_BYTES: usize = 12;

/// Why an incoming packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    #[error("packet of {len_bytes} bytes is shorter than an RTP header")]
    TooShort { len_bytes: usize },
    #[error("packet of {len_bytes} bytes exceeds the size limit")]
    TooLarge { len_bytes: usize },
    #[error("RTP version {version} is not 2")]
    BadVersion { version: u8 },
    #[error("RTP header (CSRC list or extension) runs past the packet")]
    HeadersTruncated,
    #[error("RTP padding length is invalid")]
    BadPadding,
    #[error("RTCP packet on the RTP port")]
    Rtcp,
    #[error("packet from {source_addr}, which is not the latched source")]
    UnlatchedSource { source_addr: SocketAddr },
    #[error("payload type {payload_type} was not negotiated")]
    UnexpectedPayloadType { payload_type: u8 },
}

/// Misuse of the session API by the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    #[error("playout queue is full ({PLAYOUT_QUEUE_FRAMES_MAX} frames)")]
    QueueFull,
}

/// A parsed RTP packet borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Parses and validates one RTP packet.
pub fn parse_packet(bytes: &[u8]) -> Result<RtpPacket<'_>, DropReason> {
    if bytes.len() > PACKET_SIZE_MAX {
        return Err(DropReason::TooLarge {
            len_bytes: bytes.len(),
        });
    }
    // RTCP shares the version bits; its packet types 200–204 read as RTP marker + 72–76
    // (RFC 5761 §4), which no audio profile uses.
    if let [first, second, ..] = bytes {
        if first >> 6 == 2 && (200..=204).contains(second) {
            return Err(DropReason::Rtcp);
        }
    }
    let reader = rtp_rs::RtpReader::new(bytes).map_err(|e| match e {
        rtp_rs::RtpReaderError::BufferTooShort(len_bytes) => DropReason::TooShort { len_bytes },
        rtp_rs::RtpReaderError::UnsupportedVersion(version) => DropReason::BadVersion { version },
        rtp_rs::RtpReaderError::HeadersTruncated { .. } => DropReason::HeadersTruncated,
        rtp_rs::RtpReaderError::PaddingLengthInvalid(_) => DropReason::BadPadding,
    })?;
    Ok(RtpPacket {
        payload_type: reader.payload_type(),
        marker: reader.mark(),
        sequence: reader.sequence_number().into(),
        timestamp: reader.timestamp(),
        ssrc: reader.ssrc(),
        payload: reader.payload(),
    })
}

/// Builds an RTP packet without CSRCs, extension or padding.
pub fn build_packet(
    payload_type: u8,
    marker: bool,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    // Written by hand rather than through rtp-rs's builder: the fixed 12-byte header cannot
    // fail, so there is no error to carry, and payload types above 127 cannot reach here
    // (they are masked).
    let mut out = Vec::with_capacity(RTP_HEADER_BYTES + payload.len());
    out.push(0x80);
    out.push((u8::from(marker) << 7) | (payload_type & 0x7F));
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The random identity of our outgoing stream (RFC 3550 §5.1: random SSRC, first sequence
/// number and first timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpIdentity {
    pub ssrc: u32,
    pub sequence_start: u16,
    pub timestamp_start: u32,
}

impl RtpIdentity {
    pub fn random(rng: &mut impl Rng) -> RtpIdentity {
        RtpIdentity {
            ssrc: rng.random(),
            sequence_start: rng.random(),
            timestamp_start: rng.random(),
        }
    }
}

/// What the session needs from the negotiated SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpSessionConfig {
    pub codec: Codec,
    /// The payload type negotiated for the codec (usually its static one).
    pub codec_payload_type: u8,
    pub telephone_event_payload_type: Option<u8>,
    /// Silence from the latched source after which another source may take over.
    pub relatch_after_ms: u64,
}

/// Input to the session.
#[derive(Debug, Clone, Copy)]
pub enum RtpInput<'a> {
    /// A datagram arrived on the call's RTP port.
    Receive { source: SocketAddr, bytes: &'a [u8] },
    /// The deadline from the last [`RtpOutput::Timeout`] passed (or the driver woke anyway).
    Timeout,
}

/// Something the session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpEvent {
    /// A packet of the negotiated codec.
    Audio {
        payload: Vec<u8>,
        sequence: u16,
        timestamp: u32,
        marker: bool,
    },
    /// An RFC 4733 telephone-event packet (decoding is the DTMF module's job).
    TelephoneEvent {
        payload: Vec<u8>,
        sequence: u16,
        timestamp: u32,
        marker: bool,
    },
    /// We now send to, and accept from, this address.
    Latched { source: SocketAddr },
    /// The playout queue ran dry after playing (a prompt finished).
    PlayoutIdle,
}

/// Output of the session; see the module docs for the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtpOutput {
    /// Send `bytes` to `dest` now; `due` is the slot's scheduled time.
    Transmit {
        dest: SocketAddr,
        bytes: Vec<u8>,
        due: Instant,
    },
    Event(RtpEvent),
    /// Call `handle_input(RtpInput::Timeout, now)` at this instant.
    Timeout(Instant),
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RtpStats {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub packets_dropped: u64,
    /// Due slots skipped because the driver woke too late to send them.
    pub slots_skipped: u64,
    /// Packets missing from the incoming sequence (expected − received, RFC 3550 A.3).
    pub packets_lost: i64,
    /// RFC 3550 interarrival jitter of the incoming stream, in milliseconds.
    pub jitter_ms: f64,
}

#[derive(Debug, Clone, Copy)]
struct ReceiveState {
    ssrc: u32,
    base_sequence: u64,
    highest_sequence: u64,
    received: u64,
    last_transit: Option<i64>,
    jitter_units: f64,
}

/// One call's RTP stream; see the module docs.
#[derive(Debug)]
pub struct RtpSession {
    config: RtpSessionConfig,
    identity: RtpIdentity,
    start: Instant,
    next_slot: u64,
    marker_pending: bool,
    playing: bool,
    sending: bool,
    remote_sdp: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    latched_last_at: Option<Instant>,
    last_received_at: Option<Instant>,
    queue: VecDeque<[u8; FRAME_BYTES]>,
    outputs: VecDeque<RtpOutput>,
    receive: Option<ReceiveState>,
    stats: RtpStats,
}

impl RtpSession {
    /// Starts a stream whose first packet is due at `start`. `remote` is the SDP address;
    /// `sending` is false when our direction forbids sending (recvonly, inactive).
    pub fn new(
        config: RtpSessionConfig,
        identity: RtpIdentity,
        remote: Option<SocketAddr>,
        sending: bool,
        start: Instant,
    ) -> RtpSession {
        RtpSession {
            config,
            identity,
            start,
            next_slot: 0,
            marker_pending: true,
            playing: false,
            sending,
            remote_sdp: remote,
            latched: None,
            latched_last_at: None,
            last_received_at: None,
            queue: VecDeque::new(),
            outputs: VecDeque::new(),
            receive: None,
            stats: RtpStats::default(),
        }
    }

    /// Feeds a datagram or a timeout. A dropped datagram gives its reason; the session is
    /// unaffected by it.
    pub fn handle_input(&mut self, input: RtpInput<'_>, now: Instant) -> Result<(), DropReason> {
        match input {
            RtpInput::Timeout => {
                self.handle_timeout(now);
                Ok(())
            }
            RtpInput::Receive { source, bytes } => {
                let result = self.handle_receive(source, bytes, now);
                if result.is_err() {
                    self.stats.packets_dropped += 1;
                }
                result
            }
        }
    }

    /// Next output; ends with [`RtpOutput::Timeout`] when nothing else is pending.
    pub fn poll_output(&mut self) -> RtpOutput {
        self.outputs
            .pop_front()
            .unwrap_or_else(|| RtpOutput::Timeout(self.slot_due(self.next_slot)))
    }

    /// Queues one 20 ms frame of the negotiated codec for playout.
    pub fn enqueue_frame(&mut self, frame: &[u8; FRAME_BYTES]) -> Result<(), RtpError> {
        if self.queue.len() >= PLAYOUT_QUEUE_FRAMES_MAX {
            return Err(RtpError::QueueFull);
        }
        self.queue.push_back(*frame);
        Ok(())
    }

    /// Frames waiting to be sent.
    pub fn queued_frames(&self) -> usize {
        self.queue.len()
    }

    /// Drops everything queued (barge-in); silence follows.
    pub fn clear_queue(&mut self) {
        self.queue.clear();
    }

    /// Applies a renegotiation (re-INVITE): new SDP address, direction and codec. A changed
    /// address clears the latch so the caller's new media source is learned again.
    pub fn update_media(
        &mut self,
        remote: Option<SocketAddr>,
        sending: bool,
        codec: Codec,
        codec_payload_type: u8,
        telephone_event_payload_type: Option<u8>,
    ) {
        if remote != self.remote_sdp {
            self.remote_sdp = remote;
            self.latched = None;
            self.latched_last_at = None;
        }
        if self.config.codec != codec {
            // Queued frames are in the old law; playing them in the new one would be noise.
            self.queue.clear();
            self.marker_pending = true;
        }
        self.sending = sending;
        self.config.codec = codec;
        self.config.codec_payload_type = codec_payload_type;
        self.config.telephone_event_payload_type = telephone_event_payload_type;
    }

    /// When the last valid packet from the caller arrived.
    pub fn last_received_at(&self) -> Option<Instant> {
        self.last_received_at
    }

    /// The address we currently send to, if any.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.remote_sdp)
    }

    pub fn stats(&self) -> RtpStats {
        self.stats
    }

    pub fn identity(&self) -> RtpIdentity {
        self.identity
    }

    fn slot_due(&self, slot: u64) -> Instant {
        self.start + Duration::from_micros(slot.saturating_mul(FRAME_INTERVAL_US))
    }

    fn handle_timeout(&mut self, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.start) else {
            return;
        };
        let elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Slots 0..=elapsed/20ms are due.
        let due_end = elapsed_us / FRAME_INTERVAL_US + 1;
        if due_end <= self.next_slot {
            return;
        }
        let mut due = due_end - self.next_slot;
        if due > CATCH_UP_PACKETS_MAX {
            let skipped = due - CATCH_UP_PACKETS_MAX;
            // Skipped slots consume their frames too, so playout stays on the wall clock.
            let dropped = usize::try_from(skipped)
                .unwrap_or(usize::MAX)
                .min(self.queue.len());
            self.queue.drain(..dropped);
            self.next_slot += skipped;
            self.stats.slots_skipped += skipped;
            self.marker_pending = true;
            due = CATCH_UP_PACKETS_MAX;
        }
        for _ in 0..due {
            self.send_slot();
        }
    }

    fn send_slot(&mut self) {
        let slot = self.next_slot;
        self.next_slot += 1;
        let frame = self.queue.pop_front();
        let talkspurt_start = frame.is_some() && !self.playing;
        if frame.is_none() && self.playing {
            self.outputs
                .push_back(RtpOutput::Event(RtpEvent::PlayoutIdle));
        }
        self.playing = frame.is_some();
        let dest = match (self.sending, self.destination()) {
            (true, Some(dest)) => dest,
            _ => {
                self.marker_pending = true;
                return;
            }
        };
        let payload = frame.unwrap_or([self.config.codec.silence_byte(); FRAME_BYTES]);
        // The sequence number counts packets sent; truncating the count to 16 bits is the wrap.
        let sequence = self
            .identity
            .sequence_start
            .wrapping_add(self.stats.packets_sent as u16);
        // 160 × slot modulo 2^32 equals (slot mod 2^32) × 160 modulo 2^32, so truncating first
        // is exact.
        let timestamp = self
            .identity
            .timestamp_start
            .wrapping_add((slot as u32).wrapping_mul(FRAME_SAMPLES));
        let marker = self.marker_pending || talkspurt_start;
        self.marker_pending = false;
        let bytes = build_packet(
            self.config.codec_payload_type,
            marker,
            sequence,
            timestamp,
            self.identity.ssrc,
            &payload,
        );
        self.stats.packets_sent += 1;
        self.outputs.push_back(RtpOutput::Transmit {
            dest,
            bytes,
            due: self.slot_due(slot),
        });
    }

    fn handle_receive(
        &mut self,
        source: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        let packet = parse_packet(bytes)?;
        match self.latched {
            Some(latched) if latched == source => {}
            Some(_) => {
                let quiet_for = self
                    .latched_last_at
                    .map(|at| now.saturating_duration_since(at))
                    .unwrap_or(Duration::MAX);
                if quiet_for < Duration::from_millis(self.config.relatch_after_ms) {
                    return Err(DropReason::UnlatchedSource {
                        source_addr: source,
                    });
                }
                self.latch(source);
            }
            None => self.latch(source),
        }
        self.latched_last_at = Some(now);
        self.last_received_at = Some(now);
        self.stats.packets_received += 1;
        self.track_receive(&packet, now);
        let event = if packet.payload_type == self.config.codec_payload_type {
            RtpEvent::Audio {
                payload: packet.payload.to_vec(),
                sequence: packet.sequence,
                timestamp: packet.timestamp,
                marker: packet.marker,
            }
        } else if Some(packet.payload_type) == self.config.telephone_event_payload_type {
            RtpEvent::TelephoneEvent {
                payload: packet.payload.to_vec(),
                sequence: packet.sequence,
                timestamp: packet.timestamp,
                marker: packet.marker,
            }
        } else {
            return Err(DropReason::UnexpectedPayloadType {
                payload_type: packet.payload_type,
            });
        };
        self.outputs.push_back(RtpOutput::Event(event));
        Ok(())
    }

    fn latch(&mut self, source: SocketAddr) {
        self.latched = Some(source);
        self.receive = None;
        self.outputs
            .push_back(RtpOutput::Event(RtpEvent::Latched { source }));
    }

    /// Sequence and jitter bookkeeping (RFC 3550 A.1, A.3, A.8), restarted on a new SSRC.
    fn track_receive(&mut self, packet: &RtpPacket<'_>, now: Instant) {
        let arrival_us = now.saturating_duration_since(self.start).as_micros();
        let arrival_units =
            i64::try_from(arrival_us * u128::from(CLOCK_RATE_HZ) / 1_000_000).unwrap_or(i64::MAX);
        let transit = arrival_units.wrapping_sub(i64::from(packet.timestamp));
        let sequence = u64::from(packet.sequence);
        let state = match &mut self.receive {
            Some(state) if state.ssrc == packet.ssrc => state,
            _ => {
                self.receive = Some(ReceiveState {
                    ssrc: packet.ssrc,
                    base_sequence: sequence,
                    highest_sequence: sequence,
                    received: 0,
                    last_transit: None,
                    jitter_units: 0.0,
                });
                let Some(state) = self.receive.as_mut() else {
                    return;
                };
                state
            }
        };
        state.received += 1;
        // Extend the 16-bit sequence with the cycle count of the highest one seen.
        let cycles = state.highest_sequence & !0xFFFF;
        let mut extended = cycles | sequence;
        let highest_low = state.highest_sequence & 0xFFFF;
        if sequence < highest_low && highest_low - sequence > 0x8000 {
            extended += 0x1_0000;
        } else if sequence > highest_low && sequence - highest_low > 0x8000 && cycles > 0 {
            extended -= 0x1_0000;
        }
        state.highest_sequence = state.highest_sequence.max(extended);
        if let Some(last) = state.last_transit {
            let d = transit.wrapping_sub(last).unsigned_abs() as f64;
            state.jitter_units += (d - state.jitter_units) / 16.0;
        }
        state.last_transit = Some(transit);
        let expected = state.highest_sequence - state.base_sequence + 1;
        self.stats.packets_lost = i64::try_from(expected).unwrap_or(i64::MAX)
            - i64::try_from(state.received).unwrap_or(i64::MAX);
        self.stats.jitter_ms = state.jitter_units * 1000.0 / f64::from(CLOCK_RATE_HZ);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REMOTE: &str = "198.51.100.7:4000";

    fn config() -> RtpSessionConfig {
        RtpSessionConfig {
            codec: Codec::Pcmu,
            codec_payload_type: 0,
            telephone_event_payload_type: Some(101),
            relatch_after_ms: RELATCH_AFTER_MS_DEFAULT,
        }
    }

    fn identity() -> RtpIdentity {
        // Near the wrap points so a long test crosses them.
        RtpIdentity {
            ssrc: 0x1234_5678,
            sequence_start: 65_000,
            timestamp_start: u32::MAX - 8_000,
        }
    }

    fn session(start: Instant) -> RtpSession {
        RtpSession::new(
            config(),
            identity(),
            Some(REMOTE.parse().unwrap()),
            true,
            start,
        )
    }

    type Drained = (Vec<(SocketAddr, Vec<u8>, Instant)>, Vec<RtpEvent>, Instant);

    /// Drains outputs, returning transmits and events, and the next deadline.
    fn drain(s: &mut RtpSession) -> Drained {
        let mut sent = Vec::new();
        let mut events = Vec::new();
        loop {
            match s.poll_output() {
                RtpOutput::Transmit { dest, bytes, due } => sent.push((dest, bytes, due)),
                RtpOutput::Event(e) => events.push(e),
                RtpOutput::Timeout(t) => return (sent, events, t),
            }
        }
    }

    #[test]
    fn ten_minutes_on_the_grid_with_wrapping_counters() {
        let start = Instant::now();
        let mut s = session(start);
        let mut prev: Option<(u16, u32)> = None;
        let mut count: u64 = 0;
        let (mut sent, _, mut deadline) = drain(&mut s);
        assert!(sent.is_empty());
        let slots = 10 * 60 * 50;
        let mut wraps_seen = (false, false);
        // A driver that wakes late by a varying amount (0–19 ms) every time.
        let mut lateness_us = 0u64;
        while count < slots {
            assert_eq!(
                deadline,
                start + Duration::from_micros(count * FRAME_INTERVAL_US)
            );
            lateness_us = (lateness_us * 7 + 3_331) % 19_000;
            let now = deadline + Duration::from_micros(lateness_us);
            s.handle_input(RtpInput::Timeout, now).unwrap();
            let (batch, _, next) = drain(&mut s);
            sent = batch;
            for (dest, bytes, due) in &sent {
                assert_eq!(*dest, REMOTE.parse::<SocketAddr>().unwrap());
                assert_eq!(
                    *due,
                    start + Duration::from_micros(count * FRAME_INTERVAL_US),
                    "slot {count}"
                );
                assert!(*due <= now);
                let p = parse_packet(bytes).unwrap();
                assert_eq!(p.ssrc, 0x1234_5678);
                assert_eq!(p.payload, &[0xFF; 160][..]);
                assert_eq!(p.marker, count == 0);
                if let Some((seq, ts)) = prev {
                    assert_eq!(p.sequence, seq.wrapping_add(1));
                    assert_eq!(p.timestamp, ts.wrapping_add(160));
                    wraps_seen.0 |= p.sequence < seq;
                    wraps_seen.1 |= p.timestamp < ts;
                } else {
                    assert_eq!((p.sequence, p.timestamp), (65_000, u32::MAX - 8_000));
                }
                prev = Some((p.sequence, p.timestamp));
                count += 1;
            }
            deadline = next;
        }
        assert_eq!(wraps_seen, (true, true));
        // After exactly ten minutes the last slot's timestamp is 160 × slot past the start.
        let (_, ts) = prev.unwrap();
        assert_eq!(
            ts,
            (u32::MAX - 8_000).wrapping_add(160 * (slots as u32 - 1))
        );
        assert_eq!(s.stats().packets_sent, slots);
        assert_eq!(s.stats().slots_skipped, 0);
    }

    #[test]
    fn late_wakeup_sends_due_packets_then_skips_beyond_the_bound() {
        let start = Instant::now();
        let mut s = session(start);
        // 70 ms late for slot 0: slots 0..=3 are due.
        s.handle_input(RtpInput::Timeout, start + Duration::from_millis(70))
            .unwrap();
        let (sent, _, next) = drain(&mut s);
        assert_eq!(sent.len(), 4);
        assert_eq!(next, start + Duration::from_millis(80));
        // One second of stall: 50 slots due, only CATCH_UP_PACKETS_MAX sent, grid kept.
        let now = start + Duration::from_millis(1070);
        s.handle_input(RtpInput::Timeout, now).unwrap();
        let (sent, _, next) = drain(&mut s);
        assert_eq!(sent.len() as u64, CATCH_UP_PACKETS_MAX);
        assert_eq!(next, start + Duration::from_millis(1080));
        let first = parse_packet(&sent[0].1).unwrap();
        assert!(first.marker, "gap is marked");
        // Timestamps follow the clock: slots 4..49 were skipped, slot 49 is sent first.
        assert_eq!(
            first.timestamp,
            identity().timestamp_start.wrapping_add(49 * 160)
        );
        assert_eq!(first.sequence, identity().sequence_start.wrapping_add(4));
        assert_eq!(s.stats().slots_skipped, 50 - CATCH_UP_PACKETS_MAX);
    }

    #[test]
    fn queued_audio_plays_with_marker_and_idle_event() {
        let start = Instant::now();
        let mut s = session(start);
        s.handle_input(RtpInput::Timeout, start).unwrap();
        drain(&mut s);
        s.enqueue_frame(&[0x11; 160]).unwrap();
        s.enqueue_frame(&[0x22; 160]).unwrap();
        let mut payloads = Vec::new();
        let mut markers = Vec::new();
        let mut idle = 0;
        for slot in 1..5u64 {
            s.handle_input(RtpInput::Timeout, start + Duration::from_millis(20 * slot))
                .unwrap();
            let (sent, events, _) = drain(&mut s);
            for (_, bytes, _) in sent {
                let p = parse_packet(&bytes).unwrap();
                payloads.push(p.payload[0]);
                markers.push(p.marker);
            }
            idle += events
                .iter()
                .filter(|e| **e == RtpEvent::PlayoutIdle)
                .count();
        }
        assert_eq!(payloads, [0x11, 0x22, 0xFF, 0xFF]);
        assert_eq!(markers, [true, false, false, false]);
        assert_eq!(idle, 1);
        for _ in 0..PLAYOUT_QUEUE_FRAMES_MAX {
            s.enqueue_frame(&[0; 160]).unwrap();
        }
        assert_eq!(s.enqueue_frame(&[0; 160]), Err(RtpError::QueueFull));
        s.clear_queue();
        assert_eq!(s.queued_frames(), 0);
    }

    #[test]
    fn latching_follows_the_first_valid_source() {
        let start = Instant::now();
        let mut s = session(start);
        let nat: SocketAddr = "203.0.113.9:31000".parse().unwrap();
        let other: SocketAddr = "203.0.113.10:31000".parse().unwrap();
        let audio = build_packet(0, false, 1, 160, 77, &[0x55; 160]);
        // Garbage does not latch.
        assert_eq!(
            s.handle_input(
                RtpInput::Receive {
                    source: other,
                    bytes: &[0x40; 20]
                },
                start
            ),
            Err(DropReason::BadVersion { version: 1 })
        );
        assert_eq!(s.destination(), Some(REMOTE.parse().unwrap()));
        s.handle_input(
            RtpInput::Receive {
                source: nat,
                bytes: &audio,
            },
            start,
        )
        .unwrap();
        let (_, events, _) = drain(&mut s);
        assert_eq!(events[0], RtpEvent::Latched { source: nat });
        assert!(matches!(&events[1], RtpEvent::Audio { payload, .. } if payload[0] == 0x55));
        assert_eq!(s.destination(), Some(nat));
        // Another source while the latched one is live is refused.
        let t = start + Duration::from_millis(500);
        assert_eq!(
            s.handle_input(
                RtpInput::Receive {
                    source: other,
                    bytes: &audio
                },
                t
            ),
            Err(DropReason::UnlatchedSource { source_addr: other })
        );
        // After the latched one fell silent long enough, the new source takes over.
        let t = start + Duration::from_millis(1500);
        s.handle_input(
            RtpInput::Receive {
                source: other,
                bytes: &audio,
            },
            t,
        )
        .unwrap();
        assert_eq!(s.destination(), Some(other));
        assert_eq!(s.last_received_at(), Some(t));
        // A re-INVITE with a new address clears the latch.
        s.update_media(
            Some("198.51.100.8:5000".parse().unwrap()),
            true,
            Codec::Pcmu,
            0,
            Some(101),
        );
        assert_eq!(s.destination(), Some("198.51.100.8:5000".parse().unwrap()));
    }

    #[test]
    fn payload_types_are_sorted_and_bad_packets_typed() {
        let start = Instant::now();
        let mut s = session(start);
        let src: SocketAddr = REMOTE.parse().unwrap();
        let event = build_packet(101, true, 5, 800, 9, &[1, 0x8A, 0, 160]);
        s.handle_input(
            RtpInput::Receive {
                source: src,
                bytes: &event,
            },
            start,
        )
        .unwrap();
        let (_, events, _) = drain(&mut s);
        assert!(
            matches!(&events[1], RtpEvent::TelephoneEvent { payload, marker: true, .. } if payload == &[1, 0x8A, 0, 160])
        );
        let cn = build_packet(13, false, 6, 960, 9, &[40]);
        assert_eq!(
            s.handle_input(
                RtpInput::Receive {
                    source: src,
                    bytes: &cn
                },
                start
            ),
            Err(DropReason::UnexpectedPayloadType { payload_type: 13 })
        );
        let mut truncated_csrc = build_packet(0, false, 1, 1, 1, &[]);
        truncated_csrc[0] |= 0x0F; // 15 CSRCs announced, none present
        let mut bad_padding = build_packet(0, false, 1, 1, 1, &[1, 2, 3, 200]);
        bad_padding[0] |= 0x20;
        let mut truncated_ext = build_packet(0, false, 1, 1, 1, &[0, 0]);
        truncated_ext[0] |= 0x10;
        let rtcp = [0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0];
        let cases: Vec<(Vec<u8>, DropReason)> = vec![
            (vec![], DropReason::TooShort { len_bytes: 0 }),
            (vec![0x80; 11], DropReason::TooShort { len_bytes: 11 }),
            (vec![0x00; 20], DropReason::BadVersion { version: 0 }),
            (vec![0xC0; 20], DropReason::BadVersion { version: 3 }),
            (
                vec![0x80; PACKET_SIZE_MAX + 1],
                DropReason::TooLarge {
                    len_bytes: PACKET_SIZE_MAX + 1,
                },
            ),
            (truncated_csrc, DropReason::HeadersTruncated),
            (truncated_ext, DropReason::HeadersTruncated),
            (bad_padding, DropReason::BadPadding),
            (rtcp.to_vec(), DropReason::Rtcp),
        ];
        let dropped_before = s.stats().packets_dropped;
        for (bytes, reason) in &cases {
            assert_eq!(
                s.handle_input(RtpInput::Receive { source: src, bytes }, start),
                Err(*reason)
            );
        }
        assert_eq!(
            s.stats().packets_dropped,
            dropped_before + cases.len() as u64
        );
    }

    #[test]
    fn hold_stops_sending_but_keeps_the_clock() {
        let start = Instant::now();
        let mut s = session(start);
        s.handle_input(RtpInput::Timeout, start).unwrap();
        let (sent, _, _) = drain(&mut s);
        assert_eq!(sent.len(), 1);
        s.update_media(Some(REMOTE.parse().unwrap()), false, Codec::Pcmu, 0, None);
        s.handle_input(RtpInput::Timeout, start + Duration::from_millis(40))
            .unwrap();
        assert!(drain(&mut s).0.is_empty());
        s.update_media(Some(REMOTE.parse().unwrap()), true, Codec::Pcma, 8, None);
        s.handle_input(RtpInput::Timeout, start + Duration::from_millis(60))
            .unwrap();
        let (sent, _, _) = drain(&mut s);
        let p = parse_packet(&sent[0].1).unwrap();
        assert!(p.marker);
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.payload[0], 0xD5);
        assert_eq!(p.sequence, identity().sequence_start.wrapping_add(1));
        assert_eq!(
            p.timestamp,
            identity().timestamp_start.wrapping_add(3 * 160)
        );
    }

    #[test]
    fn receive_stats_count_loss_and_jitter() {
        let start = Instant::now();
        let mut s = session(start);
        let src: SocketAddr = REMOTE.parse().unwrap();
        // 100 packets with sequence crossing the wrap, one lost, arriving exactly on time.
        for i in 0..100u16 {
            if i == 50 {
                continue;
            }
            let seq = 65_500u16.wrapping_add(i);
            let ts = 1000u32 + 160 * u32::from(i);
            let bytes = build_packet(0, false, seq, ts, 5, &[0; 160]);
            let at = start + Duration::from_millis(20 * u64::from(i));
            s.handle_input(
                RtpInput::Receive {
                    source: src,
                    bytes: &bytes,
                },
                at,
            )
            .unwrap();
        }
        let stats = s.stats();
        assert_eq!(stats.packets_received, 99);
        assert_eq!(stats.packets_lost, 1);
        assert!(stats.jitter_ms < 0.01, "{}", stats.jitter_ms);
    }
}
