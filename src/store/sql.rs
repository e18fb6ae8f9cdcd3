//! A small SQL builder that numbers `$N` placeholders, which both SQLite and PostgreSQL accept,
//! so one statement text serves both backends.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};
use std::fmt::Write;

/// A bound value.
#[derive(Debug, Clone)]
pub enum Val {
    I(Option<i64>),
    T(Option<String>),
    B(Option<Vec<u8>>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::I(Some(v))
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Val {
        Val::I(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::I(Some(i64::from(v)))
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::T(Some(v))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::T(Some(v.to_string()))
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::T(Some(v.clone()))
    }
}
impl From<&&String> for Val {
    fn from(v: &&String) -> Val {
        Val::T(Some((*v).clone()))
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Val {
        Val::T(v)
    }
}
impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Val {
        Val::T(v.map(str::to_string))
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Val {
        Val::B(Some(v))
    }
}

/// Statement text with its arguments.
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    args: Vec<Val>,
}

/// PostgreSQL allows 65,535 parameters per statement, SQLite 32,766: stay below both.
pub const PARAMS_MAX: usize = 30_000;

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `v`.
    pub fn bind(&mut self, v: impl Into<Val>) -> &mut Sql {
        self.args.push(v.into());
        let _ = write!(self.text, "${}", self.args.len());
        self
    }

    /// Appends `($1, $2, …)` for a list of values.
    pub fn list<V: Into<Val>>(&mut self, vals: impl IntoIterator<Item = V>) -> &mut Sql {
        self.text.push('(');
        for (i, v) in vals.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self.text.push(')');
        self
    }

    /// The statement for `backend`. SQLite gets anonymous `?` placeholders: sqlx looks every
    /// named one up by name, which costs time quadratic in their number on multi-row writes.
    /// Placeholders are numbered in order of appearance, so `?` binds the same values.
    pub fn query(&self, backend: super::Backend) -> Query<'static, Any, AnyArguments> {
        let text = match backend {
            super::Backend::Postgres => self.text.clone(),
            super::Backend::Sqlite => anonymous_placeholders(&self.text),
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
        for a in &self.args {
            q = match a {
                Val::I(v) => q.bind(*v),
                Val::T(v) => q.bind(v.clone()),
                Val::B(v) => q.bind(v.clone()),
            };
        }
        q
    }
}

/// `$1 … $N` → `?`. Statement texts here carry `$` only in placeholders.
fn anonymous_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// Multi-row `INSERT`, optionally an upsert on `key` columns (an empty key: insert what is
/// absent, keep what exists), split to respect `PARAMS_MAX`.
pub fn insert_rows(
    table: &str,
    cols: &[&str],
    key: Option<&[&str]>,
    rows: Vec<Vec<Val>>,
) -> Vec<Sql> {
    let mut out = Vec::new();
    if rows.is_empty() || cols.is_empty() {
        return out;
    }
    let per = (PARAMS_MAX / cols.len()).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut sql = Sql::new(&format!(
            "INSERT INTO {table} ({}) VALUES ",
            cols.join(", ")
        ));
        for (i, row) in rows.by_ref().take(per).enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.list(row);
        }
        if key.is_some_and(|k| k.is_empty()) {
            sql.push(" ON CONFLICT DO NOTHING");
        } else if let Some(key) = key {
            let updates: Vec<String> = cols
                .iter()
                .filter(|c| !key.contains(c))
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            if updates.is_empty() {
                sql.push(&format!(" ON CONFLICT ({}) DO NOTHING", key.join(", ")));
            } else {
                sql.push(&format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    key.join(", "),
                    updates.join(", ")
                ));
            }
        }
        out.push(sql);
    }
    out
}

/// Typed column access with the column name in the error.
pub trait RowExt {
    fn i(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn oi(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    fn t(&self, col: &str) -> Result<String, sqlx::Error>;
    fn ot(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn b(&self, col: &str) -> Result<Vec<u8>, sqlx::Error>;
}

impl RowExt for AnyRow {
    fn i(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.try_get::<i64, _>(col)
    }
    fn oi(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get::<Option<i64>, _>(col)
    }
    fn t(&self, col: &str) -> Result<String, sqlx::Error> {
        self.try_get::<String, _>(col)
    }
    fn ot(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get::<Option<String>, _>(col)
    }
    fn b(&self, col: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get::<Vec<u8>, _>(col)
    }
}

/// Rows that arrive as JSON objects (PostgreSQL's `json_agg`, for loads in one round trip).
impl RowExt for serde_json::Map<String, serde_json::Value> {
    fn i(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.oi(col)?
            .ok_or_else(|| sqlx::Error::Decode(format!("column {col} is null").into()))
    }
    fn oi(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        match self.get(col) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                sqlx::Error::Decode(format!("column {col} is not an integer").into())
            }),
        }
    }
    fn t(&self, col: &str) -> Result<String, sqlx::Error> {
        self.ot(col)?
            .ok_or_else(|| sqlx::Error::Decode(format!("column {col} is null").into()))
    }
    fn ot(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        match self.get(col) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(sqlx::Error::Decode(
                format!("column {col} is not text").into(),
            )),
        }
    }
    fn b(&self, col: &str) -> Result<Vec<u8>, sqlx::Error> {
        // bytea in JSON is "\\x" followed by hex.
        let t = self.t(col)?;
        hex::decode(t.trim_start_matches("\\x"))
            .map_err(|_| sqlx::Error::Decode(format!("column {col} is not bytea").into()))
    }
}

/// A stored value that does not parse (a corrupted row, or a newer schema).
pub fn corrupt(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} {value:?} is not valid").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut s = Sql::new("SELECT * FROM t WHERE a = ");
        s.bind(1i64).push(" AND b IN ").list(["x", "y"]);
        assert_eq!(s.text, "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)");
        assert_eq!(
            anonymous_placeholders(&s.text),
            "SELECT * FROM t WHERE a = ? AND b IN (?, ?)"
        );
    }

    #[test]
    fn upserts_update_the_non_key_columns_and_split_large_batches() {
        let rows: Vec<Vec<Val>> = (0..20_001)
            .map(|i| vec![Val::from(i as i64), Val::from("v")])
            .collect();
        let stmts = insert_rows("t", &["k", "v"], Some(&["k"]), rows);
        assert_eq!(stmts.len(), 2);
        assert!(
            stmts[0]
                .text
                .ends_with("ON CONFLICT (k) DO UPDATE SET v = excluded.v")
        );
        assert!(
            stmts[0]
                .text
                .starts_with("INSERT INTO t (k, v) VALUES ($1, $2), ($3, $4)")
        );
    }
}
