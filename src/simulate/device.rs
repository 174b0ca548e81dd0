//! A simulated blackbox on `/device`: connects with its serial and device
//! token, waits for the start signal, then drives its route and sends a
//! `loc` batch every `--interval` (and Poisson-timed `event`s), each with an
//! ack id; measures send-to-ack latency, counts acks by outcome, answers
//! the hub's `command`s with `{"ok":true,...}`. On the stop signal it sends
//! nothing new, waits up to `--ack-timeout` for its outstanding acks, then
//! publishes how many batches and events the hub acknowledged: what every
//! phone watching its vehicle must have received.
//!
//! Point times: the newest point of a batch is the wall clock when the
//! batch is built (so end-to-end latency is arrival minus the newest `t`);
//! the batch's points are spread evenly (at most 1 s apart) back over the
//! time since the previous batch, so every `t` of a vehicle is unique and
//! increasing, as the hub's `(vehicle, t)` key wants. The route itself
//! advances one second of simulated driving per point.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep_until};

use super::Shared;
use super::client::{self, Burst, Connection, Packet, SioType};
use super::route::Route;
use super::stats::unix_us;

const NSP: &str = "/device";
const EVENT_TYPES: &[&str] = &[
    "impact",
    "harsh_brake",
    "harsh_accel",
    "overspeed",
    "parking_motion",
];

/// Which device and vehicle.
pub struct DeviceSpec {
    pub index: usize,
    /// Index of the vehicle in the fleet.
    pub vehicle: usize,
    pub serial: String,
    pub token: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Stopping,
    Published,
}

enum Kind {
    Loc { points: u64 },
    Event,
}

struct Pending {
    id: u64,
    sent: Instant,
    kind: Kind,
}

/// Run one device until the close signal (or the deadline).
pub(crate) async fn run(spec: DeviceSpec, sh: Arc<Shared>) {
    let conn = connect(&spec, &sh).await;
    sh.devices_ready.send_modify(|n| *n += 1);
    let Some(conn) = conn else {
        publish(&sh, spec.vehicle, 0, 0, 0);
        return;
    };
    let mut device = Device::new(spec, sh);
    device.drive(conn).await;
}

async fn connect(spec: &DeviceSpec, sh: &Shared) -> Option<Connection> {
    let _slot = tokio::select! {
        s = sh.connect_slots.acquire() => s.ok()?,
        _ = sh.hard.cancelled() => return None,
    };
    let auth = serde_json::json!({"serial": spec.serial, "token": spec.token}).to_string();
    let started = std::time::Instant::now();
    sh.stats.device_span.start(unix_us());
    let attempt = Connection::connect(&sh.target, spec.index, NSP, &auth);
    let result = tokio::select! {
        r = tokio::time::timeout(sh.opts.connect_timeout, attempt) => r,
        _ = sh.hard.cancelled() => return None,
    };
    match result {
        Ok(Ok(conn)) => {
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            sh.stats.device_connect.record(spec.index, us);
            sh.stats.device_span.end(unix_us());
            sh.devices_connected.fetch_add(1, Ordering::Relaxed);
            Some(conn)
        }
        Ok(Err(e)) => {
            tracing::debug!(serial = %spec.serial, error = %e, "device connect failed");
            sh.stats.error(format!("device:{}", e.kind()));
            None
        }
        Err(_) => {
            sh.stats.error("device:connect:timeout");
            None
        }
    }
}

/// Store what the hub acknowledged for this vehicle and count the device
/// as done.
fn publish(sh: &Shared, vehicle: usize, loc_ok: u64, events_ok: u64, unacked: u64) {
    if let Some(n) = sh.expected_loc.get(vehicle) {
        n.store(loc_ok, Ordering::Relaxed);
    }
    if let Some(n) = sh.expected_events.get(vehicle) {
        n.store(events_ok, Ordering::Relaxed);
    }
    sh.stats.unacked_at_end.add(unacked);
    sh.devices_done.send_modify(|n| *n += 1);
}

struct Device {
    spec: DeviceSpec,
    sh: Arc<Shared>,
    rng: StdRng,
    route: Route,
    state: State,
    pending: Vec<Pending>,
    inflight_loc: usize,
    next_id: u64,
    /// Newest point time sent, Unix ms.
    last_t: i64,
    next_loc: Instant,
    next_event: Instant,
    stop_deadline: Instant,
    loc_ok: u64,
    events_ok: u64,
}

