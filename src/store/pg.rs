//! PostgreSQL: a batch's load and its write-back, each in one statement.
//!
//! A round trip to PostgreSQL costs far more than the work it carries, so a batch sends two:
//! one statement that loads (and locks) everything the batch touches, one that writes it all
//! back. Keys and rows travel as JSON array parameters (`json_array_elements_text`,
//! `json_populate_recordset`), which keeps the statement texts fixed whatever the batch size, so
//! the server plans them once and sqlx keeps them prepared.

use super::batch::{Keys, Write, check_reserved};
use super::rows;
use super::sql::{RowExt, Val};
use super::writer::NOTIFY_CHANNEL;
use crate::settlement::engine::{PortraitToken, WorkingSet};
use crate::settlement::lifecycle::TxnState;
use crate::settlement::rules::Rules;
use serde_json::{Map, Value};
use sqlx::AnyConnection;
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

fn json_list<'a>(vals: impl IntoIterator<Item = &'a String>) -> String {
    Value::Array(vals.into_iter().map(|v| Value::String(v.clone())).collect()).to_string()
}

/// The load statement. Each part is a CTE; later parts follow the rows of earlier ones (a claimed
/// number's transaction, that transaction's payer, the payer's account); rows are locked in one
/// order (transactions, payers, payer accounts); every part comes back as a JSON array.
fn load_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let set = |n: u8| format!("(SELECT json_array_elements_text(${n}::json))");
        let acols = rows::ACCOUNT_COLS.join(", ");
        let parts = [
            "cand", "nums", "idem", "tok", "tx", "m", "p", "q", "pa", "oa", "cf", "cb",
        ]
        .iter()
        .map(|n| {
            format!("CAST(COALESCE((SELECT json_agg(x) FROM {n} x), '[]'::json) AS TEXT) AS {n}")
        })
        .collect::<Vec<_>>()
        .join(", ");
        format!(
            "WITH cand AS (SELECT number FROM txn_numbers WHERE number IN {c} AND reusable_ms > $2), \
             nums AS (SELECT number, txn_id, reusable_ms FROM txn_numbers WHERE number IN {n}), \
             idem AS (SELECT terminal_id, key, request_hash, txn_id FROM idempotency_keys \
                 WHERE (terminal_id, key) IN (SELECT x->>0, x->>1 FROM json_array_elements($4::json) x)), \
             tok AS (SELECT token, txn_id, msisdn, expires_ms, used FROM portrait_tokens WHERE token IN {tk} FOR UPDATE), \
             due1 AS (SELECT id FROM transactions WHERE state = 'issued' AND expires_ms <= $2 ORDER BY expires_ms LIMIT $6), \
             due2 AS (SELECT id FROM transactions WHERE state IN ('paired', 'authenticating') AND deadline_ms <= $2 \
                 ORDER BY deadline_ms LIMIT $6), \
             tx AS (SELECT {txc} FROM transactions WHERE id IN {ids} \
                 OR id IN (SELECT txn_id FROM nums WHERE reusable_ms > $2) OR id IN (SELECT txn_id FROM idem) \
                 OR id IN (SELECT id FROM due1) OR id IN (SELECT id FROM due2) ORDER BY id FOR UPDATE), \
             m AS (SELECT {mc} FROM merchants WHERE terminal_id IN {terms} OR terminal_id IN (SELECT terminal_id FROM tx)), \
             p AS (SELECT {pc} FROM payers WHERE msisdn IN {ms} OR msisdn IN (SELECT payer_msisdn FROM tx) \
                 ORDER BY msisdn FOR UPDATE), \
             q AS (SELECT msisdn, question_id, question, answer_hash FROM payer_questions \
                 WHERE msisdn IN (SELECT msisdn FROM p) ORDER BY msisdn, question_id), \
             pa AS (SELECT {acols} FROM accounts WHERE id IN (SELECT account_id FROM p) ORDER BY id FOR UPDATE), \
             oa AS (SELECT {acols} FROM accounts WHERE id IN (SELECT account_id FROM m) OR id IN {unl} \
                 OR ($11 = 1 AND id IN (SELECT 'funding:' || currency FROM pa))), \
             cf AS (SELECT msisdn, at_ms FROM claim_failures WHERE at_ms > $12 AND msisdn IN {cl}), \
             cb AS (SELECT msisdn, until_ms FROM caller_blocks WHERE msisdn IN {cl}) \
             SELECT {parts}, CAST((SELECT COUNT(*) FROM claim_failures WHERE $14 = 1 AND at_ms > $12) AS BIGINT) AS cg",
            c = set(1),
            n = set(3),
            tk = set(5),
            ids = set(7),
            terms = set(8),
            ms = set(9),
            unl = set(10),
            cl = set(13),
            txc = rows::TXN_COLS.join(", "),
            mc = rows::MERCHANT_COLS.join(", "),
            pc = rows::PAYER_COLS.join(", "),
        )
    })
}

