//! Keyed hashes of PINs, challenge answers, API keys and one-time tokens.
//!
//! A 4-digit PIN has 10,000 values: no hashing cost protects it if the database leaks. What
//! protects it is a server secret (the pepper) kept outside the database and the attempt limit.
//! Every stored credential is therefore HMAC-SHA256 under the pepper, bound to its subject (the
//! payer's MSISDN, the question) and a domain label, so one hash cannot stand in for another.

use hmac::{Hmac, Mac};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use std::fmt;
use std::path::Path;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the server secret.
pub const SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error("reading or writing the server secret at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the server secret must be {SECRET_LEN} bytes as 64 hex digits")]
    Malformed,
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// The pepper. Kept in a file beside the data (mode 0600) or given by the environment; every
/// gateway node on one database must share it.
#[derive(Clone)]
pub struct ServerSecret([u8; SECRET_LEN]);

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

impl ServerSecret {
    pub fn from_hex(text: &str) -> Result<ServerSecret, SecretError> {
        let bytes = hex::decode(text.trim()).map_err(|_| SecretError::Malformed)?;
        let arr: [u8; SECRET_LEN] = bytes.try_into().map_err(|_| SecretError::Malformed)?;
        Ok(ServerSecret(arr))
    }

    pub fn random() -> Result<ServerSecret, SecretError> {
        let mut b = [0u8; SECRET_LEN];
        OsRng
            .try_fill_bytes(&mut b)
            .map_err(|e| SecretError::Random(e.to_string()))?;
        Ok(ServerSecret(b))
    }

    /// Reads the secret file, creating it with a fresh random secret when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<ServerSecret, SecretError> {
        let io = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => ServerSecret::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = ServerSecret::random()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, hex::encode(secret.0)).map_err(io)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                        .map_err(io)?;
                }
                std::fs::rename(&tmp, path).map_err(io)?;
                Ok(secret)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn mac(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        // new_from_slice accepts keys of any length, so this cannot fail for a 32-byte key.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(domain.as_bytes());
        for p in parts {
            // Length-prefix every part so ("ab","c") and ("a","bc") differ.
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The stored form of a payer's PIN.
    pub fn pin_hash(&self, msisdn: &str, pin: &SecretDigits) -> String {
        hex::encode(self.mac("telepay/pin/v1", &[msisdn.as_bytes(), pin.0.as_bytes()]))
    }

    /// The stored form of an answer to one of a payer's questions.
    pub fn answer_hash(&self, msisdn: &str, question_id: i64, answer: &SecretDigits) -> String {
        hex::encode(self.mac(
            "telepay/answer/v1",
            &[
                msisdn.as_bytes(),
                &question_id.to_be_bytes(),
                answer.0.as_bytes(),
            ],
        ))
    }

    /// The lookup form of a merchant's API key (deterministic so it can be indexed).
    pub fn api_key_hash(&self, key: &str) -> String {
        hex::encode(self.mac("telepay/api-key/v1", &[key.as_bytes()]))
    }

    /// The stored form of a one-time token (portrait URLs).
    pub fn token_hash(&self, token: &str) -> String {
        hex::encode(self.mac("telepay/token/v1", &[token.as_bytes()]))
    }
}

/// Compares a stored hex hash with a freshly computed one in constant time.
pub fn hashes_equal(stored_hex: &str, computed_hex: &str) -> bool {
    stored_hex.len() == computed_hex.len()
        && bool::from(stored_hex.as_bytes().ct_eq(computed_hex.as_bytes()))
}

/// Digits the payer keyed as a secret (PIN or answer). Its `Debug` never shows them, so a
/// stray `{:?}` cannot put them in a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretDigits(String);

/// Bounds on secrets: PINs are 4–12 digits, answers 1–32 characters once normalised.
pub const PIN_DIGITS_MIN: usize = 4;
pub const PIN_DIGITS_MAX: usize = 12;
pub const ANSWER_CHARS_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretFormatError {
    #[error("a PIN is {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} digits")]
    Pin,
    #[error("an answer is 1 to {ANSWER_CHARS_MAX} digits")]
    Answer,
}

impl SecretDigits {
    /// A PIN: 4–12 ASCII digits.
    pub fn pin(text: &str) -> Result<SecretDigits, SecretFormatError> {
        let t = text.trim();
        if (PIN_DIGITS_MIN..=PIN_DIGITS_MAX).contains(&t.len())
            && t.bytes().all(|b| b.is_ascii_digit())
        {
            Ok(SecretDigits(t.to_string()))
        } else {
            Err(SecretFormatError::Pin)
        }
    }

    /// An answer to a challenge question. Answers are keyable on a phone, so they are digits
    /// (a year, a house number); spaces and separators the payer types by text are dropped.
    pub fn answer(text: &str) -> Result<SecretDigits, SecretFormatError> {
        let t: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '/' && *c != '.')
            .collect();
        if (1..=ANSWER_CHARS_MAX).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()) {
            Ok(SecretDigits(t))
        } else {
            Err(SecretFormatError::Answer)
        }
    }
}

impl fmt::Debug for SecretDigits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigits(<redacted>)")
    }
}

/// A random URL-safe token of 24 bytes (192 bits) for one-time links and API keys.
pub fn random_token() -> Result<String, SecretError> {
    use base64::Engine;
    let mut b = [0u8; 24];
    OsRng
        .try_fill_bytes(&mut b)
        .map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_hash_is_keyed_and_bound_to_the_payer() {
        let s1 = ServerSecret::from_hex(&"11".repeat(32)).unwrap();
        let s2 = ServerSecret::from_hex(&"22".repeat(32)).unwrap();
        let pin = SecretDigits::pin("1234").unwrap();
        let h = s1.pin_hash("+15550100", &pin);
        assert!(hashes_equal(&h, &s1.pin_hash("+15550100", &pin)));
        assert!(
            !hashes_equal(&h, &s2.pin_hash("+15550100", &pin)),
            "other secret"
        );
        assert!(
            !hashes_equal(&h, &s1.pin_hash("+15550101", &pin)),
            "other payer"
        );
        let other = SecretDigits::pin("1235").unwrap();
        assert!(!hashes_equal(&h, &s1.pin_hash("+15550100", &other)));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let pin = SecretDigits::pin("9876").unwrap();
        assert!(!format!("{pin:?}").contains("9876"));
    }

    #[test]
    fn secret_formats_are_checked() {
        assert!(SecretDigits::pin("123").is_err());
        assert!(SecretDigits::pin("12a4").is_err());
        assert!(SecretDigits::pin("1234567890123").is_err());
        assert_eq!(
            SecretDigits::answer(" 19-84 ").unwrap(),
            SecretDigits::answer("1984").unwrap()
        );
        assert!(SecretDigits::answer("blue").is_err());
        assert!(SecretDigits::answer("").is_err());
    }

    #[test]
    fn secret_file_is_created_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("telepay-secret-{}", std::process::id()));
        let path = dir.join("secret.key");
        let _ = std::fs::remove_file(&path);
        let a = ServerSecret::load_or_create(&path).unwrap();
        let b = ServerSecret::load_or_create(&path).unwrap();
        assert_eq!(a.0, b.0);
        std::fs::write(&path, "zz").unwrap();
        assert!(matches!(
            ServerSecret::load_or_create(&path),
            Err(SecretError::Malformed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
