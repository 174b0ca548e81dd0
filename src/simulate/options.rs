//! What a simulation does: the `roadhub simulate` flags, also the library's
//! [`SimulateOptions`], and the duration syntax they use ("500ms", "1s",
//! "2m", "1.5s").

use std::time::Duration;

/// Options of one simulation run. Every field is a `roadhub simulate` flag;
/// [`SimulateOptions::default`] equals the command line with no flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateOptions {
    /// Base URL of the hub (REST at URL/api/v1, Socket.IO at URL/socket.io/).
    /// Plain http only.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub url: String,

    /// Base URL the phones connect to, when it is not --url (another node
    /// of a cluster: devices on one node, phones on another). Setup (users,
    /// vehicles, logins) and the devices use --url.
    #[arg(long, value_name = "URL")]
    pub phone_url: Option<String>,

    /// Simulated blackboxes, one vehicle each. With --connect-only the
    /// vehicles are created (for the phones to watch) but no device connects.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub devices: usize,

    /// Phones watching each vehicle; every phone logs in as the vehicle's
    /// owner (one login per user, shared by that user's phones).
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub phones_per_vehicle: usize,

    /// Total phones instead of --phones-per-vehicle, spread round-robin over
    /// the vehicles (phone i watches vehicle i mod --devices).
    #[arg(long, value_name = "N")]
    pub phones: Option<usize>,

    /// Vehicles owned by each simulated user (users = devices / this,
    /// rounded up). 1 gives every vehicle its own owner.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub vehicles_per_user: usize,

    /// GPS points in each `loc` batch (1 to 600). The route advances one
    /// second of simulated driving per point.
    #[arg(long, default_value_t = 60, value_name = "P")]
    pub points: usize,

    /// Time between two `loc` batches of one device (e.g. 50ms, 1s, 60s).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// Random `event`s (impact, harsh braking, ...) per device per minute
    /// (Poisson; 0 turns them off).
    #[arg(long, default_value_t = 1.0, value_name = "RATE")]
    pub event_rate: f64,

    /// Length of the measured phase (rates, latency percentiles, CPU).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,

    /// Traffic before the measured phase starts (counted for losses, not
    /// for rates or latency).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub warmup: Duration,

    /// After the devices stop and their last acks arrive, how long phones
    /// keep counting deliveries before the expected/delivered comparison.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain: Duration,

    /// After the measured phase, how long a device waits for its
    /// outstanding acks; later ones count as unacknowledged.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub ack_timeout: Duration,

    /// Hard deadline for the whole run, setup included; when it passes,
    /// everything stops and the partial report says `timed_out`. Default:
    /// warmup + duration + drain + ack timeout + 5 minutes.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,

    /// Idle capacity mode: phones connect and watch one vehicle each, then
    /// stay idle for --duration; no device connects, nothing is sent.
    /// Reports connects/s and connection errors.
    #[arg(long)]
    pub connect_only: bool,

    /// Unacknowledged `loc` batches one device may have in flight; a send
    /// that would exceed it is skipped and counted.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_inflight: usize,

    /// Handshakes (TCP, WebSocket, Socket.IO connect, watch) in progress at
    /// once.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub connect_concurrency: usize,

    /// Time one connection may take from TCP connect to its Socket.IO
    /// connect (and, for phones, the watch ack).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// Spread client sockets over this many source addresses 127.0.0.2,
    /// 127.0.0.3, ... (at most 250) so that many connections do not exhaust
    /// the ephemeral ports of one address; 0 lets the OS choose. Default:
    /// 250 when the hub is on loopback and over 10,000 sockets are opened,
    /// else 0.
    #[arg(long, value_name = "N")]
    pub source_addrs: Option<u32>,

    /// Reuse users and vehicles from this JSON file (written by
    /// --save-credentials) instead of registering new ones.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<std::path::PathBuf>,

    /// After setup, write the users and vehicles used (with passwords and
    /// device tokens) to this JSON file for later --credentials runs.
    #[arg(long, value_name = "FILE")]
    pub save_credentials: Option<std::path::PathBuf>,

    /// Seed of the random routes, events and start phases (default: random).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Process id of the hub when it runs on this machine: also report its
    /// RSS (before connecting, connected, at the end: bytes per session)
    /// and its CPU over the measured window (per delivered message, per
    /// acknowledged point), read from /proc.
    #[arg(long, value_name = "PID")]
    pub hub_pid: Option<u32>,

    /// Print exactly one JSON line (the report) instead of the summary.
    #[arg(long)]
    pub json: bool,

    /// Worker threads of the simulator's tokio runtime (the CLI's; the
    /// library runs on the caller's runtime). Keep it low when the hub runs
    /// on the same cores.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,

    #[command(flatten)]
    pub video: super::video::VideoOptions,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080".into(),
            phone_url: None,
            devices: 10,
            phones_per_vehicle: 1,
            phones: None,
            vehicles_per_user: 1,
            points: 60,
            interval: Duration::from_secs(1),
            event_rate: 1.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            drain: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(10),
            timeout: None,
            connect_only: false,
            max_inflight: 16,
            connect_concurrency: 128,
            connect_timeout: Duration::from_secs(10),
            source_addrs: None,
            credentials: None,
            save_credentials: None,
            seed: None,
            hub_pid: None,
            json: false,
            threads: 1,
            video: super::video::VideoOptions::default(),
        }
    }
}

