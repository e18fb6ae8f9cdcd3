//! From framed bytes to the request and response facts the endpoint acts on, and back: building
//! responses and our own requests with rsipstack's message types.
//!
//! rsipstack's parser validates every request with a method it knows (start line, Request-URI,
//! version, headers) and types the `From`/`To`/`CSeq`/`Contact` headers. Its `Method` has no
//! extension variant, so requests with an unknown method are answered 501 from the raw header
//! scan alone ([`super::framing::RawHead`]), as are malformed requests (400): a response needs
//! only the `Via`, `From`, `To`, `Call-ID` and `CSeq` values, which the scan keeps.

use std::net::SocketAddr;

use rsipstack::sip as rsip;
use rsipstack::sip::headers::untyped::ToTypedHeader;

use super::framing::{Framed, RawHead, Transport, is_token_byte};

/// SIP methods; the ones we do not implement keep their name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Info,
    Update,
    /// A method we know of but do not allow (REGISTER, SUBSCRIBE, …): 405.
    NotAllowed(String),
    /// A method we do not know: 501.
    Unknown(String),
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "REGISTER" | "SUBSCRIBE" | "NOTIFY" | "REFER" | "MESSAGE" | "PUBLISH" | "PRACK" => {
                Method::NotAllowed(token.to_string())
            }
            other => Method::Unknown(other.to_string()),
        }
    }

    /// The method name as on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::NotAllowed(name) | Method::Unknown(name) => name,
        }
    }
}

/// The methods we implement, for `Allow` headers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// The parts of the top `Via` that transaction matching and response routing need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopVia {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub branch: Option<String>,
    pub rport: bool,
}

impl TopVia {
    /// `host[:port]` as written, the sent-by used in transaction keys.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

/// RFC 3261 magic cookie that marks a branch as globally unique (§8.1.1.7).
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

/// Parses one via-parm: `SIP/2.0/UDP host[:port];params`.
pub fn parse_via_entry(entry: &str) -> Option<TopVia> {
    let entry = entry.trim();
    let (protocol, rest) = entry.split_once(|c: char| c.is_ascii_whitespace())?;
    let mut proto_parts = protocol.split('/');
    let (Some(name), Some(version), Some(transport), None) = (
        proto_parts.next(),
        proto_parts.next(),
        proto_parts.next(),
        proto_parts.next(),
    ) else {
        return None;
    };
    if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
        return None;
    }
    let mut params = rest.split(';');
    let sent_by = params.next()?.trim();
    let (host, port) = if let Some(v6) = sent_by.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.trim().parse().ok()?),
            None if after.trim().is_empty() => None,
            None => return None,
        };
        (format!("[{host}]"), port)
    } else {
        match sent_by.split_once(':') {
            Some((h, p)) => (h.trim().to_string(), Some(p.trim().parse().ok()?)),
            None => (sent_by.to_string(), None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let mut branch = None;
    let mut rport = false;
    for param in params {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (param.trim(), None),
        };
        if key.eq_ignore_ascii_case("branch") {
            branch = value.filter(|v| !v.is_empty()).map(str::to_string);
        } else if key.eq_ignore_ascii_case("rport") {
            rport = true;
        }
    }
    Some(TopVia {
        transport: transport.trim().to_ascii_uppercase(),
        host,
        port,
        branch,
        rport,
    })
}

/// The first via-parm of the first `Via` header value (a value may hold a comma list).
fn first_via_entry(value: &str) -> &str {
    value.split(',').next().unwrap_or(value)
}

/// What every response echoes from its request (RFC 3261 §8.2.6.2), prepared for sending back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseContext {
    /// `Via` values; the first one already carries `received`/`rport` for the source.
    pub vias: Vec<String>,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: String,
    /// Where the response goes (RFC 3261 §18.2.2, RFC 3581 §4).
    pub dest: SocketAddr,
    pub transport: Transport,
}

