//! One call's media and dialogue: its RTP socket, the paced sender, the DTMF receiver and the
//! IVR interpreter, on one tokio task.
//!
//! The task sleeps until the earliest of three deadlines (the RTP session's next 20 ms slot,
//! which is computed from the stream's start so wake-ups never drift; the IVR's; the DTMF
//! receiver's), or until a datagram, a SIP event or an action result arrives. Prompt audio is
//! fed into the RTP session a few frames ahead of the slot that sends it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::settlement::Service;
use crate::telephony::dtmf::{DigitReceiver, DtmfMode, EventPacket};
use crate::telephony::g711::Law;
use crate::telephony::ivr::{self, ActionId, ActionResult, Dialplan, Ivr, LogLevel, PlayId};
use crate::telephony::prompts::{G711Law, Playback};
use crate::telephony::rtp::{
    FRAME_BYTES, PACKET_SIZE_MAX, RELATCH_AFTER_MS_DEFAULT, RtpEvent, RtpIdentity, RtpInput,
    RtpOutput, RtpSession, RtpSessionConfig,
};
use crate::telephony::sdp::Codec;
use crate::telephony::sip::{CallId, Media};

use super::actions::{self, PayerSession};
use super::speech::{SpeechChannel, SpeechEvent, SpeechEventKind, SpeechService};
use super::stats;

/// Frames of prompt audio queued ahead of the sender (60 ms): enough to ride out a late
/// wake-up, little enough that barge-in cuts the prompt at once.
const FRAMES_AHEAD: usize = 3;
/// How often at most the SIP layer is told that RTP is flowing (feeds its RTP timeout).
const ACTIVITY_REPORT_MS: u64 = 1_000;

/// What the SIP task tells a call.
#[derive(Debug)]
pub enum CallEvent {
    /// The caller acknowledged our answer.
    Answered,
    MediaChanged(Media),
    /// A digit from SIP INFO.
    InfoDigit(char),
    /// The call is over on the SIP side (BYE, CANCEL, timeouts).
    Ended,
}

/// What a call asks of the SIP task.
#[derive(Debug)]
pub enum SipCommand {
    /// The ringing time of an offered call is over: answer it.
    Answer(CallId),
    Hangup(CallId),
    RtpActivity(CallId, Instant),
}

/// Everything a call task starts from.
pub struct CallSetup {
    pub call_id: CallId,
    pub socket: UdpSocket,
    pub media: Media,
    pub called_user: String,
    pub msisdn: Option<String>,
    pub dialplan: Arc<Dialplan>,
    pub dtmf_mode: DtmfMode,
    pub svc: Service,
    /// Spoken digits and voice prints; `None` runs calls on keyed digits only.
    pub speech: Option<Arc<SpeechService>>,
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    pub commands: mpsc::UnboundedSender<SipCommand>,
}

fn laws(codec: Codec) -> (Law, G711Law) {
    match codec {
        Codec::Pcma => (Law::Alaw, G711Law::Alaw),
        _ => (Law::Ulaw, G711Law::Ulaw),
    }
}

struct Call {
    call_id: CallId,
    socket: UdpSocket,
    rtp: RtpSession,
    dtmf: DigitReceiver,
    ivr: Ivr,
    law: Law,
    prompt_law: G711Law,
    te_payload_type: Option<u8>,
    playing: Option<(PlayId, Playback)>,
    rtp_deadline: Instant,
    ivr_deadline: Option<Instant>,
    last_activity_report: Option<Instant>,
    commands: mpsc::UnboundedSender<SipCommand>,
    session: PayerSession,
    svc: Service,
    speech: Option<SpeechChannel>,
    actions: JoinSet<(ActionId, ActionResult, PayerSession)>,
    hung_up: bool,
}

