//! The registry: merchant terminals and payers, as the core sees them.

use super::auth_policy::{Enrolment, MerchantDemand, PayerDemand};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MerchantStatus {
    Active,
    Suspended,
}

impl MerchantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MerchantStatus::Active => "active",
            MerchantStatus::Suspended => "suspended",
        }
    }
    pub fn parse(s: &str) -> Option<MerchantStatus> {
        match s {
            "active" => Some(MerchantStatus::Active),
            "suspended" => Some(MerchantStatus::Suspended),
            _ => None,
        }
    }
}

/// A registered merchant terminal (claim 9). A merchant with several terminals has one record
/// per terminal, sharing the merchant id and, usually, the settlement account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    /// 8 characters (ISO 8583 field 41).
    pub terminal_id: String,
    /// 15 characters (ISO 8583 field 42).
    pub merchant_id: String,
    pub name: String,
    pub status: MerchantStatus,
    pub currency: String,
    /// Keyed hash of the API key, which is also the terminal's sign-on credential.
    pub api_key_hash: String,
    pub demand: MerchantDemand,
    /// Payer attributes this merchant may see on pairing (claim 12), e.g. `age_over_18`.
    pub visible_attributes: Vec<String>,
    pub account_id: String,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayerStatus {
    Active,
    Suspended,
    Locked,
}

impl PayerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PayerStatus::Active => "active",
            PayerStatus::Suspended => "suspended",
            PayerStatus::Locked => "locked",
        }
    }
    pub fn parse(s: &str) -> Option<PayerStatus> {
        match s {
            "active" => Some(PayerStatus::Active),
            "suspended" => Some(PayerStatus::Suspended),
            "locked" => Some(PayerStatus::Locked),
            _ => None,
        }
    }
}

/// A registered payer, identified by the calling number (claim 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payer {
    /// E.164, e.g. `+15550100`.
    pub msisdn: String,
    pub display_name: String,
    pub attributes: BTreeMap<String, String>,
    pub status: PayerStatus,
    pub pin_hash: Option<String>,
    /// Wrong PINs and answers in a row, across every channel; at the limit the payer is locked.
    pub auth_failures: i64,
    pub demand: PayerDemand,
    pub account_id: String,
    /// The largest single payment, if the payer set one.
    pub txn_limit_minor: Option<i64>,
    pub has_portrait: bool,
    pub has_voice_print: bool,
    /// Registered questions: (id, text). Answers stay in the store as keyed hashes.
    pub questions: Vec<(i64, String)>,
    pub created_ms: i64,
}

impl Payer {
    pub fn enrolment(&self) -> Enrolment {
        Enrolment {
            has_pin: self.pin_hash.is_some(),
            questions: self.questions.len(),
            has_portrait: self.has_portrait,
            has_voice_print: self.has_voice_print,
        }
    }
}

/// Checks an E.164 number: `+`, a non-zero first digit, 8 to 15 digits in all... the ITU allows
/// up to 15; short national test numbers such as the demo's `+15550100` have 8.
pub fn valid_msisdn(msisdn: &str) -> bool {
    let Some(digits) = msisdn.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Terminal ids are 8 and merchant ids 15 printable ASCII characters (ISO 8583 ans8/ans15).
pub fn valid_terminal_id(id: &str) -> bool {
    id.len() == 8 && id.bytes().all(|b| b.is_ascii_graphic())
}

pub fn valid_merchant_id(id: &str) -> bool {
    id.len() == 15 && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msisdns_are_e164() {
        assert!(valid_msisdn("+15550100"));
        assert!(valid_msisdn("+447700900123"));
        assert!(!valid_msisdn("15550100"));
        assert!(!valid_msisdn("+05550100"));
        assert!(!valid_msisdn("+1555"));
        assert!(!valid_msisdn("+1234567890123456"));
        assert!(!valid_msisdn("+1555010a"));
    }

    #[test]
    fn ids_have_fixed_lengths() {
        assert!(valid_terminal_id("DEMO0001"));
        assert!(!valid_terminal_id("DEMO001"));
        assert!(valid_merchant_id("DEMOSHOP0000001"));
        assert!(!valid_merchant_id("DEMO SHOP000001"));
    }
}