impl ResponseContext {
    /// Builds the context from a scanned head; `None` when a response cannot be built (no
    /// usable top `Via`, or a missing `From`/`To`/`Call-ID`/`CSeq`).
    pub fn from_head(
        head: &RawHead,
        source: SocketAddr,
        transport: Transport,
    ) -> Option<ResponseContext> {
        let mut vias: Vec<String> = head.all("Via").map(str::to_string).collect();
        let first = vias.first()?.clone();
        let top = parse_via_entry(first_via_entry(&first))?;
        let from = head.first("From")?.to_string();
        let to = head.first("To")?.to_string();
        let call_id = head.first("Call-ID")?.to_string();
        let cseq = head.first("CSeq")?.to_string();
        if call_id.is_empty() || cseq.is_empty() {
            return None;
        }
        let dest = response_destination(&top, source, transport);
        vias[0] = stamp_via(&first, &top, source);
        Some(ResponseContext {
            vias,
            from,
            to,
            call_id,
            cseq,
            dest,
            transport,
        })
    }
}

/// RFC 3261 §18.2.2 and RFC 3581 §4: reliable transports answer on the connection; UDP answers
/// to the source address, and to the source port only when `rport` asked for it (otherwise the
/// sent-by port, default 5060).
pub fn response_destination(via: &TopVia, source: SocketAddr, transport: Transport) -> SocketAddr {
    if transport.is_reliable() || via.rport {
        source
    } else {
        SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
    }
}

/// Adds `received` (when the sent-by host is not the source address) and fills `rport` in the
/// first via-parm of a `Via` value.
fn stamp_via(value: &str, top: &TopVia, source: SocketAddr) -> String {
    let (first, rest) = match value.split_once(',') {
        Some((f, r)) => (f, Some(r)),
        None => (value, None),
    };
    let mut out = String::with_capacity(value.len() + 40);
    let mut parts = first.split(';');
    out.push_str(parts.next().unwrap_or_default().trim_end());
    for param in parts {
        let key = param.split('=').next().unwrap_or_default().trim();
        if key.eq_ignore_ascii_case("rport") {
            out.push_str(&format!(";rport={}", source.port()));
        } else if key.eq_ignore_ascii_case("received") {
            // Replaced below with the address we saw.
        } else {
            out.push(';');
            out.push_str(param.trim());
        }
    }
    let host = top.host.trim_start_matches('[').trim_end_matches(']');
    let host_is_source = host.parse::<std::net::IpAddr>().ok() == Some(source.ip());
    if !host_is_source || top.rport {
        out.push_str(&format!(";received={}", source.ip()));
    }
    if let Some(rest) = rest {
        out.push(',');
        out.push_str(rest);
    }
    out
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    pub method: Method,
    pub request_uri: String,
    /// User part of the Request-URI (`pay` in `sip:pay@gw`).
    pub request_user: Option<String>,
    pub via: TopVia,
    pub from: String,
    pub from_tag: Option<String>,
    pub to: String,
    pub to_tag: Option<String>,
    pub call_id: String,
    pub cseq: u32,
    pub max_forwards: Option<u32>,
    /// The `Contact` URI (the remote target of a dialog).
    pub contact: Option<String>,
    /// `Record-Route` values in order (the route set of a dialog, RFC 3261 §12.1.1).
    pub record_routes: Vec<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Option tags of `Require`.
    pub require: Vec<String>,
    pub asserted_identity: Vec<String>,
    pub privacy: Vec<String>,
    pub context: ResponseContext,
}

/// A response to one of our requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingResponse {
    pub status: u16,
    pub branch: String,
    pub sent_by: String,
    pub cseq_method: String,
    pub call_id: String,
}

/// Why a request cannot be processed, with the response to send when one can be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// A short reason for the `Warning` header and logs.
    pub reason: &'static str,
    pub context: Option<Box<ResponseContext>>,
}

/// A framed message, sorted.
#[derive(Debug, Clone)]
pub enum Incoming {
    Request(Box<IncomingRequest>),
    Response(IncomingResponse),
}

