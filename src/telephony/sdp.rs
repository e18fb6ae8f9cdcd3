//! SDP for G.711 calls: a bounded parser for offers (RFC 4566) and the answer rules of RFC 3264
//! that a telephony gateway needs.
//!
//! The contract is two pure functions and a writer:
//!
//! - [`SessionDescription::parse`] reads an offer (or the answer that arrives in an ACK after an
//!   offerless re-INVITE). Every size is bounded ([`SDP_SIZE_MAX`], [`LINE_LENGTH_MAX`],
//!   [`MEDIA_COUNT_MAX`], [`FORMATS_PER_MEDIA_MAX`], [`ATTRIBUTES_MAX`]); unknown lines and
//!   attributes are skipped, malformed ones give a typed [`SdpError`].
//! - [`negotiate`] picks the first audio stream we can serve and, within it, the first of the
//!   offer's formats that is PCMU or PCMA (the offerer's preference order wins, RFC 3264 §6.1),
//!   plus `telephone-event/8000` at whatever payload type the offer used. No common codec is
//!   [`SdpError::NoCommonCodec`], which the SIP layer turns into 488.
//! - [`write_answer`] answers every offered `m=` line in order (RFC 3264 §6: same count, same
//!   order; streams we do not serve get port 0), with one codec, the telephone-event type,
//!   `a=ptime:20` and the direction that mirrors the offer's (hold: `sendonly` → `recvonly`,
//!   `inactive` → `inactive`). [`write_offer`] writes our own offer for an offerless re-INVITE.
//!
//! Hold is recognised the RFC 3264 way (`a=sendonly`/`a=inactive`) and the RFC 2543 way
//! (`c=IN IP4 0.0.0.0`); see [`Negotiated::on_hold`].

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Largest SDP body accepted, in bytes. Real offers are under 2 KiB; the SIP layer bounds the
/// whole message at 64 KiB already.
pub const SDP_SIZE_MAX: usize = 16 * 1024;
/// Longest single SDP line accepted, in bytes.
pub const LINE_LENGTH_MAX: usize = 1024;
/// Most `m=` lines accepted in one description.
pub const MEDIA_COUNT_MAX: usize = 16;
/// Most formats (payload types) accepted on one `m=` line.
pub const FORMATS_PER_MEDIA_MAX: usize = 64;
/// Most `a=` lines accepted in one description (session and media level together).
pub const ATTRIBUTES_MAX: usize = 512;
/// The packetisation time we send and announce, in milliseconds.
pub const PTIME_MS: u32 = 20;
/// The telephone events we accept (RFC 4733 §3.2: 0–9, `*`, `#`, A–D).
pub const TELEPHONE_EVENTS: &str = "0-15";
/// Payload type we offer for telephone-event when we write the offer ourselves.
pub const TELEPHONE_EVENT_PT_DEFAULT: u8 = 101;

/// What went wrong with a description. Parse errors mean the peer sent something broken (the SIP
/// layer answers 400); the negotiation errors mean it is well formed but unusable (488).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("SDP body of {size_bytes} bytes exceeds the limit")]
    TooLarge { size_bytes: usize },
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    #[error("SDP line {line} is longer than the limit")]
    LineTooLong { line: usize },
    #[error("SDP line {line} is malformed: {reason}")]
    Malformed { line: usize, reason: &'static str },
    #[error("SDP does not start with v=0")]
    MissingVersion,
    #[error("SDP has more than the allowed number of {what}")]
    TooMany { what: &'static str },
    #[error("SDP connection address {0:?} is not an IP address")]
    UnsupportedAddress(String),
    #[error("SDP offers no audio stream we can use")]
    NoAudio,
    #[error("SDP audio stream has no connection address")]
    MissingConnection,
    #[error("SDP offers no codec in common (PCMU/PCMA)")]
    NoCommonCodec,
}

impl SdpError {
    /// Whether the description was well formed but unusable (488) rather than broken (400).
    pub fn is_not_acceptable(&self) -> bool {
        matches!(
            self,
            SdpError::NoAudio
                | SdpError::MissingConnection
                | SdpError::NoCommonCodec
                | SdpError::UnsupportedAddress(_)
        )
    }
}

/// The two G.711 codecs. Their payload types are static (RFC 3551 table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// μ-law, payload type 0.
    Pcmu,
    /// A-law, payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type.
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name used in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The code for digital silence (the code that decodes to zero, or closest to it), which
    /// fills the stream when nothing plays.
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }

    fn from_encoding(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }
}

