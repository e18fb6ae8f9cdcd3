//! Who is calling: trunk allow-lists (address prefixes), caller identity from
//! `P-Asserted-Identity` or `From`, and E.164 normalisation.
//!
//! The rule (RFC 3325 §9.1: P-Asserted-Identity is believed only from within the trust domain):
//!
//! 1. From a trusted trunk, the first `P-Asserted-Identity` URI that holds a number (a `tel:` URI
//!    or the user part of a `sip:` URI) is the caller, even when `Privacy: id` asks us not to
//!    pass it on — we do not pass it on, we identify the payer by it, and report
//!    `privacy_requested` so the IVR never speaks or shows it.
//! 2. Otherwise, a `Privacy` header asking for `id`, `user` or `header`, or an anonymous `From`
//!    (`anonymous`, `restricted`, `private`, the `anonymous.invalid` host of RFC 3323), makes the
//!    caller [`CallerIdentity::Withheld`].
//! 3. Otherwise the `From` user part, normalised to E.164; a user part that is not a number
//!    (`unknown`, `unavailable`, letters) makes the caller [`CallerIdentity::Unknown`].

use std::net::IpAddr;
use std::str::FromStr;

/// An address prefix (`192.0.2.0/24`, `2001:db8::/32`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    address: IpAddr,
    prefix_len: u8,
}

/// A prefix that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an address or address/prefix: {0:?}")]
pub struct IpNetParseError(pub String);

impl IpNet {
    /// Whether `ip` lies inside the prefix. IPv4-mapped IPv6 addresses (a dual-stack socket's
    /// view of an IPv4 peer) are compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix_len)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix_len)
            }
            _ => false,
        }
    }
}

fn prefix_matches(net: &[u8], ip: &[u8], prefix_len: u8) -> bool {
    let mut bits_left = u32::from(prefix_len);
    for (n, i) in net.iter().zip(ip) {
        if bits_left == 0 {
            return true;
        }
        let bits = bits_left.min(8);
        // bits is 1..=8, so the shift is in range.
        let mask = 0xFFu8 << (8 - bits);
        if (n & mask) != (i & mask) {
            return false;
        }
        bits_left -= bits;
    }
    true
}

impl FromStr for IpNet {
    type Err = IpNetParseError;

    fn from_str(s: &str) -> Result<IpNet, IpNetParseError> {
        let error = || IpNetParseError(s.to_string());
        let (address_text, prefix_text) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let address: IpAddr = address_text.parse().map_err(|_| error())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix_text {
            Some(p) => p.parse::<u8>().map_err(|_| error())?,
            None => max,
        };
        if prefix_len > max {
            return Err(error());
        }
        Ok(IpNet {
            address,
            prefix_len,
        })
    }
}

/// Whether any prefix in `list` contains `ip`.
pub fn list_contains(list: &[IpNet], ip: IpAddr) -> bool {
    list.iter().any(|net| net.contains(ip))
}

/// How numbers are written on the trunk, for normalising them to E.164.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPlan {
    /// Country calling code without `+` (e.g. `49`).
    pub country_code: String,
    /// Trunk prefix of national numbers (`0` in most of Europe, `1` in NANP; empty for none).
    pub national_prefix: String,
    /// International call prefix (`00` in most countries, `011` in NANP).
    pub international_prefix: String,
    /// Whether a number with neither prefix nor `+` is national (true) or already carries its
    /// country code (false, as most trunks that drop the `+` send it).
    pub bare_numbers_are_national: bool,
}

impl Default for NumberPlan {
    fn default() -> Self {
        NumberPlan {
            country_code: "49".to_string(),
            national_prefix: "0".to_string(),
            international_prefix: "00".to_string(),
            bare_numbers_are_national: false,
        }
    }
}

/// Longest E.164 number: 15 digits (ITU-T E.164 §6.1).
pub const E164_DIGITS_MAX: usize = 15;
/// Shortest number we accept as a caller's: country code plus a few digits.
pub const E164_DIGITS_MIN: usize = 6;

impl NumberPlan {
    /// Normalises a dialled or presented number to `+<digits>`, or `None` if it is not a number.
    /// Visual separators (space, `-`, `.`, `(`, `)`) are ignored (RFC 3966 §5.1.1).
    pub fn to_e164(&self, raw: &str) -> Option<String> {
        let cleaned: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = if let Some(rest) = cleaned.strip_prefix('+') {
            rest.to_string()
        } else if !self.international_prefix.is_empty()
            && cleaned.starts_with(&self.international_prefix)
        {
            cleaned[self.international_prefix.len()..].to_string()
        } else if !self.national_prefix.is_empty() && cleaned.starts_with(&self.national_prefix) {
            format!(
                "{}{}",
                self.country_code,
                &cleaned[self.national_prefix.len()..]
            )
        } else if self.bare_numbers_are_national {
            format!("{}{}", self.country_code, cleaned)
        } else {
            cleaned
        };
        let valid = (E164_DIGITS_MIN..=E164_DIGITS_MAX).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        valid.then(|| format!("+{digits}"))
    }
}