impl Device {
    fn new(spec: DeviceSpec, sh: Arc<Shared>) -> Self {
        let seed = sh.seed ^ (spec.index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = StdRng::seed_from_u64(seed);
        let route = Route::new(&mut rng);
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        Self {
            spec,
            sh,
            rng,
            route,
            state: State::Waiting,
            pending: Vec::new(),
            inflight_loc: 0,
            next_id: 1,
            last_t: 0,
            next_loc: far,
            next_event: far,
            stop_deadline: far,
            loc_ok: 0,
            events_ok: 0,
        }
    }

    async fn drive(&mut self, mut conn: Connection) {
        let sh = Arc::clone(&self.sh);
        let heartbeat = sleep_until(Instant::now() + conn.heartbeat);
        tokio::pin!(heartbeat);
        let timer = sleep_until(self.next_wake());
        tokio::pin!(timer);
        // Created once, not per iteration (each creation locks the token).
        let hard = sh.hard.cancelled();
        let close = sh.close.cancelled();
        let start = sh.start.cancelled();
        let stop = sh.stop.cancelled();
        tokio::pin!(hard, close, start, stop);
        let mut closing = false;
        loop {
            timer.as_mut().reset(self.next_wake());
            let timed = matches!(self.state, State::Running | State::Stopping);
            tokio::select! {
                biased;
                _ = &mut hard => break,
                _ = &mut close, if self.state == State::Published => {
                    closing = true;
                    break;
                }
                _ = &mut start, if self.state == State::Waiting => self.begin(),
                _ = &mut stop, if self.state == State::Running => {
                    self.state = State::Stopping;
                    self.stop_deadline = Instant::now() + sh.opts.ack_timeout;
                }
                _ = &mut timer, if timed => self.on_timer(&mut conn),
                _ = &mut heartbeat => {
                    sh.stats.error("device:heartbeat_timeout");
                    break;
                }
                incoming = conn.next() => {
                    let burst = conn.read_burst(
                        incoming,
                        heartbeat.as_mut(),
                        &sh.stats,
                        "device",
                        |frame, conn| self.on_frame(frame, conn),
                    );
                    match burst {
                        Burst::Alive => {}
                        Burst::Over => break,
                        Burst::Failed(e) => {
                            tracing::debug!(serial = %self.spec.serial, error = %e, "device read failed");
                            break;
                        }
                    }
                }
            }
            if self.state == State::Stopping
                && (self.pending.is_empty() || Instant::now() >= self.stop_deadline)
            {
                self.finish();
            }
            if conn.has_queued()
                && let Err(e) = conn.flush().await
            {
                tracing::debug!(serial = %self.spec.serial, error = %e, "device write failed");
                sh.stats.error("device:write_error");
                break;
            }
        }
        if self.state != State::Published {
            self.finish();
        }
        if closing {
            conn.close().await;
        } else if !sh.hard.is_cancelled() {
            sh.stats.sessions_dropped.inc();
        }
    }

    fn next_wake(&self) -> Instant {
        match self.state {
            State::Running => self.next_loc.min(self.next_event),
            State::Stopping => self.stop_deadline,
            State::Waiting | State::Published => self.stop_deadline.max(self.next_loc),
        }
    }

    fn begin(&mut self) {
        let now = Instant::now();
        let interval = self.sh.opts.interval;
        // Spread the devices' sends over the interval.
        self.next_loc = now + interval.mul_f64(self.rng.random::<f64>());
        self.next_event = now + self.event_gap();
        self.last_t = crate::util::now_ms() - i64::try_from(interval.as_millis()).unwrap_or(0);
        self.state = State::Running;
    }

    /// Time to the next random event (exponential), or never.
    fn event_gap(&mut self) -> Duration {
        let per_second = self.sh.opts.event_rate / 60.0;
        if per_second <= 0.0 {
            return Duration::from_secs(86_400 * 365);
        }
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        Duration::try_from_secs_f64(-u.ln() / per_second)
            .unwrap_or(Duration::from_secs(86_400 * 365))
    }

    fn finish(&mut self) {
        publish(
            &self.sh,
            self.spec.vehicle,
            self.loc_ok,
            self.events_ok,
            self.pending.len() as u64,
        );
        self.state = State::Published;
    }

    fn on_timer(&mut self, conn: &mut Connection) {
        if self.state != State::Running {
            return;
        }
        let now = Instant::now();
        if now >= self.next_loc {
            if self.inflight_loc >= self.sh.opts.max_inflight {
                self.sh.stats.skipped_inflight.inc();
            } else {
                self.send_loc(conn);
            }
            let interval = self.sh.opts.interval;
            self.next_loc += interval;
            if self.next_loc <= now {
                // Fell a whole interval behind (a stalled simulator): do not
                // burst to catch up.
                self.next_loc = now + interval;
            }
        }
        if now >= self.next_event {
            self.send_event(conn);
            self.next_event = now + self.event_gap();
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn send_loc(&mut self, conn: &mut Connection) {
        let id = self.take_id();
        let points = self.sh.opts.points;
        let (frame, newest) = build_loc(
            id,
            points,
            self.last_t,
            crate::util::now_ms(),
            &mut self.route,
            &mut self.rng,
        );
        self.last_t = newest;
        conn.queue(frame);
        let stats = &self.sh.stats;
        stats.batches_sent.inc();
        stats.points_sent.add(points as u64);
        if stats.window.contains(unix_us()) {
            stats.batches_sent_window.inc();
        }
        self.pending.push(Pending {
            id,
            sent: Instant::now(),
            kind: Kind::Loc {
                points: points as u64,
            },
        });
        self.inflight_loc += 1;
    }

    fn send_event(&mut self, conn: &mut Connection) {
        let id = self.take_id();
        let kind = EVENT_TYPES[self.rng.random_range(0..EVENT_TYPES.len())];
        let fix = self.route.fix();
        let g: f64 = self.rng.random_range(0.3..4.0);
        let arg = format!(
            r#"{{"type":"{kind}","t":{},"lat":{:.6},"lon":{:.6},"meta":{{"g":{g:.2},"spd":{:.1},"source":"simulate"}}}}"#,
            crate::util::now_ms(),
            fix.lat,
            fix.lon,
            fix.spd
        );
        conn.queue(client::encode_event(NSP, Some(id), "event", &arg));
        self.sh.stats.events_sent.inc();
        self.pending.push(Pending {
            id,
            sent: Instant::now(),
            kind: Kind::Event,
        });
    }

    /// Handle one frame; false when the session is over.
    fn on_frame(&mut self, frame: &str, conn: &mut Connection) -> bool {
        let stats = &self.sh.stats;
        match client::parse(frame) {
            Ok(Packet::Ping) => conn.queue(client::PONG.to_string()),
            Ok(Packet::Close) => {
                stats.error("device:closed_by_hub");
                return false;
            }
            Ok(Packet::Message(p)) if p.nsp == NSP => match p.kind {
                SioType::Ack => match p.id {
                    Some(id) => self.on_ack(id, p.data),
                    None => stats.error("device:ack_without_id"),
                },
                SioType::Event => self.on_event(p.id, p.data, conn),
                SioType::Disconnect => {
                    stats.error("device:disconnected_by_hub");
                    return false;
                }
                _ => {}
            },
            Ok(_) => {}
            Err(_) => stats.error("device:bad_frame"),
        }
        true
    }

    fn on_ack(&mut self, id: u64, data: &str) {
        let stats = &self.sh.stats;
        let Some(pos) = self.pending.iter().position(|p| p.id == id) else {
            stats.error("device:ack_unknown_id");
            return;
        };
        let pending = self.pending.swap_remove(pos);
        let body = client::ack_arg(data).unwrap_or(serde_json::Value::Null);
        let ok = body["ok"].as_bool() == Some(true);
        let error = || client::sanitize(body["error"].as_str().unwrap_or("malformed_ack"));
        match pending.kind {
            Kind::Loc { points } => {
                self.inflight_loc = self.inflight_loc.saturating_sub(1);
                if ok {
                    self.loc_ok += 1;
                    let stored = body["stored"].as_u64().unwrap_or(0);
                    stats.batches_acked.inc();
                    stats.points_acked.add(stored);
                    if stored != points {
                        stats.error("loc:stored_mismatch");
                    }
                    let now = unix_us();
                    if stats.window.contains(now) {
                        let us =
                            u64::try_from(pending.sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        stats.ack.record(self.spec.index, us);
                        stats.acks_window.inc();
                        stats.points_acked_window.add(stored);
                    }
                } else {
                    stats.error(format!("loc:{}", error()));
                }
            }
            Kind::Event => {
                if ok {
                    self.events_ok += 1;
                    stats.events_acked.inc();
                } else {
                    stats.error(format!("event:{}", error()));
                }
            }
        }
    }

    fn on_event(&mut self, id: Option<u64>, data: &str, conn: &mut Connection) {
        let Some((name, args)) = client::split_event(data) else {
            self.sh.stats.error("device:bad_event");
            return;
        };
        if name != "command" {
            return;
        }
        self.sh.stats.commands_answered.inc();
        let Some(id) = id else {
            return; // nobody waits for an answer
        };
        let command: serde_json::Value = serde_json::from_str(args).unwrap_or_default();
        let reply = serde_json::json!({
            "ok": true,
            "id": command["id"],
            "name": command["name"],
            "result": "simulated",
        });
        conn.queue(client::encode_ack(NSP, id, &reply.to_string()));
    }
}

/// One `loc` frame with ack `id`: `points` fixes from the route, times
/// unique and increasing after `last_t`, the newest at `now_ms` (or just
/// after `last_t` when the clock has not moved far enough). Returns the
/// frame and its newest point time.
fn build_loc(
    id: u64,
    points: usize,
    last_t: i64,
    now_ms: i64,
    route: &mut Route,
    rng: &mut impl Rng,
) -> (String, i64) {
    let n = points.max(1) as i64;
    let newest = now_ms.max(last_t + n);
    let step = ((newest - last_t) / n).clamp(1, 1000);
    let mut out = String::with_capacity(40 + points * 96);
    client::begin_event(&mut out, NSP, Some(id), "loc");
    out.push_str(r#"{"points":["#);
    for i in 0..n {
        let t = newest - (n - 1 - i) * step;
        let f = route.step(rng);
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"t":{t},"lat":{:.6},"lon":{:.6},"spd":{:.1},"hdg":{:.1},"alt":{:.1}}}"#,
            f.lat, f.lon, f.spd, f.hdg, f.alt
        );
    }
    out.push_str("]}");
    client::finish_event(&mut out);
    (out, newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_frames_are_valid_with_unique_increasing_times() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut route = Route::new(&mut rng);
        let mut last = 1_700_000_000_000 - 1000;
        let mut seen = Vec::new();
        for (id, now) in [
            (1, 1_700_000_000_000),
            (2, 1_700_000_001_000),
            (3, 1_700_000_001_010),
        ] {
            let (frame, newest) = build_loc(id, 60, last, now, &mut route, &mut rng);
            let p = match client::parse(&frame).unwrap() {
                Packet::Message(p) => p,
                _ => panic!(),
            };
            assert_eq!((p.kind, p.nsp, p.id), (SioType::Event, NSP, Some(id)));
            let (name, args) = client::split_event(p.data).unwrap();
            assert_eq!(name, "loc");
            let v: serde_json::Value = serde_json::from_str(args).unwrap();
            let pts = v["points"].as_array().unwrap();
            assert_eq!(pts.len(), 60);
            for pt in pts {
                let t = pt["t"].as_i64().unwrap();
                assert!(t > last, "{t} <= {last}");
                seen.push(t);
                for key in ["lat", "lon", "spd", "hdg", "alt"] {
                    assert!(pt[key].is_f64() || pt[key].is_i64(), "{pt}");
                }
            }
            assert_eq!(pts.last().unwrap()["t"].as_i64(), Some(newest));
            assert_eq!(newest, now.max(last + 60));
            last = newest;
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, seen, "times unique and increasing");
    }

    #[test]
    fn one_point_batches_at_the_clock() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut route = Route::new(&mut rng);
        let (frame, newest) = build_loc(9, 1, 100, 5000, &mut route, &mut rng);
        assert_eq!(newest, 5000);
        assert!(
            frame.starts_with(r#"42/device,9["loc",{"points":[{"t":5000,"lat":"#),
            "{frame}"
        );
        assert!(frame.ends_with("}]}]"), "{frame}");
    }
}
