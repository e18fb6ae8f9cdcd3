//! Configuration: a TOML file, then environment overrides, then command-line flags.
//!
//! Every key is optional; unknown keys are errors (a misspelt key would otherwise be silently
//! ignored). Errors name the file and line.

use crate::settlement::rules::Rules;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{key}: {why}")]
    Invalid { key: &'static str, why: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite file, the server secret and other state live.
    pub data_dir: PathBuf,
    /// `sqlite://FILE` or `postgres://…`; unset means the SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// A name for this gateway node (defaults to host name and process id).
    pub node_id: Option<String>,
    /// The server secret (64 hex digits); unset means `data_dir/secret.key`, created once.
    /// Every node on one database must share it.
    pub secret: Option<String>,
    /// A `tracing` filter, e.g. `info` or `telepay=debug`.
    pub log: String,
    pub http: HttpConfig,
    pub settlement: Rules,
    pub webhooks: WebhookConfig,
    pub merchant_link: crate::merchant::link::LinkConfig,
    /// The SMS channel (SMPP link to the operator's SMSC); off unless `enabled`.
    pub sms: SmsConfig,
    pub sip: SipConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    /// How merchants reach this API (for portrait links); defaults to `http://LISTEN`.
    pub public_base_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    pub timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            database_url: None,
            node_id: None,
            secret: None,
            log: "info".into(),
            http: HttpConfig::default(),
            settlement: Rules::default(),
            webhooks: WebhookConfig::default(),
            merchant_link: Default::default(),
            sms: SmsConfig::default(),
            sip: SipConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            public_base_url: None,
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig { timeout_ms: 10_000 }
    }
}

/// The `[sms]` section: where the SMSC is, how to bind, and the paying-by-text dialogue.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    /// Runs the SMS channel (the SMPP link, paying by text and receipt texts).
    pub enabled: bool,
    /// The SMSC's host name or address.
    pub host: String,
    /// The SMSC's SMPP port.
    pub port: u16,
    /// `system_id` of our bind (at most 15 characters).
    pub system_id: String,
    /// `password` of our bind (at most 8 characters). Never logged.
    pub password: String,
    /// `system_type` of our bind (often empty).
    pub system_type: String,
    /// `address_range` of our bind (often empty).
    pub address_range: String,
    /// Our number or short code: the sender of our texts.
    pub source_addr: String,
    /// `source_addr_ton`: 1 international, 3 network specific (short code), 5 alphanumeric.
    pub source_addr_ton: u8,
    /// `source_addr_npi`: 1 ISDN/E.164, 0 unknown.
    pub source_addr_npi: u8,
    /// The most `submit_sm` awaiting their response.
    pub window: usize,
    /// Seconds between `enquire_link`s on an idle link.
    pub enquire_link_s: u64,
    /// First wait before reconnecting, doubled on each failure up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest wait before reconnecting.
    pub reconnect_max_ms: u64,
    /// How long a `submit_sm` may wait for its response.
    pub response_timeout_ms: u64,
    /// Ask the SMSC for delivery receipts of our texts.
    pub registered_delivery: bool,
    /// A paying-by-text dialogue expires this long after the payer's last text.
    pub dialogue_ttl_s: u64,
    /// The most paying-by-text dialogues at once.
    pub dialogues_max: usize,
    /// The number a payer is told to call when a payment cannot be authenticated by text.
    pub call_number: String,
    /// The name signing receipts and opening the help text.
    pub brand: String,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 2775,
            system_id: "telepay".into(),
            password: String::new(),
            system_type: String::new(),
            address_range: String::new(),
            source_addr: "telepay".into(),
            source_addr_ton: 5,
            source_addr_npi: 0,
            window: 10,
            enquire_link_s: 30,
            reconnect_min_ms: 1_000,
            reconnect_max_ms: 60_000,
            response_timeout_ms: 10_000,
            registered_delivery: true,
            dialogue_ttl_s: 300,
            dialogues_max: 10_000,
            call_number: String::new(),
            brand: "telepay".into(),
        }
    }
}

