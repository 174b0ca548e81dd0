//! On-demand live: a viewer asking for a stream nobody publishes starts
//! its source, and the source stops once nobody watches.
//!
//! Two sources, tried in this order for `{vehicle_id}-{channel}`:
//!
//! 0. **Another node** publishing the stream, in a cluster: the edge pull
//!    ([`crate::live::edge`]) relays it here.
//! 1. **An RTSP camera** configured for the channel (`PUT
//!    /api/v1/vehicles/{id}/channels/{channel}`): the hub pulls it with
//!    retina ([`crate::live::rtsp`]) into the stream. The request waits
//!    (at most `live.start_timeout_secs`) for the first keyframe; a camera
//!    that cannot be reached answers 502 with the puller's error code
//!    (`rtsp_unreachable`, `rtsp_unauthorized`, ...). The pull keeps
//!    retrying with backoff while viewers wait.
//! 2. **The blackbox** over its `/device` session ([`DeviceLink`]): the
//!    hub sends `command`
//!    `{"name": "live.start", "args": {"channel", "url"}}`, where `url` is
//!    the full RTMP publish URL with a short-lived publish token for this
//!    stream key only ([`crate::auth::JwtKeys::issue_publish`]), and the
//!    viewer waits for the publish (`live.start_timeout_secs`, then 504
//!    `live_start_timeout`). A device that is not connected: 404
//!    `vehicle_offline`. `live.start` is sent once per start attempt, not
//!    once per waiting viewer.
//!
//! When a stream has had no viewers for `live.idle_timeout_secs` the
//! [`Streams`] call [`StreamActivator::idle`]: the RTSP pull stops, or the
//! device gets `live.stop` `{"channel"}`.
//!
//! Before any of this the plan's live-video minutes are checked: past the
//! month's limit, play answers 403 `live_quota_exceeded` and nothing is
//! started. While a stream is published its live time is counted
//! ([`crate::live::usage`]).
//!
//! Failures are [`OnDemandError`]s; the HTTP layer answers them with the
//! statuses and codes named above.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::auth::JwtKeys;
use crate::config::{Config, RtmpConfig};
use crate::live::edge::{Edge, EdgeError};
use crate::live::ports::{BackendError, Channels, DeviceLink};
use crate::live::rtsp::{
    MediaSink, PullError, PullHandle, PullOptions, PullState, RtspPuller, RtspSource,
};
use crate::live::stream::{
    LiveError, Publisher, PublisherInfo, StreamActivator, StreamKey, Streams,
};
use crate::live::usage::Usage;
use crate::media::flv::FlvPayload;