/// The caller as the IVR needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallerIdentity {
    /// A number in E.164 form (`+4930123456`). `privacy_requested` means the caller asked that
    /// it not be revealed (RFC 3323): identify by it, never speak or display it.
    Number {
        e164: String,
        privacy_requested: bool,
    },
    /// The caller withheld their number.
    Withheld,
    /// No usable number was presented.
    Unknown,
}

/// What the identity rule reads from a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentitySources<'a> {
    /// `P-Asserted-Identity` header values, in order.
    pub asserted: &'a [&'a str],
    /// `Privacy` header values.
    pub privacy: &'a [&'a str],
    /// The raw `From` header value.
    pub from: &'a str,
    /// Whether the request came from a trusted trunk.
    pub trusted: bool,
}

/// Applies the rule in the module docs.
pub fn caller_identity(sources: IdentitySources<'_>, plan: &NumberPlan) -> CallerIdentity {
    let privacy_requested = sources.privacy.iter().any(|value| {
        value.split(';').map(str::trim).any(|v| {
            ["id", "user", "header"]
                .iter()
                .any(|p| v.eq_ignore_ascii_case(p))
        })
    });
    if sources.trusted {
        for value in sources.asserted {
            for entry in split_header_list(value) {
                let Some(uri) = name_addr_uri(entry) else {
                    continue;
                };
                if let Some(e164) = uri_number(uri).and_then(|n| plan.to_e164(n)) {
                    return CallerIdentity::Number {
                        e164,
                        privacy_requested,
                    };
                }
            }
        }
    }
    if privacy_requested {
        return CallerIdentity::Withheld;
    }
    let Some(uri) = name_addr_uri(sources.from) else {
        return CallerIdentity::Unknown;
    };
    let host = uri_host(uri);
    let user = uri_number(uri).unwrap_or_default();
    let anonymous = ["anonymous", "restricted", "private", "withheld"]
        .iter()
        .any(|a| user.eq_ignore_ascii_case(a));
    if anonymous || host.is_some_and(|h| h.eq_ignore_ascii_case("anonymous.invalid")) {
        return CallerIdentity::Withheld;
    }
    match plan.to_e164(user) {
        Some(e164) => CallerIdentity::Number {
            e164,
            privacy_requested: false,
        },
        None => CallerIdentity::Unknown,
    }
}

/// Splits a header value on commas that are outside quotes and angle brackets.
pub fn split_header_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth_angle = false;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => depth_angle = true,
            '>' if !in_quotes => depth_angle = false,
            ',' if !in_quotes && !depth_angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// The URI of a `name-addr` (`"Name" <uri>;params`) or `addr-spec` (`uri;params`).
pub fn name_addr_uri(value: &str) -> Option<&str> {
    let value = value.trim();
    // Skip a quoted display name first: it may itself contain '<'.
    let rest = if let Some(quoted) = value.strip_prefix('"') {
        let mut escaped = false;
        let mut close = None;
        for (i, c) in quoted.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                close = Some(i);
                break;
            }
        }
        &quoted[close? + 1..]
    } else {
        value
    };
    if let Some(open) = rest.find('<') {
        let inner = &rest[open + 1..];
        let close = inner.find('>')?;
        let uri = inner[..close].trim();
        return (!uri.is_empty()).then_some(uri);
    }
    // addr-spec: header parameters follow the first ';' (RFC 3261 §20.10).
    let uri = rest.split(';').next()?.trim();
    (!uri.is_empty()).then_some(uri)
}

/// The number or user part of a `sip:`, `sips:` or `tel:` URI, without parameters.
pub fn uri_number(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        return rest.split(';').next().map(str::trim);
    }
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return None;
    }
    let (userinfo, _) = rest.split_once('@')?;
    // user ; user-params : password
    let user = userinfo.split([';', ':']).next()?;
    Some(user)
}

