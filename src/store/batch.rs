//! Loading a batch's working set and writing it back, inside one database transaction.
//!
//! Loading reads every record the batch's requests can touch with a handful of set-based
//! queries (rows locked with `FOR UPDATE` on PostgreSQL, where several gateway nodes may write
//! at once; SQLite's `BEGIN IMMEDIATE` already holds the only write lock). Writing back is a
//! handful of multi-row upserts and inserts, whatever the batch size.

use super::Backend;
use super::cache::{ClaimHistory, RowCache};
use super::rows;
use super::sql::{RowExt, Sql, Val, insert_rows};
use crate::settlement::engine::{Op, PortraitToken, WorkingSet, funding_account_id};
use crate::settlement::rules::Rules;
use crate::settlement::txn_number;
use sqlx::AnyConnection;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// How many fresh number candidates to draw per `Open` request.
const CANDIDATES_PER_OPEN: usize = 2;

async fn fetch(
    conn: &mut AnyConnection,
    backend: Backend,
    sql: &Sql,
) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
    sql.query(backend).fetch_all(&mut *conn).await
}

/// Loads everything `ops` may touch into `ws`.
pub async fn load(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &mut WorkingSet,
    ops: &[&Op],
    rules: &Rules,
    cache: Option<&mut RowCache>,
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
            | Op::CheckPin { msisdn, .. }
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

    let mut drawn = BTreeSet::new();
    while drawn.len() < opens * CANDIDATES_PER_OPEN {
        match txn_number::generate(rules.number_digits) {
            Ok(n) => {
                drawn.insert(n);
            }
            Err(e) => return Err(sqlx::Error::Protocol(format!("OS randomness failed: {e}"))),
        }
    }
    if backend == Backend::Postgres {
        let mut unlocked = BTreeSet::new();
        for op in ops {
            if let Op::AddMerchant(m) = op {
                if let Some(a) = &m.account_id {
                    unlocked.insert(a.clone());
                }
                unlocked.insert(crate::settlement::engine::merchant_account_id(
                    &m.merchant_id,
                ));
            }
        }
        let keys = Keys {
            txn_ids,
            numbers,
            candidates: drawn,
            terminals,
            msisdns,
            claimers,
            idem,
            tokens,
            unlocked_accounts: unlocked,
            due_limit,
            credits,
        };
        return super::pg::load(conn, ws, &keys, rules).await;
    }

    // Fresh numbers for `Open`: draw candidates and keep those not reserved. Absence cannot be
    // cached, so this always asks the database.
    if opens > 0 {
        let mut q =
            Sql::new("SELECT number, txn_id, reusable_ms FROM txn_numbers WHERE number IN ");
        q.list(drawn.iter());
        let mut taken = BTreeSet::new();
        for r in fetch(conn, backend, &q).await? {
            if r.i("reusable_ms")? > now {
                taken.insert(r.t("number")?);
            }
        }
        ws.number_candidates = drawn.into_iter().filter(|n| !taken.contains(n)).collect();
    }

    // Numbers being claimed → their transactions.
    let mut cache = cache;
    let misses = from_cache(
        &numbers,
        cache.as_deref().map(|c| &c.numbers),
        &mut ws.numbers,
    );
    if !misses.is_empty() {
        let mut q =
            Sql::new("SELECT number, txn_id, reusable_ms FROM txn_numbers WHERE number IN ");
        q.list(misses);
        for r in fetch(conn, backend, &q).await? {
            ws.numbers
                .insert(r.t("number")?, (r.t("txn_id")?, r.i("reusable_ms")?));
        }
    }
    for (id, reusable) in ws.numbers.values() {
        if *reusable > now {
            txn_ids.insert(id.clone());
        }
    }

    if !idem.is_empty() {
        let misses: Vec<&(String, String)> = idem
            .iter()
            .filter(
                |k| match cache.as_deref().and_then(|c| c.idempotency.get(*k)) {
                    Some(v) => {
                        ws.idempotency.insert((*k).clone(), v.clone());
                        false
                    }
                    None => true,
                },
            )
            .collect();
        if !misses.is_empty() {
            let mut q = Sql::new(
                "SELECT terminal_id, key, request_hash, txn_id FROM idempotency_keys WHERE ",
            );
            for (i, (t, k)) in misses.iter().enumerate() {
                if i > 0 {
                    q.push(" OR ");
                }
                q.push("(terminal_id = ")
                    .bind(t)
                    .push(" AND key = ")
                    .bind(k)
                    .push(")");
            }
            for r in fetch(conn, backend, &q).await? {
                ws.idempotency.insert(
                    (r.t("terminal_id")?, r.t("key")?),
                    (r.t("request_hash")?, r.t("txn_id")?),
                );
            }
        }
        for (_, id) in ws.idempotency.values() {
            txn_ids.insert(id.clone());
        }
    }
    if !tokens.is_empty() {
        let mut q = Sql::new(
            "SELECT token, txn_id, msisdn, expires_ms, used FROM portrait_tokens WHERE token IN ",
        );
        q.list(tokens.iter());
        q.push(lock);
        for r in fetch(conn, backend, &q).await? {
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
        for r in fetch(conn, backend, &q).await? {
            due.push(r.t("id")?);
        }
        let mut q = Sql::new(
            "SELECT id FROM transactions WHERE state IN ('paired', 'authenticating') AND deadline_ms <= ",
        );
        q.bind(now)
            .push(" ORDER BY deadline_ms LIMIT ")
            .bind(due_limit as i64);
        for r in fetch(conn, backend, &q).await? {
            due.push(r.t("id")?);
        }
        txn_ids.extend(due.iter().cloned());
        ws.due = due;
    }

    let misses = from_cache(&txn_ids, cache.as_deref().map(|c| &c.txns), &mut ws.txns);
    if !misses.is_empty() {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM transactions WHERE id IN ",
            rows::TXN_COLS.join(", ")
        ));
        q.list(misses);
        q.push(" ORDER BY id");
        q.push(lock);
        for r in fetch(conn, backend, &q).await? {
            let t = rows::txn_from_row(&r)?;
            ws.txns.insert(t.id.clone(), t);
        }
    }
    for t in ws.txns.values() {
        terminals.insert(t.terminal_id.clone());
        if let Some(m) = &t.payer_msisdn {
            msisdns.insert(m.clone());
        }
    }

    // Accounts that may go below zero (merchants, funding) are changed by delta and read
    // without a lock; payer accounts are locked, since their available amount is checked.
    let mut locked_accounts = BTreeSet::new();
    let mut unlocked_accounts = BTreeSet::new();
    for op in ops {
        if let Op::AddMerchant(m) = op {
            if let Some(a) = &m.account_id {
                unlocked_accounts.insert(a.clone());
            }
            unlocked_accounts.insert(crate::settlement::engine::merchant_account_id(
                &m.merchant_id,
            ));
        }
    }
    let misses = from_cache(
        &terminals,
        cache.as_deref().map(|c| &c.merchants),
        &mut ws.merchants,
    );
    if !misses.is_empty() {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM merchants WHERE terminal_id IN ",
            rows::MERCHANT_COLS.join(", ")
        ));
        q.list(misses);
        for r in fetch(conn, backend, &q).await? {
            let m = rows::merchant_from_row(&r)?;
            ws.merchants.insert(m.terminal_id.clone(), m);
        }
    }
    unlocked_accounts.extend(ws.merchants.values().map(|m| m.account_id.clone()));

    let misses = from_cache(
        &msisdns,
        cache.as_deref().map(|c| &c.payers),
        &mut ws.payers,
    );
    if !misses.is_empty() {
        let mut q = Sql::new(&format!(
            "SELECT {} FROM payers WHERE msisdn IN ",
            rows::PAYER_COLS.join(", ")
        ));
        q.list(misses.iter());
        q.push(" ORDER BY msisdn");
        q.push(lock);
        for r in fetch(conn, backend, &q).await? {
            let p = rows::payer_from_row(&r)?;
            ws.payers.insert(p.msisdn.clone(), p);
        }
        let mut q = Sql::new(
            "SELECT msisdn, question_id, question, answer_hash FROM payer_questions WHERE msisdn IN ",
        );
        q.list(misses.iter());
        q.push(" ORDER BY msisdn, question_id");
        for r in fetch(conn, backend, &q).await? {
            let (m, id) = (r.t("msisdn")?, r.i("question_id")?);
            if let Some(p) = ws.payers.get_mut(&m) {
                p.questions.push((id, r.t("question")?));
            }
            ws.answers.insert((m, id), r.t("answer_hash")?);
        }
    }
    if let Some(c) = cache.as_deref() {
        for p in ws.payers.values() {
            for (id, _) in &p.questions {
                let k = (p.msisdn.clone(), *id);
                if let Some(h) = c.answers.get(&k) {
                    ws.answers.entry(k).or_insert_with(|| h.clone());
                }
            }
        }
    }
    locked_accounts.extend(ws.payers.values().map(|p| p.account_id.clone()));

    if !claimers.is_empty() {
        load_claim_limits(conn, backend, ws, &claimers, rules, cache.as_deref_mut()).await?;
    }
    load_accounts(conn, backend, ws, &locked_accounts, lock, cache.as_deref()).await?;
    if credits {
        // Funding accounts are named after the currency of the payer accounts being credited;
        // those currencies are known only once the accounts are loaded.
        unlocked_accounts.extend(
            ws.accounts
                .values()
                .map(|a| funding_account_id(&a.currency)),
        );
    }
    load_accounts(conn, backend, ws, &unlocked_accounts, "", cache.as_deref()).await?;
    Ok(())
}

