//! The `roadhub` command line: `serve`, `migrate`, `simulate`, `user add`,
//! `device add`.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use roadhub::Config;
use roadhub::db::Db;
use roadhub::db::queries::{users, vehicles};

/// jemalloc: it returns freed memory to the system (argon2's 19 MiB blocks
/// stayed in glibc's per-thread arenas) and keeps per-connection memory
/// low under fan-out (see docs/DECISIONS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// roadhub: the realtime hub for connected dashcams.
#[derive(Parser)]
#[command(name = "roadhub", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
#[command(next_help_heading = "Global options")]
struct GlobalArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "ROADHUB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Set any key, e.g. `--set limits.app_sessions_per_user=5` (repeatable;
    /// overrides the file and ROADHUB_* variables).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Database URL (`sqlite://PATH` or `postgres://...`); same as
    /// `--set database.url=...`.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Log JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: REST, Socket.IO (`/device`, `/app`), live play (FLV, WS-FLV, HLS), health and
    /// metrics on `http.listen`; RTMP ingest on `rtmp.listen`.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage devices (vehicles and their blackboxes).
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Simulated blackboxes and phones against a running hub (benchmarks).
    ///
    /// Reports connects/s, delivered messages/s, end-to-end and ack latency
    /// percentiles, losses and errors. With `--video`: RTMP publishers and
    /// HTTP-FLV/WS-FLV viewers, reporting real-time ratio, throughput, lost
    /// frames and time to first frame. Sets itself up over REST; benchmark
    /// hubs run with their `limits.*` set to 0 (see docs/SIMULATE.md). A
    /// flag given twice keeps the last value.
    #[command(args_override_self = true)]
    Simulate(Box<roadhub::simulate::SimulateOptions>),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on for HTTP; same as `--set http.listen=...`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user account; the password is read from standard input.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register a vehicle for a user and print its device token (shown once).
    Add {
        #[arg(long)]
        serial: String,
        /// Email of the owning user.
        #[arg(long)]
        owner: String,
        /// Display name (defaults to the serial).
        #[arg(long)]
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(global: &GlobalArgs, listen: Option<&str>) -> anyhow::Result<Config> {
    let mut config = Config::load(global.config.as_deref()).map_err(anyhow::Error::msg)?;
    for pair in &global.set {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair:?}: expected KEY=VALUE"))?;
        config.set(key.trim(), value).map_err(anyhow::Error::msg)?;
    }
    if let Some(url) = &global.database_url {
        config.database.url = url.clone();
    }
    if let Some(listen) = listen {
        config.http.listen = listen.to_string();
    }
    if global.log_json {
        config.log.format = "json".into();
    }
    config.resolve();
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Simulate(opts) => simulate(*opts),
        Command::Serve(args) => {
            let config = load_config(&cli.global, args.listen.as_deref())?;
            if args.print_config {
                print!("{}", config.to_toml_redacted());
                return Ok(());
            }
            roadhub::logging::init(&config.log.format, &config.log.level);
            let listener = std::net::TcpListener::bind(&config.http.listen)
                .with_context(|| format!("binding http.listen {}", config.http.listen))?;
            actix_rt::System::new().block_on(roadhub::serve(config, listener, shutdown_signal()))
        }
        Command::Migrate => {
            let config = load_config(&cli.global, None)?;
            roadhub::logging::init(&config.log.format, &config.log.level);
            let db = Db::connect(&config)?;
            let applied = db.migrate()?;
            println!("{} migration(s) applied", applied.len());
            Ok(())
        }
        Command::User(UserCommand::Add {
            email,
            name,
            password_stdin: _,
        }) => user_add(&cli.global, &email, name.as_deref()),
        Command::Device(DeviceCommand::Add {
            serial,
            owner,
            name,
        }) => device_add(&cli.global, &serial, &owner, name.as_deref()),
    }
}

/// `roadhub user add`: the password is read from standard input.
fn user_add(global: &GlobalArgs, email: &str, name: Option<&str>) -> anyhow::Result<()> {
    let config = load_config(global, None)?;
    roadhub::logging::init(&config.log.format, "warn");
    let email = roadhub::auth::account::normalize_email(email)?;
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    roadhub::auth::account::check_password(password, config.auth.min_password_len)?;
    let hash = roadhub::auth::password::hash_blocking(password).map_err(anyhow::Error::msg)?;
    let db = Db::connect(&config)?;
    db.migrate()?;
    let mut conn = db.get()?;
    let user = users::create(&mut conn, &email, name, &hash).map_err(|e| {
        if e.is_unique_violation() {
            anyhow::anyhow!("a user with email {email} already exists")
        } else {
            e.into()
        }
    })?;
    println!("user {} created: {}", user.id, user.email);
    Ok(())
}

/// `roadhub device add`: prints the new device token, once.
fn device_add(
    global: &GlobalArgs,
    serial: &str,
    owner: &str,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let config = load_config(global, None)?;
    roadhub::logging::init(&config.log.format, "warn");
    let serial = roadhub::auth::account::check_serial(serial)?;
    let name = roadhub::auth::account::check_vehicle_name(name.unwrap_or(&serial))?;
    let db = Db::connect(&config)?;
    db.migrate()?;
    let mut conn = db.get()?;
    let owner_email = owner.trim().to_lowercase();
    let user = users::find_by_email(&mut conn, &owner_email)?
        .with_context(|| format!("no user with email {owner_email}"))?;
    let roadhub::auth::account::DeviceToken { token, hash } =
        roadhub::auth::account::DeviceToken::mint();
    let vehicle = vehicles::create(&mut conn, user.id, &serial, &name, &hash).map_err(|e| {
        if e.is_unique_violation() {
            anyhow::anyhow!("a vehicle with serial {serial} already exists")
        } else {
            e.into()
        }
    })?;
    eprintln!(
        "vehicle {} ({}) created for {}; its device token follows, shown only this once:",
        vehicle.id, vehicle.serial, user.email
    );
    println!("{token}");
    Ok(())
}

/// `roadhub simulate`: its own runtime with `--threads` workers; the
/// summary (or one JSON line) on stdout.
fn simulate(opts: roadhub::simulate::SimulateOptions) -> anyhow::Result<()> {
    roadhub::logging::init("human", "warn");
    // Before any thread starts, so every socket counts against the raised limit.
    roadhub::simulate::raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
        .context("starting the simulator's runtime")?;
    let json = opts.json;
    if opts.video.video {
        let report = runtime.block_on(roadhub::simulate::video::run(opts))?;
        if json {
            println!("{}", report.to_json_line());
        } else {
            println!("{report}");
        }
        return Ok(());
    }
    let report = runtime.block_on(roadhub::simulate::run(opts))?;
    if json {
        println!("{}", report.to_json_line());
    } else {
        println!("{report}");
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
