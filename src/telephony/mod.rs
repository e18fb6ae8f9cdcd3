//! Payer calls: SIP signalling, SDP, RTP media, G.711, DTMF in three forms, prompts, and the
//! dialplan-driven IVR. Every protocol piece is a sans-IO state machine; the drivers are in
//! `telephony::driver`.

pub mod driver;
pub mod dtmf;
pub mod g711;
pub mod ivr;
pub mod prompts;
pub mod rtp;
pub mod sdp;
pub mod sip;