/// Why a stream could not be started for a viewer.
#[derive(Debug, thiserror::Error)]
pub enum OnDemandError {
    /// The plan's live minutes are used up this month.
    #[error("this vehicle's plan has no live-video minutes left this month")]
    QuotaExceeded,
    /// No source: no camera configured and the device is not connected.
    #[error("the vehicle is not connected, so it cannot start streaming")]
    VehicleOffline,
    /// The channel's RTSP URL is not usable.
    #[error("{0}")]
    CameraUrl(PullError),
    /// The camera answered, definitely, with a failure.
    #[error("the camera could not be pulled: {0}")]
    CameraFailed(PullError),
    /// The camera pull stopped while the viewer waited.
    #[error("the camera pull stopped; retry")]
    CameraStopped,
    /// The camera sent no keyframe within `live.start_timeout_secs`.
    #[error("the camera did not start streaming in time")]
    CameraTimeout,
    /// A publish token could not be issued.
    #[error("issuing a publish token failed")]
    PublishToken,
    #[error(transparent)]
    Edge(#[from] EdgeError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The RTSP pull publishes through a [`Publisher`].
impl MediaSink for Publisher {
    fn push(&mut self, payload: FlvPayload) {
        Publisher::push(self, payload);
    }

    fn bytes_in(&mut self, n: u64) {
        Publisher::bytes_in(self, n);
    }

    fn ready(&mut self) -> impl std::future::Future<Output = ()> + Send {
        Publisher::ready(self)
    }
}

/// The RTMP URL a device publishes `key` to, with a publish token valid
/// for `ttl`.
pub fn publish_url(
    jwt: &JwtKeys,
    rtmp: &RtmpConfig,
    key: &StreamKey,
    ttl: Duration,
) -> Result<String, OnDemandError> {
    let token = jwt
        .issue_publish(&key.to_string(), ttl.as_secs().max(60))
        .map_err(|_| OnDemandError::PublishToken)?;
    let base = rtmp_base(rtmp);
    Ok(format!("{base}/live/{key}?token={token}"))
}

/// `rtmp.public_url`, or `rtmp://` + `rtmp.listen`.
fn rtmp_base(rtmp: &RtmpConfig) -> String {
    let public = rtmp.public_url.trim().trim_end_matches('/');
    if public.is_empty() {
        format!("rtmp://{}", rtmp.listen)
    } else {
        public.to_string()
    }
}

/// Where on-demand sources come from, besides the streams themselves.
pub struct Sources {
    /// Device sessions (`live.start`, `live.stop`, online or not).
    pub devices: Arc<dyn DeviceLink>,
    /// Cameras' RTSP URLs.
    pub channels: Arc<dyn Channels>,
    /// Edge pulls from other nodes (never one on a single node).
    pub edge: Arc<Edge>,
    /// Signs the publish tokens of `live.start` URLs.
    pub jwt: JwtKeys,
}

/// A running RTSP pull and the task that publishes it.
struct Pull {
    handle: PullHandle,
}

#[derive(Default)]
struct State {
    /// RTSP pulls by stream key.
    pulls: HashMap<StreamKey, Pull>,
    /// `live.start` sent to a device, and when.
    device_starts: HashMap<StreamKey, Instant>,
}

/// Starts and stops live sources on demand; the [`StreamActivator`] of a
/// node's [`Streams`].
pub struct OnDemand {
    sources: Sources,
    streams: Streams,
    usage: Arc<Usage>,
    rtsp: PullOptions,
    rtmp: RtmpConfig,
    state: Mutex<State>,
}

impl OnDemand {
    pub fn new(
        config: &Config,
        sources: Sources,
        streams: Streams,
        usage: Arc<Usage>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sources,
            streams,
            usage,
            rtsp: PullOptions::from_config(&config.rtsp),
            rtmp: config.rtmp.clone(),
            state: Mutex::new(State::default()),
        })
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.streams.config().start_timeout_secs.max(1))
    }

    /// Check the plan's live minutes for `vehicle`.
    pub async fn check_quota(&self, vehicle: i64) -> Result<(), OnDemandError> {
        let quota = self.usage.live_quota(vehicle).await?;
        if quota.exceeded() {
            return Err(OnDemandError::QuotaExceeded);
        }
        Ok(())
    }

    /// Before a viewer plays `key` (its owner already checked): the quota,
    /// then, when nothing publishes `key`, start a source: an RTSP pull
    /// (waited for here, so its error reaches the viewer) or `live.start`
    /// to the device (waited for by [`Streams::play`]).
    /// [`OnDemandError::VehicleOffline`] when there is no way to start it.
    pub async fn prepare(&self, key: &StreamKey) -> Result<(), OnDemandError> {
        self.check_quota(key.vehicle_id).await?;
        if self.pulling(key) {
            return self.pull(key, None).await;
        }
        if self.streams.is_published(key).await {
            return Ok(());
        }
        if self.sources.edge.prepare(key).await? {
            return Ok(());
        }
        let rtsp_url = self
            .sources
            .channels
            .rtsp_url(key.vehicle_id, key.channel.clone())
            .await?;
        if let Some(url) = rtsp_url {
            return self.pull(key, Some(&url)).await;
        }
        if self.sources.devices.is_online(key.vehicle_id).await {
            return self.start_device(key);
        }
        // A stream in its grace period may get its publisher back (a
        // blackbox reconnecting): the viewer waits with the others.
        if self.streams.exists(key).await {
            return Ok(());
        }
        Err(OnDemandError::VehicleOffline)
    }

    fn pulling(&self, key: &StreamKey) -> bool {
        self.state.lock().is_ok_and(|s| s.pulls.contains_key(key))
    }

    /// Start (from `url`) or join the RTSP pull of `key` and wait for its
    /// first keyframe or a definite failure.
    async fn pull(&self, key: &StreamKey, url: Option<&str>) -> Result<(), OnDemandError> {
        let running = self
            .state
            .lock()
            .ok()
            .and_then(|s| s.pulls.get(key).map(|p| p.handle.state()));
        let state_rx = match (running, url) {
            (Some(rx), _) => rx,
            (None, None) => return Ok(()),
            (None, Some(url)) => self.start_pull(key, url).await?,
        };
        self.wait_pull(key, state_rx).await
    }

    /// Start the RTSP pull of `key` from `url`, publishing into the stream.
    async fn start_pull(
        &self,
        key: &StreamKey,
        url: &str,
    ) -> Result<watch::Receiver<PullState>, OnDemandError> {
        let source = RtspSource::parse(url).map_err(OnDemandError::CameraUrl)?;
        let info = PublisherInfo {
            protocol: "rtsp",
            remote: None,
        };
        let publisher = self.streams.publish(key.clone(), info).await?;
        let handle = RtspPuller::new(key.vehicle_id, key.channel.clone(), source)
            .with_options(self.rtsp.clone())
            .spawn(publisher);
        let rx = handle.state();
        if let Ok(mut s) = self.state.lock() {
            s.pulls.insert(key.clone(), Pull { handle });
        }
        tracing::info!(stream = %key, "RTSP pull started for a viewer");
        Ok(rx)
    }

    /// Wait (at most the start timeout) for the pull of `key` to play or
    /// fail definitely.
    async fn wait_pull(
        &self,
        key: &StreamKey,
        mut state_rx: watch::Receiver<PullState>,
    ) -> Result<(), OnDemandError> {
        let deadline = tokio::time::Instant::now() + self.start_timeout();
        loop {
            let current = state_rx.borrow_and_update().clone();
            match current {
                PullState::Playing => return Ok(()),
                PullState::Failed { error, .. } => {
                    // A definite answer from the camera (not a timeout of
                    // ours): tell the viewer now; the pull goes on
                    // retrying for later viewers until the stream idles.
                    return Err(OnDemandError::CameraFailed(error));
                }
                PullState::Stopped => {
                    if let Ok(mut s) = self.state.lock() {
                        s.pulls.remove(key);
                    }
                    return Err(OnDemandError::CameraStopped);
                }
                PullState::Connecting { .. } => {}
            }
            match tokio::time::timeout_at(deadline, state_rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(OnDemandError::CameraStopped),
                Err(_) => return Err(OnDemandError::CameraTimeout),
            }
        }
    }

    /// Send `live.start` for `key` to its device, unless one was sent
    /// within the start timeout.
    fn start_device(&self, key: &StreamKey) -> Result<(), OnDemandError> {
        let now = Instant::now();
        let fresh = self.state.lock().is_ok_and(|mut s| {
            let timeout = self.start_timeout();
            // Starts that never led to a stream are forgotten once stale.
            s.device_starts
                .retain(|_, at| now.duration_since(*at) < timeout * 2);
            match s.device_starts.get(key) {
                Some(at) if now.duration_since(*at) < timeout => false,
                _ => {
                    s.device_starts.insert(key.clone(), now);
                    true
                }
            }
        });
        if !fresh {
            return Ok(());
        }
        let url = publish_url(
            &self.sources.jwt,
            &self.rtmp,
            key,
            self.start_timeout() * 30,
        )?;
        self.command(
            key,
            "live.start",
            json!({"channel": key.channel, "url": url}),
        );
        Ok(())
    }

    /// Send `name` to the device of `key` (if connected, on this node or,
    /// with a cluster, another); its answer is logged, not awaited.
    fn command(&self, key: &StreamKey, name: &'static str, args: Value) {
        let Some(rx) = self.sources.devices.command(key.vehicle_id, name, args) else {
            return;
        };
        let key = key.clone();
        actix_rt::spawn(async move {
            if let Ok(answer) = rx.await
                && answer.get("ok") != Some(&Value::Bool(true))
            {
                tracing::info!(stream = %key, command = name, %answer, "the device declined");
            }
        });
    }

    /// The channel's RTSP URL changed or was removed: a pull of the old
    /// URL stops (its publisher goes, viewers are held for the grace
    /// period; the next viewer starts the new source).
    pub fn source_changed(&self, vehicle_id: i64, channel: &str) {
        let Some(key) = StreamKey::new(vehicle_id, channel) else {
            return;
        };
        let pull = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.pulls.remove(&key));
        if let Some(pull) = pull {
            tracing::info!(stream = %key, "channel source changed: RTSP pull stopped");
            pull.handle.stop();
        }
    }

    /// Stop every pull (node shutdown).
    pub fn stop_all(&self) {
        self.sources.edge.stop_all();
        if let Ok(mut s) = self.state.lock() {
            for (_, pull) in s.pulls.drain() {
                pull.handle.stop();
            }
        }
    }
}

