//! Loading a batch's working set and writing it back, inside one database transaction.
//!
//! Loading reads every record the batch's requests can touch with a handful of set-based
//! queries (rows locked with `FOR UPDATE` on PostgreSQL, where several gateway nodes may write
//! at once; SQLite's `BEGIN IMMEDIATE` already holds the only write lock). Writing back is a
//! handful of multi-row upserts and inserts, whatever the batch size.

use super::Backend;
use super::rows;
use super::sql::{RowExt, Sql, Val, insert_rows};
use crate::settlement::engine::{Op, PortraitToken, WorkingSet, funding_account_id};
use crate::settlement::rules::Rules;
use crate::settlement::txn_number;
use sqlx::AnyConnection;
use std::collections::BTreeSet;

/// How many fresh number candidates to draw per `Open` request.
const CANDIDATES_PER_OPEN: usize = 2;

async fn fetch(conn: &mut AnyConnection, sql: &Sql) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
    sql.query().fetch_all(&mut *conn).await
}

/// Loads everything `ops` may touch into `ws`.
pub async fn load(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &mut WorkingSet,
    ops: &[&Op],
    rules: &Rules,
) -> Result<(), sqlx::Error> {
    let lock = if backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let now = ws.now_ms;
    let mut txn_ids = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    let mut terminals = BTreeSet::new();
    let mut msisdns = BTreeSet::new();
    let mut claimers = BTreeSet::new();
    let mut idem = BTreeSet::new();
    let mut tokens = BTreeSet::new();
    let mut due_limit = 0usize;
    let mut opens = 0usize;
    let mut credits = false;
    for op in ops {
        match op {
            Op::Open {
                terminal_id,
                idempotency,
                ..
            } => {
                terminals.insert(terminal_id.clone());
                opens += 1;
                if let Some((key, _)) = idempotency {
                    idem.insert((terminal_id.clone(), key.clone()));
                }
            }
            Op::SetAmount {
                terminal_id,
                txn_id,
                ..
            }
            | Op::Cancel {
                terminal_id,
                txn_id,
            }
            | Op::Reverse {
                terminal_id,
                txn_id,
                ..
            }
            | Op::VisualCheck {
                terminal_id,
                txn_id,
                ..
            } => {
                terminals.insert(terminal_id.clone());
                txn_ids.insert(txn_id.clone());
            }
            Op::Claim { msisdn, number, .. } => {
                msisdns.insert(msisdn.clone());
                claimers.insert(msisdn.clone());
                numbers.insert(number.clone());
            }
            Op::SubmitPin { msisdn, txn_id, .. }
            | Op::SubmitAnswer { msisdn, txn_id, .. }
            | Op::SubmitVoice { msisdn, txn_id, .. }
            | Op::Confirm { msisdn, txn_id }
            | Op::PayerCancel { msisdn, txn_id } => {
                msisdns.insert(msisdn.clone());
                txn_ids.insert(txn_id.clone());
            }
            Op::ExpireDue { limit } => due_limit = due_limit.max(*limit),
            Op::UsePortraitToken { token } => {
                tokens.insert(token.clone());
            }
            Op::AddMerchant(m) => {
                terminals.insert(m.terminal_id.clone());
            }
            Op::SetMerchantStatus { terminal_id, .. } => {
                terminals.insert(terminal_id.clone());
            }
            Op::AddPayer(p) => {
                msisdns.insert(p.msisdn.clone());
            }
            Op::SetPin { msisdn, .. }
            | Op::AddQuestion { msisdn, .. }
            | Op::SetPortrait { msisdn, .. }
            | Op::SetPayerStatus { msisdn, .. }
            | Op::SetPayerDemand { msisdn, .. }
            | Op::SetVoicePrint { msisdn, .. } => {
                msisdns.insert(msisdn.clone());
            }
            Op::Credit { msisdn, .. } => {
                msisdns.insert(msisdn.clone());
                credits = true;
            }
        }
    }

    // Fresh numbers for `Open`: draw candidates and keep those not reserved.
    let mut candidates = Vec::new();
    if opens > 0 {
        let mut drawn = BTreeSet::new();
        while drawn.len() < opens * CANDIDATES_PER_OPEN {
            match txn_number::generate(rules.number_digits) {
                Ok(n) => {
                    drawn.insert(n);
                }
                Err(e) => return Err(sqlx::Error::Protocol(format!("OS randomness failed: {e}"))),
            }
        }
        candidates = drawn.iter().cloned().collect();
        numbers.extend(drawn);
    }
    if !numbers.is_empty() {
        let mut q =
            Sql::new("SELECT number, txn_id, reusable_ms FROM txn_numbers WHERE number IN ");
        q.list(numbers.iter());
        q.push(lock);
        for r in fetch(conn, &q).await? {
            let (n, id, reusable) = (r.t("number")?, r.t("txn_id")?, r.i("reusable_ms")?);
            if reusable > now {
                txn_ids.insert(id.clone());
            }
            ws.numbers.insert(n, (id, reusable));
        }
    }
    ws.number_candidates = candidates
        .into_iter()
        .filter(|n| ws.numbers.get(n).is_none_or(|(_, r)| *r <= now))
        .collect();

    if !idem.is_empty() {
        let mut q =
            Sql::new("SELECT terminal_id, key, request_hash, txn_id FROM idempotency_keys WHERE ");
        for (i, (t, k)) in idem.iter().enumerate() {
            if i > 0 {
                q.push(" OR ");
            }
            q.push("(terminal_id = ")
                .bind(t)
                .push(" AND key = ")
                .bind(k)
                .push(")");
        }
        for r in fetch(conn, &q).await? {
            let id = r.t("txn_id")?;
            txn_ids.insert(id.clone());
            ws.idempotency.insert(
                (r.t("terminal_id")?, r.t("key")?),
                (r.t("request_hash")?, id),
            );
        }
    }
    if !tokens.is_empty() {
        let mut q = Sql::new(
            "SELECT token, txn_id, msisdn, expires_ms, used FROM portrait_tokens WHERE token IN ",
        );
        q.list(tokens.iter());
        q.push(lock);
        for r in fetch(conn, &q).await? {
            let t = PortraitToken {
                token: r.t("token")?,
                txn_id: r.t("txn_id")?,
                msisdn: r.t("msisdn")?,
                expires_ms: r.i("expires_ms")?,
                used: r.i("used")? != 0,
            };
            ws.portrait_tokens.insert(t.token.clone(), t);
        }
    }
    if due_limit > 0 {
        let mut q =
            Sql::new("SELECT id FROM transactions WHERE state = 'issued' AND expires_ms <= ");
        q.bind(now)
            .push(" ORDER BY expires_ms LIMIT ")
            .bind(due_limit as i64);
        let mut due: Vec<String> = Vec::new();
        for r in fetch(conn, &q).await? {
            due.push(r.t("id")?);
        }
        let mut q = Sql::new(
            "SELECT id FROM transactions WHERE state IN ('paired', 'authenticating') AND deadline_ms <= ",
        );
        q.bind(now)
            .push(" ORDER BY deadline_ms LIMIT ")
            .bind(due_limit as i64);
        for r in fetch(conn, &q).await? {
            due.push(r.t("id")?);
        }
        txn_ids.extend(due.iter().cloned());
        ws.due = due;
    }

    if !txn_ids.is_empty() {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM transactions WHERE id IN ",
            rows::TXN_COLS.join(", ")
        ));
        q.list(txn_ids.iter());
        q.push(" ORDER BY id");
        q.push(lock);
        for r in fetch(conn, &q).await? {
            let t = rows::txn_from_row(&r)?;
            terminals.insert(t.terminal_id.clone());
            if let Some(m) = &t.payer_msisdn {
                msisdns.insert(m.clone());
            }
            ws.txns.insert(t.id.clone(), t);
        }
    }

    let mut account_ids = BTreeSet::new();
    if !terminals.is_empty() {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM merchants WHERE terminal_id IN ",
            rows::MERCHANT_COLS.join(", ")
        ));
        q.list(terminals.iter());
        for r in fetch(conn, &q).await? {
            let m = rows::merchant_from_row(&r)?;
            account_ids.insert(m.account_id.clone());
            ws.merchants.insert(m.terminal_id.clone(), m);
        }
        // A new terminal may share an existing settlement account.
        for op in ops {
            if let Op::AddMerchant(m) = op {
                if let Some(a) = &m.account_id {
                    account_ids.insert(a.clone());
                }
                account_ids.insert(crate::settlement::engine::merchant_account_id(
                    &m.merchant_id,
                ));
            }
        }
    }
    if !msisdns.is_empty() {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM payers WHERE msisdn IN ",
            rows::PAYER_COLS.join(", ")
        ));
        q.list(msisdns.iter());
        q.push(" ORDER BY msisdn");
        q.push(lock);
        for r in fetch(conn, &q).await? {
            let p = rows::payer_from_row(&r)?;
            account_ids.insert(p.account_id.clone());
            ws.payers.insert(p.msisdn.clone(), p);
        }
        let mut q = Sql::new(
            "SELECT msisdn, question_id, question, answer_hash FROM payer_questions WHERE msisdn IN ",
        );
        q.list(msisdns.iter());
        q.push(" ORDER BY msisdn, question_id");
        for r in fetch(conn, &q).await? {
            let (m, id) = (r.t("msisdn")?, r.i("question_id")?);
            if let Some(p) = ws.payers.get_mut(&m) {
                p.questions.push((id, r.t("question")?));
            }
            ws.answers.insert((m, id), r.t("answer_hash")?);
        }
    }
    if !claimers.is_empty() {
        let since = now - rules.claim_window_ms;
        let mut q = Sql::new(
            "SELECT msisdn, CAST(COUNT(*) AS BIGINT) AS n FROM claim_failures WHERE at_ms > ",
        );
        q.bind(since).push(" AND msisdn IN ").list(claimers.iter());
        q.push(" GROUP BY msisdn");
        for r in fetch(conn, &q).await? {
            ws.claim_failures.insert(r.t("msisdn")?, r.i("n")?);
        }
        let mut q = Sql::new("SELECT msisdn, until_ms FROM caller_blocks WHERE msisdn IN ");
        q.list(claimers.iter());
        for r in fetch(conn, &q).await? {
            ws.blocked_until.insert(r.t("msisdn")?, r.i("until_ms")?);
        }
        let mut q =
            Sql::new("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM claim_failures WHERE at_ms > ");
        q.bind(since);
        if let Some(r) = fetch(conn, &q).await?.first() {
            ws.global_claim_failures = r.i("n")?;
        }
    }
    if credits {
        let payer_accounts: BTreeSet<String> =
            ws.payers.values().map(|p| p.account_id.clone()).collect();
        // Funding accounts are named after the currency of the payer accounts being credited;
        // those currencies are known only once the accounts are loaded, so load in two steps.
        load_accounts(conn, ws, &payer_accounts, lock).await?;
        let funding: BTreeSet<String> = ws
            .accounts
            .values()
            .map(|a| funding_account_id(&a.currency))
            .collect();
        account_ids.extend(funding);
    }
    load_accounts(conn, ws, &account_ids, lock).await?;
    Ok(())
}

