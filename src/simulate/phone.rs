//! A simulated phone on `/app`: connects with its owner's access token,
//! emits `watch` `{"vehicle": id}` with an ack and expects `{"ok":true}`,
//! then counts the `loc` and `event` messages of its vehicle until the
//! close signal. For each `loc` that arrives inside the measured window it
//! records end-to-end latency: arrival (wall clock) minus the newest point
//! time `t` (Unix ms, so figures carry up to 1 ms of truncation, never
//! less than the truth).
//!
//! A phone reads thousands of messages per second on a shared core, so the
//! `loc` path scans the frame for `"vehicle":` and the largest `"t":`
//! instead of building a JSON tree; anything it cannot scan goes through
//! serde_json.

use std::sync::Arc;
use std::time::Instant;

use tokio::time::sleep_until;

use super::Shared;
use super::client::{self, Burst, Connection, Incoming, Packet, SioType};
use super::stats::unix_us;

const NSP: &str = "/app";
const WATCH_ACK_ID: u64 = 1;

/// Which phone, which vehicle, whose token.
pub struct PhoneSpec {
    pub index: usize,
    /// Index of the vehicle in the fleet.
    pub vehicle: usize,
    pub vehicle_id: i64,
    pub token: Arc<str>,
    /// Spreads source addresses past the devices' sockets.
    pub socket_index: usize,
}

/// What one phone saw.
#[derive(Debug, Clone, Default)]
pub struct PhoneOutcome {
    pub vehicle: usize,
    pub watching: bool,
    /// `loc` messages for its vehicle, whole run.
    pub loc: u64,
    /// `event` messages for its vehicle, whole run.
    pub events: u64,
}

/// Run one phone until the close signal (or the deadline).
pub(crate) async fn run(spec: PhoneSpec, sh: Arc<Shared>) -> PhoneOutcome {
    let mut outcome = PhoneOutcome {
        vehicle: spec.vehicle,
        ..Default::default()
    };
    let conn = connect(&spec, &sh).await;
    sh.phones_ready.send_modify(|n| *n += 1);
    let Some(mut conn) = conn else {
        return outcome;
    };
    outcome.watching = true;
    sh.phones_watching
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    let heartbeat = sleep_until(tokio::time::Instant::now() + conn.heartbeat);
    tokio::pin!(heartbeat);
    // Created once: a fresh `cancelled()` per message would lock the
    // token's shared list twice per message. `close` is a child of the
    // deadline token, so it also fires on the deadline.
    let close = sh.close.cancelled();
    tokio::pin!(close);
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            incoming = conn.next() => {
                let burst = conn.read_burst(
                    incoming,
                    heartbeat.as_mut(),
                    &sh.stats,
                    "phone",
                    |frame, _| on_frame(frame, &spec, &sh, &mut outcome),
                );
                match burst {
                    Burst::Alive => {}
                    Burst::Over => break,
                    Burst::Failed(e) => {
                        tracing::debug!(phone = spec.index, error = %e, "phone read failed");
                        break;
                    }
                }
                // Frames first (biased), so under a flood look at the
                // close signal here too.
                if sh.close.is_cancelled() {
                    closing = !sh.hard.is_cancelled();
                    break;
                }
            }
            _ = &mut close => {
                closing = !sh.hard.is_cancelled();
                break;
            }
            _ = &mut heartbeat => {
                sh.stats.error("phone:heartbeat_timeout");
                break;
            }
        }
        if conn.has_queued()
            && let Err(e) = conn.flush().await
        {
            tracing::debug!(phone = spec.index, error = %e, "phone write failed");
            sh.stats.error("phone:write_error");
            break;
        }
    }
    if closing {
        conn.close().await;
    } else if !sh.hard.is_cancelled() {
        sh.stats.sessions_dropped.inc();
    }
    outcome
}

