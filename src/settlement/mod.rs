//! The settlement core: transaction numbers, the transaction lifecycle, the ledger, the
//! authentication policy, credentials, and the service every channel calls.

pub mod auth_policy;
pub mod credentials;
pub mod engine;
pub mod events;
pub mod ledger;
pub mod lifecycle;
pub mod model;
pub mod money;
pub mod rules;
pub mod service;
pub mod txn_number;

pub use crate::store::writer::CoreError;
pub use engine::{Op, OpError, Reply};
pub use service::Service;