/// The host part of a `sip:`/`sips:` URI.
pub fn uri_host(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once(':')?;
    let host_part = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    host_part.split([';', '?', ':']).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> NumberPlan {
        NumberPlan::default()
    }

    #[test]
    fn prefixes_match_v4_v6_and_mapped() {
        let net: IpNet = "192.0.2.0/24".parse().unwrap();
        assert!(net.contains("192.0.2.77".parse().unwrap()));
        assert!(!net.contains("192.0.3.1".parse().unwrap()));
        assert!(net.contains("::ffff:192.0.2.5".parse().unwrap()));
        let odd: IpNet = "10.0.0.0/9".parse().unwrap();
        assert!(odd.contains("10.127.255.255".parse().unwrap()));
        assert!(!odd.contains("10.128.0.0".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("192.0.2.1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "::/129", "host", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_normalise_to_e164() {
        let p = plan();
        let cases = [
            ("+49 30 1234567", Some("+49301234567")),
            ("004930123456", Some("+4930123456")),
            ("030123456", Some("+4930123456")),
            ("4930123456", Some("+4930123456")),
            ("(030) 123-456", Some("+4930123456")),
            ("+0301234", None),
            ("12345", None),
            ("+1234567890123456", None),
            ("unknown", None),
            ("", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(p.to_e164(raw).as_deref(), expected, "{raw}");
        }
        let nanp = NumberPlan {
            country_code: "1".into(),
            national_prefix: "1".into(),
            international_prefix: "011".into(),
            bare_numbers_are_national: true,
        };
        assert_eq!(nanp.to_e164("2025550143").as_deref(), Some("+12025550143"));
        assert_eq!(nanp.to_e164("12025550143").as_deref(), Some("+12025550143"));
        assert_eq!(
            nanp.to_e164("01144201234567").as_deref(),
            Some("+44201234567")
        );
    }

    #[test]
    fn identity_rule() {
        let p = plan();
        let id = |asserted: &[&str], privacy: &[&str], from: &str, trusted: bool| {
            caller_identity(
                IdentitySources {
                    asserted,
                    privacy,
                    from,
                    trusted,
                },
                &p,
            )
        };
        let number = |n: &str, privacy_requested| CallerIdentity::Number {
            e164: n.into(),
            privacy_requested,
        };
        // Trusted PAI wins over From, tel: and sip: forms, first usable entry.
        assert_eq!(
            id(
                &["\"Bob\" <sip:+4930111111@trunk;user=phone>"],
                &[],
                "<sip:0301234567@trunk>;tag=1",
                true
            ),
            number("+4930111111", false)
        );
        assert_eq!(
            id(
                &["<sip:alice@trunk>, <tel:+44 20 7946 0000>"],
                &[],
                "<sip:x@y>",
                true
            ),
            number("+442079460000", false)
        );
        // Untrusted PAI is ignored.
        assert_eq!(
            id(
                &["<tel:+4930111111>"],
                &[],
                "<sip:030999999@t>;tag=1",
                false
            ),
            number("+4930999999", false)
        );
        // Privacy: id with trusted PAI: identified, flagged.
        assert_eq!(
            id(
                &["<tel:+4930111111>"],
                &["id"],
                "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1",
                true
            ),
            number("+4930111111", true)
        );
        // Privacy without a trusted PAI, or anonymous From: withheld.
        assert_eq!(
            id(&[], &["id;critical"], "<sip:030999999@t>", false),
            CallerIdentity::Withheld
        );
        assert_eq!(
            id(
                &[],
                &[],
                "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=x",
                false
            ),
            CallerIdentity::Withheld
        );
        assert_eq!(
            id(&[], &[], "sip:restricted@trunk;tag=x", false),
            CallerIdentity::Withheld
        );
        assert_eq!(
            id(&[], &["none"], "<sip:0301234567@t>", false),
            number("+49301234567", false)
        );
        // Not a number.
        assert_eq!(
            id(&[], &[], "<sip:unknown@trunk>;tag=1", false),
            CallerIdentity::Unknown
        );
        assert_eq!(
            id(&[], &[], "\"Alice\" <sip:alice@example.com>", false),
            CallerIdentity::Unknown
        );
        assert_eq!(id(&[], &[], "garbage", false), CallerIdentity::Unknown);
        assert_eq!(id(&[], &[], "", false), CallerIdentity::Unknown);
        // Display names with tricky characters.
        assert_eq!(
            id(&[], &[], "\"a <b>, c\" <sip:+4930123456@x>;tag=2", false),
            number("+4930123456", false)
        );
    }

    #[test]
    fn header_lists_and_uris() {
        assert_eq!(
            split_header_list("<sip:a@b>, \"x,y\" <sip:c@d;p=1,2>"),
            ["<sip:a@b>", "\"x,y\" <sip:c@d;p=1,2>"]
        );
        assert_eq!(name_addr_uri("sip:a@b;tag=1"), Some("sip:a@b"));
        assert_eq!(name_addr_uri("\"x\" <>"), None);
        assert_eq!(name_addr_uri("\"unterminated <sip:a@b>"), None);
        assert_eq!(uri_number("sip:+49301;npdi@host"), Some("+49301"));
        assert_eq!(uri_number("sip:alice:secret@host"), Some("alice"));
        assert_eq!(uri_number("tel:+49301;phone-context=x"), Some("+49301"));
        assert_eq!(uri_number("mailto:a@b"), None);
        assert_eq!(uri_number("sip:host"), None);
        assert_eq!(
            uri_host("sip:a@anonymous.invalid;x"),
            Some("anonymous.invalid")
        );
    }
}