/// Parses a framed message into the facts we act on.
pub fn parse(
    framed: &Framed,
    source: SocketAddr,
    transport: Transport,
) -> Result<Incoming, Rejection> {
    let start_line = framed.head.start_line.as_str();
    if start_line.starts_with("SIP/") {
        return parse_response(framed)
            .map(Incoming::Response)
            .ok_or(Rejection {
                status: 0,
                reason: "malformed response",
                context: None,
            });
    }
    let context = ResponseContext::from_head(&framed.head, source, transport);
    let reject = |status, reason| Rejection {
        status,
        reason,
        context: context.clone().map(Box::new),
    };
    let mut parts = start_line.split(' ');
    let (Some(method_token), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(400, "malformed request line"));
    };
    if method_token.is_empty() || !method_token.bytes().all(is_token_byte) {
        return Err(reject(400, "malformed method"));
    }
    if version != "SIP/2.0" {
        return Err(reject(505, "only SIP/2.0"));
    }
    let method = Method::from_token(method_token);
    let Some(context) = context.clone() else {
        return Err(reject(400, "missing Via, From, To, Call-ID or CSeq"));
    };
    if matches!(method, Method::Unknown(_)) {
        return Err(reject(501, "unknown method"));
    }
    let scheme = uri.split(':').next().unwrap_or_default();
    if !["sip", "sips", "tel"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return Err(reject(416, "unsupported URI scheme"));
    }
    let parsed = match rsip::SipMessage::try_from(framed.bytes.as_slice()) {
        Ok(rsip::SipMessage::Request(request)) => request,
        _ => return Err(reject(400, "unparseable request")),
    };
    let top_via_value = framed.head.first("Via").unwrap_or_default();
    let via = parse_via_entry(first_via_entry(top_via_value)).ok_or(reject(400, "bad Via"))?;
    let from_typed = parsed
        .headers
        .iter()
        .find_map(|h| match h {
            rsip::Header::From(from) => from.typed().ok(),
            _ => None,
        })
        .ok_or(reject(400, "bad From"))?;
    let to_typed = parsed
        .headers
        .iter()
        .find_map(|h| match h {
            rsip::Header::To(to) => to.typed().ok(),
            _ => None,
        })
        .ok_or(reject(400, "bad To"))?;
    let cseq_typed = parsed
        .headers
        .iter()
        .find_map(|h| match h {
            rsip::Header::CSeq(cseq) => cseq.typed().ok(),
            _ => None,
        })
        .ok_or(reject(400, "bad CSeq"))?;
    // CSeq's method must match the request's (RFC 3261 §8.2.2.3 checks are ours to make).
    if !cseq_typed
        .method
        .to_string()
        .eq_ignore_ascii_case(method.as_str())
    {
        return Err(reject(400, "CSeq method differs from request method"));
    }
    let max_forwards = match framed.head.first("Max-Forwards") {
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| reject(400, "bad Max-Forwards"))?,
        ),
        None => None,
    };
    let contact = match framed.head.first("Contact") {
        Some(value) => {
            let uri = super::identity::name_addr_uri(value).ok_or(reject(400, "bad Contact"))?;
            // The remote target must be a URI we can put in a Request-URI later.
            rsip::Uri::try_from(uri).map_err(|_| reject(400, "bad Contact URI"))?;
            Some(uri.to_string())
        }
        None => None,
    };
    let request_user = parsed
        .uri
        .auth
        .as_ref()
        .map(|auth| auth.user.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| super::identity::uri_number(uri).map(str::to_string));
    let list = |name: &str| -> Vec<String> {
        framed
            .head
            .all(name)
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    Ok(Incoming::Request(Box::new(IncomingRequest {
        method,
        request_uri: uri.to_string(),
        request_user,
        via,
        from: context.from.clone(),
        from_tag: from_typed.tag().map(|t| t.to_string()),
        to: context.to.clone(),
        to_tag: to_typed.tag().map(|t| t.to_string()),
        call_id: context.call_id.clone(),
        cseq: cseq_typed.seq,
        max_forwards,
        contact,
        record_routes: framed
            .head
            .all("Record-Route")
            .map(str::to_string)
            .collect(),
        content_type: framed
            .head
            .first("Content-Type")
            .map(|v| v.to_ascii_lowercase()),
        body: framed
            .bytes
            .get(framed.body_offset..)
            .unwrap_or_default()
            .to_vec(),
        require: list("Require"),
        asserted_identity: framed
            .head
            .all("P-Asserted-Identity")
            .map(str::to_string)
            .collect(),
        privacy: list("Privacy"),
        context,
    })))
}

