//! Merchant channels: the HTTP API for web shops and the webhook outbox.

pub mod http;
pub mod webhooks;
