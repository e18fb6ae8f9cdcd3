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
}
