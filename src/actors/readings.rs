//! What the hub exposes to the metrics: devices online, messages from
//! devices and apps, refusals, commands, fan-out (read from its atomics).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::{Hub, HubStats};
use crate::metrics::Reading;

/// The hub's gauges and counters, for [`crate::metrics::Metrics::register_readings`].
pub fn readings(hub: &Arc<Hub>) -> Vec<Reading> {
    let counter = |name, help, f: fn(&HubStats) -> u64| {
        let h = hub.clone();
        Reading::counter(name, help, move || f(&h.stats))
    };
    let h = hub.clone();
    vec![
        Reading::gauge(
            "roadhub_devices_online",
            "Device sessions on this node",
            move || h.presence.online_count() as u64,
        ),
        counter(
            "roadhub_device_messages_total",
            "Messages received from devices",
            |s| s.device_messages.load(Relaxed),
        ),
        counter(
            "roadhub_app_messages_total",
            "Messages received from apps",
            |s| s.app_messages.load(Relaxed),
        ),
        counter(
            "roadhub_rate_limited_total",
            "Messages refused by a session rate limit",
            |s| s.rate_limited.load(Relaxed),
        ),
        counter(
            "roadhub_telemetry_rejected_total",
            "Device messages refused as invalid",
            |s| s.rejected.load(Relaxed),
        ),
        counter(
            "roadhub_ingest_busy_total",
            "Device messages answered busy (writer queue full)",
            |s| s.busy.load(Relaxed),
        ),
        counter(
            "roadhub_commands_total",
            "Commands relayed to devices",
            |s| s.commands.load(Relaxed),
        ),
        counter(
            "roadhub_fanout_frames_total",
            "Frames published to rooms",
            |s| s.fanout_frames.load(Relaxed),
        ),
    ]
}