/// `[sip]`: payer calls. SIP is off unless `listen` is set (or `serve --sip ADDR`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// UDP and TCP address, e.g. `0.0.0.0:5060`.
    pub listen: Option<String>,
    /// The address written in SDP (needed when `listen` is `0.0.0.0`).
    pub media_address: Option<String>,
    /// RTP ports, `LOW-HIGH`; one even port per call.
    pub rtp_ports: String,
    /// Addresses or CIDRs allowed to call (trunks, softphones); others get 403.
    pub allow: Vec<String>,
    /// Trunks whose `P-Asserted-Identity` is believed (allowed as well).
    pub trusted: Vec<String>,
    /// Country calling code for national numbers, without `+`.
    pub country_code: String,
    /// National trunk prefix (`0`; empty for none).
    pub national_prefix: String,
    /// International call prefix (`00`, `011`).
    pub international_prefix: String,
    /// Concurrent calls; more get 503.
    pub calls_max: usize,
    /// A call with no RTP from the caller for this long is hung up.
    pub rtp_timeout_ms: u64,
    /// `auto`, `rfc4733`, `inband` or `info`.
    pub dtmf_mode: String,
    /// How long an offered call rings (180 Ringing) before it is answered.
    pub ring_ms: u64,
    /// Spoken digits and voice prints on calls (`mode = "speech" | "both"` collects, voice
    /// actions). Off: keyed digits only.
    pub voice: bool,
    /// Speech worker threads; 0 = one per core, at most 4.
    pub voice_workers: usize,
    /// Voice-print scores at or above this are accepted (see docs/voice.md).
    pub voice_threshold: f32,
    /// Folder of `*.toml` flows.
    pub dialplan_dir: PathBuf,
    /// Folder of one language's prompts.
    pub prompts_dir: PathBuf,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: None,
            media_address: None,
            rtp_ports: "10000-20000".into(),
            allow: vec!["127.0.0.0/8".into()],
            trusted: Vec::new(),
            country_code: "1".into(),
            national_prefix: String::new(),
            international_prefix: "011".into(),
            calls_max: 500,
            rtp_timeout_ms: 30_000,
            dtmf_mode: "auto".into(),
            ring_ms: 0,
            voice: true,
            voice_workers: 0,
            voice_threshold: crate::voice::collector::DEFAULT_THRESHOLD,
            dialplan_dir: PathBuf::from("dialplan"),
            prompts_dir: PathBuf::from("prompts/en"),
        }
    }
}

impl std::fmt::Debug for SmsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsConfig")
            .field("enabled", &self.enabled)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("source_addr", &self.source_addr)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// The SIP port used when `sip.listen` names only an address.
pub const SIP_PORT_DEFAULT: u16 = 5060;

/// Parses `LOW-HIGH`.
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = text.split_once('-')?;
    let (lo, hi) = (
        lo.trim().parse::<u16>().ok()?,
        hi.trim().parse::<u16>().ok()?,
    );
    (lo > 0 && lo < hi).then_some((lo, hi))
}

