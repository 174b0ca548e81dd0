//! What the live runtime needs from the rest of the node, as small
//! interfaces. The node implements them over the hub and the database and
//! hands them over when it is wired (`src/node.rs`); tests can hand in
//! their own.
//!
//! Calls that wait return a boxed future so the traits stay usable as
//! trait objects (`Arc<dyn Plans>`).

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;

/// A backend behind a port (the database) could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Not answering now (e.g. no free connection); worth a retry.
    #[error("not answering: {0}")]
    Unavailable(String),
    /// Any other failure.
    #[error("{0}")]
    Failed(String),
}

/// Result of a port call.
pub type BackendResult<T> = Result<T, BackendError>;

/// Device sessions, wherever the device is connected.
pub trait DeviceLink: Send + Sync + 'static {
    /// Whether `vehicle_id`'s device is connected, to this node or another.
    fn is_online(&self, vehicle_id: i64) -> BoxFuture<'_, bool>;

    /// Send the command `name` with `args` to `vehicle_id`'s device. The
    /// device's answer comes back when it is connected to this node;
    /// `None` when the command went to another node (or nowhere), whose
    /// answer is not returned.
    fn command(
        &self,
        vehicle_id: i64,
        name: &'static str,
        args: Value,
    ) -> Option<oneshot::Receiver<Value>>;
}

/// The camera channels configured for vehicles.
pub trait Channels: Send + Sync + 'static {
    /// The RTSP URL of `vehicle_id`'s `channel`, if one is configured.
    fn rtsp_url(
        &self,
        vehicle_id: i64,
        channel: String,
    ) -> BoxFuture<'_, BackendResult<Option<String>>>;
}

/// Bytes of one kind of traffic to add for a vehicle and UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficCount {
    pub vehicle_id: i64,
    /// UTC midnight of the day, Unix ms.
    pub day: i64,
    /// `live_in`, `rtsp_in` ([`crate::live::usage::kind`]).
    pub kind: &'static str,
    pub bytes: i64,
}

/// Seconds of live video to add for a vehicle and UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCount {
    pub vehicle_id: i64,
    /// UTC midnight of the day, Unix ms.
    pub day: i64,
    pub seconds: i64,
}

/// What a vehicle used of its plan's live minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveAllowance {
    /// Live seconds stored since the asked time.
    pub stored_seconds: i64,
    /// The plan's live minutes per month; `None` without a plan.
    pub minutes_per_month: Option<i64>,
}

/// The plans and the usage they are checked against.
pub trait Plans: Send + Sync + 'static {
    /// Add traffic and live time (added to what is stored, in one
    /// transaction; counts of vehicles that no longer exist are dropped).
    fn add_usage(
        &self,
        traffic: Vec<TrafficCount>,
        live: Vec<LiveCount>,
    ) -> BoxFuture<'_, BackendResult<()>>;

    /// `vehicle_id`'s stored live seconds since `since_ms` and its plan.
    fn live_allowance(
        &self,
        vehicle_id: i64,
        since_ms: i64,
    ) -> BoxFuture<'_, BackendResult<LiveAllowance>>;
}

/// Device tokens, checked when a blackbox publishes over RTMP.
pub trait PublishAuth: Send + Sync + 'static {
    /// The vehicle whose device token is `token`; `None` if no vehicle has
    /// it.
    fn device_token_vehicle(&self, token: String) -> BoxFuture<'_, BackendResult<Option<i64>>>;
}
