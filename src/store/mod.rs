//! Persistence: SQLite (embedded default) or PostgreSQL (several gateway nodes on one database).
//!
//! Both backends share one schema shape and one set of statement texts (`$N` placeholders,
//! BIGINT amounts and times, TEXT ids) through sqlx's `Any` driver. All writes to the ledger
//! and transaction tables go through the group-commit [`writer`]; reads use the pool directly.

pub mod batch;
pub mod cache;
pub mod notify;
pub mod pg;
pub mod reads;
pub mod rows;
pub mod sql;
pub mod writer;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://…")]
    UnsupportedUrl(String),
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("the database's schema version {found} is newer than this gateway knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("the writer has stopped")]
    WriterGone,
}

impl StoreError {
    /// Worth retrying the whole batch: lock conflicts, deadlocks, serialization failures,
    /// and unique violations (a random number or reference drawn twice at once).
    pub fn retryable(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code().map(|c| c.to_string()).unwrap_or_default();
                matches!(code.as_str(), "40001" | "40P01" | "23505" | "55P03")
                    || matches!(code.as_str(), "5" | "6" | "517" | "261" | "2067" | "1555")
                    || e.message().contains("database is locked")
            }
            StoreError::Db(sqlx::Error::PoolTimedOut) | StoreError::Db(sqlx::Error::Io(_)) => true,
            StoreError::Db(sqlx::Error::Protocol(m)) => m.contains("taken concurrently"),
            _ => false,
        }
    }
}

/// The schema, one list per backend: (version, statements).
const MIGRATIONS_SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_sms.sql")),
];
const MIGRATIONS_POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_sms.sql")),
];

/// An open store: a read pool and the URL the writer connects with.
#[derive(Clone)]
pub struct Store {
    pub pool: AnyPool,
    pub backend: Backend,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// The SQLite file used when no `DATABASE_URL` is given.
pub fn default_sqlite_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("telepay.db").display()
    )
}

fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// Settings each new connection needs. SQLite: WAL with `synchronous=FULL`, so a commit is on
/// disk when it returns; a busy timeout so the writer and the admin command can share the file.
/// PostgreSQL: `synchronous_commit=on` (the server default, made explicit).
async fn prepare(conn: &mut AnyConnection, backend: Backend) -> Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => {
            conn.execute(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
            )
            .await?;
        }
        Backend::Postgres => {
            conn.execute("SET synchronous_commit = on").await?;
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating the SQLite file when needed) and migrates.
    pub async fn open(url: &str, read_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        if backend == Backend::Sqlite {
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .map(|p| p.split('?').next().unwrap_or(p))
            {
                if let Some(dir) = Path::new(path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
            }
        }
        let store = Store {
            pool: AnyPoolOptions::new()
                .max_connections(read_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _| Box::pin(async move { prepare(conn, backend).await }))
                .connect(url)
                .await?,
            backend,
            url: url.to_string(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A dedicated connection (the writer's, the listener's).
    pub async fn connect(&self) -> Result<AnyConnection, StoreError> {
        let opts = AnyConnectOptions::from_str(&self.url)?.disable_statement_logging();
        let mut conn = AnyConnection::connect_with(&opts).await?;
        prepare(&mut conn, self.backend).await?;
        Ok(conn)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.connect().await?;
        let list = match self.backend {
            Backend::Sqlite => MIGRATIONS_SQLITE,
            Backend::Postgres => MIGRATIONS_POSTGRES,
        };
        let known = list.last().map(|(v, _)| *v).unwrap_or(0);
        match self.backend {
            // Several nodes may start at once: one migrates, the others wait.
            Backend::Postgres => {
                conn.execute("SELECT pg_advisory_lock(72657001)").await?;
            }
            Backend::Sqlite => {
                conn.execute("BEGIN IMMEDIATE").await?;
                conn.execute("COMMIT").await?;
            }
        }
        let result = async {
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL, applied_ms BIGINT NOT NULL)",
            )
            .await?;
            let current: Option<i64> =
                sqlx::query_scalar("SELECT CAST(MAX(version) AS BIGINT) FROM schema_version")
                    .fetch_one(&mut conn)
                    .await?;
            let current = current.unwrap_or(0);
            if current > known {
                return Err(StoreError::SchemaTooNew {
                    found: current,
                    known,
                });
            }
            for (version, text) in list.iter().filter(|(v, _)| *v > current) {
                let mut tx = conn.begin().await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(*text)).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)")
                    .bind(*version)
                    .bind(crate::clock::wall_ms())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                tracing::info!(version, backend = self.backend.as_str(), "schema migrated");
            }
            Ok(())
        }
        .await;
        if self.backend == Backend::Postgres {
            let _ = conn.execute("SELECT pg_advisory_unlock(72657001)").await;
        }
        result
    }
}

/// Creates (if needed) a PostgreSQL schema and returns a URL whose connections use it, so tests
/// and benchmarks get a database of their own inside a shared server.
pub async fn postgres_schema_url(base_url: &str, schema: &str) -> Result<String, StoreError> {
    if !schema
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || schema.is_empty()
    {
        return Err(StoreError::UnsupportedUrl(format!(
            "schema name {schema:?}"
        )));
    }
    sqlx::any::install_default_drivers();
    let opts = AnyConnectOptions::from_str(base_url)?.disable_statement_logging();
    let mut conn = AnyConnection::connect_with(&opts).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .execute(&mut conn)
    .await?;
    let _ = conn.close().await;
    let sep = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!("{base_url}{sep}options[search_path]={schema}"))
}

/// Drops a schema made by [`postgres_schema_url`].
pub async fn drop_postgres_schema(base_url: &str, schema: &str) -> Result<(), StoreError> {
    if !schema
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || schema.is_empty()
    {
        return Err(StoreError::UnsupportedUrl(format!(
            "schema name {schema:?}"
        )));
    }
    let opts = AnyConnectOptions::from_str(base_url)?.disable_statement_logging();
    let mut conn = AnyConnection::connect_with(&opts).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(())
}
