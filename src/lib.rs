//! telepay: a telephony IVR and SMS settlement gateway.
//!
//! A merchant terminal gets a short transaction number from the gateway and shows it; the payer
//! calls (or texts) the gateway, keys or says the number and authenticates; the gateway pairs
//! the two sessions, settles the payment in its ledger and tells both sides. See `MISSION.md`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod bench;
pub mod clock;
pub mod config;
pub mod merchant;
pub mod metrics;
pub mod settlement;
pub mod sms;
pub mod store;
pub mod telephony;
pub mod voice;