/// Connect, watch, wait for the watch ack; records the connect latency.
async fn connect(spec: &PhoneSpec, sh: &Shared) -> Option<Connection> {
    let _slot = tokio::select! {
        s = sh.connect_slots.acquire() => s.ok()?,
        _ = sh.hard.cancelled() => return None,
    };
    let started = Instant::now();
    sh.stats.phone_span.start(unix_us());
    let attempt = async {
        let auth = serde_json::json!({ "token": &*spec.token }).to_string();
        let mut conn = Connection::connect(&sh.phone_target, spec.socket_index, NSP, &auth)
            .await
            .map_err(|e| format!("phone:{}", e.kind()))?;
        let watch = format!(r#"{{"vehicle":{}}}"#, spec.vehicle_id);
        conn.queue(client::encode_event(
            NSP,
            Some(WATCH_ACK_ID),
            "watch",
            &watch,
        ));
        conn.flush()
            .await
            .map_err(|_| "phone:write_error".to_string())?;
        loop {
            let frame = match conn.next().await {
                Incoming::Text(t) => t,
                Incoming::Closed => return Err("phone:closed_during_watch".to_string()),
                Incoming::Error(_) => return Err("phone:read_error".to_string()),
            };
            match client::parse(&frame) {
                Ok(Packet::Ping) => {
                    conn.queue(client::PONG.to_string());
                    conn.flush()
                        .await
                        .map_err(|_| "phone:write_error".to_string())?;
                }
                Ok(Packet::Message(p))
                    if p.nsp == NSP && p.kind == SioType::Ack && p.id == Some(WATCH_ACK_ID) =>
                {
                    let body = client::ack_arg(p.data).unwrap_or_default();
                    if body["ok"].as_bool() == Some(true) {
                        return Ok(conn);
                    }
                    let code = body["error"].as_str().unwrap_or("malformed_ack");
                    return Err(format!("watch:{}", client::sanitize(code)));
                }
                Ok(Packet::Message(p)) if p.nsp == NSP && p.kind == SioType::Disconnect => {
                    return Err("phone:disconnected_during_watch".to_string());
                }
                Ok(Packet::Close) => return Err("phone:closed_during_watch".to_string()),
                _ => {}
            }
        }
    };
    let result = tokio::select! {
        r = tokio::time::timeout(sh.opts.connect_timeout, attempt) => r,
        _ = sh.hard.cancelled() => return None,
    };
    match result {
        Ok(Ok(conn)) => {
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            sh.stats.phone_connect.record(spec.index, us);
            sh.stats.phone_span.end(unix_us());
            Some(conn)
        }
        Ok(Err(kind)) => {
            tracing::debug!(phone = spec.index, error = %kind, "phone connect failed");
            sh.stats.error(kind);
            None
        }
        Err(_) => {
            sh.stats.error("phone:connect:timeout");
            None
        }
    }
}

/// Handle one frame (not a ping); false when the session is over.
fn on_frame(frame: &str, spec: &PhoneSpec, sh: &Shared, outcome: &mut PhoneOutcome) -> bool {
    let stats = &sh.stats;
    let p = match client::parse(frame) {
        Ok(Packet::Message(p)) if p.nsp == NSP => p,
        Ok(Packet::Close) => {
            stats.error("phone:closed_by_hub");
            return false;
        }
        Ok(_) => return true,
        Err(_) => {
            stats.error("phone:bad_frame");
            return true;
        }
    };
    match p.kind {
        SioType::Event => {}
        SioType::Disconnect => {
            stats.error("phone:disconnected_by_hub");
            return false;
        }
        _ => return true,
    }
    let now = unix_us();
    if let Some(args) = p.data.strip_prefix(r#"["loc","#) {
        let scanned = scan_loc(args).or_else(|| parse_loc(args));
        match scanned {
            Some((vehicle, newest)) if vehicle == spec.vehicle_id => {
                outcome.loc += 1;
                if stats.window.contains(now) {
                    stats.loc_delivered_window.inc();
                    let t_us = u64::try_from(newest).unwrap_or(0).saturating_mul(1000);
                    stats.e2e.record(spec.index, now.saturating_sub(t_us));
                }
            }
            Some(_) => stats.other_messages.inc(),
            None => stats.error("phone:bad_loc"),
        }
        return true;
    }
    match client::split_event(p.data) {
        Some(("event", args)) => {
            if int_after(args, r#""vehicle""#) == Some(spec.vehicle_id) {
                outcome.events += 1;
                if stats.window.contains(now) {
                    stats.events_delivered_window.inc();
                }
            } else {
                stats.other_messages.inc();
            }
        }
        Some(_) => stats.other_messages.inc(),
        None => stats.error("phone:bad_event"),
    }
    true
}

/// Fast path: the vehicle and the largest point time of a `loc` payload.
fn scan_loc(args: &str) -> Option<(i64, i64)> {
    let vehicle = int_after(args, r#""vehicle""#)?;
    let mut newest: Option<i64> = None;
    let mut rest = args;
    while let Some(pos) = rest.find(r#""t""#) {
        rest = &rest[pos + 3..];
        if let Some(t) = int_value(rest) {
            newest = Some(newest.map_or(t, |n| n.max(t)));
        }
    }
    Some((vehicle, newest?))
}

/// Slow path: the same through serde_json (also for the first argument of
/// several, or odd spacing).
fn parse_loc(args: &str) -> Option<(i64, i64)> {
    let v: serde_json::Value = serde_json::Deserializer::from_str(args)
        .into_iter::<serde_json::Value>()
        .next()?
        .ok()?;
    let vehicle = v["vehicle"].as_i64()?;
    let newest = v["points"]
        .as_array()?
        .iter()
        .filter_map(|p| {
            p["t"]
                .as_i64()
                .or_else(|| p["t"].as_f64().map(|f| f as i64))
        })
        .max()?;
    Some((vehicle, newest))
}

/// The integer after the first `key` (a quoted JSON key) and its colon.
fn int_after(s: &str, key: &str) -> Option<i64> {
    let pos = s.find(key)?;
    int_value(&s[pos + key.len()..])
}

/// `<ws>:<ws><integer>` at the start of `s` (a fraction is cut off).
fn int_value(s: &str) -> Option<i64> {
    let s = s.trim_start().strip_prefix(':')?.trim_start();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 {
        return None;
    }
    let n: i64 = digits[..len].parse().ok()?;
    Some(if negative { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_vehicle_and_newest_time() {
        let args = r#"{"vehicle":42,"points":[{"t":1700000000000,"lat":37.5,"lon":127.0,"alt":3.0},{"t":1700000001000,"lat":37.5,"lon":127.0}]}"#;
        assert_eq!(scan_loc(args), Some((42, 1_700_000_001_000)));
        assert_eq!(parse_loc(args), Some((42, 1_700_000_001_000)));
        // Order and spacing do not matter; "alt" or "dt" keys do not confuse it.
        let args = r#"{ "points" : [ {"t" : 5, "dt": 99}, {"t": 3} ], "vehicle" : 7 }"#;
        assert_eq!(scan_loc(args), Some((7, 5)));
        assert_eq!(parse_loc(args), Some((7, 5)));
    }

    #[test]
    fn scan_failures_fall_back_or_fail() {
        assert_eq!(scan_loc(r#"{"vehicle":1,"points":[]}"#), None);
        assert_eq!(parse_loc(r#"{"vehicle":1,"points":[]}"#), None);
        assert_eq!(scan_loc(r#"{"points":[{"t":1}]}"#), None);
        // Float times: the scanner cuts the fraction, serde too.
        assert_eq!(
            scan_loc(r#"{"vehicle":1,"points":[{"t":12.7}]}"#),
            Some((1, 12))
        );
        assert_eq!(
            parse_loc(r#"{"vehicle":1,"points":[{"t":12.7}]}"#),
            Some((1, 12))
        );
        // Trailing arguments after the first are ignored by the slow path.
        assert_eq!(
            parse_loc(r#"{"vehicle":2,"points":[{"t":1}]},{"x":1}"#),
            Some((2, 1))
        );
        assert_eq!(parse_loc("garbage"), None);
    }

    #[test]
    fn integers() {
        assert_eq!(int_value(":12,"), Some(12));
        assert_eq!(int_value(" : -3}"), Some(-3));
        assert_eq!(int_value(":\"x\""), None);
        assert_eq!(int_value("12"), None);
        assert_eq!(int_value(":99999999999999999999"), None);
        assert_eq!(
            int_after(r#"{"id":3,"vehicle":9}"#, r#""vehicle""#),
            Some(9)
        );
        assert_eq!(int_after(r#"{"id":3}"#, r#""vehicle""#), None);
    }
}
