//! Which vehicles have a device session on this node, and the latest
//! position and status of each vehicle, kept in memory for `watch`
//! answers and for `online`/`last_location` in `GET /api/v1/vehicles`.
//!
//! A sharded map: lookups happen on connect, watch, command and REST
//! reads, and the latest state is written once per device message, so
//! the locks are short and rarely shared.

use std::collections::HashMap;
use std::sync::Mutex;

use actix::Addr;

use super::device::DeviceSession;
use crate::ingest::validate::Point;

const SHARDS: usize = 16;

/// The device session of a vehicle.
#[derive(Clone)]
pub struct DeviceEntry {
    pub session: Addr<DeviceSession>,
    /// Connection id, to tell a session from its replacement.
    pub conn_id: u64,
    pub since: i64,
}

/// The newest known state of a vehicle.
#[derive(Debug, Clone, Default)]
pub struct Latest {
    pub location: Option<Point>,
    /// `(t, JSON object)`
    pub status: Option<(i64, String)>,
    pub obd: Option<(i64, String)>,
    pub last_seen: Option<i64>,
}

#[derive(Default)]
struct Shard {
    devices: HashMap<i64, DeviceEntry>,
    latest: HashMap<i64, Latest>,
}

/// Presence and latest state of every vehicle seen by this node.
#[derive(Default)]
pub struct Presence {
    shards: [Mutex<Shard>; SHARDS],
}

impl Presence {
    fn shard(&self, vehicle: i64) -> std::sync::MutexGuard<'_, Shard> {
        let i = usize::try_from(vehicle.rem_euclid(SHARDS as i64)).unwrap_or(0);
        match self.shards[i].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Register `entry` as the vehicle's session; returns the one it
    /// replaces.
    pub fn register(&self, vehicle: i64, entry: DeviceEntry) -> Option<DeviceEntry> {
        self.shard(vehicle).devices.insert(vehicle, entry)
    }

    /// Remove the vehicle's session if it is still `conn_id`'s; true if it
    /// was (the vehicle is now offline).
    pub fn unregister(&self, vehicle: i64, conn_id: u64) -> bool {
        let mut shard = self.shard(vehicle);
        if shard
            .devices
            .get(&vehicle)
            .is_some_and(|e| e.conn_id == conn_id)
        {
            shard.devices.remove(&vehicle);
            true
        } else {
            false
        }
    }

    pub fn device(&self, vehicle: i64) -> Option<DeviceEntry> {
        self.shard(vehicle).devices.get(&vehicle).cloned()
    }

    pub fn is_online(&self, vehicle: i64) -> bool {
        self.shard(vehicle).devices.contains_key(&vehicle)
    }

    /// Number of connected devices.
    pub fn online_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.devices.len()).unwrap_or(0))
            .sum()
    }

    pub fn latest(&self, vehicle: i64) -> Latest {
        self.shard(vehicle)
            .latest
            .get(&vehicle)
            .cloned()
            .unwrap_or_default()
    }

    pub fn latest_location(&self, vehicle: i64) -> Option<Point> {
        self.shard(vehicle)
            .latest
            .get(&vehicle)
            .and_then(|l| l.location)
    }

    /// Keep `point` if it is newer than the stored position.
    pub fn set_location(&self, vehicle: i64, point: Point, now: i64) {
        let mut shard = self.shard(vehicle);
        let latest = shard.latest.entry(vehicle).or_default();
        if latest.location.is_none_or(|old| old.t <= point.t) {
            latest.location = Some(point);
        }
        latest.last_seen = Some(now);
    }

    /// Keep `point` if newer, without touching `last_seen` (a stored
    /// point loaded from the database, not news from the device).
    pub fn set_location_if_newer(&self, vehicle: i64, point: Point) {
        let mut shard = self.shard(vehicle);
        let latest = shard.latest.entry(vehicle).or_default();
        if latest.location.is_none_or(|old| old.t <= point.t) {
            latest.location = Some(point);
        }
    }

    pub fn set_status(&self, vehicle: i64, t: i64, data: String, now: i64) {
        let mut shard = self.shard(vehicle);
        let latest = shard.latest.entry(vehicle).or_default();
        latest.status = Some((t, data));
        latest.last_seen = Some(now);
    }

    pub fn set_obd(&self, vehicle: i64, t: i64, data: String, now: i64) {
        let mut shard = self.shard(vehicle);
        let latest = shard.latest.entry(vehicle).or_default();
        latest.obd = Some((t, data));
        latest.last_seen = Some(now);
    }

    /// Forget a deleted vehicle's state.
    pub fn forget(&self, vehicle: i64) {
        self.shard(vehicle).latest.remove(&vehicle);
    }
}