/// What a batch's requests name directly.
pub(crate) struct Keys {
    pub txn_ids: BTreeSet<String>,
    pub numbers: BTreeSet<String>,
    pub candidates: BTreeSet<String>,
    pub terminals: BTreeSet<String>,
    pub msisdns: BTreeSet<String>,
    pub claimers: BTreeSet<String>,
    pub idem: BTreeSet<(String, String)>,
    pub tokens: BTreeSet<String>,
    pub unlocked_accounts: BTreeSet<String>,
    pub due_limit: usize,
    pub credits: bool,
}

/// Copies cached rows for `keys` into `into`; returns the keys the cache did not have.
fn from_cache<'k, K, V>(
    keys: &'k BTreeSet<K>,
    cache: Option<&HashMap<K, V>>,
    into: &mut HashMap<K, V>,
) -> Vec<&'k K>
where
    K: std::hash::Hash + Eq + Ord + Clone,
    V: Clone,
{
    let mut misses = Vec::new();
    for k in keys {
        if into.contains_key(k) {
            continue;
        }
        match cache.and_then(|c| c.get(k)) {
            Some(v) => {
                into.insert(k.clone(), v.clone());
            }
            None => misses.push(k),
        }
    }
    misses
}

/// Failed claims in the window and blocks, per caller and in all, for the rate limits.
async fn load_claim_limits(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &mut WorkingSet,
    claimers: &BTreeSet<String>,
    rules: &Rules,
    mut cache: Option<&mut RowCache>,
) -> Result<(), sqlx::Error> {
    let now = ws.now_ms;
    let since = now - rules.claim_window_ms;
    let mut misses = Vec::new();
    for m in claimers {
        match cache.as_deref().and_then(|c| c.claims.get(m)) {
            Some(known) => {
                let n = known.failures_ms.iter().filter(|t| **t > since).count() as i64;
                if n > 0 {
                    ws.claim_failures.insert(m.clone(), n);
                }
                if let Some(u) = known.blocked_until_ms {
                    ws.blocked_until.insert(m.clone(), u);
                }
            }
            None => misses.push(m),
        }
    }
    if !misses.is_empty() {
        let mut found: HashMap<String, ClaimHistory> = misses
            .iter()
            .map(|m| ((*m).clone(), ClaimHistory::default()))
            .collect();
        let mut q = Sql::new("SELECT msisdn, at_ms FROM claim_failures WHERE at_ms > ");
        q.bind(since).push(" AND msisdn IN ").list(misses.iter());
        for r in fetch(conn, backend, &q).await? {
            if let Some(h) = found.get_mut(&r.t("msisdn")?) {
                h.failures_ms.push(r.i("at_ms")?);
            }
        }
        let mut q = Sql::new("SELECT msisdn, until_ms FROM caller_blocks WHERE msisdn IN ");
        q.list(misses.iter());
        for r in fetch(conn, backend, &q).await? {
            if let Some(h) = found.get_mut(&r.t("msisdn")?) {
                h.blocked_until_ms = Some(r.i("until_ms")?);
            }
        }
        for (m, h) in found {
            if !h.failures_ms.is_empty() {
                ws.claim_failures
                    .insert(m.clone(), h.failures_ms.len() as i64);
            }
            if let Some(u) = h.blocked_until_ms {
                ws.blocked_until.insert(m.clone(), u);
            }
            if let Some(c) = cache.as_deref_mut() {
                c.claims.insert(m, h);
            }
        }
    }
    let global = cache
        .as_deref_mut()
        .and_then(|c| c.global_failures_ms.as_mut());
    match global {
        Some(g) => {
            while g.front().is_some_and(|t| *t <= since) {
                g.pop_front();
            }
            ws.global_claim_failures = g.len() as i64;
        }
        None => {
            let mut q = Sql::new("SELECT at_ms FROM claim_failures WHERE at_ms > ");
            q.bind(since).push(" ORDER BY at_ms");
            let mut all = VecDeque::new();
            for r in fetch(conn, backend, &q).await? {
                all.push_back(r.i("at_ms")?);
            }
            ws.global_claim_failures = all.len() as i64;
            if let Some(c) = cache {
                c.global_failures_ms = Some(all);
            }
        }
    }
    Ok(())
}

