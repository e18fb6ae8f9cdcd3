//! `telepay bench …`: load generators that print their figures on the last line.

pub mod calls;
pub mod merchant_link;
pub mod settle;
pub mod sms;
pub mod voice;

/// The p-th percentile (0–100) of sorted values, in the values' unit.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Registers a merchant terminal in USD that demands a PIN, as every benchmark's shop.
pub async fn add_bench_merchant(
    svc: &crate::settlement::Service,
    terminal_id: &str,
    merchant_id: &str,
    api_key: &str,
) -> Result<(), crate::store::writer::CoreError> {
    use crate::settlement::auth_policy::{MerchantDemand, Method};
    svc.add_merchant(crate::settlement::engine::NewMerchant {
        terminal_id: terminal_id.into(),
        merchant_id: merchant_id.into(),
        name: "Bench Shop".into(),
        currency: "USD".into(),
        api_key: api_key.into(),
        demand: MerchantDemand {
            method: Method::Pin,
            strict: false,
        },
        visible_attributes: vec![],
        webhook_url: None,
        webhook_secret: None,
        account_id: None,
    })
    .await
}

/// Registers a payer in USD with `pin` and 10,000,000.00 to spend.
pub async fn add_bench_payer(
    svc: &crate::settlement::Service,
    msisdn: &str,
    pin: &str,
) -> Result<(), crate::store::writer::CoreError> {
    use crate::settlement::engine::{NewPayer, Op};
    svc.add_payer(NewPayer {
        msisdn: msisdn.into(),
        display_name: "Bench Payer".into(),
        currency: "USD".into(),
        attributes: std::collections::BTreeMap::new(),
        credit_limit_minor: 0,
        txn_limit_minor: None,
        demand: crate::settlement::auth_policy::PayerDemand::default(),
    })
    .await?;
    svc.submit(Op::SetPin {
        msisdn: msisdn.into(),
        pin: crate::settlement::credentials::SecretDigits::pin(pin)
            .map_err(|e| crate::settlement::OpError::Invalid(e.to_string()))?,
    })
    .await?;
    svc.submit(Op::Credit {
        msisdn: msisdn.into(),
        amount_minor: 1_000_000_000,
    })
    .await?;
    Ok(())
}
