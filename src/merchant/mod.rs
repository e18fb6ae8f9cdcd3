//! Merchant channels: the HTTP API for web shops, the webhook outbox, and the ISO 8583 link
//! for terminals on persistent TCP connections.

pub mod http;
pub mod iso8583;
pub mod link;
pub mod webhooks;