/// Parses a `json_agg` column (`[]` when empty) into its rows.
fn json_rows(row: &sqlx::any::AnyRow, col: &str) -> Result<Vec<Map<String, Value>>, sqlx::Error> {
    let text = row.t(col)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(format!("{col}: {e}").into()))
}

/// Loads everything the batch's requests name into `ws`, locking what it will change.
pub(crate) async fn load(
    conn: &mut AnyConnection,
    ws: &mut WorkingSet,
    k: &Keys,
    rules: &Rules,
) -> Result<(), sqlx::Error> {
    let now = ws.now_ms;
    let since = now - rules.claim_window_ms;
    let idem = Value::Array(
        k.idem
            .iter()
            .map(|(t, key)| {
                Value::Array(vec![Value::String(t.clone()), Value::String(key.clone())])
            })
            .collect(),
    )
    .to_string();
    let row = sqlx::query(load_sql())
        .bind(json_list(&k.candidates))
        .bind(now)
        .bind(json_list(&k.numbers))
        .bind(idem)
        .bind(json_list(&k.tokens))
        .bind(k.due_limit as i64)
        .bind(json_list(&k.txn_ids))
        .bind(json_list(&k.terminals))
        .bind(json_list(&k.msisdns))
        .bind(json_list(&k.unlocked_accounts))
        .bind(i64::from(k.credits))
        .bind(since)
        .bind(json_list(&k.claimers))
        .bind(i64::from(!k.claimers.is_empty()))
        .fetch_one(&mut *conn)
        .await?;

    let taken: BTreeSet<String> = json_rows(&row, "cand")?
        .iter()
        .map(|r| r.t("number"))
        .collect::<Result<_, _>>()?;
    ws.number_candidates = k
        .candidates
        .iter()
        .filter(|n| !taken.contains(*n))
        .cloned()
        .collect();
    for r in json_rows(&row, "nums")? {
        ws.numbers
            .insert(r.t("number")?, (r.t("txn_id")?, r.i("reusable_ms")?));
    }
    for r in json_rows(&row, "idem")? {
        ws.idempotency.insert(
            (r.t("terminal_id")?, r.t("key")?),
            (r.t("request_hash")?, r.t("txn_id")?),
        );
    }
    for r in json_rows(&row, "tok")? {
        let t = PortraitToken {
            token: r.t("token")?,
            txn_id: r.t("txn_id")?,
            msisdn: r.t("msisdn")?,
            expires_ms: r.i("expires_ms")?,
            used: r.i("used")? != 0,
        };
        ws.portrait_tokens.insert(t.token.clone(), t);
    }
    let mut due = Vec::new();
    for r in json_rows(&row, "tx")? {
        let t = rows::txn_from_row(&r)?;
        let is_due = match t.state {
            TxnState::Issued => t.expires_ms <= now,
            TxnState::Paired | TxnState::Authenticating => t.deadline_ms.is_some_and(|d| d <= now),
            _ => false,
        };
        if k.due_limit > 0 && is_due {
            due.push(t.id.clone());
        }
        ws.txns.insert(t.id.clone(), t);
    }
    due.truncate(k.due_limit);
    ws.due = due;
    for r in json_rows(&row, "m")? {
        let m = rows::merchant_from_row(&r)?;
        ws.merchants.insert(m.terminal_id.clone(), m);
    }
    for r in json_rows(&row, "p")? {
        let p = rows::payer_from_row(&r)?;
        ws.payers.insert(p.msisdn.clone(), p);
    }
    for r in json_rows(&row, "q")? {
        let (m, id) = (r.t("msisdn")?, r.i("question_id")?);
        if let Some(p) = ws.payers.get_mut(&m) {
            p.questions.push((id, r.t("question")?));
        }
        ws.answers.insert((m, id), r.t("answer_hash")?);
    }
    for col in ["pa", "oa"] {
        for r in json_rows(&row, col)? {
            let a = rows::account_from_row(&r)?;
            ws.accounts.insert(a.id.clone(), a);
        }
    }
    let mut counts: HashMap<String, i64> = HashMap::new();
    for r in json_rows(&row, "cf")? {
        *counts.entry(r.t("msisdn")?).or_insert(0) += 1;
    }
    ws.claim_failures.extend(counts);
    for r in json_rows(&row, "cb")? {
        ws.blocked_until.insert(r.t("msisdn")?, r.i("until_ms")?);
    }
    ws.global_claim_failures = row.i("cg")?;
    Ok(())
}

