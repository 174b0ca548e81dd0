//! What the telemetry writer exposes to the metrics: its queue, batches,
//! stored points and rows, failed jobs (read from its atomics).

use std::sync::atomic::Ordering::Relaxed;

use super::writer::{IngestWriter, WriterMetrics};
use crate::metrics::Reading;

impl IngestWriter {
    /// The writer's gauges and counters, for [`crate::metrics::Metrics::register_readings`].
    pub fn readings(&self) -> Vec<Reading> {
        let w = self.clone();
        let counter = |name, help, f: fn(&WriterMetrics) -> u64| {
            let w = self.clone();
            Reading::counter(name, help, move || f(w.metrics()))
        };
        vec![
            Reading::gauge(
                "roadhub_ingest_queue_jobs",
                "Jobs waiting for the telemetry writer",
                move || w.queue_len() as u64,
            ),
            counter(
                "roadhub_ingest_batches_total",
                "Telemetry transactions committed",
                |m| m.batches.load(Relaxed),
            ),
            counter(
                "roadhub_ingest_points_total",
                "Location points committed",
                |m| m.points_stored.load(Relaxed),
            ),
            counter(
                "roadhub_ingest_rows_total",
                "Telemetry rows committed",
                |m| m.rows_stored.load(Relaxed),
            ),
            counter(
                "roadhub_ingest_failed_jobs_total",
                "Telemetry jobs that failed",
                |m| m.jobs_failed.load(Relaxed),
            ),
        ]
    }
}
