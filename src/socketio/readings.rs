//! What the Engine.IO server exposes to the metrics: connections, frames
//! and packets, coalesced positions, slow clients (read from its atomics).

use std::sync::atomic::Ordering::Relaxed;

use super::server::SocketIo;
use crate::metrics::Reading;

impl SocketIo {
    /// The server's gauges and counters, for [`crate::metrics::Metrics::register_readings`].
    pub fn readings(&self) -> Vec<Reading> {
        let s = self.clone();
        let gauge = move |name, help, f: fn(&SocketIo) -> u64| {
            let s = s.clone();
            Reading::gauge(name, help, move || f(&s))
        };
        let s = self.clone();
        let counter = move |name, help, f: fn(&SocketIo) -> u64| {
            let s = s.clone();
            Reading::counter(name, help, move || f(&s))
        };
        vec![
            gauge(
                "roadhub_socketio_connections",
                "Open Engine.IO connections",
                |s| s.stats().connections.load(Relaxed) as u64,
            ),
            counter(
                "roadhub_socketio_connections_opened_total",
                "Engine.IO connections opened",
                |s| s.stats().opened.load(Relaxed),
            ),
            counter(
                "roadhub_socketio_frames_out_total",
                "Frames queued to clients",
                |s| s.stats().frames_out.load(Relaxed),
            ),
            counter(
                "roadhub_socketio_packets_in_total",
                "Engine.IO packets received",
                |s| s.stats().frames_in.load(Relaxed),
            ),
            counter(
                "roadhub_socketio_coalesced_total",
                "Live positions replaced in a slow client's queue",
                |s| s.stats().coalesced.load(Relaxed),
            ),
            counter(
                "roadhub_socketio_slow_disconnects_total",
                "Clients disconnected for reading too slowly",
                |s| s.stats().slow_closed.load(Relaxed),
            ),
        ]
    }
}