fn parse_response(framed: &Framed) -> Option<IncomingResponse> {
    let mut parts = framed.head.start_line.splitn(3, ' ');
    if parts.next()? != "SIP/2.0" {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    if !(100..=699).contains(&status) {
        return None;
    }
    let via = parse_via_entry(first_via_entry(framed.head.first("Via")?))?;
    let cseq = framed.head.first("CSeq")?;
    let cseq_method = cseq.split_whitespace().nth(1)?.to_ascii_uppercase();
    Some(IncomingResponse {
        status,
        branch: via.branch.clone()?,
        sent_by: via.sent_by(),
        cseq_method,
        call_id: framed.head.first("Call-ID")?.to_string(),
    })
}

/// The parameters of one response.
#[derive(Debug, Clone, Default)]
pub struct ResponseParts<'a> {
    /// Our tag, added to `To` when it has none.
    pub to_tag: Option<&'a str>,
    pub headers: Vec<(&'static str, String)>,
    /// `(content type, body)`.
    pub body: Option<(&'static str, Vec<u8>)>,
}

/// Builds a response for the request behind `context`.
pub fn build_response(
    context: &ResponseContext,
    status: u16,
    parts: ResponseParts<'_>,
    user_agent: &str,
) -> Vec<u8> {
    let mut headers = rsip::Headers::default();
    for via in &context.vias {
        headers.push(rsip::Header::Via(rsip::headers::Via::new(via.as_str())));
    }
    headers.push(rsip::Header::From(rsip::headers::From::new(
        context.from.as_str(),
    )));
    let to = match parts.to_tag {
        Some(tag) if !has_tag(&context.to) => format!("{};tag={tag}", context.to),
        _ => context.to.clone(),
    };
    headers.push(rsip::Header::To(rsip::headers::To::new(to)));
    headers.push(rsip::Header::CallId(rsip::headers::CallId::new(
        context.call_id.as_str(),
    )));
    headers.push(rsip::Header::CSeq(rsip::headers::CSeq::new(
        context.cseq.as_str(),
    )));
    for (name, value) in parts.headers {
        headers.push(rsip::headers::make_header(name, value));
    }
    headers.push(rsip::Header::Server(rsip::headers::Server::new(user_agent)));
    let body = match parts.body {
        Some((content_type, body)) => {
            headers.push(rsip::Header::ContentType(rsip::headers::ContentType::new(
                content_type,
            )));
            body
        }
        None => Vec::new(),
    };
    headers.push(rsip::Header::ContentLength(
        rsip::headers::ContentLength::new(body.len().to_string()),
    ));
    let response = rsip::Response {
        status_code: rsip::StatusCode::from(status),
        wire_reason: None,
        version: rsip::Version::V2,
        headers,
        body,
    };
    response.to_bytes()
}

/// Whether a `From`/`To` value carries a `tag` parameter (outside the URI's angle brackets).
pub fn has_tag(value: &str) -> bool {
    header_param(value, "tag").is_some()
}

/// A header parameter of a `name-addr` value (after the `>`, or after the URI of an
/// `addr-spec`).
pub fn header_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let params = match value.rfind('>') {
        Some(close) => &value[close + 1..],
        None => value.split_once(';').map(|(_, p)| p).unwrap_or(""),
    };
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An in-dialog or out-of-dialog request we send.
#[derive(Debug, Clone)]
pub struct OutgoingRequest<'a> {
    pub method: rsip::Method,
    pub request_uri: &'a str,
    pub local_addr: SocketAddr,
    pub transport: Transport,
    pub branch: &'a str,
    pub routes: &'a [String],
    pub from: String,
    pub to: String,
    pub call_id: &'a str,
    pub cseq: u32,
    pub extra_headers: Vec<(&'static str, String)>,
}

/// Builds a request with rsipstack's types. Fails only when `request_uri` does not parse, which
/// the endpoint has ruled out when it accepted the remote target.
pub fn build_request(
    request: OutgoingRequest<'_>,
    user_agent: &str,
) -> Result<Vec<u8>, rsip::Error> {
    let uri = rsip::Uri::try_from(request.request_uri)?;
    let mut headers = rsip::Headers::default();
    headers.push(rsip::Header::Via(rsip::headers::Via::new(format!(
        "SIP/2.0/{} {};branch={};rport",
        request.transport.via_token(),
        request.local_addr,
        request.branch
    ))));
    headers.push(rsip::Header::MaxForwards(rsip::headers::MaxForwards::new(
        "70",
    )));
    for route in request.routes {
        headers.push(rsip::Header::Route(rsip::headers::Route::new(
            route.as_str(),
        )));
    }
    headers.push(rsip::Header::From(rsip::headers::From::new(request.from)));
    headers.push(rsip::Header::To(rsip::headers::To::new(request.to)));
    headers.push(rsip::Header::CallId(rsip::headers::CallId::new(
        request.call_id,
    )));
    headers.push(rsip::Header::CSeq(rsip::headers::CSeq::new(format!(
        "{} {}",
        request.cseq, request.method
    ))));
    for (name, value) in request.extra_headers {
        headers.push(rsip::headers::make_header(name, value));
    }
    headers.push(rsip::Header::UserAgent(rsip::headers::UserAgent::new(
        user_agent,
    )));
    headers.push(rsip::Header::ContentLength(
        rsip::headers::ContentLength::new("0"),
    ));
    Ok(rsip::Request {
        method: request.method,
        uri,
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
    .to_bytes())
}

#[cfg(test)]
mod tests {
    use super::super::framing::{FrameOutcome, frame_datagram};
    use super::*;

    fn framed(text: &str) -> Framed {
        match frame_datagram(text.as_bytes()) {
            FrameOutcome::Message(m) => m,
            other => panic!("{other:?}"),
        }
    }

    const SOURCE: &str = "192.0.2.5:5070";

    #[test]
    fn via_entries_parse() {
        let v = parse_via_entry("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK-x;rport").unwrap();
        assert_eq!(
            (v.host.as_str(), v.port, v.branch.as_deref(), v.rport),
            ("10.0.0.1", Some(5062), Some("z9hG4bK-x"), true)
        );
        let v = parse_via_entry("SIP/2.0/tcp [2001:db8::1]:5060 ; branch=z9hG4bK2").unwrap();
        assert_eq!(
            (v.transport.as_str(), v.host.as_str(), v.port),
            ("TCP", "[2001:db8::1]", Some(5060))
        );
        let v = parse_via_entry("SIP/2.0/UDP host.example").unwrap();
        assert_eq!((v.port, v.branch), (None, None));
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/1.0/UDP h",
            "SIP/2.0 h",
            "SIP/2.0/UDP h:x",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP [::1]x",
        ] {
            assert!(parse_via_entry(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn responses_echo_and_stamp_via() {
        let text = "OPTIONS sip:gw SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;rport, SIP/2.0/UDP proxy;branch=z9hG4bKb\r\n\
            Via: SIP/2.0/UDP other;branch=z9hG4bKc\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:gw>\r\nCall-ID: c1\r\nCSeq: 7 OPTIONS\r\n\r\n";
        let f = framed(text);
        let ctx =
            ResponseContext::from_head(&f.head, SOURCE.parse().unwrap(), Transport::Udp).unwrap();
        assert_eq!(ctx.dest, SOURCE.parse().unwrap());
        assert_eq!(
            ctx.vias[0],
            "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;rport=5070;received=192.0.2.5, SIP/2.0/UDP proxy;branch=z9hG4bKb"
        );
        let bytes = build_response(
            &ctx,
            200,
            ResponseParts {
                to_tag: Some("abc"),
                ..Default::default()
            },
            "telepay",
        );
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
        assert!(text.contains("To: <sip:gw>;tag=abc\r\n"));
        assert!(text.contains("Via: SIP/2.0/UDP other;branch=z9hG4bKc\r\n"));
        assert!(text.contains("CSeq: 7 OPTIONS\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        // The response parses with rsipstack.
        assert!(rsip::SipMessage::try_from(text.as_str()).is_ok());
        // Without rport, UDP responses go to the Via port.
        let f = framed(
            "BYE sip:gw SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKa\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:gw>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n",
        );
        let ctx =
            ResponseContext::from_head(&f.head, SOURCE.parse().unwrap(), Transport::Udp).unwrap();
        assert_eq!(ctx.dest, "192.0.2.5:5060".parse().unwrap());
        assert_eq!(ctx.vias[0], "SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKa");
        let ctx =
            ResponseContext::from_head(&f.head, SOURCE.parse().unwrap(), Transport::Tcp).unwrap();
        assert_eq!(ctx.dest, SOURCE.parse().unwrap());
    }

    #[test]
    fn request_facts() {
        let text = "INVITE sip:pay@gw.example;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
            Max-Forwards: 69\r\nFrom: \"A\" <sip:+4930123@trunk>;tag=ft\r\nTo: <sip:pay@gw.example>\r\nCall-ID: cid@x\r\n\
            CSeq: 101 INVITE\r\nContact: <sip:a@10.0.0.1:5060;transport=udp>\r\nRecord-Route: <sip:p1;lr>\r\n\
            Record-Route: <sip:p2;lr>\r\nRequire: timer, 100rel\r\nContent-Type: Application/SDP\r\nContent-Length: 3\r\n\r\nv=0";
        let Incoming::Request(r) =
            parse(&framed(text), SOURCE.parse().unwrap(), Transport::Udp).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.request_user.as_deref(), Some("pay"));
        assert_eq!(r.from_tag.as_deref(), Some("ft"));
        assert_eq!(r.to_tag, None);
        assert_eq!(r.cseq, 101);
        assert_eq!(r.max_forwards, Some(69));
        assert_eq!(
            r.contact.as_deref(),
            Some("sip:a@10.0.0.1:5060;transport=udp")
        );
        assert_eq!(r.record_routes, ["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(r.require, ["timer", "100rel"]);
        assert_eq!(r.content_type.as_deref(), Some("application/sdp"));
        assert_eq!(r.body, b"v=0");
    }

    #[test]
    fn bad_requests_get_the_right_status() {
        let head = "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\n";
        let cases = [
            (format!("FOO sip:b@y SIP/2.0\r\n{head}CSeq: 1 FOO\r\n\r\n"), 501, true),
            (format!("INVITE sip:b@y SIP/3.0\r\n{head}CSeq: 1 INVITE\r\n\r\n"), 505, true),
            (format!("INVITE http://b SIP/2.0\r\n{head}CSeq: 1 INVITE\r\n\r\n"), 416, true),
            (format!("INVITE sip:b@y SIP/2.0\r\n{head}CSeq: 1 BYE\r\n\r\n"), 400, true),
            (format!("INVITE sip:b@y SIP/2.0\r\n{head}CSeq: x INVITE\r\n\r\n"), 400, true),
            (format!("INVITE sip:b@y SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nMax-Forwards: many\r\n\r\n"), 400, true),
            (format!("INVITE sip:b@y SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nContact: <>\r\n\r\n"), 400, true),
            (format!("INVITE  sip:b@y SIP/2.0\r\n{head}CSeq: 1 INVITE\r\n\r\n"), 400, true),
            (format!("IN<VITE sip:b@y SIP/2.0\r\n{head}CSeq: 1 INVITE\r\n\r\n"), 400, true),
            ("INVITE sip:b@y SIP/2.0\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n".to_string(), 400, false),
        ];
        for (text, status, respondable) in cases {
            let err = parse(&framed(&text), SOURCE.parse().unwrap(), Transport::Udp).unwrap_err();
            assert_eq!(err.status, status, "{text}");
            assert_eq!(err.context.is_some(), respondable, "{text}");
        }
    }

    #[test]
    fn our_requests_parse_back() {
        let bytes = build_request(
            OutgoingRequest {
                method: rsip::Method::Bye,
                request_uri: "sip:a@10.0.0.1:5060;transport=udp",
                local_addr: "192.0.2.10:5060".parse().unwrap(),
                transport: Transport::Udp,
                branch: "z9hG4bKxyz",
                routes: &["<sip:p1;lr>".to_string()],
                from: "<sip:pay@gw>;tag=ours".into(),
                to: "<sip:+49@t>;tag=theirs".into(),
                call_id: "cid",
                cseq: 5,
                extra_headers: vec![("Reason", "SIP;cause=200".into())],
            },
            "telepay",
        )
        .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        // rsipstack normalises the transport parameter's case, which URI comparison ignores.
        assert!(
            text.to_ascii_lowercase()
                .starts_with("bye sip:a@10.0.0.1:5060;transport=udp sip/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("Route: <sip:p1;lr>\r\nFrom: <sip:pay@gw>;tag=ours\r\n"));
        assert!(text.contains("CSeq: 5 BYE\r\n"));
        let f = framed(&text);
        let Incoming::Request(r) = parse(&f, SOURCE.parse().unwrap(), Transport::Udp).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.via.branch.as_deref(), Some("z9hG4bKxyz"));
        assert_eq!(r.to_tag.as_deref(), Some("theirs"));
    }

    #[test]
    fn tags() {
        assert!(has_tag("<sip:a@b;tag=x>;tag=1"));
        assert!(!has_tag("<sip:a@b;tag=x>"));
        assert!(has_tag("sip:a@b;tag=1"));
        assert_eq!(header_param("<sip:a@b>;tag=1;x", "tag"), Some("1"));
    }
}