async fn next_speech(channel: &mut Option<SpeechChannel>) -> SpeechEvent {
    match channel {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs a call until either side ends it.
pub async fn run(setup: CallSetup) {
    let CallSetup {
        call_id,
        socket,
        media,
        called_user,
        msisdn,
        dialplan,
        dtmf_mode,
        svc,
        speech,
        mut events,
        commands,
    } = setup;
    let now = Instant::now();
    let (law, prompt_law) = laws(media.codec);
    let rtp = RtpSession::new(
        RtpSessionConfig {
            codec: media.codec,
            codec_payload_type: media.codec_payload_type,
            telephone_event_payload_type: media.telephone_event_payload_type,
            relatch_after_ms: RELATCH_AFTER_MS_DEFAULT,
        },
        RtpIdentity::random(&mut StdRng::from_os_rng()),
        media.remote_rtp,
        media.send,
        now,
    );
    let mut call = Call {
        call_id,
        socket,
        rtp,
        dtmf: DigitReceiver::new(dtmf_mode, media.telephone_event_payload_type),
        ivr: Ivr::new(dialplan, &called_user, now),
        law,
        prompt_law,
        te_payload_type: media.telephone_event_payload_type,
        playing: None,
        rtp_deadline: now,
        ivr_deadline: None,
        last_activity_report: None,
        commands,
        session: PayerSession::new(msisdn),
        svc,
        speech: speech.as_ref().map(SpeechService::channel),
        actions: JoinSet::new(),
        hung_up: false,
    };
    stats::record_call_started();
    call.drain_ivr(now);
    let mut buf = vec![0_u8; PACKET_SIZE_MAX];
    loop {
        if call.ivr.is_ended() {
            break;
        }
        let deadline = [
            Some(call.rtp_deadline),
            call.ivr_deadline,
            call.dtmf.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(call.rtp_deadline);
        // Biased, time first after call events: a flood of datagrams must not delay the
        // 20 ms slots.
        tokio::select! {
            biased;
            event = events.recv() => match event {
                None | Some(CallEvent::Ended) => {
                    call.ivr.handle_input(Instant::now(), ivr::Input::CallerHungUp);
                    call.hung_up = true;
                    break;
                }
                Some(CallEvent::Answered) => {}
                Some(CallEvent::MediaChanged(m)) => call.media_changed(m, Instant::now()),
                Some(CallEvent::InfoDigit(d)) => {
                    let now = Instant::now();
                    let body = format!("Signal={d}\r\nDuration=160\r\n");
                    // The endpoint already parsed and answered the INFO; re-feed it through the
                    // receiver so the carrier rules (auto, info, …) apply in one place.
                    if call.dtmf.handle_info("application/dtmf-relay", body.as_bytes(), now).is_ok() {
                        call.drain_digits(now);
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                call.on_timeout(Instant::now());
            }
            event = next_speech(&mut call.speech) => {
                let now = Instant::now();
                let input = match event.kind {
                    SpeechEventKind::Started => ivr::Input::SpeechStarted(event.id),
                    SpeechEventKind::Finished(result) => ivr::Input::SpeechResult(event.id, result),
                };
                call.ivr.handle_input(now, input);
                call.drain_ivr(now);
            }
            done = call.actions.join_next(), if !call.actions.is_empty() => {
                if let Some(Ok((id, result, session))) = done {
                    call.session = session;
                    let now = Instant::now();
                    call.ivr.handle_input(now, ivr::Input::ActionResult(id, result));
                    call.drain_ivr(now);
                }
            }
            received = call.socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = received {
                    let now = Instant::now();
                    call.receive(source, &buf[..n], now);
                }
            }
        }
    }
    stats::record_call_ended();
    call.actions.abort_all();
    if !call.hung_up {
        let _ = call.commands.send(SipCommand::Hangup(call.call_id));
    }
}

impl Call {
    fn media_changed(&mut self, m: Media, now: Instant) {
        let (law, prompt_law) = laws(m.codec);
        self.law = law;
        self.prompt_law = prompt_law;
        self.te_payload_type = m.telephone_event_payload_type;
        self.rtp.update_media(
            m.remote_rtp,
            m.send,
            m.codec,
            m.codec_payload_type,
            m.telephone_event_payload_type,
        );
        self.dtmf.renegotiate(m.telephone_event_payload_type);
        if self.rtp.queued_frames() == 0 && self.playing.is_some() {
            // A codec change dropped the queued audio, which was in the old law; the rest of
            // the prompt is skipped rather than played as noise.
            if let Some((id, _)) = self.playing.take() {
                self.ivr.handle_input(now, ivr::Input::PlaybackFinished(id));
                self.drain_ivr(now);
            }
        }
    }

    fn receive(&mut self, source: SocketAddr, bytes: &[u8], now: Instant) {
        if self
            .rtp
            .handle_input(RtpInput::Receive { source, bytes }, now)
            .is_err()
        {
            return;
        }
        let due = self.last_activity_report.is_none_or(|t| {
            now.saturating_duration_since(t).as_millis() >= u128::from(ACTIVITY_REPORT_MS)
        });
        if due {
            self.last_activity_report = Some(now);
            let _ = self
                .commands
                .send(SipCommand::RtpActivity(self.call_id, now));
        }
        self.drain_rtp(now);
    }

    fn on_timeout(&mut self, now: Instant) {
        if now >= self.rtp_deadline {
            self.top_up();
            let _ = self.rtp.handle_input(RtpInput::Timeout, now);
            self.drain_rtp(now);
            self.top_up();
            self.check_playback_finished(now);
        }
        if self.dtmf.poll_timeout().is_some_and(|t| now >= t) {
            self.dtmf.handle_timeout(now);
            self.drain_digits(now);
        }
        if self.ivr_deadline.is_some_and(|t| now >= t) {
            self.ivr_deadline = None;
            self.ivr.handle_input(now, ivr::Input::Timeout);
            self.drain_ivr(now);
        }
    }

    /// Keeps a few frames of the current prompt queued ahead of the sender.
    fn top_up(&mut self) {
        let Some((_, playback)) = self.playing.as_mut() else {
            return;
        };
        let mut frame = [0_u8; FRAME_BYTES];
        while self.rtp.queued_frames() < FRAMES_AHEAD && !playback.is_finished() {
            playback.fill(&mut frame);
            if self.rtp.enqueue_frame(&frame).is_err() {
                break;
            }
        }
    }

    fn check_playback_finished(&mut self, now: Instant) {
        let finished = self
            .playing
            .as_ref()
            .is_some_and(|(_, p)| p.is_finished() && self.rtp.queued_frames() == 0);
        if finished && let Some((id, _)) = self.playing.take() {
            self.ivr.handle_input(now, ivr::Input::PlaybackFinished(id));
            self.drain_ivr(now);
        }
    }

    fn drain_rtp(&mut self, now: Instant) {
        loop {
            match self.rtp.poll_output() {
                RtpOutput::Transmit { dest, bytes, due } => {
                    // A full socket buffer drops the packet, as the network would.
                    let _ = self.socket.try_send_to(&bytes, dest);
                    stats::record_send_lateness(Instant::now().saturating_duration_since(due));
                }
                RtpOutput::Event(RtpEvent::Audio {
                    payload, timestamp, ..
                }) => {
                    if let Some(speech) = self.speech.as_mut()
                        && speech.is_listening()
                    {
                        speech.audio(self.law, &payload, timestamp);
                    }
                    if self.dtmf.wants_audio() {
                        self.dtmf.handle_g711(self.law, &payload, now);
                        self.drain_digits(now);
                    }
                }
                RtpOutput::Event(RtpEvent::TelephoneEvent {
                    payload,
                    sequence,
                    timestamp,
                    marker,
                }) => {
                    if let Some(payload_type) = self.dtmf_payload_type() {
                        let packet = EventPacket {
                            payload_type,
                            // The session accepts one source only, so one SSRC stands for it.
                            ssrc: 0,
                            sequence_number: sequence,
                            timestamp,
                            marker,
                            payload: &payload,
                        };
                        let _ = self.dtmf.handle_rtp_event(&packet, now);
                        self.drain_digits(now);
                    }
                }
                RtpOutput::Event(_) => {}
                RtpOutput::Timeout(t) => {
                    self.rtp_deadline = t;
                    break;
                }
            }
        }
    }

    fn dtmf_payload_type(&self) -> Option<u8> {
        self.te_payload_type
    }

    fn drain_digits(&mut self, now: Instant) {
        let mut any = false;
        while let Some(d) = self.dtmf.poll_digit() {
            any = true;
            stats::record_digit();
            self.ivr
                .handle_input(now, ivr::Input::Digit(d.digit.to_char()));
        }
        if any {
            self.drain_ivr(now);
        }
    }

    fn drain_ivr(&mut self, now: Instant) {
        while let Some(out) = self.ivr.poll_output() {
            match out {
                ivr::Output::Play { id, prompts } => {
                    self.rtp.clear_queue();
                    self.playing = Some((id, Playback::new(prompts, self.prompt_law)));
                    self.top_up();
                }
                ivr::Output::StopPlayback(id)
                    if self.playing.as_ref().is_some_and(|(p, _)| *p == id) =>
                {
                    // Barge-in: the queued frames go too, so the prompt stops at once.
                    self.playing = None;
                    self.rtp.clear_queue();
                }
                ivr::Output::Action(id, request) => {
                    let svc = self.svc.clone();
                    let speech = self.speech.as_ref().map(|c| Arc::clone(c.service()));
                    let mut session = self.session.clone();
                    self.actions.spawn(async move {
                        let result =
                            actions::execute(&svc, speech.as_ref(), &mut session, request).await;
                        (id, result, session)
                    });
                }
                ivr::Output::Log(line) => match line.level {
                    LogLevel::Debug => tracing::debug!(call = %self.call_id, "{}", line.message),
                    LogLevel::Info => tracing::info!(call = %self.call_id, "{}", line.message),
                    LogLevel::Warn => tracing::warn!(call = %self.call_id, "{}", line.message),
                    LogLevel::Error => tracing::error!(call = %self.call_id, "{}", line.message),
                },
                ivr::Output::Hangup => {}
                ivr::Output::Timeout(t) => {
                    self.ivr_deadline = Some(t);
                    break;
                }
                ivr::Output::SpeechStart { id, grammar } => match self.speech.as_mut() {
                    Some(speech) => speech.start(id, grammar),
                    None => tracing::debug!(
                        call = %self.call_id,
                        "speech is off; this collect hears keyed digits only"
                    ),
                },
                ivr::Output::SpeechStop(id) => {
                    if let Some(speech) = self.speech.as_mut() {
                        speech.stop(id);
                    }
                }
                _ => {}
            }
        }
        let _ = now;
    }
}
