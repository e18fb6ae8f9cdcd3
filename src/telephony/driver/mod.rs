//! The tokio driver of payer calls: sockets and time around the sans-IO cores.
//!
//! - [`signalling`]: one task owns the SIP [`Endpoint`](crate::telephony::sip::Endpoint); it
//!   reads the UDP socket and every TCP connection, sends what the endpoint says, answers each
//!   offered call on an RTP port from the configured range and starts the call's task.
//! - [`call`]: one task per call owns the RTP socket, the paced [`RtpSession`], the
//!   [`DigitReceiver`] and the [`Ivr`]; the IVR's actions run against the settlement
//!   [`Service`] ([`actions`]).
//!
//! The dialplan is loaded (and checked against the prompts) at start: an error names the file
//! and line and the gateway does not start. [`SipGateway::reload`] (SIGHUP) loads it again;
//! new calls get the new one, calls in progress keep theirs, and a broken file leaves the old
//! one in place.
//!
//! [`RtpSession`]: crate::telephony::rtp::RtpSession
//! [`DigitReceiver`]: crate::telephony::dtmf::DigitReceiver
//! [`Ivr`]: crate::telephony::ivr::Ivr

pub mod actions;
pub mod call;
pub mod signalling;
pub mod speech;
pub mod stats;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::settlement::Service;
use crate::telephony::dtmf::DtmfMode;
use crate::telephony::ivr::{Dialplan, DialplanError};
use crate::telephony::prompts::{PromptError, PromptLibrary};
use crate::telephony::sip::{Endpoint, EndpointConfig, IpNet, NumberPlan};

/// What the driver is configured with (built from the `[sip]` configuration section).
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// Where SIP listens, on UDP and TCP alike.
    pub listen: SocketAddr,
    /// The address written in SDP; defaults to the listening address.
    pub media_address: Option<IpAddr>,
    /// RTP ports, inclusive.
    pub rtp_port_low: u16,
    pub rtp_port_high: u16,
    pub allowed: Vec<IpNet>,
    pub trusted: Vec<IpNet>,
    pub number_plan: NumberPlan,
    pub calls_max: usize,
    pub rtp_timeout_ms: u64,
    pub dtmf_mode: DtmfMode,
    /// How long an offered call rings (180 Ringing) before it is answered.
    pub ring_ms: u64,
    pub dialplan_dir: PathBuf,
    pub prompts_dir: PathBuf,
    /// Spoken digits and voice prints (`mode = "speech" | "both"`, voice actions).
    pub voice: VoiceSettings,
}

/// The `[voice]` part of the SIP settings.
#[derive(Debug, Clone)]
pub struct VoiceSettings {
    /// Off: calls hear keyed digits only and voice prints are refused as unavailable.
    pub enabled: bool,
    /// Speech worker threads (each runs the end-pointing and recognition of many calls).
    pub workers: usize,
    /// Voice-print scores at or above this are accepted.
    pub threshold: f32,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        VoiceSettings {
            enabled: true,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            threshold: crate::voice::collector::DEFAULT_THRESHOLD,
        }
    }
}

