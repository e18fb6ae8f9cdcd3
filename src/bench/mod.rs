//! `telepay bench …`: load generators that print their figures on the last line.

pub mod calls;
pub mod merchant_link;
pub mod settle;
pub mod sms;

/// The p-th percentile (0–100) of sorted values, in the values' unit.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