async fn load_accounts(
    conn: &mut AnyConnection,
    ws: &mut WorkingSet,
    ids: &BTreeSet<String>,
    lock: &str,
) -> Result<(), sqlx::Error> {
    let ids: Vec<&String> = ids
        .iter()
        .filter(|id| !ws.accounts.contains_key(*id))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let mut q = Sql::new(&format!(
        "SELECT {} FROM accounts WHERE id IN ",
        rows::ACCOUNT_COLS.join(", ")
    ));
    q.list(ids);
    q.push(" ORDER BY id");
    q.push(lock);
    for r in fetch(conn, &q).await? {
        let a = rows::account_from_row(&r)?;
        ws.accounts.insert(a.id.clone(), a);
    }
    Ok(())
}

/// Writes what the batch changed.
pub async fn flush(conn: &mut AnyConnection, ws: &WorkingSet) -> Result<(), sqlx::Error> {
    let now = ws.now_ms;
    let mut stmts = Vec::new();
    stmts.extend(insert_rows(
        "merchants",
        rows::MERCHANT_COLS,
        Some(&["terminal_id"]),
        ws.dirty_merchants
            .iter()
            .filter_map(|id| ws.merchants.get(id))
            .map(rows::merchant_to_row)
            .collect(),
    ));
    stmts.extend(insert_rows(
        "payers",
        rows::PAYER_COLS,
        Some(&["msisdn"]),
        ws.dirty_payers
            .iter()
            .filter_map(|id| ws.payers.get(id))
            .map(rows::payer_to_row)
            .collect(),
    ));
    stmts.extend(insert_rows(
        "accounts",
        rows::ACCOUNT_COLS,
        Some(&["id"]),
        ws.dirty_accounts
            .iter()
            .filter_map(|id| ws.accounts.get(id))
            .map(rows::account_to_row)
            .collect(),
    ));
    stmts.extend(insert_rows(
        "transactions",
        rows::TXN_COLS,
        Some(&["id"]),
        ws.dirty_txns
            .iter()
            .filter_map(|id| ws.txns.get(id))
            .map(rows::txn_to_row)
            .collect(),
    ));
    stmts.extend(insert_rows(
        "txn_numbers",
        &["number", "txn_id", "reusable_ms"],
        Some(&["number"]),
        ws.new_numbers
            .iter()
            .map(|(n, id, r)| vec![Val::from(n), Val::from(id), Val::from(*r)])
            .collect(),
    ));
    stmts.extend(insert_rows(
        "events",
        &["txn_id", "seq", "kind", "data", "at_ms"],
        None,
        ws.events
            .iter()
            .map(|e| {
                vec![
                    Val::from(&e.txn_id),
                    Val::from(e.seq),
                    Val::from(e.kind.name()),
                    Val::from(serde_json::to_string(&e.kind).unwrap_or_else(|_| "{}".into())),
                    Val::from(e.at_ms),
                ]
            })
            .collect(),
    ));
    stmts.extend(insert_rows(
        "transfers",
        &[
            "id",
            "txn_id",
            "kind",
            "debit_account",
            "credit_account",
            "amount_minor",
            "currency",
            "created_ms",
        ],
        None,
        ws.transfers
            .iter()
            .map(|t| {
                vec![
                    Val::from(&t.id),
                    Val::from(t.txn_id.clone()),
                    Val::from(t.kind),
                    Val::from(&t.debit_account),
                    Val::from(&t.credit_account),
                    Val::from(t.amount_minor),
                    Val::from(&t.currency),
                    Val::from(t.created_ms),
                ]
            })
            .collect(),
    ));
    stmts.extend(insert_rows(
        "outbox",
        &[
            "channel",
            "target",
            "txn_id",
            "seq",
            "payload",
            "next_ms",
            "created_ms",
        ],
        None,
        ws.outbox
            .iter()
            .map(|o| {
                vec![
                    Val::from(o.channel),
                    Val::from(&o.target),
                    Val::from(&o.txn_id),
                    Val::from(o.seq),
                    Val::from(&o.payload),
                    Val::from(now),
                    Val::from(now),
                ]
            })
            .collect(),
    ));
    stmts.extend(insert_rows(
        "claim_failures",
        &["msisdn", "at_ms"],
        None,
        ws.new_claim_failures
            .iter()
            .map(|(m, at)| vec![Val::from(m), Val::from(*at)])
            .collect(),
    ));
    stmts.extend(insert_rows(
        "caller_blocks",
        &["msisdn", "until_ms"],
        Some(&["msisdn"]),
        dedup_last(&ws.new_blocks)
            .into_iter()
            .map(|(m, u)| vec![Val::from(m), Val::from(u)])
            .collect(),
    ));
    stmts.extend(insert_rows(
        "idempotency_keys",
        &["terminal_id", "key", "request_hash", "txn_id", "created_ms"],
        None,
        ws.new_idempotency
            .iter()
            .map(|(t, k, h, id)| {
                vec![
                    Val::from(t),
                    Val::from(k),
                    Val::from(h),
                    Val::from(id),
                    Val::from(now),
                ]
            })
            .collect(),
    ));
    stmts.extend(insert_rows(
        "portrait_tokens",
        &["token", "txn_id", "msisdn", "expires_ms", "used"],
        Some(&["token"]),
        ws.dirty_tokens
            .iter()
            .filter_map(|t| ws.portrait_tokens.get(t))
            .map(|t| {
                vec![
                    Val::from(&t.token),
                    Val::from(&t.txn_id),
                    Val::from(&t.msisdn),
                    Val::from(t.expires_ms),
                    Val::from(t.used),
                ]
            })
            .collect(),
    ));
    stmts.extend(insert_rows(
        "payer_questions",
        &["msisdn", "question_id", "question", "answer_hash"],
        None,
        ws.new_questions
            .iter()
            .map(|(m, id, q, h)| vec![Val::from(m), Val::from(*id), Val::from(q), Val::from(h)])
            .collect(),
    ));
    stmts.extend(insert_rows(
        "payer_portraits",
        &["msisdn", "content_type", "image"],
        Some(&["msisdn"]),
        ws.new_portraits
            .iter()
            .map(|(m, c, b)| vec![Val::from(m), Val::from(c), Val::from(b.clone())])
            .collect(),
    ));
    for (m, template) in &ws.new_voice_prints {
        match template {
            Some(t) => stmts.extend(insert_rows(
                "payer_voice_prints",
                &["msisdn", "template"],
                Some(&["msisdn"]),
                vec![vec![Val::from(m), Val::from(t.clone())]],
            )),
            None => {
                let mut q = Sql::new("DELETE FROM payer_voice_prints WHERE msisdn = ");
                q.bind(m);
                stmts.push(q);
            }
        }
    }
    for s in &stmts {
        s.query().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Keeps the last value per key, in first-seen order.
fn dedup_last(pairs: &[(String, i64)]) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for (k, v) in pairs {
        match out.iter_mut().find(|(k2, _)| k2 == k) {
            Some(slot) => slot.1 = *v,
            None => out.push((k.clone(), *v)),
        }
    }
    out
}