async fn load_accounts(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &mut WorkingSet,
    ids: &BTreeSet<String>,
    lock: &str,
    cache: Option<&RowCache>,
) -> Result<(), sqlx::Error> {
    let misses = from_cache(ids, cache.map(|c| &c.accounts), &mut ws.accounts);
    if misses.is_empty() {
        return Ok(());
    }
    let mut q = Sql::new(&format!(
        "SELECT {} FROM accounts WHERE id IN ",
        rows::ACCOUNT_COLS.join(", ")
    ));
    q.list(misses);
    q.push(" ORDER BY id");
    q.push(lock);
    for r in fetch(conn, backend, &q).await? {
        let a = rows::account_from_row(&r)?;
        ws.accounts.insert(a.id.clone(), a);
    }
    Ok(())
}

/// Writes what the batch changed.
///
/// On PostgreSQL the whole write-back, the number reservations and the notifications to other
/// nodes (`notices`: payloads for `pg_notify`) travel as one statement (see `store::pg`); on
/// SQLite, which is in-process, statement by statement.
pub async fn flush(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &WorkingSet,
    notices: &[String],
) -> Result<(), sqlx::Error> {
    let now = ws.now_ms;
    let mut pre = Vec::new();
    let mut writes = Vec::new();
    writes.push(Write::new(
        "merchants",
        rows::MERCHANT_COLS,
        Some(&["terminal_id"]),
        ws.dirty_merchants
            .iter()
            .filter_map(|id| ws.merchants.get(id))
            .map(rows::merchant_to_row)
            .collect(),
    ));
    writes.push(Write::new(
        "payers",
        rows::PAYER_COLS,
        Some(&["msisdn"]),
        ws.dirty_payers
            .iter()
            .filter_map(|id| ws.payers.get(id))
            .map(rows::payer_to_row)
            .collect(),
    ));
    writes.push(Write::new(
        "accounts",
        rows::ACCOUNT_COLS,
        Some(&["id"]),
        ws.dirty_accounts
            .iter()
            .filter_map(|id| ws.accounts.get(id))
            .map(rows::account_to_row)
            .collect(),
    ));
    // New accounts must exist before their deltas apply: their own statement, first.
    pre.push(Write::new(
        "accounts",
        rows::ACCOUNT_COLS,
        Some(&[]),
        ws.ensure_accounts
            .iter()
            .filter_map(|id| ws.accounts.get(id))
            .map(|a| {
                let mut zero = a.clone();
                zero.balance_minor = 0;
                rows::account_to_row(&zero)
            })
            .collect(),
    ));
    writes.push(Write::new(
        "transactions",
        rows::TXN_COLS,
        Some(&["id"]),
        ws.dirty_txns
            .iter()
            .filter_map(|id| ws.txns.get(id))
            .map(rows::txn_to_row)
            .collect(),
    ));
    writes.push(Write::new(
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
    writes.push(Write::new(
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
    writes.push(Write::new(
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
    writes.push(Write::new(
        "claim_failures",
        &["msisdn", "at_ms"],
        None,
        ws.new_claim_failures
            .iter()
            .map(|(m, at)| vec![Val::from(m), Val::from(*at)])
            .collect(),
    ));
    writes.push(Write::new(
        "caller_blocks",
        &["msisdn", "until_ms"],
        Some(&["msisdn"]),
        dedup_last(&ws.new_blocks)
            .into_iter()
            .map(|(m, u)| vec![Val::from(m), Val::from(u)])
            .collect(),
    ));
    writes.push(Write::new(
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
    writes.push(Write::new(
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
    writes.push(Write::new(
        "payer_questions",
        &["msisdn", "question_id", "question", "answer_hash"],
        None,
        ws.new_questions
            .iter()
            .map(|(m, id, q, h)| vec![Val::from(m), Val::from(*id), Val::from(q), Val::from(h)])
            .collect(),
    ));
    writes.push(Write::new(
        "payer_portraits",
        &["msisdn", "content_type", "image"],
        Some(&["msisdn"]),
        ws.new_portraits
            .iter()
            .map(|(m, c, b)| vec![Val::from(m), Val::from(c), Val::from(b.clone())])
            .collect(),
    ));
    writes.push(Write::new(
        "payer_voice_prints",
        &["msisdn", "template"],
        Some(&["msisdn"]),
        ws.new_voice_prints
            .iter()
            .filter_map(|(m, t)| t.as_ref().map(|t| vec![Val::from(m), Val::from(t.clone())]))
            .collect(),
    ));
    let voice_deletes: Vec<&String> = ws
        .new_voice_prints
        .iter()
        .filter(|(_, t)| t.is_none())
        .map(|(m, _)| m)
        .collect();
    for w in pre {
        for q in insert_rows(w.table, w.cols, w.key, w.rows) {
            q.query(backend).execute(&mut *conn).await?;
        }
    }
    let deltas: Vec<(&String, i64)> = ws
        .account_deltas
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(id, d)| (id, *d))
        .collect();
    let writes: Vec<Write> = writes.into_iter().filter(|w| !w.rows.is_empty()).collect();
    if backend == Backend::Postgres {
        return super::pg::flush(conn, ws, &writes, &deltas, &voice_deletes, notices).await;
    }
    for w in writes {
        for q in insert_rows(w.table, w.cols, w.key, w.rows) {
            q.query(backend).execute(&mut *conn).await?;
        }
    }
    // One statement for many accounts: on SQLite every statement is a round trip to the
    // driver's database thread, and a batch of payments touches one account per payer.
    for chunk in deltas.chunks(ACCOUNT_DELTAS_PER_STATEMENT) {
        let mut q = Sql::new("UPDATE accounts SET balance_minor = balance_minor + CASE id");
        for (id, delta) in chunk {
            q.push(" WHEN ").bind(*id).push(" THEN ").bind(*delta);
        }
        q.push(" END WHERE id IN (");
        for (i, (id, _)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind(*id);
        }
        q.push(")");
        q.query(backend).execute(&mut *conn).await?;
    }
    for m in voice_deletes {
        let mut q = Sql::new("DELETE FROM payer_voice_prints WHERE msisdn = ");
        q.bind(m);
        q.query(backend).execute(&mut *conn).await?;
    }
    let numbers = number_statements(ws);
    for (q, expected) in numbers
        .iter()
        .zip(ws.new_numbers.chunks(NUMBERS_PER_STATEMENT))
    {
        let got = q.query(backend).fetch_all(&mut *conn).await?.len();
        check_reserved(got, expected.len())?;
    }
    Ok(())
}

/// Accounts per balance update statement (three parameters each, far below SQLite's limit).
const ACCOUNT_DELTAS_PER_STATEMENT: usize = 200;

/// A multi-row write: `rows` into `table`, an upsert on `key` when given (an empty key: insert
/// what is absent, keep what exists).
pub(crate) struct Write {
    pub table: &'static str,
    pub cols: &'static [&'static str],
    pub key: Option<&'static [&'static str]>,
    pub rows: Vec<Vec<Val>>,
}

impl Write {
    fn new(
        table: &'static str,
        cols: &'static [&'static str],
        key: Option<&'static [&'static str]>,
        rows: Vec<Vec<Val>>,
    ) -> Write {
        Write {
            table,
            cols,
            key,
            rows,
        }
    }
}

pub(crate) fn check_reserved(got: usize, wanted: usize) -> Result<(), sqlx::Error> {
    if got == wanted {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!(
            "{} of {wanted} transaction numbers were taken concurrently",
            wanted.saturating_sub(got)
        )))
    }
}

/// Reservation rows per statement.
const NUMBERS_PER_STATEMENT: usize = 1_000;

/// Reserves the batch's new numbers. A number is taken over only when its old reservation has
/// lapsed; if another node took one of ours at the same instant, fewer rows come back and the
/// batch fails, to be retried with fresh numbers.
fn number_statements(ws: &WorkingSet) -> Vec<Sql> {
    let mut out = Vec::new();
    for chunk in ws.new_numbers.chunks(NUMBERS_PER_STATEMENT) {
        let mut q = Sql::new("INSERT INTO txn_numbers (number, txn_id, reusable_ms) VALUES ");
        for (i, (n, id, r)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.list([Val::from(n), Val::from(id), Val::from(*r)]);
        }
        q.push(" ON CONFLICT (number) DO UPDATE SET txn_id = excluded.txn_id, reusable_ms = excluded.reusable_ms WHERE txn_numbers.reusable_ms <= ")
            .bind(ws.now_ms)
            .push(" RETURNING number");
        out.push(q);
    }
    out
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