/// Rows as a JSON array of objects keyed by column, as `json_populate_recordset` reads them.
fn rows_json(cols: &[&str], rows: &[Vec<Val>]) -> String {
    let v: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut m = Map::new();
            for (c, v) in cols.iter().zip(r) {
                let j = match v {
                    Val::I(Some(i)) => Value::from(*i),
                    Val::T(Some(t)) => Value::String(t.clone()),
                    Val::B(Some(b)) => Value::String(format!("\\x{}", hex::encode(b))),
                    Val::I(None) | Val::T(None) | Val::B(None) => Value::Null,
                };
                m.insert((*c).to_string(), j);
            }
            Value::Object(m)
        })
        .collect();
    Value::Array(v).to_string()
}

/// Writes the batch back in one statement: a data-modifying CTE per table, the balance deltas,
/// the number reservations (which must all succeed) and the notifications to other nodes.
pub(crate) async fn flush(
    conn: &mut AnyConnection,
    ws: &WorkingSet,
    writes: &[Write],
    deltas: &[(&String, i64)],
    voice_deletes: &[&String],
    notices: &[String],
) -> Result<(), sqlx::Error> {
    let mut text = String::from("WITH ");
    let mut params: Vec<Val> = Vec::new();
    let mut param = |v: Val| {
        params.push(v);
        params.len()
    };
    let mut ctes: Vec<String> = Vec::new();
    for (i, w) in writes.iter().enumerate() {
        let cols = w.cols.join(", ");
        let n = param(Val::from(rows_json(w.cols, &w.rows)));
        let conflict = match w.key {
            None => String::new(),
            Some([]) => " ON CONFLICT DO NOTHING".to_string(),
            Some(key) => {
                let updates: Vec<String> = w
                    .cols
                    .iter()
                    .filter(|c| !key.contains(c))
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    key.join(", "),
                    updates.join(", ")
                )
            }
        };
        ctes.push(format!(
            "w{i} AS (INSERT INTO {t} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{t}, ${n}::json){conflict})",
            t = w.table
        ));
    }
    if !deltas.is_empty() {
        let d: Vec<Value> = deltas
            .iter()
            .map(|(id, d)| serde_json::json!({"id": id, "delta": d}))
            .collect();
        let n = param(Val::from(Value::Array(d).to_string()));
        ctes.push(format!(
            "deltas AS (UPDATE accounts a SET balance_minor = a.balance_minor + d.delta \
             FROM json_to_recordset(${n}::json) AS d(id TEXT, delta BIGINT) WHERE a.id = d.id)"
        ));
    }
    if !voice_deletes.is_empty() {
        let n = param(Val::from(json_list(voice_deletes.iter().copied())));
        ctes.push(format!(
            "vdel AS (DELETE FROM payer_voice_prints WHERE msisdn IN (SELECT json_array_elements_text(${n}::json)))"
        ));
    }
    let reserving = !ws.new_numbers.is_empty();
    if reserving {
        let rows: Vec<Vec<Val>> = ws
            .new_numbers
            .iter()
            .map(|(n, id, r)| vec![Val::from(n), Val::from(id), Val::from(*r)])
            .collect();
        let n = param(Val::from(rows_json(
            &["number", "txn_id", "reusable_ms"],
            &rows,
        )));
        let now = param(Val::from(ws.now_ms));
        // A number is taken over only when its old reservation has lapsed; if another node took
        // one of ours at the same instant, fewer rows come back and the batch is retried.
        ctes.push(format!(
            "nums AS (INSERT INTO txn_numbers (number, txn_id, reusable_ms) SELECT number, txn_id, reusable_ms \
             FROM json_populate_recordset(NULL::txn_numbers, ${n}::json) \
             ON CONFLICT (number) DO UPDATE SET txn_id = excluded.txn_id, reusable_ms = excluded.reusable_ms \
             WHERE txn_numbers.reusable_ms <= ${now} RETURNING number)"
        ));
    }
    if !notices.is_empty() {
        let c = param(Val::from(NOTIFY_CHANNEL));
        let n = param(Val::from(json_list(notices)));
        ctes.push(format!(
            "notes AS (SELECT pg_notify(${c}, n) AS sent FROM json_array_elements_text(${n}::json) AS n)"
        ));
    }
    if ctes.is_empty() {
        return Ok(());
    }
    text.push_str(&ctes.join(", "));
    // Reading the counts makes the SELECT parts run (data-modifying parts always run).
    text.push_str(&format!(
        " SELECT CAST({} AS BIGINT) AS reserved, CAST({} AS BIGINT) AS notified",
        if reserving {
            "(SELECT COUNT(*) FROM nums)"
        } else {
            "0"
        },
        if notices.is_empty() {
            "0"
        } else {
            "(SELECT COUNT(*) FROM notes)"
        },
    ));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
    for p in params {
        q = match p {
            Val::I(v) => q.bind(v),
            Val::T(v) => q.bind(v),
            Val::B(v) => q.bind(v),
        };
    }
    let row = q.fetch_one(&mut *conn).await?;
    check_reserved(row.i("reserved")? as usize, ws.new_numbers.len())
}
