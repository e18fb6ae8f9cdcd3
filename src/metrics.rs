//! Counters for `GET /metrics`, in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A family of counters keyed by label values.
#[derive(Debug, Default)]
pub struct CounterVec {
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterVec {
    pub fn inc(&self, labels: &[&str]) {
        if let Ok(mut v) = self.values.lock() {
            *v.entry(labels.iter().map(|s| s.to_string()).collect())
                .or_insert(0) += 1;
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str, label_names: &[&str]) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        if let Ok(v) = self.values.lock() {
            for (labels, n) in v.iter() {
                let l: Vec<String> = label_names
                    .iter()
                    .zip(labels)
                    .map(|(k, v)| {
                        format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                    })
                    .collect();
                out.push_str(&format!("{name}{{{}}} {n}\n", l.join(",")));
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub http_requests: CounterVec,
    pub events: CounterVec,
    pub webhooks: CounterVec,
    pub advices: CounterVec,
    pub link_frames: CounterVec,
    pub started_unix_s: AtomicU64,
}

impl Metrics {
    pub fn render(&self, writer: &crate::store::writer::WriterStats) -> String {
        let mut out = String::new();
        self.http_requests.render(
            &mut out,
            "telepay_http_requests_total",
            "HTTP requests by route and status.",
            &["route", "status"],
        );
        self.events.render(
            &mut out,
            "telepay_transaction_events_total",
            "Transaction events committed, by type.",
            &["type"],
        );
        self.webhooks.render(
            &mut out,
            "telepay_webhook_deliveries_total",
            "Webhook delivery attempts by result.",
            &["result"],
        );
        self.advices.render(
            &mut out,
            "telepay_link_advices_total",
            "Merchant-link advices by result.",
            &["result"],
        );
        self.link_frames.render(
            &mut out,
            "telepay_link_messages_total",
            "Merchant-link messages by MTI and direction.",
            &["mti", "direction"],
        );
        crate::telephony::driver::stats::render_prometheus(&mut out);
        crate::sms::stats::render_prometheus(&mut out);
        let g = |out: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        g(
            &mut out,
            "telepay_writer_batches_total",
            "Database transactions committed by the settlement writer.",
            "counter",
            writer.batches.load(Ordering::Relaxed),
        );
        g(
            &mut out,
            "telepay_writer_requests_total",
            "Requests committed by the settlement writer.",
            "counter",
            writer.requests.load(Ordering::Relaxed),
        );
        g(
            &mut out,
            "telepay_writer_retries_total",
            "Batch attempts that failed and were retried.",
            "counter",
            writer.retries.load(Ordering::Relaxed),
        );
        g(
            &mut out,
            "telepay_writer_failures_total",
            "Requests that failed for the store's sake.",
            "counter",
            writer.failures.load(Ordering::Relaxed),
        );
        g(
            &mut out,
            "telepay_writer_commit_microseconds_total",
            "Time spent in batch transactions.",
            "counter",
            writer.commit_us_total.load(Ordering::Relaxed),
        );
        g(
            &mut out,
            "telepay_start_time_seconds",
            "When this process started.",
            "gauge",
            self.started_unix_s.load(Ordering::Relaxed),
        );
        out
    }
}
