//! The merchant terminal link's driver: TCP (optionally TLS) connections, each running the
//! sans-IO [`Session`](crate::merchant::iso8583::Session) against the settlement core.
//!
//! - [`core`]: the session's requests carried out on the [`Service`]; response-code mappings;
//!   advice outbox rows turned into `0620` bodies.
//! - [`connection`]: one connection's loop: socket bytes, core replies, advices and timers in;
//!   frames, core requests and outbox acknowledgements out.
//!
//! Store-and-forward: the core writes an `advice` outbox row in the same database transaction
//! as the event it reports. While a terminal is signed on, its connection reads its rows in
//! order and hands them to the session, which sends them one at a time; a `0630` marks the row
//! delivered. Rows not acknowledged when the link ends (or the gateway stops) stay undelivered
//! and go out again, in order, after the terminal's next sign-on. A terminal has one link: a new
//! sign-on closes the terminal's older link on this node.

pub mod connection;
pub mod core;
pub mod terminal;

use crate::merchant::iso8583::session::{self, DuplicateCache};
use crate::metrics::Metrics;
use crate::settlement::Service;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// `[merchant_link]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// `HOST:PORT` to listen on, or `off`.
    pub listen: String,
    /// PEM certificate chain and private key: both set means the link speaks TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How long a `0200` waits for the payment's final result before `09` (in progress).
    pub hold_time_ms: u64,
    /// Idle time after which the gateway sends an echo; 0 disables echoes.
    pub echo_idle_ms: u64,
    /// Silence after an echo after which the link is dead.
    pub echo_timeout_ms: u64,
    pub advice_ack_timeout_ms: u64,
    /// Sends of one advice before the link is given up (the advice stays stored).
    pub advice_sends_max: u32,
    pub sign_on_timeout_ms: u64,
    /// Time a partly received frame may wait for the rest before the link is closed.
    pub frame_timeout_ms: u64,
    /// Connections at once; more are refused.
    pub connections_max: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        let s = session::Config::default();
        LinkConfig {
            listen: "127.0.0.1:5800".into(),
            tls_cert: None,
            tls_key: None,
            hold_time_ms: s.hold_time_ms,
            echo_idle_ms: s.echo_idle_ms.unwrap_or(0),
            echo_timeout_ms: s.echo_timeout_ms,
            advice_ack_timeout_ms: s.advice_ack_timeout_ms,
            advice_sends_max: s.advice_sends_max,
            sign_on_timeout_ms: s.sign_on_timeout_ms,
            frame_timeout_ms: s.frame_timeout_ms,
            connections_max: 10_000,
        }
    }
}

impl LinkConfig {
    pub fn enabled(&self) -> bool {
        !self.listen.eq_ignore_ascii_case("off")
    }

    /// The listen address, when the link is on.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, String> {
        if !self.enabled() {
            return Ok(None);
        }
        self.listen
            .parse()
            .map(Some)
            .map_err(|_| format!("{:?} is not HOST:PORT or off", self.listen))
    }

    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.listen_addr()
            .map_err(|e| ("merchant_link.listen", e))?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err((
                "merchant_link.tls_cert",
                "tls_cert and tls_key go together".into(),
            ));
        }
        if self.hold_time_ms < 1_000 {
            return Err(("merchant_link.hold_time_ms", "must be at least 1000".into()));
        }
        if self.connections_max == 0 {
            return Err(("merchant_link.connections_max", "must be at least 1".into()));
        }
        Ok(())
    }

    /// The session's timers and bounds.
    pub fn session(&self) -> session::Config {
        session::Config {
            hold_time_ms: self.hold_time_ms,
            echo_idle_ms: (self.echo_idle_ms > 0).then_some(self.echo_idle_ms),
            echo_timeout_ms: self.echo_timeout_ms,
            advice_ack_timeout_ms: self.advice_ack_timeout_ms,
            advice_sends_max: self.advice_sends_max,
            sign_on_timeout_ms: self.sign_on_timeout_ms,
            frame_timeout_ms: self.frame_timeout_ms,
            ..session::Config::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("merchant link: listening on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("merchant link TLS: {0}")]
    Tls(String),
    #[error("merchant link: {0}")]
    Config(String),
}

/// What the connections share: the core, the config, and per terminal the link that holds its
/// sign-on and the duplicate responses carried from one link to the next.
pub(crate) struct Shared {
    pub svc: Service,
    pub cfg: LinkConfig,
    pub session: session::Config,
    pub metrics: Arc<Metrics>,
    pub terminals: Mutex<HashMap<String, TerminalState>>,
    pub next_conn: std::sync::atomic::AtomicU64,
    pub open_conns: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
pub(crate) struct TerminalState {
    /// The connection signed on as this terminal, and how to end it when another signs on.
    pub holder: Option<(u64, oneshot::Sender<()>)>,
    pub duplicates: DuplicateCache,
}

/// A running link listener.
#[derive(Debug, Clone, Copy)]
pub struct LinkServer {
    pub local_addr: SocketAddr,
}

/// Binds the listener and serves connections until the process ends. `None` when the config
/// turns the link off.
pub async fn start(
    svc: Service,
    cfg: LinkConfig,
    metrics: Arc<Metrics>,
) -> Result<Option<LinkServer>, LinkError> {
    let Some(addr) = cfg.listen_addr().map_err(LinkError::Config)? else {
        return Ok(None);
    };
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| LinkError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| LinkError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    let shared = Arc::new(Shared {
        svc,
        session: cfg.session(),
        cfg,
        metrics,
        terminals: Mutex::new(HashMap::new()),
        next_conn: 1.into(),
        open_conns: 0.into(),
    });
    tracing::info!(addr = %local_addr, tls = tls.is_some(), "merchant link listening");
    tokio::spawn(accept_loop(listener, tls, shared));
    Ok(Some(LinkServer { local_addr }))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    use std::sync::atomic::Ordering;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "merchant link accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.open_conns.load(Ordering::Relaxed) >= shared.cfg.connections_max {
            tracing::warn!(%peer, "merchant link connection refused: too many connections");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            shared.open_conns.fetch_add(1, Ordering::Relaxed);
            match tls {
                None => connection::run(stream, peer, shared.clone()).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(s)) => connection::run(s, peer, shared.clone()).await,
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            shared.open_conns.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, LinkError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| LinkError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(LinkError::Tls(format!(
            "{}: no certificate in it",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| LinkError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| LinkError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
