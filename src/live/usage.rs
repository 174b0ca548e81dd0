//! Data-usage accounting of live video: bytes per vehicle, day and kind,
//! and seconds of live video per vehicle and day, counted in memory and
//! added to the plans' store ([`Plans`]: the database's `traffic` and
//! `live_usage`) by one flush every few seconds, so the media path never
//! waits on the database.
//!
//! Streams report what they counted (a publisher's bytes once a second or
//! so, not per packet); [`Usage::flush`] swaps the pending counts out under
//! a short lock and writes them in one transaction. A failed flush puts
//! its counts back, so nothing counted is lost while the database is
//! away; on shutdown the node flushes once more.
//!
//! The plan's live-video minutes per month are checked by
//! [`Usage::live_quota`]: stored seconds since the first of the month plus
//! what is still pending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::live::ports::{BackendError, LiveCount, Plans, TrafficCount};
use crate::util::{day_start_ms, month_start_ms, now_ms};

/// Kinds of traffic rows written by live video.
pub mod kind {
    /// Bytes received from a publisher (RTMP from the blackbox).
    pub const LIVE_IN: &str = "live_in";
    /// Bytes received from an RTSP camera the hub pulls.
    pub const RTSP_IN: &str = "rtsp_in";
}

#[derive(Default)]
struct Pending {
    /// (vehicle, day, kind) -> bytes.
    traffic: HashMap<(i64, i64, &'static str), u64>,
    /// (vehicle, day) -> milliseconds of live video.
    live_ms: HashMap<(i64, i64), u64>,
}

/// The answer of a quota check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveQuota {
    /// Seconds used this month (UTC).
    pub used_seconds: i64,
    /// The plan's limit in seconds; `None` when unlimited (0 in the plan).
    pub limit_seconds: Option<i64>,
}

impl LiveQuota {
    pub fn exceeded(&self) -> bool {
        self.limit_seconds.is_some_and(|l| self.used_seconds >= l)
    }
}

/// Usage counters of one node.
pub struct Usage {
    plans: Arc<dyn Plans>,
    pending: Mutex<Pending>,
    /// Per vehicle: when read, the month, stored live seconds and the
    /// plan's limit. HLS players ask for the quota with every playlist
    /// poll; this spares the database those reads. Cleared by every flush
    /// (stored seconds change then); entries live [`QUOTA_CACHE`].
    stored: Mutex<HashMap<i64, StoredQuota>>,
}

/// When read, the month (UTC first, ms), stored live seconds, the plan's
/// limit in seconds.
type StoredQuota = (std::time::Instant, i64, i64, Option<i64>);

/// How long stored live seconds and a plan limit are reused.
const QUOTA_CACHE: Duration = Duration::from_secs(5);

impl Usage {
    pub fn new(plans: Arc<dyn Plans>) -> Self {
        Self {
            plans,
            pending: Mutex::new(Pending::default()),
            stored: Mutex::new(HashMap::new()),
        }
    }

    /// Count `bytes` of `kind` for `vehicle`, today (UTC).
    pub fn add_bytes(&self, vehicle: i64, kind: &'static str, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let day = day_start_ms(now_ms());
        if let Ok(mut p) = self.pending.lock() {
            *p.traffic.entry((vehicle, day, kind)).or_insert(0) += bytes;
        }
    }

    /// Count `duration` of live video for `vehicle`, today (UTC).
    pub fn add_live(&self, vehicle: i64, duration: Duration) {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return;
        }
        let day = day_start_ms(now_ms());
        if let Ok(mut p) = self.pending.lock() {
            *p.live_ms.entry((vehicle, day)).or_insert(0) += ms;
        }
    }

    /// Write what is pending. Live time is written in whole seconds; the
    /// remainder stays pending for the next flush.
    pub async fn flush(&self) -> Result<(), BackendError> {
        let taken = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Ok(()),
        };
        let traffic: Vec<TrafficCount> = taken
            .traffic
            .iter()
            .map(|(&(vehicle_id, day, kind), &bytes)| TrafficCount {
                vehicle_id,
                day,
                kind,
                bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
            })
            .collect();
        let live: Vec<LiveCount> = taken
            .live_ms
            .iter()
            .filter(|(_, ms)| **ms >= 1000)
            .map(|(&(vehicle_id, day), &ms)| LiveCount {
                vehicle_id,
                day,
                seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
            })
            .collect();
        let result = self.plans.add_usage(traffic, live).await;
        if let Ok(mut p) = self.pending.lock() {
            for (key, ms) in taken.live_ms {
                // Sub-second remainders always go back; everything goes
                // back when the write failed.
                let back = if result.is_ok() { ms % 1000 } else { ms };
                if back > 0 {
                    *p.live_ms.entry(key).or_insert(0) += back;
                }
            }
            if result.is_err() {
                for (key, bytes) in taken.traffic {
                    *p.traffic.entry(key).or_insert(0) += bytes;
                }
            }
        }
        if let Ok(mut m) = self.stored.lock() {
            m.clear();
        }
        result
    }

    /// Flush every `every` until the task is dropped (aborted).
    pub async fn flush_every(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "writing live-video usage failed; kept for the next flush");
            }
        }
    }

    /// Live seconds `vehicle` used this month against its plan.
    pub async fn live_quota(&self, vehicle: i64) -> Result<LiveQuota, BackendError> {
        let month = month_start_ms(now_ms());
        let cached = self.stored.lock().ok().and_then(|m| {
            m.get(&vehicle)
                .filter(|(at, m, _, _)| *m == month && at.elapsed() < QUOTA_CACHE)
                .map(|&(_, _, stored, limit)| (stored, limit))
        });
        let (stored, limit) = match cached {
            Some(hit) => hit,
            None => {
                let allowance = self.plans.live_allowance(vehicle, month).await?;
                let stored = allowance.stored_seconds;
                let limit = allowance
                    .minutes_per_month
                    .map(|m| m * 60)
                    .filter(|l| *l > 0);
                if let Ok(mut m) = self.stored.lock() {
                    m.insert(vehicle, (std::time::Instant::now(), month, stored, limit));
                }
                (stored, limit)
            }
        };
        let pending_ms: u64 = match self.pending.lock() {
            Ok(p) => p
                .live_ms
                .iter()
                .filter(|((v, day), _)| *v == vehicle && *day >= month)
                .map(|(_, ms)| *ms)
                .sum(),
            Err(_) => 0,
        };
        Ok(LiveQuota {
            used_seconds: stored + i64::try_from(pending_ms / 1000).unwrap_or(i64::MAX),
            limit_seconds: limit,
        })
    }
}