/// Why the SIP side could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    #[error("prompts: {0}")]
    Prompts(#[from] PromptError),
    #[error("dialplan: {0}")]
    Dialplan(#[from] DialplanError),
    #[error("listening for SIP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the media address {0} is unspecified; set sip.media_address")]
    MediaAddress(IpAddr),
    #[error("voice: {0}")]
    Voice(String),
}

/// Loads the prompts and the dialplan checked against them.
pub fn load_dialplan(settings: &SipSettings) -> Result<Dialplan, DriverError> {
    let prompts = PromptLibrary::load_dir(&settings.prompts_dir)?;
    Ok(Dialplan::load_dir(
        &settings.dialplan_dir,
        Arc::new(prompts),
    )?)
}

/// The running SIP side of the gateway.
#[derive(Debug, Clone)]
pub struct SipGateway {
    settings: SipSettings,
    dialplan: Arc<RwLock<Arc<Dialplan>>>,
    local_addr: SocketAddr,
    shutdown: tokio::sync::mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>,
}

impl SipGateway {
    /// Loads the dialplan, binds the sockets and starts the SIP task.
    pub async fn start(settings: SipSettings, svc: Service) -> Result<SipGateway, DriverError> {
        let dialplan = Arc::new(RwLock::new(Arc::new(load_dialplan(&settings)?)));
        let bind = |source| DriverError::Bind {
            addr: settings.listen,
            source,
        };
        let udp = tokio::net::UdpSocket::bind(settings.listen)
            .await
            .map_err(bind)?;
        let local_addr = udp.local_addr().map_err(bind)?;
        let tcp = tokio::net::TcpListener::bind(local_addr)
            .await
            .map_err(bind)?;
        let media_address = settings.media_address.unwrap_or(local_addr.ip());
        if media_address.is_unspecified() {
            return Err(DriverError::MediaAddress(media_address));
        }
        let mut config = EndpointConfig::new(local_addr, media_address);
        config.allowed = settings.allowed.clone();
        config.trusted = settings.trusted.clone();
        config.number_plan = settings.number_plan.clone();
        config.calls_max = settings.calls_max;
        config.rtp_timeout_ms = settings.rtp_timeout_ms;
        config.rng_seed = rand::random();
        let endpoint = Endpoint::new(config, Instant::now());
        let (shutdown, shutdown_rx) = tokio::sync::mpsc::unbounded_channel();
        let speech = if settings.voice.enabled {
            let model = crate::voice::VoiceModel::embedded()
                .map_err(|e| DriverError::Voice(e.to_string()))?;
            let service = speech::SpeechService::start(
                Arc::new(model),
                settings.voice.workers,
                settings.voice.threshold,
            )
            .map_err(|e| DriverError::Voice(format!("starting speech workers: {e}")))?;
            Some(Arc::new(service))
        } else {
            None
        };
        tokio::spawn(signalling::run(signalling::SignallingSetup {
            endpoint,
            udp,
            tcp,
            ports: signalling::PortPool::new(settings.rtp_port_low, settings.rtp_port_high),
            bind_ip: local_addr.ip(),
            dialplan: Arc::clone(&dialplan),
            dtmf_mode: settings.dtmf_mode,
            svc,
            speech,
            ring_ms: settings.ring_ms,
            shutdown: shutdown_rx,
        }));
        tracing::info!(sip = %local_addr, rtp_ports = %format!("{}-{}", settings.rtp_port_low, settings.rtp_port_high), "SIP is ready");
        Ok(SipGateway {
            settings,
            dialplan,
            local_addr,
            shutdown,
        })
    }

    /// Closes the SIP side for a stop: new calls get 503, calls in progress are hung up with a
    /// BYE (480 while still ringing). Returns when every call has ended or after `grace`.
    pub async fn shutdown(&self, grace: std::time::Duration) -> bool {
        let (done, ended) = tokio::sync::oneshot::channel();
        if self.shutdown.send(done).is_err() {
            return true;
        }
        let all = matches!(tokio::time::timeout(grace, ended).await, Ok(Ok(())));
        // The BYEs were handed to the sockets; give them a moment on the wire.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        all
    }

    /// The address SIP listens on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Loads the dialplan again; new calls use it, calls in progress keep theirs. On error the
    /// old one stays.
    pub fn reload(&self) -> Result<(), DriverError> {
        let fresh = Arc::new(load_dialplan(&self.settings)?);
        match self.dialplan.write() {
            Ok(mut d) => *d = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    /// Reloads the dialplan on every SIGHUP.
    pub fn spawn_reload_on_sighup(&self) {
        #[cfg(unix)]
        {
            let gw = self.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    tracing::warn!("cannot listen for SIGHUP; dialplan reload is off");
                    return;
                };
                while hup.recv().await.is_some() {
                    let g = gw.clone();
                    match tokio::task::spawn_blocking(move || g.reload()).await {
                        Ok(Ok(())) => tracing::info!("dialplan reloaded"),
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "dialplan reload failed; the old one stays")
                        }
                        Err(e) => tracing::error!(error = %e, "dialplan reload failed"),
                    }
                }
            });
        }
    }
}