impl SimulateOptions {
    /// Phones in total.
    pub fn phone_count(&self) -> usize {
        self.phones
            .unwrap_or(self.devices.saturating_mul(self.phones_per_vehicle))
    }

    /// Users that own the vehicles.
    pub fn user_count(&self) -> usize {
        self.devices.div_ceil(self.vehicles_per_user.max(1))
    }

    /// The hard deadline of the whole run.
    pub fn hard_timeout(&self) -> Duration {
        self.timeout.unwrap_or(
            self.warmup + self.duration + self.drain + self.ack_timeout + Duration::from_secs(300),
        )
    }

    /// Check ranges before anything is sent.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.devices >= 1, "--devices must be at least 1");
        anyhow::ensure!(
            (1..=600).contains(&self.points),
            "--points must be 1 to 600 (the contract's batch size)"
        );
        anyhow::ensure!(
            self.vehicles_per_user >= 1,
            "--vehicles-per-user must be at least 1"
        );
        anyhow::ensure!(!self.interval.is_zero(), "--interval must be more than 0");
        anyhow::ensure!(
            self.interval.as_millis() >= self.points as u128,
            "--interval must be at least --points milliseconds (point times are unique \
             Unix milliseconds per vehicle)"
        );
        anyhow::ensure!(
            self.event_rate.is_finite() && self.event_rate >= 0.0,
            "--event-rate must be 0 or more"
        );
        anyhow::ensure!(!self.duration.is_zero(), "--duration must be more than 0");
        anyhow::ensure!(self.max_inflight >= 1, "--max-inflight must be at least 1");
        anyhow::ensure!(
            self.connect_concurrency >= 1,
            "--connect-concurrency must be at least 1"
        );
        anyhow::ensure!(self.threads >= 1, "--threads must be at least 1");
        if let Some(n) = self.source_addrs {
            anyhow::ensure!(n <= 250, "--source-addrs must be 0 to 250");
        }
        if self.connect_only {
            anyhow::ensure!(
                self.phone_count() >= 1,
                "--connect-only needs phones (--phones or --phones-per-vehicle)"
            );
        }
        Ok(())
    }
}

/// Parse a duration: a number (decimals allowed) and a unit `ms`, `s`,
/// `m`/`min` or `h`; a bare number means seconds. `"500ms"`, `"1s"`,
/// `"1.5s"`, `"2m"`, `"60"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 500ms, 1s, 2m)"))?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: SimulateOptions,
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration(" 10 ms "), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "s", "ms", "1x", "-1s", "1..2s", "abc", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn default_matches_the_command_line_without_flags() {
        let parsed = Cli::try_parse_from(["simulate"]).unwrap().opts;
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", SimulateOptions::default())
        );
    }

    #[test]
    fn every_flag_has_help() {
        use clap::CommandFactory as _;
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            if arg.get_id() == "help" {
                continue;
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(
                help.len() > 20,
                "--{} has no real help: {help:?}",
                arg.get_id()
            );
        }
    }

    #[test]
    fn counts_and_validation() {
        let mut o = SimulateOptions {
            devices: 100,
            phones_per_vehicle: 10,
            vehicles_per_user: 3,
            ..Default::default()
        };
        assert_eq!(o.phone_count(), 1000);
        assert_eq!(o.user_count(), 34);
        o.phones = Some(7);
        assert_eq!(o.phone_count(), 7);
        assert!(o.validate().is_ok());
        o.points = 601;
        assert!(o.validate().is_err());
        o.points = 60;
        o.interval = Duration::ZERO;
        assert!(o.validate().is_err());
    }
}
