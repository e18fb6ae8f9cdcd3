//! Starting the gateway: store, settlement service, channels, shutdown.

use crate::clock::SystemClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::settlement::Service;
use crate::settlement::auth_policy::{MerchantDemand, Method, PayerDemand};
use crate::settlement::credentials::{SecretDigits, ServerSecret};
use crate::settlement::engine::{NewMerchant, NewPayer, Op};
use crate::store::Store;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// An error at the edge, with the context of what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {message}")]
pub struct AppError {
    pub context: String,
    pub message: String,
}

pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T, AppError>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T, AppError> {
        self.map_err(|e| AppError {
            context: what.into(),
            message: e.to_string(),
        })
    }
}

pub const DEMO_TERMINAL: &str = "DEMO0001";
pub const DEMO_MERCHANT: &str = "DEMOSHOP0000001";
pub const DEMO_KEY: &str = "demo-secret-key";
pub const DEMO_PAYER: &str = "+15550100";
pub const DEMO_PIN: &str = "1234";

pub fn node_id(cfg: &Config) -> String {
    cfg.node_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "node".into());
        format!("{host}-{}", std::process::id())
    })
}

pub fn secret(cfg: &Config) -> Result<ServerSecret, AppError> {
    match &cfg.secret {
        Some(hex) => ServerSecret::from_hex(hex).context("the configured server secret"),
        None => {
            let path = cfg.data_dir.join("secret.key");
            ServerSecret::load_or_create(&path)
                .context(format!("the server secret {}", path.display()))
        }
    }
}

/// Opens the store and starts the settlement service, as `serve` and the admin commands do.
pub async fn open_service(cfg: &Config) -> Result<Service, AppError> {
    let url = cfg.database_url();
    let store = Store::open(&url, 8)
        .await
        .context(format!("opening the database {}", redact_url(&url)))?;
    let mut rules = cfg.settlement.clone();
    rules.public_base_url = cfg.public_base_url();
    Service::start(
        store,
        rules,
        secret(cfg)?,
        Arc::new(SystemClock),
        node_id(cfg),
    )
    .await
    .context("starting the settlement service")
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Seeds the demo merchant and payer when they are absent.
pub async fn seed_demo(svc: &Service) -> Result<(), AppError> {
    let store = svc.store();
    if store
        .merchant(DEMO_TERMINAL)
        .await
        .context("reading the demo merchant")?
        .is_none()
    {
        svc.add_merchant(NewMerchant {
            terminal_id: DEMO_TERMINAL.into(),
            merchant_id: DEMO_MERCHANT.into(),
            name: "Demo Shop".into(),
            currency: "USD".into(),
            api_key: DEMO_KEY.into(),
            demand: MerchantDemand {
                method: Method::Pin,
                strict: false,
            },
            visible_attributes: vec!["age_over_18".into()],
            webhook_url: None,
            webhook_secret: None,
            account_id: None,
        })
        .await
        .context("adding the demo merchant")?;
        tracing::info!(terminal = DEMO_TERMINAL, "demo merchant added");
    }
    if store
        .payer(DEMO_PAYER)
        .await
        .context("reading the demo payer")?
        .is_none()
    {
        svc.add_payer(NewPayer {
            msisdn: DEMO_PAYER.into(),
            display_name: "Demo Payer".into(),
            currency: "USD".into(),
            attributes: BTreeMap::from([("age_over_18".to_string(), "true".to_string())]),
            credit_limit_minor: 0,
            txn_limit_minor: None,
            demand: PayerDemand::default(),
        })
        .await
        .context("adding the demo payer")?;
        let pin = SecretDigits::pin(DEMO_PIN).context("the demo PIN")?;
        let ops = vec![
            Op::SetPin {
                msisdn: DEMO_PAYER.into(),
                pin,
            },
            Op::AddQuestion {
                msisdn: DEMO_PAYER.into(),
                question: "What year were you born?".into(),
                answer: SecretDigits::answer("1984").context("a demo answer")?,
            },
            Op::AddQuestion {
                msisdn: DEMO_PAYER.into(),
                question: "What is your house number?".into(),
                answer: SecretDigits::answer("42").context("a demo answer")?,
            },
            Op::Credit {
                msisdn: DEMO_PAYER.into(),
                amount_minor: 10_000,
            },
        ];
        for op in ops {
            svc.submit(op).await.context("seeding the demo payer")?;
        }
        tracing::info!(msisdn = DEMO_PAYER, "demo payer added with 100.00 USD");
    }
    Ok(())
}

/// Runs the gateway until SIGINT or SIGTERM.
pub async fn serve(cfg: Config, demo: bool) -> Result<(), AppError> {
    let svc = open_service(&cfg).await?;
    if demo {
        seed_demo(&svc).await?;
    }
    let metrics = Arc::new(Metrics::default());
    metrics.started_unix_s.store(
        (crate::clock::wall_ms() / 1000).max(0) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    svc.spawn_housekeeping(Duration::from_secs(1));
    crate::merchant::webhooks::spawn(
        svc.clone(),
        metrics.clone(),
        Duration::from_millis(cfg.webhooks.timeout_ms),
    );
    spawn_event_counter(&svc, metrics.clone());
    let link =
        crate::merchant::link::start(svc.clone(), cfg.merchant_link.clone(), metrics.clone())
            .await
            .context("starting the merchant link")?;
    // The SMS channel, when an SMSC is configured.
    let sms_link = if cfg.sms.enabled {
        Some(
            crate::sms::gateway::start(svc.clone(), &cfg.sms)
                .context("starting the SMS channel")?,
        )
    } else {
        None
    };
    let sip = start_sip(&cfg, &svc).await?;

    let listener = tokio::net::TcpListener::bind(&cfg.http.listen)
        .await
        .context(format!("listening for HTTP on {}", cfg.http.listen))?;
    let app = crate::merchant::http::router(crate::merchant::http::AppState {
        svc: svc.clone(),
        metrics: metrics.clone(),
        demo,
    });
    tracing::info!(
        http = %cfg.http.listen,
        merchant_link = %link.map_or("off".to_string(), |l| l.local_addr.to_string()),
        backend = svc.store().backend.as_str(),
        demo,
        "telepay is ready"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    if let Some(sip) = sip {
        // Callers hear the line close (BYE) rather than silence until their own time-out.
        if !sip.shutdown(Duration::from_secs(2)).await {
            tracing::warn!("some calls had not ended when the gateway stopped");
        }
    }
    if let Some(link) = sms_link {
        // Unbind cleanly; texts still queued stay in the outbox for the next start.
        link.shutdown().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::info!("telepay stopped");
    Ok(())
}

/// Starts payer calls when `[sip]` has an address; SIGHUP reloads the dialplan.
async fn start_sip(
    cfg: &Config,
    svc: &Service,
) -> Result<Option<crate::telephony::driver::SipGateway>, AppError> {
    let Some(settings) = cfg.sip.settings().context("configuration")? else {
        return Ok(None);
    };
    let gw = crate::telephony::driver::SipGateway::start(settings, svc.clone())
        .await
        .context("starting SIP")?;
    gw.spawn_reload_on_sighup();
    Ok(Some(gw))
}

fn spawn_event_counter(svc: &Service, metrics: Arc<Metrics>) {
    let mut rx = svc.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(e) => metrics.events.inc(&[e.kind.name()]),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@127.0.0.1/db"),
            "postgres://u:***@127.0.0.1/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
