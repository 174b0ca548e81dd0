//! What the cluster exposes to the metrics: Redis up, node id conflicts,
//! presence and reaping, commands and kicks across nodes, bus drops. Every
//! figure reads 0 on a single node (no cluster), so dashboards see the
//! same series everywhere.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::Cluster;
use crate::metrics::Reading;

/// The cluster's gauges and counters (all 0 without a cluster), for
/// [`crate::metrics::Metrics::register_readings`].
pub fn readings(cluster: Option<&Arc<Cluster>>) -> Vec<Reading> {
    let read = |f: fn(&Cluster) -> u64| {
        let c = cluster.cloned();
        move || c.as_deref().map_or(0, f)
    };
    let gauge = |name, help, f| Reading::gauge(name, help, read(f));
    let counter = |name, help, f| Reading::counter(name, help, read(f));
    vec![
        gauge(
            "roadhub_cluster_redis_up",
            "1 while the bus is connected to Redis (0 when down or on a single node)",
            |c| u64::from(c.redis_up()),
        ),
        gauge(
            "roadhub_cluster_node_id_in_use",
            "1 while an earlier live process uses this node.id (this node is unready)",
            |c| u64::from(c.node_id_in_use.load(Relaxed)),
        ),
        counter(
            "roadhub_cluster_presence_ops_dropped_total",
            "Presence updates for Redis dropped (writer queue full)",
            |c| c.stats.presence_ops_dropped.load(Relaxed),
        ),
        counter(
            "roadhub_cluster_nodes_reaped_total",
            "Dead nodes reaped by this node",
            |c| c.stats.nodes_reaped.load(Relaxed),
        ),
        counter(
            "roadhub_cluster_devices_reaped_total",
            "Devices of dead nodes announced offline by this node",
            |c| c.stats.devices_reaped.load(Relaxed),
        ),
        counter(
            "roadhub_cluster_commands_sent_total",
            "Commands sent to devices on other nodes",
            |c| c.stats.commands_sent.load(Relaxed),
        ),
        counter(
            "roadhub_cluster_command_timeouts_total",
            "Commands to other nodes answered timeout here",
            |c| c.stats.command_timeouts.load(Relaxed),
        ),
        counter(
            "roadhub_cluster_bus_dropped_total",
            "Room frames not sent to Redis (its publish queue was full)",
            |c| c.bus.dropped(),
        ),
        counter(
            "roadhub_cluster_bus_lagged_total",
            "Frames from other nodes lost by rooms that fell behind",
            |c| c.bus.lagged(),
        ),
        counter(
            "roadhub_cluster_kicks_sent_total",
            "Device sessions on other nodes replaced by a connect here",
            |c| c.stats.kicks_sent.load(Relaxed),
        ),
    ]
}
