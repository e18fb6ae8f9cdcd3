//! Shared test harness: a fresh settlement service on SQLite or PostgreSQL, in virtual time.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use telepay::clock::ManualClock;
use telepay::settlement::Service;
use telepay::settlement::auth_policy::{MerchantDemand, Method, PayerDemand};
use telepay::settlement::credentials::{SecretDigits, ServerSecret};
use telepay::settlement::engine::{NewMerchant, NewPayer, Op};
use telepay::settlement::rules::Rules;
use telepay::store::{Backend, Store};

pub const T0_MS: i64 = 1_750_000_000_000;
pub const TERMINAL: &str = "SHOP0001";
pub const MERCHANT: &str = "SHOPMERCHANT001";
pub const KEY: &str = "shop-key-0123456789";
pub const PAYER: &str = "+15550100";
pub const PIN: &str = "1234";

/// The PostgreSQL server the tests use: `TELEPAY_TEST_PG_URL`, else the local default.
pub fn pg_base_url() -> String {
    std::env::var("TELEPAY_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

pub struct Env {
    pub svc: Service,
    pub clock: ManualClock,
    pub backend: Backend,
    pub url: String,
    pub secret: ServerSecret,
    schema: Option<String>,
    dir: Option<std::path::PathBuf>,
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{tag}_{}_{n}_{nanos}", std::process::id())
}

/// A fresh, empty store of the given backend.
pub async fn fresh_url(
    backend: Backend,
    tag: &str,
) -> (String, Option<String>, Option<std::path::PathBuf>) {
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("telepay-test-{}", unique(tag)));
            let _ = std::fs::remove_dir_all(&dir);
            (telepay::store::default_sqlite_url(&dir), None, Some(dir))
        }
        Backend::Postgres => {
            let schema = format!("t_{}", unique(tag)).to_lowercase();
            let url = telepay::store::postgres_schema_url(&pg_base_url(), &schema)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL at {} is required for this test: {e}",
                        pg_base_url()
                    )
                });
            (url, Some(schema), None)
        }
    }
}

pub fn rules() -> Rules {
    Rules {
        public_base_url: "http://gw.test".into(),
        ..Rules::default()
    }
}

impl Env {
    pub async fn new(backend: Backend, tag: &str) -> Env {
        Env::with_rules(backend, tag, rules()).await
    }

    pub async fn with_rules(backend: Backend, tag: &str, rules: Rules) -> Env {
        let (url, schema, dir) = fresh_url(backend, tag).await;
        let clock = ManualClock::new(T0_MS);
        let secret = ServerSecret::from_hex(&"ab".repeat(32)).unwrap();
        let store = Store::open(&url, 8).await.expect("open store");
        let svc = Service::start(
            store,
            rules,
            secret.clone(),
            Arc::new(clock.clone()),
            format!("node-{}", unique("n")),
        )
        .await
        .expect("start service");
        let env = Env {
            svc,
            clock,
            backend,
            url,
            secret,
            schema,
            dir,
        };
        env.merchant(TERMINAL, MERCHANT, KEY, Method::Pin, false)
            .await;
        env.payer(PAYER, 10_000).await;
        env
    }

    /// A second service on the same database: another gateway node.
    pub async fn second_node(&self) -> Service {
        let store = Store::open(&self.url, 4).await.expect("open store");
        Service::start(
            store,
            rules(),
            self.secret.clone(),
            Arc::new(self.clock.clone()),
            format!("node-{}", unique("m")),
        )
        .await
        .expect("start second node")
    }

    pub async fn merchant(
        &self,
        terminal: &str,
        merchant: &str,
        key: &str,
        method: Method,
        strict: bool,
    ) {
        self.svc
            .add_merchant(NewMerchant {
                terminal_id: terminal.into(),
                merchant_id: merchant.into(),
                name: format!("Shop {terminal}"),
                currency: "USD".into(),
                api_key: key.into(),
                demand: MerchantDemand { method, strict },
                visible_attributes: vec!["age_over_18".into()],
                webhook_url: None,
                webhook_secret: None,
                account_id: None,
            })
            .await
            .expect("add merchant");
    }

    pub async fn payer(&self, msisdn: &str, balance_minor: i64) {
        self.payer_with(msisdn, balance_minor, PayerDemand::default())
            .await;
    }

    pub async fn payer_with(&self, msisdn: &str, balance_minor: i64, demand: PayerDemand) {
        self.svc
            .add_payer(NewPayer {
                msisdn: msisdn.into(),
                display_name: format!("Payer {msisdn}"),
                currency: "USD".into(),
                attributes: BTreeMap::from([
                    ("age_over_18".to_string(), "true".to_string()),
                    ("loyalty_tier".to_string(), "gold".to_string()),
                ]),
                credit_limit_minor: 0,
                txn_limit_minor: Some(50_000),
                demand,
            })
            .await
            .expect("add payer");
        for op in [
            Op::SetPin {
                msisdn: msisdn.into(),
                pin: SecretDigits::pin(PIN).unwrap(),
            },
            Op::AddQuestion {
                msisdn: msisdn.into(),
                question: "Year of birth?".into(),
                answer: SecretDigits::answer("1984").unwrap(),
            },
            Op::AddQuestion {
                msisdn: msisdn.into(),
                question: "House number?".into(),
                answer: SecretDigits::answer("42").unwrap(),
            },
        ] {
            self.svc.submit(op).await.expect("payer setup");
        }
        if balance_minor > 0 {
            self.svc
                .submit(Op::Credit {
                    msisdn: msisdn.into(),
                    amount_minor: balance_minor,
                })
                .await
                .expect("credit");
        }
    }

    pub async fn balance(&self, account: &str) -> i64 {
        self.svc
            .store()
            .account(account)
            .await
            .unwrap()
            .map(|a| a.balance_minor)
            .unwrap_or(0)
    }

    pub async fn assert_ledger_sound(&self) {
        let rep = self.svc.store().check_invariants().await.expect("check");
        assert!(rep.ok(), "ledger violations: {:?}", rep.violations);
        for (c, s) in &rep.balance_sums {
            assert_eq!(*s, 0, "balances in {c}");
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.svc.store().pool)
            .await
            .expect(sql);
        n
    }

    pub async fn cleanup(self) {
        if let Some(schema) = &self.schema {
            let _ = telepay::store::drop_postgres_schema(&pg_base_url(), schema).await;
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs an async test body on both backends, as `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(telepay::store::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(telepay::store::Backend::Postgres).await
            }
        }
    };
}
