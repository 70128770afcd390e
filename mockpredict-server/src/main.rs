//! The `mockpredict-server` binary: parses flags (each also an env var
//! `MOCKPREDICT_<NAME>`), installs the tracing subscriber, binds, and runs
//! [`mockpredict_server::serve`] until SIGTERM or SIGINT.
//!
//! Exit codes: 0 after a clean shutdown, 1 when the server cannot start (address in
//! use, say), 2 for usage errors (an unknown flag, or a value that does not parse or
//! validate), 130 when a second SIGTERM/SIGINT cut the drain short.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, ValueEnum};
use mockpredict_core::store::MemoryStore;
use mockpredict_core::{JobQueue, Latency, MockModel, MockOutput, QueueConfig};
use mockpredict_server::{App, Cors, Metrics, ServerConfig};

mod logging;

/// Exit code when a second signal interrupts the graceful drain.
const EXIT_FORCED: i32 = 130;

/// Serve slow mock ML predictions over HTTP, synchronously or through a queue.
///
/// The original service's API (GET /, POST /predictions/predict, GET
/// /predictions/predict/{id}) plus cancel, events, health, metrics and OpenAPI. Every
/// flag can also be set by an environment variable MOCKPREDICT_<FLAG>; a flag given
/// twice takes its last value (so a wrapper's defaults can be overridden). Logs go to
/// stderr; RUST_LOG filters them (default info). On SIGTERM or SIGINT the server
/// drains and exits 0; a second signal exits 130 at once.
#[derive(Debug, Parser)]
#[command(
    name = "mockpredict-server",
    version,
    about,
    max_term_width = 100,
    args_override_self = true
)]
struct Flags {
    /// Address to listen on; port 0 picks a free port (the log says which).
    #[arg(long, env = "MOCKPREDICT_BIND", default_value = "127.0.0.1:8000")]
    bind: String,

    /// Mock model latency: fixed (`250ms`), uniform range (`8s..15s`) or
    /// `lognormal(median=10s,sigma=0.6,max=60s)`, as the core parses it.
    #[arg(long, env = "MOCKPREDICT_LATENCY", default_value = "8s..15s")]
    latency: Latency,

    /// Seed: makes latency, result and failure a pure function of the input.
    #[arg(long, env = "MOCKPREDICT_SEED")]
    seed: Option<u64>,

    /// Share of predictions, in [0, 1], that fail with a model error.
    #[arg(long, env = "MOCKPREDICT_FAILURE_RATE", default_value_t = 0.0)]
    failure_rate: f64,

    /// Most predictions running at once.
    #[arg(long, env = "MOCKPREDICT_CONCURRENCY", default_value_t = 100)]
    concurrency: usize,

    /// Most predictions queued + processing; beyond it submissions get 429.
    #[arg(long, env = "MOCKPREDICT_CAPACITY", default_value_t = 10_000)]
    capacity: usize,

    /// How long finished predictions stay retrievable.
    #[arg(long, env = "MOCKPREDICT_RESULT_TTL", default_value = "1h")]
    result_ttl: humantime::Duration,

    /// Most finished predictions kept for polling; beyond it the oldest are forgotten
    /// (404) before their --result-ttl. 0 keeps none: only callers already waiting
    /// see a result.
    #[arg(long, env = "MOCKPREDICT_MAX_RETAINED", default_value_t = 100_000)]
    max_retained: usize,

    /// Most bytes of input and output text that finished predictions keep in all
    /// (`1GiB`, `512MiB`); beyond it the oldest are forgotten, whatever their count.
    /// The mock's output repeats its input, so each counts about twice its input.
    #[arg(long, env = "MOCKPREDICT_MAX_RETAINED_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    max_retained_bytes: usize,

    /// Longest a prediction may take from admission to end before it fails with a
    /// timeout (default: no limit).
    #[arg(long, env = "MOCKPREDICT_DEADLINE")]
    deadline: Option<humantime::Duration>,

    /// Largest request body (`1048576`, `512KiB`, `1MiB`); larger ones get 413.
    #[arg(long, env = "MOCKPREDICT_MAX_BODY", default_value = "1MiB", value_parser = parse_bytes)]
    max_body: usize,

    /// Longest a sync request waits before answering 202 with the prediction ID.
    #[arg(long, env = "MOCKPREDICT_SYNC_TIMEOUT", default_value = "60s")]
    sync_timeout: humantime::Duration,

    /// Longest long-poll `?wait=` honoured; longer asks are cut to this.
    #[arg(long, env = "MOCKPREDICT_MAX_WAIT", default_value = "60s")]
    max_wait: humantime::Duration,

    /// Require `Authorization: Bearer <token>` on every route but /, /healthz and
    /// /readyz (default: no auth).
    #[arg(long, env = "MOCKPREDICT_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,

    /// Allowed browser origins: `*` (any, the original's behaviour), `off`, or a
    /// comma-separated list such as `https://app.example,http://localhost:3000`.
    #[arg(long, env = "MOCKPREDICT_CORS_ORIGIN", default_value = "*")]
    cors_origin: String,

