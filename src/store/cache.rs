//! The SQLite writer's cache of the rows it has read and written.
//!
//! With SQLite the writer is normally the only process that changes the database, so what it
//! committed last is what the next batch would read back. The cache spares those reads. It is
//! valid only while nobody else has committed: before every batch (under the write lock) the
//! writer compares SQLite's `PRAGMA data_version`, which changes exactly when another connection
//! commits, and drops the whole cache when it moved. PostgreSQL never uses it: other gateway
//! nodes commit without telling.

use crate::settlement::engine::WorkingSet;
use crate::settlement::ledger::Account;
use crate::settlement::lifecycle::Txn;
use crate::settlement::model::{Merchant, Payer};
use std::collections::{HashMap, VecDeque};

/// Rows kept before the cache is dropped and refilled (bounds memory).
pub const ROWS_MAX: usize = 200_000;

/// A caller's failed claims in the rate-limit window, and their block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimHistory {
    pub failures_ms: Vec<i64>,
    pub blocked_until_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub struct RowCache {
    pub txns: HashMap<String, Txn>,
    pub numbers: HashMap<String, (String, i64)>,
    pub merchants: HashMap<String, Merchant>,
    /// Payers with their questions.
    pub payers: HashMap<String, Payer>,
    pub answers: HashMap<(String, i64), String>,
    pub accounts: HashMap<String, Account>,
    pub idempotency: HashMap<(String, String), (String, String)>,
    pub claims: HashMap<String, ClaimHistory>,
    /// Every failed claim in the window, oldest first (`None` until first loaded).
    pub global_failures_ms: Option<VecDeque<i64>>,
    /// SQLite's data_version when the cache was last known valid.
    pub data_version: Option<i64>,
}

impl RowCache {
    pub fn clear(&mut self) {
        *self = RowCache::default();
    }

    fn rows(&self) -> usize {
        self.txns.len() + self.numbers.len() + self.payers.len() + self.accounts.len()
    }

    /// Takes in a committed batch's rows: what it read is current, what it changed is newer.
    pub fn absorb(&mut self, ws: &WorkingSet) {
        for (k, v) in &ws.txns {
            self.txns.insert(k.clone(), v.clone());
        }
        for (k, v) in &ws.numbers {
            self.numbers.insert(k.clone(), v.clone());
        }
        for (k, v) in &ws.merchants {
            self.merchants.insert(k.clone(), v.clone());
        }
        for (k, v) in &ws.payers {
            self.payers.insert(k.clone(), v.clone());
        }
        for (k, v) in &ws.answers {
            self.answers.insert(k.clone(), v.clone());
        }
        for (k, v) in &ws.accounts {
            self.accounts.insert(k.clone(), v.clone());
        }
        for (k, v) in &ws.idempotency {
            self.idempotency.insert(k.clone(), v.clone());
        }
        for (m, at) in &ws.new_claim_failures {
            if let Some(h) = self.claims.get_mut(m) {
                h.failures_ms.push(*at);
            }
            if let Some(g) = self.global_failures_ms.as_mut() {
                g.push_back(*at);
            }
        }
        for (m, until) in &ws.new_blocks {
            if let Some(h) = self.claims.get_mut(m) {
                h.blocked_until_ms = Some(*until);
            }
        }
        if self.rows() > ROWS_MAX {
            let version = self.data_version;
            self.clear();
            self.data_version = version;
        }
    }
}