impl StreamActivator for OnDemand {
    fn viewer_waiting(&self, key: &StreamKey) -> bool {
        let Ok(s) = self.state.lock() else {
            return false;
        };
        s.pulls.contains_key(key)
            || self.sources.edge.pulling(key)
            || s.device_starts
                .get(key)
                .is_some_and(|at| at.elapsed() < self.start_timeout())
    }

    fn idle(&self, key: &StreamKey) {
        if self.sources.edge.idle(key) {
            return;
        }
        let pull = self.state.lock().ok().and_then(|mut s| {
            s.device_starts.remove(key);
            s.pulls.remove(key)
        });
        match pull {
            Some(pull) => {
                tracing::info!(stream = %key, "no viewers: RTSP pull stopped");
                pull.handle.stop();
            }
            None => {
                tracing::info!(stream = %key, "no viewers: live.stop sent");
                self.command(key, "live.stop", json!({"channel": key.channel}));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! On-demand starts driven through fake ports: no hub, no database.
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::cluster::streams::LocalStreams;
    use crate::live::ports::{BackendResult, LiveAllowance, LiveCount, Plans, TrafficCount};
    use futures_util::future::BoxFuture;
    use tokio::sync::oneshot;

    /// A plan of `minutes` with `used` seconds stored.
    struct Plan {
        minutes: i64,
        used: i64,
    }

    impl Plans for Plan {
        fn add_usage(
            &self,
            _: Vec<TrafficCount>,
            _: Vec<LiveCount>,
        ) -> BoxFuture<'_, BackendResult<()>> {
            Box::pin(std::future::ready(Ok(())))
        }
        fn live_allowance(&self, _: i64, _: i64) -> BoxFuture<'_, BackendResult<LiveAllowance>> {
            Box::pin(std::future::ready(Ok(LiveAllowance {
                stored_seconds: self.used,
                minutes_per_month: Some(self.minutes),
            })))
        }
    }

    /// No camera configured on any channel.
    struct NoCameras;

    impl Channels for NoCameras {
        fn rtsp_url(&self, _: i64, _: String) -> BoxFuture<'_, BackendResult<Option<String>>> {
            Box::pin(std::future::ready(Ok(None)))
        }
    }

