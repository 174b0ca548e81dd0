//! Which vehicles have a device session on this node, and the newest
//! position of each vehicle, kept in memory for `watch` answers and for
//! `online`/`last_location` in `GET /api/v1/vehicles`. (The latest status
//! and OBD report are read from the database by
//! `GET /api/v1/vehicles/{id}/status`.)
//!
//! A sharded map: lookups happen on connect, watch, command and REST
//! reads, and the position is written once per `loc` batch, so the locks
//! are short and rarely shared.

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
    /// The vehicle's owner (whose user room hears its presence).
    pub owner_id: i64,
    pub since: i64,
}

#[derive(Default)]
struct Shard {
    devices: HashMap<i64, DeviceEntry>,
    /// The newest known position of each vehicle.
    locations: HashMap<i64, Point>,
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

    /// Every connected device (vehicle, session), for the cluster's
    /// presence refresh.
    pub fn snapshot(&self) -> Vec<(i64, DeviceEntry)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = match shard.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            out.extend(shard.devices.iter().map(|(v, e)| (*v, e.clone())));
        }
        out
    }

    pub fn latest_location(&self, vehicle: i64) -> Option<Point> {
        self.shard(vehicle).locations.get(&vehicle).copied()
    }

    /// Keep `point` as the vehicle's position if it is the newest known
    /// (news from the device, or a stored point loaded after a restart).
    pub fn set_location(&self, vehicle: i64, point: Point) {
        let mut shard = self.shard(vehicle);
        let newest = shard.locations.entry(vehicle).or_insert(point);
        if newest.t <= point.t {
            *newest = point;
        }
    }

    /// Forget a deleted vehicle's state.
    pub fn forget(&self, vehicle: i64) {
        self.shard(vehicle).locations.remove(&vehicle);
    }
}