impl SipConfig {
    /// The driver's settings, when SIP is on; errors name the key.
    pub fn settings(&self) -> Result<Option<crate::telephony::driver::SipSettings>, ConfigError> {
        use crate::telephony::sip::{IpNet, NumberPlan};
        let bad = |key, why: String| ConfigError::Invalid { key, why };
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        // An address without a port listens on SIP's own, 5060.
        let listen = listen
            .parse::<std::net::SocketAddr>()
            .or_else(|_| {
                listen
                    .parse::<std::net::IpAddr>()
                    .map(|ip| std::net::SocketAddr::new(ip, SIP_PORT_DEFAULT))
            })
            .map_err(|_| {
                bad(
                    "sip.listen",
                    "must be an address such as 0.0.0.0:5060".into(),
                )
            })?;
        let media_address = match &self.media_address {
            Some(a) => Some(
                a.parse()
                    .map_err(|_| bad("sip.media_address", "must be an IP address".into()))?,
            ),
            None => None,
        };
        let (low, high) = parse_port_range(&self.rtp_ports)
            .ok_or_else(|| bad("sip.rtp_ports", "must be LOW-HIGH, e.g. 10000-20000".into()))?;
        let nets = |key, list: &[String]| {
            list.iter()
                .map(|n| {
                    n.parse::<IpNet>()
                        .map_err(|_| bad(key, format!("`{n}` is not an address or CIDR")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        if self.country_code.is_empty()
            || self.country_code.len() > 3
            || !self.country_code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad("sip.country_code", "must be 1 to 3 digits".into()));
        }
        if !(1..=100_000).contains(&self.calls_max) {
            return Err(bad("sip.calls_max", "must be 1 to 100000".into()));
        }
        if self.ring_ms > 30_000 {
            return Err(bad("sip.ring_ms", "must be at most 30000".into()));
        }
        if self.voice_workers > 64 {
            return Err(bad("sip.voice_workers", "must be at most 64".into()));
        }
        if !(-50.0..=50.0).contains(&self.voice_threshold) {
            return Err(bad(
                "sip.voice_threshold",
                "must be between -50 and 50".into(),
            ));
        }
        if self.rtp_timeout_ms < 1_000 {
            return Err(bad("sip.rtp_timeout_ms", "must be at least 1000".into()));
        }
        Ok(Some(crate::telephony::driver::SipSettings {
            listen,
            media_address,
            rtp_port_low: low,
            rtp_port_high: high,
            allowed: nets("sip.allow", &self.allow)?,
            trusted: nets("sip.trusted", &self.trusted)?,
            number_plan: NumberPlan {
                country_code: self.country_code.clone(),
                national_prefix: self.national_prefix.clone(),
                international_prefix: self.international_prefix.clone(),
                bare_numbers_are_national: false,
            },
            calls_max: self.calls_max,
            rtp_timeout_ms: self.rtp_timeout_ms,
            dtmf_mode: self.dtmf_mode.parse().map_err(|_| {
                bad(
                    "sip.dtmf_mode",
                    "must be auto, rfc4733, inband or info".into(),
                )
            })?,
            ring_ms: self.ring_ms,
            dialplan_dir: self.dialplan_dir.clone(),
            prompts_dir: self.prompts_dir.clone(),
            voice: crate::telephony::driver::VoiceSettings {
                enabled: self.voice,
                workers: if self.voice_workers == 0 {
                    crate::telephony::driver::VoiceSettings::default().workers
                } else {
                    self.voice_workers
                },
                threshold: self.voice_threshold,
            },
        }))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|t| t.matches('\n').count() + 1)
        .unwrap_or(1)
}

impl Config {
    /// Parses a config text; `path` is only for messages.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        toml::from_str::<Config>(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            message: e.message().to_string(),
        })
    }