    /// A device that is online or not, recording the commands it gets.
    #[derive(Default)]
    struct Device {
        online: AtomicBool,
        sent: Mutex<Vec<(&'static str, Value)>>,
    }

    impl DeviceLink for Device {
        fn is_online(&self, _: i64) -> BoxFuture<'_, bool> {
            Box::pin(std::future::ready(self.online.load(Ordering::SeqCst)))
        }
        fn command(
            &self,
            _: i64,
            name: &'static str,
            args: Value,
        ) -> Option<oneshot::Receiver<Value>> {
            self.sent.lock().unwrap().push((name, args));
            None
        }
    }

    fn on_demand(device: Arc<Device>, plan: Plan) -> Arc<OnDemand> {
        let config = Config::default();
        let metrics = crate::metrics::Metrics::new().unwrap();
        let streams = Streams::start(
            &actix_rt::Arbiter::current(),
            config.live.clone(),
            metrics.live.clone(),
        );
        let edge = Edge::new(
            Arc::new(LocalStreams::new("n1")),
            streams.clone(),
            String::new(),
        );
        let sources = Sources {
            devices: device,
            channels: Arc::new(NoCameras),
            edge,
            jwt: JwtKeys::new(b"test secret", 60),
        };
        let usage = Arc::new(Usage::new(Arc::new(plan)));
        OnDemand::new(&config, sources, streams, usage)
    }

    #[test]
    fn sources_are_started_through_the_ports() {
        actix_rt::System::new().block_on(async {
            let key = StreamKey::parse("7-front").unwrap();
            // Minutes used up: refused, nothing sent.
            let device = Arc::new(Device::default());
            device.online.store(true, Ordering::SeqCst);
            let od = on_demand(
                device.clone(),
                Plan {
                    minutes: 1,
                    used: 60,
                },
            );
            let err = od.prepare(&key).await.unwrap_err();
            assert!(matches!(err, OnDemandError::QuotaExceeded), "{err}");
            assert!(device.sent.lock().unwrap().is_empty());

            // No camera, device offline: nothing can start it.
            let device = Arc::new(Device::default());
            let od = on_demand(
                device.clone(),
                Plan {
                    minutes: 0,
                    used: 0,
                },
            );
            let err = od.prepare(&key).await.unwrap_err();
            assert!(matches!(err, OnDemandError::VehicleOffline), "{err}");

            // Online: `live.start` once with a publish URL for this key;
            // the viewer is told to wait.
            device.online.store(true, Ordering::SeqCst);
            od.prepare(&key).await.unwrap();
            od.prepare(&key).await.unwrap();
            assert!(od.viewer_waiting(&key));
            {
                let sent = device.sent.lock().unwrap();
                assert_eq!(sent.len(), 1, "{sent:?}");
                let (name, args) = &sent[0];
                assert_eq!(*name, "live.start");
                assert_eq!(args["channel"], "front");
                let url = args["url"].as_str().unwrap();
                assert!(url.contains("/live/7-front?token="), "{url}");
            }
            // Idle: `live.stop`.
            od.idle(&key);
            let sent = device.sent.lock().unwrap();
            assert_eq!(sent.last().unwrap().0, "live.stop");
        });
    }
}