/// Media direction attribute (RFC 4566 §6, RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction an answerer uses for an offered direction (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the side holding this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side holding this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// One `a=rtpmap` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate_hz: u32,
    pub channels: Option<u8>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, …
    pub media: String,
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, …
    pub proto: String,
    /// The formats as written (payload type numbers for RTP profiles).
    pub formats: Vec<String>,
    /// Media-level `c=` address, if any.
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp` lines as (payload type, parameters).
    pub fmtps: Vec<(u8, String)>,
    /// Media-level direction attribute, if any.
    pub direction: Option<Direction>,
    pub ptime_ms: Option<u32>,
}

impl MediaDescription {
    fn new(media: String, port: u16, proto: String, formats: Vec<String>) -> Self {
        MediaDescription {
            media,
            port,
            proto,
            formats,
            connection: None,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            direction: None,
            ptime_ms: None,
        }
    }

    fn rtpmap(&self, payload_type: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == payload_type)
    }

    fn is_rtp_avp(&self) -> bool {
        // Plain RTP only: SRTP (SAVP) and DTLS profiles would need keys we do not handle.
        self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF")
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    /// `o=` session id and version, kept so an answerer can tell a changed offer.
    pub origin_session_id: String,
    pub origin_version: String,
    /// Session-level `c=` address, if any.
    pub connection: Option<IpAddr>,
    /// Session-level direction attribute, if any.
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses a description from a message body.
    pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
        if body.len() > SDP_SIZE_MAX {
            return Err(SdpError::TooLarge {
                size_bytes: body.len(),
            });
        }
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut sdp = SessionDescription::default();
        let mut seen_version = false;
        let mut attributes = 0usize;
        for (index, raw_line) in text.split('\n').enumerate() {
            let line_number = index + 1;
            let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
            if line.len() > LINE_LENGTH_MAX {
                return Err(SdpError::LineTooLong { line: line_number });
            }
            if line.trim().is_empty() {
                continue;
            }
            let (kind, value) = split_type(line).ok_or(SdpError::Malformed {
                line: line_number,
                reason: "expected <type>=<value>",
            })?;
            if !seen_version {
                if kind != 'v' || value.trim() != "0" {
                    return Err(SdpError::MissingVersion);
                }
                seen_version = true;
                continue;
            }
            let malformed = |reason| SdpError::Malformed {
                line: line_number,
                reason,
            };
            match kind {
                'o' => {
                    let fields: Vec<&str> = value.split_whitespace().collect();
                    if fields.len() != 6 {
                        return Err(malformed("o= needs six fields"));
                    }
                    sdp.origin_session_id = fields[1].to_string();
                    sdp.origin_version = fields[2].to_string();
                }
                'c' => {
                    let address = parse_connection(value).map_err(|e| match e {
                        ConnectionError::Malformed => malformed("c= needs IN IP4|IP6 <address>"),
                        ConnectionError::NotIp(name) => SdpError::UnsupportedAddress(name),
                    })?;
                    match sdp.media.last_mut() {
                        Some(media) => media.connection = Some(address),
                        None => sdp.connection = Some(address),
                    }
                }
                'm' => {
                    if sdp.media.len() >= MEDIA_COUNT_MAX {
                        return Err(SdpError::TooMany { what: "m= lines" });
                    }
                    sdp.media.push(parse_media(value, line_number)?);
                }
                'a' => {
                    attributes += 1;
                    if attributes > ATTRIBUTES_MAX {
                        return Err(SdpError::TooMany { what: "a= lines" });
                    }
                    apply_attribute(&mut sdp, value, line_number)?;
                }
                // v, s, t, b, i, u, e, p, z, k, r and anything else carry nothing we act on.
                _ => {}
            }
        }
        if !seen_version {
            return Err(SdpError::MissingVersion);
        }
        Ok(sdp)
    }
}

fn split_type(line: &str) -> Option<(char, &str)> {
    let mut chars = line.chars();
    let kind = chars.next()?;
    if !kind.is_ascii_lowercase() || chars.next()? != '=' {
        return None;
    }
    Some((kind, &line[2..]))
}

enum ConnectionError {
    Malformed,
    NotIp(String),
}

fn parse_connection(value: &str) -> Result<IpAddr, ConnectionError> {
    let mut fields = value.split_whitespace();
    let (Some(net), Some(addr_type), Some(address), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(ConnectionError::Malformed);
    };
    if net != "IN" || !(addr_type == "IP4" || addr_type == "IP6") {
        return Err(ConnectionError::Malformed);
    }
    // Multicast addresses carry "/ttl[/count]"; the address itself is what we need.
    let host = address.split('/').next().unwrap_or(address);
    host.parse::<IpAddr>()
        .map_err(|_| ConnectionError::NotIp(host.to_string()))
}

fn parse_media(value: &str, line: usize) -> Result<MediaDescription, SdpError> {
    let malformed = |reason| SdpError::Malformed { line, reason };
    let mut fields = value.split_whitespace();
    let media = fields.next().ok_or(malformed("m= needs a media type"))?;
    let port_field = fields.next().ok_or(malformed("m= needs a port"))?;
    // "49170/2" announces a port count; the first port is the RTP port.
    let port_text = port_field.split('/').next().unwrap_or(port_field);
    let port: u16 = port_text.parse().map_err(|_| malformed("m= port"))?;
    let proto = fields.next().ok_or(malformed("m= needs a protocol"))?;
    let mut formats = Vec::new();
    for format in fields {
        if formats.len() >= FORMATS_PER_MEDIA_MAX {
            return Err(SdpError::TooMany { what: "formats" });
        }
        formats.push(format.to_string());
    }
    if formats.is_empty() {
        return Err(malformed("m= needs at least one format"));
    }
    Ok(MediaDescription::new(
        media.to_string(),
        port,
        proto.to_string(),
        formats,
    ))
}

fn apply_attribute(sdp: &mut SessionDescription, value: &str, line: usize) -> Result<(), SdpError> {
    let malformed = |reason| SdpError::Malformed { line, reason };
    let (name, rest) = match value.split_once(':') {
        Some((name, rest)) => (name, Some(rest)),
        None => (value.trim(), None),
    };
    if let Some(direction) = Direction::from_attribute(name) {
        match sdp.media.last_mut() {
            Some(media) => media.direction = Some(direction),
            None => sdp.direction = Some(direction),
        }
        return Ok(());
    }
    // The remaining attributes we read are media-level only.
    let Some(media) = sdp.media.last_mut() else {
        return Ok(());
    };
    match (name, rest) {
        ("rtpmap", Some(rest)) => {
            let (pt, encoding) = rest
                .trim()
                .split_once(char::is_whitespace)
                .ok_or(malformed("rtpmap needs <pt> <encoding>/<rate>"))?;
            let payload_type = parse_payload_type(pt).ok_or(malformed("rtpmap payload type"))?;
            let mut parts = encoding.trim().split('/');
            let name = parts.next().unwrap_or_default();
            let clock_rate_hz = parts
                .next()
                .and_then(|r| r.trim().parse().ok())
                .ok_or(malformed("rtpmap clock rate"))?;
            let channels = match parts.next() {
                Some(c) => Some(c.trim().parse().map_err(|_| malformed("rtpmap channels"))?),
                None => None,
            };
            if media.rtpmaps.iter().all(|m| m.payload_type != payload_type) {
                media.rtpmaps.push(RtpMap {
                    payload_type,
                    encoding: name.to_string(),
                    clock_rate_hz,
                    channels,
                });
            }
        }
        ("fmtp", Some(rest)) => {
            let (pt, params) = rest
                .trim()
                .split_once(char::is_whitespace)
                .unwrap_or((rest.trim(), ""));
            let payload_type = parse_payload_type(pt).ok_or(malformed("fmtp payload type"))?;
            media.fmtps.push((payload_type, params.trim().to_string()));
        }
        ("ptime", Some(rest)) => {
            // Some peers write fractional ptime ("20.0"); only the integer part matters here.
            let whole = rest.trim().split('.').next().unwrap_or_default();
            media.ptime_ms = Some(whole.parse().map_err(|_| malformed("ptime"))?);
        }
        _ => {}
    }
    Ok(())
}

fn parse_payload_type(text: &str) -> Option<u8> {
    let pt: u8 = text.trim().parse().ok()?;
    (pt < 128).then_some(pt)
}

/// The outcome of negotiating an offer: which stream, which codec, where to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Index of the answered audio `m=` line in the offer.
    pub media_index: usize,
    pub codec: Codec,
    /// Payload type the offer used for the codec (0 or 8, or a dynamic one mapped to it).
    pub codec_payload_type: u8,
    /// Payload type of `telephone-event/8000`, when the offer had it.
    pub telephone_event_payload_type: Option<u8>,
    /// Where the offerer receives RTP; `None` when the address is null (0.0.0.0 hold) or the
    /// port is 0.
    pub remote_rtp: Option<SocketAddr>,
    /// The offerer's direction.
    pub remote_direction: Direction,
    /// Our direction in the answer.
    pub local_direction: Direction,
}

impl Negotiated {
    /// Whether the offerer has put the call on hold: it will not receive our media.
    pub fn on_hold(&self) -> bool {
        !self.remote_direction.receives() || self.remote_rtp.is_none()
    }

    /// Whether we should send RTP.
    pub fn we_send(&self) -> bool {
        self.local_direction.sends() && self.remote_rtp.is_some()
    }
}

/// Picks the stream and codec we answer with. `codecs` lists what we accept; the offer's order
/// decides among them.
pub fn negotiate(offer: &SessionDescription, codecs: &[Codec]) -> Result<Negotiated, SdpError> {
    let mut saw_audio = false;
    let mut missing_connection = false;
    for (media_index, media) in offer.media.iter().enumerate() {
        if !media.media.eq_ignore_ascii_case("audio") || !media.is_rtp_avp() || media.port == 0 {
            continue;
        }
        saw_audio = true;
        let Some((codec, codec_payload_type)) = pick_codec(media, codecs) else {
            continue;
        };
        let Some(address) = media.connection.or(offer.connection) else {
            missing_connection = true;
            continue;
        };
        let remote_rtp = (!address.is_unspecified()).then(|| SocketAddr::new(address, media.port));
        let remote_direction = media.direction.or(offer.direction).unwrap_or_default();
        return Ok(Negotiated {
            media_index,
            codec,
            codec_payload_type,
            telephone_event_payload_type: telephone_event_type(media),
            remote_rtp,
            remote_direction,
            local_direction: remote_direction.answer(),
        });
    }
    if missing_connection {
        Err(SdpError::MissingConnection)
    } else if saw_audio {
        Err(SdpError::NoCommonCodec)
    } else {
        Err(SdpError::NoAudio)
    }
}

fn pick_codec(media: &MediaDescription, codecs: &[Codec]) -> Option<(Codec, u8)> {
    media.formats.iter().find_map(|format| {
        let pt = parse_payload_type(format)?;
        let codec = match media.rtpmap(pt) {
            Some(map) => {
                let mono = map.channels.is_none_or(|c| c == 1);
                let codec = Codec::from_encoding(&map.encoding)?;
                (map.clock_rate_hz == 8000 && mono).then_some(codec)?
            }
            None => match pt {
                0 => Codec::Pcmu,
                8 => Codec::Pcma,
                _ => return None,
            },
        };
        codecs.contains(&codec).then_some((codec, pt))
    })
}

fn telephone_event_type(media: &MediaDescription) -> Option<u8> {
    media.formats.iter().find_map(|format| {
        let pt = parse_payload_type(format)?;
        let map = media.rtpmap(pt)?;
        // Events must share the audio clock (RFC 4733 §2.1); telephone-event/16000 is useless
        // beside 8 kHz G.711.
        (map.encoding.eq_ignore_ascii_case("telephone-event") && map.clock_rate_hz == 8000)
            .then_some(pt)
    })
}

/// Our side of a description: where we receive, and the `o=` line's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    pub address: IpAddr,
    pub rtp_port: u16,
    pub session_id: u64,
    /// Incremented by the caller whenever the description it writes changes (RFC 3264 §8).
    pub session_version: u64,
}

fn write_session_head(out: &mut String, local: &LocalMedia) {
    let ip = ip_kind(local.address);
    // Writing into a String cannot fail, so the fmt::Result is ignored.
    let _ = write!(
        out,
        "v=0\r\no=telepay {} {} IN {ip} {}\r\ns=telepay\r\nc=IN {ip} {}\r\nt=0 0\r\n",
        local.session_id, local.session_version, local.address, local.address
    );
}

fn ip_kind(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

fn write_audio(
    out: &mut String,
    port: u16,
    proto: &str,
    codec: Codec,
    codec_pt: u8,
    te_pt: Option<u8>,
) {
    let _ = write!(out, "m=audio {port} {proto} {codec_pt}");
    if let Some(te) = te_pt {
        let _ = write!(out, " {te}");
    }
    let _ = write!(
        out,
        "\r\na=rtpmap:{codec_pt} {}/8000\r\n",
        codec.encoding_name()
    );
    if let Some(te) = te_pt {
        let _ = write!(
            out,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} {TELEPHONE_EVENTS}\r\n"
        );
    }
    let _ = write!(out, "a=ptime:{PTIME_MS}\r\n");
}

/// Writes the answer to `offer` for the negotiated stream.
pub fn write_answer(
    offer: &SessionDescription,
    negotiated: &Negotiated,
    local: &LocalMedia,
) -> String {
    let mut out = String::with_capacity(512);
    write_session_head(&mut out, local);
    for (index, media) in offer.media.iter().enumerate() {
        if index == negotiated.media_index {
            write_audio(
                &mut out,
                local.rtp_port,
                &media.proto,
                negotiated.codec,
                negotiated.codec_payload_type,
                negotiated.telephone_event_payload_type,
            );
            let _ = write!(out, "a={}\r\n", negotiated.local_direction.attribute());
        } else {
            // A rejected stream keeps its type, protocol and one format, with port 0.
            let format = media.formats.first().map(String::as_str).unwrap_or("0");
            let _ = write!(out, "m={} 0 {} {format}\r\n", media.media, media.proto);
        }
    }
    out
}

/// Writes our offer (for an offerless re-INVITE): the call's codec and telephone-event.
pub fn write_offer(
    local: &LocalMedia,
    codec: Codec,
    telephone_event_pt: Option<u8>,
    direction: Direction,
) -> String {
    let mut out = String::with_capacity(384);
    write_session_head(&mut out, local);
    write_audio(
        &mut out,
        local.rtp_port,
        "RTP/AVP",
        codec,
        codec.static_payload_type(),
        telephone_event_pt,
    );
    let _ = write!(out, "a={}\r\n", direction.attribute());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP_OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
        c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 9 18 0 101\r\n\
        a=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
        a=ptime:20\r\na=sendrecv\r\n";

    fn local() -> LocalMedia {
        LocalMedia {
            address: "192.0.2.10".parse().unwrap(),
            rtp_port: 20000,
            session_id: 42,
            session_version: 1,
        }
    }

    #[test]
    fn offer_order_decides_the_codec() {
        let sdp = SessionDescription::parse(SIPP_OFFER.as_bytes()).unwrap();
        let n = negotiate(&sdp, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.codec_payload_type, 8);
        assert_eq!(n.telephone_event_payload_type, Some(101));
        assert_eq!(n.remote_rtp, Some("127.0.0.1:6000".parse().unwrap()));
        assert!(!n.on_hold());
        // Our own acceptable set still filters.
        let n = negotiate(&sdp, &[Codec::Pcmu]).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.codec_payload_type, 0);
    }

    #[test]
    fn answer_carries_one_codec_events_ptime_and_direction() {
        let sdp = SessionDescription::parse(SIPP_OFFER.as_bytes()).unwrap();
        let n = negotiate(&sdp, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        let answer = write_answer(&sdp, &n, &local());
        assert!(
            answer.contains("m=audio 20000 RTP/AVP 8 101\r\n"),
            "{answer}"
        );
        assert!(answer.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(answer.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"));
        assert!(answer.contains("a=ptime:20\r\na=sendrecv\r\n"));
        assert!(answer.contains("c=IN IP4 192.0.2.10\r\n"));
        // The answer parses back and negotiates to the same codec from our side.
        let back = SessionDescription::parse(answer.as_bytes()).unwrap();
        let n2 = negotiate(&back, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!(n2.codec, Codec::Pcma);
        assert_eq!(n2.remote_rtp, Some("192.0.2.10:20000".parse().unwrap()));
    }

    #[test]
    fn dynamic_telephone_event_type_is_used_as_offered() {
        let offer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n\
            m=audio 4000 RTP/AVP 0 96\na=rtpmap:96 telephone-event/8000\n";
        let sdp = SessionDescription::parse(offer.as_bytes()).unwrap();
        let n = negotiate(&sdp, &[Codec::Pcmu]).unwrap();
        assert_eq!(n.telephone_event_payload_type, Some(96));
        let answer = write_answer(&sdp, &n, &local());
        assert!(answer.contains("m=audio 20000 RTP/AVP 0 96\r\n"));
    }

    #[test]
    fn telephone_event_at_16k_is_not_taken() {
        let offer = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0 97\r\n\
            a=rtpmap:97 telephone-event/16000\r\n";
        let sdp = SessionDescription::parse(offer.as_bytes()).unwrap();
        assert_eq!(
            negotiate(&sdp, &[Codec::Pcmu])
                .unwrap()
                .telephone_event_payload_type,
            None
        );
    }

    #[test]
    fn hold_forms_are_recognised_and_mirrored() {
        for (attr, remote, ours) in [
            ("a=sendonly", Direction::SendOnly, Direction::RecvOnly),
            ("a=inactive", Direction::Inactive, Direction::Inactive),
            ("a=recvonly", Direction::RecvOnly, Direction::SendOnly),
        ] {
            let offer = format!("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n{attr}\r\n");
            let sdp = SessionDescription::parse(offer.as_bytes()).unwrap();
            let n = negotiate(&sdp, &[Codec::Pcmu]).unwrap();
            assert_eq!(n.remote_direction, remote);
            assert_eq!(n.local_direction, ours);
            assert_eq!(n.on_hold(), remote != Direction::RecvOnly, "{attr}");
            let answer = write_answer(&sdp, &n, &local());
            assert!(answer.contains(&format!("a={}\r\n", ours.attribute())));
        }
        // RFC 2543 hold: null connection address.
        let offer = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let n = negotiate(
            &SessionDescription::parse(offer.as_bytes()).unwrap(),
            &[Codec::Pcmu],
        )
        .unwrap();
        assert!(n.on_hold());
        assert!(!n.we_send());
        // Session-level direction applies to media without its own.
        let offer = "v=0\r\nc=IN IP4 10.0.0.1\r\na=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n";
        let n = negotiate(
            &SessionDescription::parse(offer.as_bytes()).unwrap(),
            &[Codec::Pcmu],
        )
        .unwrap();
        assert_eq!(n.remote_direction, Direction::SendOnly);
    }

    #[test]
    fn media_level_connection_overrides_session_level() {
        let offer = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 8\r\nc=IN IP4 10.0.0.2\r\n";
        let n = negotiate(
            &SessionDescription::parse(offer.as_bytes()).unwrap(),
            &[Codec::Pcma],
        )
        .unwrap();
        assert_eq!(n.remote_rtp, Some("10.0.0.2:4000".parse().unwrap()));
        let offer = "v=0\r\nc=IN IP6 2001:db8::1\r\nm=audio 4000 RTP/AVP 8\r\n";
        let n = negotiate(
            &SessionDescription::parse(offer.as_bytes()).unwrap(),
            &[Codec::Pcma],
        )
        .unwrap();
        assert_eq!(n.remote_rtp, Some("[2001:db8::1]:4000".parse().unwrap()));
    }

    #[test]
    fn other_streams_are_rejected_in_place() {
        let offer = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 96\r\n\
            m=audio 4000 RTP/SAVP 0\r\nm=audio 4002 RTP/AVP 0\r\n";
        let sdp = SessionDescription::parse(offer.as_bytes()).unwrap();
        let n = negotiate(&sdp, &[Codec::Pcmu]).unwrap();
        assert_eq!(n.media_index, 2);
        let answer = write_answer(&sdp, &n, &local());
        let m_lines: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            [
                "m=video 0 RTP/AVP 96",
                "m=audio 0 RTP/SAVP 0",
                "m=audio 20000 RTP/AVP 0"
            ]
        );
    }

    #[test]
    fn unusable_offers_give_not_acceptable_errors() {
        let cases = [
            (
                "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 18 9\r\n",
                SdpError::NoCommonCodec,
            ),
            (
                "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 4000 RTP/AVP 96\r\n",
                SdpError::NoAudio,
            ),
            (
                "v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
                SdpError::MissingConnection,
            ),
            (
                "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMU/16000\r\n",
                SdpError::NoCommonCodec,
            ),
            (
                "v=0\r\nc=IN IP4 host.example\r\nm=audio 4000 RTP/AVP 0\r\n",
                SdpError::UnsupportedAddress("host.example".into()),
            ),
        ];
        for (text, expected) in cases {
            let result = SessionDescription::parse(text.as_bytes())
                .and_then(|s| negotiate(&s, &[Codec::Pcmu, Codec::Pcma]));
            assert_eq!(result, Err(expected.clone()), "{text}");
            assert!(expected.is_not_acceptable());
        }
    }

    #[test]
    fn malformed_descriptions_are_typed_errors() {
        let long_line = format!("v=0\r\na={}\r\n", "x".repeat(LINE_LENGTH_MAX + 1));
        let many_media = format!(
            "v=0\r\n{}",
            "m=audio 1 RTP/AVP 0\r\n".repeat(MEDIA_COUNT_MAX + 1)
        );
        let many_formats = format!(
            "v=0\r\nm=audio 1 RTP/AVP{}\r\n",
            " 0".repeat(FORMATS_PER_MEDIA_MAX + 1)
        );
        let many_attrs = format!("v=0\r\n{}", "a=x\r\n".repeat(ATTRIBUTES_MAX + 1));
        type Case = (Vec<u8>, fn(&SdpError) -> bool);
        let cases: Vec<Case> = vec![
            (b"".to_vec(), |e| *e == SdpError::MissingVersion),
            (b"o=- 1 1 IN IP4 1.2.3.4\r\n".to_vec(), |e| {
                *e == SdpError::MissingVersion
            }),
            (b"v=1\r\n".to_vec(), |e| *e == SdpError::MissingVersion),
            (b"v=0\r\ngarbage\r\n".to_vec(), |e| {
                matches!(e, SdpError::Malformed { line: 2, .. })
            }),
            (b"v=0\r\nm=audio x RTP/AVP 0\r\n".to_vec(), |e| {
                matches!(e, SdpError::Malformed { .. })
            }),
            (b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n".to_vec(), |e| {
                matches!(e, SdpError::Malformed { .. })
            }),
            (b"v=0\r\nm=audio 4000 RTP/AVP\r\n".to_vec(), |e| {
                matches!(e, SdpError::Malformed { .. })
            }),
            (b"v=0\r\nc=IN\r\n".to_vec(), |e| {
                matches!(e, SdpError::Malformed { .. })
            }),
            (b"v=0\r\no=only three fields\r\n".to_vec(), |e| {
                matches!(e, SdpError::Malformed { .. })
            }),
            (
                b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:300 PCMU/8000\r\n".to_vec(),
                |e| matches!(e, SdpError::Malformed { .. }),
            ),
            (
                b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n".to_vec(),
                |e| matches!(e, SdpError::Malformed { .. }),
            ),
            (
                b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=ptime:abc\r\n".to_vec(),
                |e| matches!(e, SdpError::Malformed { .. }),
            ),
            (b"v=0\r\n\xff\xfe\r\n".to_vec(), |e| *e == SdpError::NotUtf8),
            (vec![b'v'; SDP_SIZE_MAX + 1], |e| {
                matches!(e, SdpError::TooLarge { .. })
            }),
            (long_line.into_bytes(), |e| {
                matches!(e, SdpError::LineTooLong { line: 2 })
            }),
            (many_media.into_bytes(), |e| {
                matches!(e, SdpError::TooMany { .. })
            }),
            (many_formats.into_bytes(), |e| {
                matches!(e, SdpError::TooMany { .. })
            }),
            (many_attrs.into_bytes(), |e| {
                matches!(e, SdpError::TooMany { .. })
            }),
        ];
        for (body, check) in cases {
            let err = SessionDescription::parse(&body).unwrap_err();
            assert!(
                check(&err),
                "{:?} gave {err:?}",
                String::from_utf8_lossy(&body[..body.len().min(60)])
            );
            assert!(!err.is_not_acceptable());
        }
    }

    #[test]
    fn offer_round_trips() {
        let text = write_offer(&local(), Codec::Pcmu, Some(101), Direction::SendRecv);
        let sdp = SessionDescription::parse(text.as_bytes()).unwrap();
        let n = negotiate(&sdp, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event_payload_type, Some(101));
        assert_eq!(sdp.origin_session_id, "42");
        assert_eq!(sdp.origin_version, "1");
    }
}