    /// Reads the file if given (a missing file is an error), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                Config::parse(&text, &p.display().to_string())?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok());
        cfg.validate()?;
        Ok(cfg)
    }

    /// Environment overrides: `TELEPAY_DATA_DIR`, `DATABASE_URL`, `TELEPAY_HTTP`,
    /// `TELEPAY_PUBLIC_URL`, `TELEPAY_SECRET`, `TELEPAY_NODE_ID`, `TELEPAY_LOG`,
    /// `TELEPAY_MERCHANT_LINK` (`HOST:PORT` or `off`).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let set = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        if let Some(v) = set(get("TELEPAY_DATA_DIR")) {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = set(get("DATABASE_URL")) {
            self.database_url = Some(v);
        }
        if let Some(v) = set(get("TELEPAY_HTTP")) {
            self.http.listen = v;
        }
        if let Some(v) = set(get("TELEPAY_PUBLIC_URL")) {
            self.http.public_base_url = Some(v);
        }
        if let Some(v) = set(get("TELEPAY_SECRET")) {
            self.secret = Some(v);
        }
        if let Some(v) = set(get("TELEPAY_NODE_ID")) {
            self.node_id = Some(v);
        }
        if let Some(v) = set(get("TELEPAY_LOG")) {
            self.log = v;
        }
        if let Some(v) = set(get("TELEPAY_MERCHANT_LINK")) {
            self.merchant_link.listen = v;
        }
        // The SMS channel: TELEPAY_SMS_ENABLED (true/false), TELEPAY_SMS_HOST, TELEPAY_SMS_PORT,
        // TELEPAY_SMS_SYSTEM_ID, TELEPAY_SMS_PASSWORD.
        if let Some(v) = set(get("TELEPAY_SMS_ENABLED")) {
            self.sms.enabled = matches!(v.trim(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = set(get("TELEPAY_SMS_HOST")) {
            self.sms.host = v;
        }
        if let Some(v) = set(get("TELEPAY_SMS_PORT")).and_then(|v| v.trim().parse().ok()) {
            self.sms.port = v;
        }
        if let Some(v) = set(get("TELEPAY_SMS_SYSTEM_ID")) {
            self.sms.system_id = v;
        }
        if let Some(v) = get("TELEPAY_SMS_PASSWORD") {
            self.sms.password = v;
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        use crate::settlement::txn_number::{PAYLOAD_DIGITS_MAX, PAYLOAD_DIGITS_MIN};
        let s = &self.settlement;
        let bad = |key, why: &str| {
            Err(ConfigError::Invalid {
                key,
                why: why.to_string(),
            })
        };
        if !(PAYLOAD_DIGITS_MIN..=PAYLOAD_DIGITS_MAX).contains(&s.number_digits) {
            return bad("settlement.number_digits", "must be 6 to 15");
        }
        if s.number_ttl_ms < 10_000 || s.number_ttl_ms > 86_400_000 {
            return bad("settlement.number_ttl_ms", "must be 10 s to 24 h");
        }
        if s.session_ms < 10_000 {
            return bad("settlement.session_ms", "must be at least 10 s");
        }
        if s.claim_failures_max < 1 || s.claim_global_failures_max < 1 {
            return bad("settlement.claim_failures_max", "limits must be at least 1");
        }
        if s.auth_tries_max < 1 || s.auth_tries_max > 10 {
            return bad("settlement.auth_tries_max", "must be 1 to 10");
        }
        if s.amount_max_minor < 1 || s.amount_max_minor > crate::settlement::money::AMOUNT_MINOR_MAX
        {
            return bad("settlement.amount_max_minor", "must be 1 to 999999999999");
        }
        if self.http.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("http.listen", "must be an address such as 127.0.0.1:8080");
        }
        if let Err((key, why)) = self.merchant_link.validate() {
            return Err(ConfigError::Invalid { key, why });
        }
        if self.sms.enabled {
            if let Err(e) = crate::sms::gateway::esme_config(&self.sms).validate() {
                return Err(ConfigError::Invalid {
                    key: "sms",
                    why: e.to_string(),
                });
            }
            if self.sms.host.trim().is_empty() || self.sms.port == 0 {
                return bad("sms.host", "the SMSC's host and port are required");
            }
            if self.sms.dialogue_ttl_s < 30 || self.sms.dialogue_ttl_s > 3_600 {
                return bad("sms.dialogue_ttl_s", "must be 30 s to 1 h");
            }
        }
        self.sip.settings()?;
        Ok(())
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| crate::store::default_sqlite_url(&self.data_dir))
    }

    pub fn public_base_url(&self) -> String {
        self.http
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.http.listen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let text = "data_dir = \"x\"\n\n[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n";
        match Config::parse(text, "telepay.toml") {
            Err(ConfigError::Parse {
                path,
                line,
                message,
            }) => {
                assert_eq!(path, "telepay.toml");
                assert_eq!(line, 5);
                assert!(message.contains("unknown field"), "{message}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn wrong_types_and_values_are_reported() {
        let e = Config::parse("[settlement]\nnumber_digits = \"eight\"\n", "c.toml").unwrap_err();
        assert!(e.to_string().starts_with("c.toml:2:"), "{e}");
        let mut c = Config::parse("[settlement]\nnumber_digits = 3\n", "c.toml").unwrap();
        assert!(c.validate().is_err());
        c.settlement.number_digits = 8;
        c.http.listen = "nowhere".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("http.listen")
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c = Config::parse("data_dir = \"a\"\n", "c.toml").unwrap();
        c.apply_env(|k| match k {
            "TELEPAY_DATA_DIR" => Some("b".into()),
            "DATABASE_URL" => Some("postgres://x/y".into()),
            _ => None,
        });
        assert_eq!(c.data_dir, PathBuf::from("b"));
        assert_eq!(c.database_url(), "postgres://x/y");
    }

    #[test]
    fn the_sms_section_parses_is_overridden_by_the_environment_and_is_checked() {
        let text = "[sms]\nenabled = true\nhost = \"smsc.example\"\nport = 2776\nsystem_id = \"shop\"\npassword = \"pw\"\nwindow = 20\ncall_number = \"+1 555 0199\"\n";
        let mut c = Config::parse(text, "c.toml").unwrap();
        assert!(c.sms.enabled);
        assert_eq!((c.sms.host.as_str(), c.sms.port), ("smsc.example", 2776));
        assert_eq!(c.sms.window, 20);
        assert!(c.validate().is_ok());
        assert!(
            !format!("{:?}", c.sms).contains("pw\""),
            "the password is never printed"
        );
        c.apply_env(|k| match k {
            "TELEPAY_SMS_HOST" => Some("127.0.0.1".into()),
            "TELEPAY_SMS_PORT" => Some("9000".into()),
            "TELEPAY_SMS_PASSWORD" => Some("other".into()),
            _ => None,
        });
        assert_eq!((c.sms.host.as_str(), c.sms.port), ("127.0.0.1", 9000));
        assert_eq!(c.sms.password, "other");
        c.sms.password = "far-too-long".into();
        assert!(c.validate().unwrap_err().to_string().starts_with("sms:"));
        assert!(Config::parse("[sms]\nhots = \"x\"\n", "c.toml").is_err());
        // Off by default, and then not checked.
        assert!(!Config::default().sms.enabled);
    }

    #[test]
    fn sip_section_is_checked() {
        let text = "[sip]\nlisten = \"127.0.0.1:5070\"\nrtp_ports = \"20000-20100\"\n\
                    allow = [\"10.0.0.0/8\"]\ndtmf_mode = \"inband\"\n";
        let c = Config::parse(text, "c.toml").unwrap();
        let s = c.sip.settings().unwrap().expect("SIP is on");
        assert_eq!(s.listen.port(), 5070);
        assert_eq!((s.rtp_port_low, s.rtp_port_high), (20000, 20100));
        assert!(s.allowed[0].contains("10.1.2.3".parse().unwrap()));
        assert_eq!(s.dtmf_mode, crate::telephony::dtmf::DtmfMode::Inband);
        let c = Config::parse("[sip]\nlisten = \"0.0.0.0\"\n", "c.toml").unwrap();
        assert_eq!(c.sip.settings().unwrap().unwrap().listen.port(), 5060);
        // Off without an address.
        assert!(Config::default().sip.settings().unwrap().is_none());
        for (key, bad) in [
            ("sip.rtp_ports", "rtp_ports = \"20000\""),
            ("sip.rtp_ports", "rtp_ports = \"300-200\""),
            ("sip.allow", "allow = [\"nowhere\"]"),
            ("sip.dtmf_mode", "dtmf_mode = \"smoke\""),
            ("sip.listen", "listen = \"5060\""),
        ] {
            let text = format!("[sip]\nlisten = \"127.0.0.1:5060\"\n{bad}\n");
            // A repeated key is a parse error; the bad listen replaces the good one instead.
            let text = if key == "sip.listen" {
                format!("[sip]\n{bad}\n")
            } else {
                text
            };
            let c = Config::parse(&text, "c.toml").unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(key), "{bad}: {e}");
        }
    }
}
