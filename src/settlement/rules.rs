//! The knobs of the settlement core, with their defaults.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Random digits in a transaction number, before the check digit.
    pub number_digits: usize,
    /// How long an issued number may be claimed.
    pub number_ttl_ms: i64,
    /// A number is not issued again within this time of its last possible use.
    pub number_reuse_after_ms: i64,
    /// Once paired, the payment must finish within this time or it expires.
    pub session_ms: i64,
    /// Failed claims (unknown, expired or used numbers) allowed per caller per window.
    pub claim_failures_max: i64,
    pub claim_window_ms: i64,
    /// How long a caller who reached the limit is blocked.
    pub claim_block_ms: i64,
    /// Failed claims allowed across all callers per window; above it every failing caller is
    /// blocked at their first failure (a distributed guessing attack).
    pub claim_global_failures_max: i64,
    /// Wrong PINs or answers in a row before the payer is locked.
    pub auth_tries_max: i64,
    /// The largest amount any transaction may carry, in minor units.
    pub amount_max_minor: i64,
    /// How long a one-time portrait link stays valid.
    pub portrait_ttl_ms: i64,
    /// Where merchants reach this gateway's HTTP API, for portrait links.
    pub public_base_url: String,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            number_digits: super::txn_number::PAYLOAD_DIGITS_DEFAULT,
            number_ttl_ms: 300_000,
            number_reuse_after_ms: 24 * 3_600_000,
            session_ms: 600_000,
            claim_failures_max: 5,
            claim_window_ms: 600_000,
            claim_block_ms: 900_000,
            claim_global_failures_max: 1_000,
            auth_tries_max: 3,
            amount_max_minor: super::money::AMOUNT_MINOR_MAX,
            portrait_ttl_ms: 600_000,
            public_base_url: "http://127.0.0.1:8080".into(),
        }
    }
}