    /// On SIGTERM/SIGINT, how long in-flight requests and predictions get to finish.
    #[arg(long, env = "MOCKPREDICT_SHUTDOWN_TIMEOUT", default_value = "30s")]
    shutdown_timeout: humantime::Duration,

    /// On SIGTERM/SIGINT, how long to keep serving with /readyz answering 503 before
    /// the listener closes and the drain begins, so load balancers stop sending
    /// traffic first (a few seconds under Kubernetes). 0: close at once.
    #[arg(long, env = "MOCKPREDICT_DRAIN_DELAY", default_value = "0s")]
    drain_delay: humantime::Duration,

    /// A new connection must get its first request's headers across within this, or
    /// it is closed (slowloris); a request body must arrive within this after its
    /// headers, or 408.
    #[arg(long, env = "MOCKPREDICT_HEADER_READ_TIMEOUT", default_value = "10s")]
    header_read_timeout: humantime::Duration,

    /// A connection with no request in flight this long after a request is closed,
    /// HTTP/1.1 keep-alive and HTTP/2 alike. Keep it above the idle timeout of any
    /// proxy in front (AWS ALB 60s, nginx upstream keepalive_timeout 60s; lower
    /// Envoy's 1h), or the proxy may reuse a connection this server is closing and
    /// answer 502. 0: close after each answer.
    #[arg(long, env = "MOCKPREDICT_KEEP_ALIVE_TIMEOUT", default_value = "75s")]
    keep_alive_timeout: humantime::Duration,

    /// Most connections served at once; more wait in the listen backlog.
    #[arg(long, env = "MOCKPREDICT_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,

    /// Log format on stderr.
    #[arg(long, env = "MOCKPREDICT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// One log line per request (method, route, status, duration, prediction ID), at
    /// info level, target `mockpredict_server::access`. `off` is the switch for load
    /// tests: it skips the line entirely, at no cost per request; /metrics still counts
    /// every request by route and status.
    #[arg(long, env = "MOCKPREDICT_ACCESS_LOG", value_enum, default_value_t = Switch::On)]
    access_log: Switch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `1048576`, `512KiB`, `1MiB`, `1GiB`, `64KB` (1000s), `1MB`.
fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("expected a byte count such as 1048576 or 1MiB, got {s:?}"))?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown byte unit {other:?} (use B, KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The longest duration a flag takes: longer ones (`--result-ttl 1000000y`) mean
/// "forever" and are cut to 30 years, because timers panic when `now + duration`
/// does not fit in an `Instant`.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

fn capped(d: humantime::Duration) -> Duration {
    Duration::from(d).min(FOREVER)
}

/// Everything the flags configure, validated.
struct Settings {
    bind: String,
    model: MockModel,
    queue: QueueConfig,
    /// The retained predictions' byte budget (`--max-retained-bytes`).
    max_retained_bytes: usize,
    server: ServerConfig,
}

impl TryFrom<Flags> for Settings {
    type Error = anyhow::Error;

    fn try_from(f: Flags) -> anyhow::Result<Self> {
        let model = MockModel::new()
            .with_latency(f.latency)
            .with_optional_seed(f.seed)
            .with_failure_rate(f.failure_rate)
            .context("invalid --failure-rate")?;
        let queue = QueueConfig::default()
            .capacity(f.capacity)
            .concurrency(f.concurrency)
            .result_ttl(capped(f.result_ttl))
            .max_retained(f.max_retained)
            .deadline(f.deadline.map(capped));
        queue.validate().context("invalid queue flags")?;
        let cors: Cors = match f.cors_origin.parse() {
            Ok(cors) => cors,
            Err(never) => match never {},
        };
        if let Some(bad) = cors.invalid_origin() {
            anyhow::bail!(
                "invalid --cors-origin: {bad:?} is not an origin such as https://app.example \
                 or http://localhost:3000 (`*` and `off` stand alone, not in a list)"
            );
        }
        let server = ServerConfig::default()
            .max_body(f.max_body)
            .sync_timeout(capped(f.sync_timeout))
            .max_wait(capped(f.max_wait))
            .api_token(f.api_token)
            .cors(cors)
            .shutdown_timeout(capped(f.shutdown_timeout))
            .drain_delay(capped(f.drain_delay))
            .header_read_timeout(capped(f.header_read_timeout))
            .keep_alive_timeout(capped(f.keep_alive_timeout))
            .max_connections(f.max_connections)
            .access_log(f.access_log == Switch::On);
        Ok(Self {
            bind: f.bind,
            model,
            queue,
            max_retained_bytes: f.max_retained_bytes,
            server,
        })
    }
}

/// Installs the subscriber; returns the access log the server should use instead of
/// `tracing` events, if any (the text format without colours, with the access target
/// enabled at start-up: see [`logging::AccessLine`]).
fn init_tracing(format: LogFormat) -> Option<logging::AccessLine> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let writer = logging::LogWriter::new();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal();
            builder
                .with_ansi(ansi)
                .event_format(logging::Text::new())
                .init();
            (!ansi && mockpredict_server::TracingAccessLog::is_enabled())
                .then(|| logging::AccessLine::new(&writer))
        }
        LogFormat::Json => {
            builder.json().init();
            None
        }
    }
}

