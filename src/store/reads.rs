//! Reads. They see only committed data and never block the writer.

use super::rows;
use super::sql::{RowExt, Sql};
use super::{Store, StoreError};
use crate::settlement::engine::EventRecord;
use crate::settlement::ledger::Account;
use crate::settlement::lifecycle::{EventKind, Txn};
use crate::settlement::model::{Merchant, Payer};
use serde::Serialize;

/// One line of a payer's purchase history (claim 13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purchase {
    pub txn_id: String,
    pub reference: String,
    pub merchant_name: String,
    pub state: String,
    pub amount_minor: i64,
    pub currency: String,
    pub at_ms: i64,
}

/// What `telepay check` reports about the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InvariantReport {
    pub transactions: i64,
    pub settled: i64,
    pub transfers: i64,
    /// Per currency, the sum of all balances; every value must be zero.
    pub balance_sums: Vec<(String, i64)>,
    /// Problems found; empty when the ledger is sound.
    pub violations: Vec<String>,
}

impl InvariantReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl Store {
    pub async fn txn(&self, id: &str) -> Result<Option<Txn>, StoreError> {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM transactions WHERE id = ",
            rows::TXN_COLS.join(", ")
        ));
        q.bind(id);
        match q.query(self.backend).fetch_optional(&self.pool).await? {
            Some(r) => Ok(Some(rows::txn_from_row(&r)?)),
            None => Ok(None),
        }
    }

    pub async fn txn_by_reference(&self, reference: &str) -> Result<Option<Txn>, StoreError> {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM transactions WHERE reference = ",
            rows::TXN_COLS.join(", ")
        ));
        q.bind(reference);
        match q.query(self.backend).fetch_optional(&self.pool).await? {
            Some(r) => Ok(Some(rows::txn_from_row(&r)?)),
            None => Ok(None),
        }
    }

    /// A transaction's events after `after_seq`, in order.
    pub async fn events(&self, txn: &Txn, after_seq: i64) -> Result<Vec<EventRecord>, StoreError> {
        let mut q = Sql::new("SELECT seq, data, at_ms FROM events WHERE txn_id = ");
        q.bind(&txn.id)
            .push(" AND seq > ")
            .bind(after_seq)
            .push(" ORDER BY seq");
        let mut out = Vec::new();
        for r in q.query(self.backend).fetch_all(&self.pool).await? {
            let data = r.t("data")?;
            let kind: EventKind =
                serde_json::from_str(&data).map_err(|_| super::sql::corrupt("event", &data))?;
            out.push(EventRecord {
                txn_id: txn.id.clone(),
                terminal_id: txn.terminal_id.clone(),
                seq: r.i("seq")?,
                at_ms: r.i("at_ms")?,
                kind,
            });
        }
        Ok(out)
    }

    pub async fn merchant(&self, terminal_id: &str) -> Result<Option<Merchant>, StoreError> {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM merchants WHERE terminal_id = ",
            rows::MERCHANT_COLS.join(", ")
        ));
        q.bind(terminal_id);
        match q.query(self.backend).fetch_optional(&self.pool).await? {
            Some(r) => Ok(Some(rows::merchant_from_row(&r)?)),
            None => Ok(None),
        }
    }

    pub async fn merchant_by_key_hash(&self, hash: &str) -> Result<Option<Merchant>, StoreError> {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM merchants WHERE api_key_hash = ",
            rows::MERCHANT_COLS.join(", ")
        ));
        q.bind(hash);
        match q.query(self.backend).fetch_optional(&self.pool).await? {
            Some(r) => Ok(Some(rows::merchant_from_row(&r)?)),
            None => Ok(None),
        }
    }

    pub async fn merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        let q = Sql::new(&format!(
            "SELECT {} FROM merchants ORDER BY terminal_id",
            rows::MERCHANT_COLS.join(", ")
        ));
        let mut out = Vec::new();
        for r in q.query(self.backend).fetch_all(&self.pool).await? {
            out.push(rows::merchant_from_row(&r)?);
        }
        Ok(out)
    }

    /// A payer with their questions (texts only).
    pub async fn payer(&self, msisdn: &str) -> Result<Option<Payer>, StoreError> {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM payers WHERE msisdn = ",
            rows::PAYER_COLS.join(", ")
        ));
        q.bind(msisdn);
        let Some(r) = q.query(self.backend).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let mut p = rows::payer_from_row(&r)?;
        let mut q = Sql::new("SELECT question_id, question FROM payer_questions WHERE msisdn = ");
        q.bind(msisdn).push(" ORDER BY question_id");
        for r in q.query(self.backend).fetch_all(&self.pool).await? {
            p.questions.push((r.i("question_id")?, r.t("question")?));
        }
        Ok(Some(p))
    }

    pub async fn payers(&self) -> Result<Vec<Payer>, StoreError> {
        let q = Sql::new(&format!(
            "SELECT {} FROM payers ORDER BY msisdn",
            rows::PAYER_COLS.join(", ")
        ));
        let mut out = Vec::new();
        for r in q.query(self.backend).fetch_all(&self.pool).await? {
            out.push(rows::payer_from_row(&r)?);
        }
        Ok(out)
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM accounts WHERE id = ",
            rows::ACCOUNT_COLS.join(", ")
        ));
        q.bind(id);
        match q.query(self.backend).fetch_optional(&self.pool).await? {
            Some(r) => Ok(Some(rows::account_from_row(&r)?)),
            None => Ok(None),
        }
    }

    /// The payer's last `n` settled or reversed purchases, newest first (claim 13).
    pub async fn purchases(&self, msisdn: &str, n: usize) -> Result<Vec<Purchase>, StoreError> {
        let mut q = Sql::new(
            "SELECT t.id, t.reference, m.name, t.state, t.amount_minor, t.currency, t.updated_ms \
             FROM transactions t JOIN merchants m ON m.terminal_id = t.terminal_id \
             WHERE t.payer_msisdn = ",
        );
        q.bind(msisdn)
            .push(" AND t.state IN ('settled', 'reversed') ORDER BY t.updated_ms DESC LIMIT ")
            .bind(n.min(100) as i64);
        let mut out = Vec::new();
        for r in q.query(self.backend).fetch_all(&self.pool).await? {
            out.push(Purchase {
                txn_id: r.t("id")?,
                reference: r.t("reference")?,
                merchant_name: r.t("name")?,
                state: r.t("state")?,
                amount_minor: r.oi("amount_minor")?.unwrap_or(0),
                currency: r.t("currency")?,
                at_ms: r.i("updated_ms")?,
            });
        }
        Ok(out)
    }

    pub async fn portrait(&self, msisdn: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let mut q = Sql::new("SELECT content_type, image FROM payer_portraits WHERE msisdn = ");
        q.bind(msisdn);
        match q.query(self.backend).fetch_optional(&self.pool).await? {
            Some(r) => Ok(Some((r.t("content_type")?, r.b("image")?))),
            None => Ok(None),
        }
    }

    pub async fn voice_print(&self, msisdn: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut q = Sql::new("SELECT template FROM payer_voice_prints WHERE msisdn = ");
        q.bind(msisdn);
        match q.query(self.backend).fetch_optional(&self.pool).await? {
            Some(r) => Ok(Some(r.b("template")?)),
            None => Ok(None),
        }
    }

    /// Checks the ledger's invariants on the live database.
    pub async fn check_invariants(&self) -> Result<InvariantReport, StoreError> {
        let mut rep = InvariantReport::default();
        let one = |sql: &str| Sql::new(sql);
        let q = one(
            "SELECT currency, CAST(SUM(balance_minor) AS BIGINT) AS s FROM accounts GROUP BY currency ORDER BY currency",
        );
        for r in q.query(self.backend).fetch_all(&self.pool).await? {
            let (c, s) = (r.t("currency")?, r.oi("s")?.unwrap_or(0));
            if s != 0 {
                rep.violations
                    .push(format!("balances in {c} sum to {s}, not zero"));
            }
            rep.balance_sums.push((c, s));
        }
        // Each account's balance equals its credits minus its debits.
        let q = one("SELECT a.id, a.balance_minor, \
             CAST(COALESCE((SELECT SUM(amount_minor) FROM transfers WHERE credit_account = a.id), 0) - \
                  COALESCE((SELECT SUM(amount_minor) FROM transfers WHERE debit_account = a.id), 0) AS BIGINT) AS net \
             FROM accounts a");
        for r in q.query(self.backend).fetch_all(&self.pool).await? {
            let (id, bal, net) = (r.t("id")?, r.i("balance_minor")?, r.i("net")?);
            if bal != net {
                rep.violations.push(format!(
                    "account {id} holds {bal} but its transfers add up to {net}"
                ));
            }
        }
        let q = one("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM transactions");
        rep.transactions = q.query(self.backend).fetch_one(&self.pool).await?.i("n")?;
        let q = one("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM transfers");
        rep.transfers = q.query(self.backend).fetch_one(&self.pool).await?.i("n")?;
        // Settled and reversed transactions have exactly one settlement; reversed ones exactly
        // one reversal; no other transaction has either.
        let q = one("SELECT t.id, t.state, t.amount_minor, \
             CAST((SELECT COUNT(*) FROM transfers s WHERE s.txn_id = t.id AND s.kind = 'settlement') AS BIGINT) AS settlements, \
             CAST((SELECT COUNT(*) FROM transfers s WHERE s.txn_id = t.id AND s.kind = 'reversal') AS BIGINT) AS reversals, \
             CAST(COALESCE((SELECT SUM(s.amount_minor) FROM transfers s WHERE s.txn_id = t.id AND s.kind = 'settlement'), 0) AS BIGINT) AS settled_minor \
             FROM transactions t");
        for r in q.query(self.backend).fetch_all(&self.pool).await? {
            let (id, state) = (r.t("id")?, r.t("state")?);
            let (s, v) = (r.i("settlements")?, r.i("reversals")?);
            let want_s = i64::from(state == "settled" || state == "reversed");
            let want_v = i64::from(state == "reversed");
            if state == "settled" {
                rep.settled += 1;
            }
            if s != want_s || v != want_v {
                rep.violations.push(format!(
                    "transaction {id} is {state} with {s} settlement(s) and {v} reversal(s)"
                ));
            }
            if s == 1 && r.oi("amount_minor")? != Some(r.i("settled_minor")?) {
                rep.violations.push(format!(
                    "transaction {id} settled a different amount than it carries"
                ));
            }
        }
        let q = one(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM transfers WHERE txn_id IS NOT NULL AND txn_id NOT IN (SELECT id FROM transactions)",
        );
        let orphans = q.query(self.backend).fetch_one(&self.pool).await?.i("n")?;
        if orphans != 0 {
            rep.violations
                .push(format!("{orphans} transfer(s) name no transaction"));
        }
        Ok(rep)
    }

    /// Outbox rows of a channel not yet delivered (for tests and the admin view).
    pub async fn outbox_pending(&self, channel: &str) -> Result<i64, StoreError> {
        let mut q = Sql::new(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM outbox WHERE delivered_ms IS NULL AND channel = ",
        );
        q.bind(channel);
        Ok(q.query(self.backend).fetch_one(&self.pool).await?.i("n")?)
    }

    /// The oldest undelivered notices of one channel and target, in order, without leasing them
    /// (the merchant link: one link per terminal holds its advices).
    pub async fn outbox_head(
        &self,
        channel: &str,
        target: &str,
        limit: usize,
    ) -> Result<Vec<super::writer::OutboxItem>, StoreError> {
        let mut q = Sql::new(
            "SELECT id, channel, target, txn_id, seq, payload, attempts FROM outbox WHERE delivered_ms IS NULL AND channel = ",
        );
        q.bind(channel)
            .push(" AND target = ")
            .bind(target)
            .push(" ORDER BY id LIMIT ")
            .bind(limit as i64);
        let rows = q.query(self.backend).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(super::writer::OutboxItem {
                    id: r.i("id")?,
                    channel: r.t("channel")?,
                    target: r.t("target")?,
                    txn_id: r.t("txn_id")?,
                    seq: r.i("seq")?,
                    payload: r.t("payload")?,
                    attempts: r.i("attempts")?,
                })
            })
            .collect()
    }
}