/// Open files the server needs besides its connections: standard streams, the
/// listener, the runtime's epoll and wake-up descriptors, with room to spare.
const FILES_BESIDES_CONNECTIONS: u64 = 64;

/// Raises the soft limit on open files to the hard limit, as Go and nginx do: every
/// connection holds one, and a common soft limit (1,024) is below what
/// `--max-connections` allows. Warns when the limit is still too low for it.
fn raise_open_file_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let needed = (max_connections as u64).saturating_add(FILES_BESIDES_CONNECTIONS);
            if limit < needed {
                tracing::warn!(
                    limit,
                    max_connections,
                    "the open-file limit is below what --max-connections needs: accepts will \
                     fail before the cap is reached; raise the hard limit (`ulimit -Hn`) or \
                     lower --max-connections"
                );
            } else {
                tracing::debug!(limit, "open-file limit");
            }
        }
        Err(error) => tracing::warn!(%error, "could not read or raise the open-file limit"),
    }
}

/// The mock's queue on the in-memory backend with the byte budget, and the API over it
/// (what [`App::new`] builds, plus the budget, which needs to know the mock's types).
fn app(settings: Settings) -> anyhow::Result<App<MockModel>> {
    let retention = MemoryStore::new(settings.queue.result_ttl, settings.queue.max_retained)
        .with_max_bytes(
            settings.max_retained_bytes,
            |input: &String, output: Option<&MockOutput>| {
                input.len() + output.map_or(0, |o| o.input.len() + o.result.len())
            },
        );
    let metrics = Metrics::new();
    let queue = JobQueue::builder(settings.model)
        .config(settings.queue)
        .store(retention)
        .observer(metrics.observer())
        .build()?;
    Ok(App::from_queue(queue, metrics, settings.server))
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    raise_open_file_limit(settings.server.max_connections);
    let listener = tokio::net::TcpListener::bind(&settings.bind)
        .await
        .with_context(|| format!("cannot listen on {}", settings.bind))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let app = app(settings)?;
    tracing::info!(
        %addr,
        model = "mock",
        latency = %app.queue().model().latency(),
        "listening on http://{addr}"
    );
    let shutdown = async {
        mockpredict_server::shutdown_signal().await;
        // A second signal means "now": skip the drain.
        tokio::spawn(async {
            mockpredict_server::shutdown_signal().await;
            tracing::warn!("second signal: exiting without waiting for the drain");
            logging::flush();
            std::process::exit(EXIT_FORCED);
        });
    };
    let report = mockpredict_server::serve(listener, app, shutdown).await?;
    tracing::info!(
        drained = report.drained,
        canceled = report.canceled,
        "shut down"
    );
    Ok(())
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let json_logs = flags.log_format == LogFormat::Json;
    let access_line = init_tracing(flags.log_format);
    // A flag value that does not validate is a usage error, as clap's own are: its
    // message and exit code 2 (1 is for a server that could not start).
    let mut settings = Settings::try_from(flags).unwrap_or_else(|e| {
        Flags::command()
            .error(clap::error::ErrorKind::ValueValidation, format!("{e:#}"))
            .exit()
    });
    if let Some(line) = access_line {
        settings.server = settings.server.access_log_sink(line);
    }
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
        .and_then(|runtime| runtime.block_on(run(settings)));
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Said once: as a log event where logs are JSON for a collector, as a
            // plain line where they are text for a person.
            if json_logs {
                tracing::error!("{e:#}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    };
    // Access lines may still wait in the log buffer.
    logging::flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_units() {
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("512KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("64KB"), Ok(64_000));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("1XB").is_err());
        assert!(parse_bytes("MiB").is_err());
    }

    #[test]
    fn flags_have_the_documented_defaults() {
        let flags = Flags::try_parse_from(["mockpredict-server"]).expect("defaults parse");
        assert_eq!(flags.bind, "127.0.0.1:8000");
        assert_eq!(flags.max_body, 1 << 20);
        let s = Settings::try_from(flags).expect("defaults are valid");
        assert_eq!(s.server.sync_timeout, Duration::from_secs(60));
        assert_eq!(s.server.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(s.server.cors, Cors::Any);
        assert!(s.server.access_log, "the access log is on by default");
        let off = Flags::try_parse_from(["x", "--access-log", "off"]).expect("parses");
        assert!(!Settings::try_from(off).expect("valid").server.access_log);
        assert!(
            Flags::try_parse_from(["x", "--failure-rate", "2"])
                .map(Settings::try_from)
                .is_ok_and(|s| s.is_err())
        );
    }
}
