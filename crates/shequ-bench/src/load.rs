//! Load over HTTP: commands per second and latency for proposing mandates and filing service
//! requests, through the whole server (authentication, `policies/authz`, look-ups in the live
//! projection, the access or routing policy, esrs, the durable append), on SQLite and on
//! PostgreSQL; beside it, a bare append of the same events through the store, the limit.
//!
//! The server runs in this process on 127.0.0.1 and is driven over real sockets, one
//! HTTP/1.1 connection per client; server, clients and database share the machine.
//!
//! `cargo run --release -p shequ-bench -- load --connections 64 --seconds 10`

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use shequ::demo::{self, DemoPlaces};
use shequ_domain::Fen;
use shequ_http::auth::TokenKeys;
use shequ_http::AppState;
use shequ_policy::Policies;
use shequ_service::{Actor, Allocation, CommandScope, Role, Service, SystemClock};
use shequ_store::{EventLog, ExpectedRevision, NewEvent, StreamAppend, WriterCounts};
use sqlx::Connection;
use uuid::Uuid;

use crate::{argument_name, Backend, Databases};

/// Budget each street office gets before the run, so no proposal is refused for want of funds.
const STREET_BUDGET_FEN: i64 = 1_000_000_000_000;

#[derive(Debug, clap::Args)]
pub struct LoadArguments {
    /// Concurrent connections, as a comma-separated list.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    connections: Vec<usize>,
    /// How long each measurement runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// How long each runs before the measurement starts.
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    #[command(flatten)]
    databases: Databases,
    /// Which commands to measure, as a comma-separated list.
    #[arg(long, value_delimiter = ',', default_value = "propose,file")]
    commands: Vec<Kind>,
    /// Where the access policy runs: `vm` (as served) or `interpreter` (the reference), to
    /// compare the two in one build.
    #[arg(long, default_value = "vm")]
    access_engine: AccessEngine,
    /// Who sends the served commands: `builtin` (hyper clients in this process) or `wrk`
    /// (Debian's package `wrk`, a C load generator that takes less of the shared cores).
    #[arg(long, default_value = "builtin")]
    client: LoadClient,
    /// Mandates proposed before each served run (spread over the demo's communities), so that
    /// commands run against a projection that holds that many, as on a server in use.
    #[arg(long, default_value_t = 0)]
    mandates: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LoadClient {
    Builtin,
    Wrk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AccessEngine {
    Vm,
    Interpreter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Propose,
    File,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Propose => "propose mandate",
            Kind::File => "file request",
        }
    }
}

/// One measured run.
struct Run {
    commands: u64,
    failures: u64,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
    /// The whole machine's busy CPU time over the measured seconds (server, clients and
    /// database together), where `/proc/stat` can be read.
    busy_seconds: Option<f64>,
    /// What the log's writer did over the measured seconds.
    writer: WriterCounts,
}

impl Run {
    /// A run whose every command's latency is known.
    fn of_latencies(
        commands: u64,
        failures: u64,
        elapsed: Duration,
        mut latencies_us: Vec<u64>,
        busy_seconds: Option<f64>,
    ) -> Self {
        latencies_us.sort_unstable();
        let percentile_ms = |fraction: f64| {
            let index = ((latencies_us.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
            latencies_us.get(index).copied().unwrap_or(0) as f64 / 1000.0
        };
        Run {
            commands,
            failures,
            elapsed,
            p50_ms: percentile_ms(0.5),
            p99_ms: percentile_ms(0.99),
            busy_seconds,
            writer: WriterCounts::default(),
        }
    }

    /// Events per committed batch: how much each durable commit carried.
    fn events_per_batch(&self) -> String {
        match self.writer.batches {
            0 => "–".to_owned(),
            batches => format!("{:.0}", self.writer.events as f64 / batches as f64),
        }
    }

    /// The share of the measured time the writer spent committing: near 100 %, the single
    /// writer is what holds the rate.
    fn writer_busy(&self) -> String {
        format!("{:.0} %", self.writer.commit_micros as f64 / 1e4 / self.elapsed.as_secs_f64())
    }

    fn per_second(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64()
    }

    /// The machine's CPU time per command: steadier than commands/s on a shared host, and
    /// what a change in the command path moves.
    fn cpu_us_per_command(&self) -> String {
        match self.busy_seconds {
            Some(busy) if self.commands > 0 => format!("{:.0}", busy * 1e6 / self.commands as f64),
            _ => "–".to_owned(),
        }
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

pub async fn run(arguments: LoadArguments) -> Result<(), Failure> {
    println!(
        "| backend | what | connections | commands/s | p50 ms | p99 ms | failed | CPU µs/command | \
         events/batch | writer busy | bare append commands/s | bare CPU µs/command | bare events/batch | \
         bare writer busy | ratio |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &backend in &arguments.databases.backends {
        let backend_name = argument_name(backend);
        for &connections in &arguments.connections {
            for &kind in &arguments.commands {
                let (url, cleanup) = fresh_store(backend, &arguments.databases.postgres).await?;
                let (served, samples) = measure_served(&url, kind, connections, &arguments).await?;
                cleanup.run().await?;
                let (url, cleanup) = fresh_store(backend, &arguments.databases.postgres).await?;
                let bare = measure_bare(&url, kind, connections, &samples, &arguments).await?;
                cleanup.run().await?;
                println!(
                    "| {backend_name} | {} | {connections} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {:.2}× |",
                    kind.name(),
                    served.per_second(),
                    served.p50_ms,
                    served.p99_ms,
                    served.failures,
                    served.cpu_us_per_command(),
                    served.events_per_batch(),
                    served.writer_busy(),
                    bare.per_second(),
                    bare.cpu_us_per_command(),
                    bare.events_per_batch(),
                    bare.writer_busy(),
                    served.per_second() / bare.per_second(),
                );
            }
        }
    }
    Ok(())
}

/// What to drop after a run.
enum Cleanup {
    Directory(tempfile::TempDir),
    Database { admin: String, name: String },
}

impl Cleanup {
    async fn run(self) -> Result<(), Failure> {
        match self {
            Cleanup::Directory(directory) => drop(directory),
            Cleanup::Database { admin, name } => {
                let mut connection = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut connection)
                    .await?;
            }
        }
        Ok(())
    }
}

async fn fresh_store(backend: Backend, postgres: &str) -> Result<(String, Cleanup), Failure> {
    match backend {
        Backend::Sqlite => {
            let directory = tempfile::tempdir()?;
            let url = format!("sqlite://{}", directory.path().join("load.db").display());
            Ok((url, Cleanup::Directory(directory)))
        }
        Backend::Postgres => {
            // The name is ours (a UUID's hex), never input: safe to put in DDL, which cannot
            // take bind parameters.
            let name = format!("shequ_load_{}", Uuid::new_v4().simple());
            let mut connection = sqlx::PgConnection::connect(postgres).await?;
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut connection).await?;
            let base = postgres.rsplit_once('/').map_or(postgres, |(base, _)| base);
            Ok((format!("{base}/{name}"), Cleanup::Database { admin: postgres.to_owned(), name }))
        }
    }
}

/// The served commands on a fresh store at `url`, sent by the client `arguments` name; then the
/// log's check and the samples of its events.
async fn measure_served(
    url: &str,
    kind: Kind,
    connections: usize,
    arguments: &LoadArguments,
) -> Result<(Run, Samples), Failure> {
    let served = serve(url, arguments).await?;
    let run = match arguments.client {
        LoadClient::Builtin => measure_http(&served, kind, connections, arguments).await?,
        LoadClient::Wrk => measure_wrk(&served, kind, connections, arguments).await?,
    };
    served.server.abort();
    Ok((run, verified_samples(&served.state.log).await?))
}

/// The demo world served on 127.0.0.1.
struct Served {
    state: AppState,
    /// The server's address, `http://127.0.0.1:…`.
    base: String,
    places: DemoPlaces,
    server: tokio::task::JoinHandle<()>,
}

/// The demo world, budgets topped up, served on 127.0.0.1.
async fn serve(url: &str, arguments: &LoadArguments) -> Result<Served, Failure> {
    let engine = arguments.access_engine;
    let log = EventLog::open(url).await?;
    let policies = match engine {
        AccessEngine::Vm => Policies::embedded()?,
        AccessEngine::Interpreter => Policies::embedded()?.on_interpreter(),
    };
    demo::load(&log, &policies).await?;
    let places = demo::places();
    let service = Service::new(log.clone(), policies, Arc::new(SystemClock)).await?;
    let district = CommandScope::new(Actor { role: Role::District, organisation: places.district });
    for (street, _) in &places.streets {
        let amount_fen = Fen::parse(STREET_BUDGET_FEN)?;
        let allocation = Allocation {
            transfer_id: Uuid::now_v7(),
            from: None,
            to: *street,
            amount_fen,
            memo: "load budget",
        };
        service.allocate(&district, allocation).await?;
    }
    propose_mandates(&service, &places, arguments.mandates).await?;
    let state = AppState::new(shequ_http::AppParts {
        log,
        service,
        keys: TokenKeys::from_secret(&[9; 32])?,
        metrics: shequ_http::metrics::Metrics::new(),
        checkpoint_public_key: "".into(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = shequ_http::app(state.clone());
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("the server stopped: {error}");
        }
    });
    Ok(Served { state, base, places, server })
}

/// Proposes `count` funded mandates through the service, spread over the communities, 64 at
/// a time.
async fn propose_mandates(service: &Service, places: &DemoPlaces, count: usize) -> Result<(), Failure> {
    let started = Instant::now();
    let mut proposing = tokio::task::JoinSet::new();
    for index in 0..count {
        if proposing.len() == 64 {
            proposing.join_next().await.transpose()?.transpose()?;
        }
        let (community, street, _) = places.communities[index % places.communities.len()];
        let proposal = crate::registration_proposal(street, community, "2027-12-31");
        let service = service.clone();
        let actor = Actor { role: Role::StreetOffice, organisation: street };
        proposing.spawn(async move {
            service.propose(&CommandScope::new(actor), Uuid::now_v7(), proposal).await.map(|_| ())
        });
    }
    while let Some(proposed) = proposing.join_next().await {
        proposed??;
    }
    if count > 0 {
        eprintln!("{count} mandates proposed in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// A client's bearer token, signed once for the run (as a real client keeps its token until
/// it expires): the server checks it on every request; the client does not sign each one.
fn token(kind: Kind, client: usize, places: &DemoPlaces, keys: &TokenKeys) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |now| now.as_secs());
    let (community, street, _) = &places.communities[client % places.communities.len()];
    match kind {
        Kind::Propose => keys.issue(Role::StreetOffice, *street, "load", now, 3600),
        Kind::File => keys.issue(Role::Resident, *community, &format!("resident-{client}"), now, 3600),
    }
}

/// One command's request: the path and a fresh body.
fn command(kind: Kind, client: usize, places: &DemoPlaces) -> (&'static str, String) {
    let (community, _, _) = &places.communities[client % places.communities.len()];
    command_body(kind, &Uuid::now_v7().to_string(), &community.to_string())
}

/// `kind`'s path and body, with its id and its community (a proposal's) as given: the one
/// shape both the built-in client and wrk's script send.
fn command_body(kind: Kind, id: &str, community: &str) -> (&'static str, String) {
    match kind {
        Kind::Propose => {
            let body = json!({
                "mandate_id": id, "matter_code": "EMP-001", "community": community,
                "scope": "Unemployment registration assistance", "volume": 1, "deadline": "2027-12-31",
                "funds_offered_fen": 3000, "powers_granted": ["collect-resident-data"],
                "working_conditions": ["service-counter", "information-terminal"],
            });
            ("/api/v1/mandates", body.to_string())
        }
        Kind::File => {
            let body = json!({
                "request_id": id, "matter_code": "SSV-012", "channel": "counter",
                "description": "A dispute between neighbours about a shared courtyard",
            });
            ("/api/v1/requests", body.to_string())
        }
    }
}

/// Real events of each type, as the served commands recorded them: data and metadata.
type Samples = std::collections::HashMap<String, (String, String)>;

async fn measure_http(
    served: &Served,
    kind: Kind,
    connections: usize,
    arguments: &LoadArguments,
) -> Result<Run, Failure> {
    let started = Instant::now();
    let warmup_until = started + Duration::from_secs(arguments.warmup_seconds);
    let until = warmup_until + Duration::from_secs(arguments.seconds);
    let busy = tokio::spawn(busy_between(warmup_until, until));
    let writer = tokio::spawn(writer_between(served.state.log.clone(), warmup_until, until));
    let mut clients = Vec::new();
    for client in 0..connections {
        let base = served.base.clone();
        let places = served.places.clone();
        let keys = served.state.keys.clone();
        clients.push(tokio::spawn(async move {
            // One client (and so one keep-alive connection) per task.
            let http =
                Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build_http::<Full<Bytes>>();
            let (mut commands, mut failures, mut latencies) = (0u64, 0u64, Vec::new());
            let authorization = format!("Bearer {}", token(kind, client, &places, &keys));
            loop {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                let (path, body) = command(kind, client, &places);
                let request = Request::post(format!("{base}{path}"))
                    .header("authorization", &authorization)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)));
                let Ok(request) = request else { break };
                let sent = Instant::now();
                let ok = match http.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.into_body().collect().await.map(|body| body.to_bytes());
                        if status != StatusCode::CREATED && failures == 0 {
                            let body = body.map(|body| String::from_utf8_lossy(&body).into_owned());
                            eprintln!("client {client}: {status}: {}", body.unwrap_or_default());
                        }
                        status == StatusCode::CREATED
                    }
                    Err(error) => {
                        if failures == 0 {
                            eprintln!("client {client}: {error}");
                        }
                        false
                    }
                };
                if sent >= warmup_until {
                    match ok {
                        true => {
                            commands += 1;
                            latencies.push(sent.elapsed().as_micros() as u64);
                        }
                        false => failures += 1,
                    }
                }
            }
            (commands, failures, latencies)
        }));
    }
    let (mut commands, mut failures, mut latencies_us) = (0, 0, Vec::new());
    for client in clients {
        let (client_commands, client_failures, latencies) = client.await?;
        commands += client_commands;
        failures += client_failures;
        latencies_us.extend(latencies);
    }
    let elapsed = Duration::from_secs(arguments.seconds);
    let mut run = Run::of_latencies(commands, failures, elapsed, latencies_us, busy.await?);
    run.writer = writer.await?;
    Ok(run)
}

/// After a served run: the log must verify; its last events are the bare append's samples.
async fn verified_samples(log: &EventLog) -> Result<Samples, Failure> {
    let report = log.verify(|_| {}).await?;
    if let Some(failure) = report.failure {
        return Err(format!("the log does not verify after the run: {failure:?}").into());
    }
    let head = log.head().await?.position;
    let samples = log
        .read_all(head.saturating_sub(2_000), 2_000)
        .await?
        .into_iter()
        .map(|event| (event.event_type, (event.data, event.metadata)))
        .collect();
    log.close().await;
    Ok(samples)
}

/// The same served commands sent by `wrk` (a C load generator, Debian's package `wrk`), so
/// that the client takes less of the two cores the server shares with it. The requests take
/// the built-in clients' tokens and communities in turn; ids are fresh for every request.
/// Every answer counted must be a 2xx, and the log must hold the events of every command
/// counted (so no answer counted was a replay).
async fn measure_wrk(
    served: &Served,
    kind: Kind,
    connections: usize,
    arguments: &LoadArguments,
) -> Result<Run, Failure> {
    let Served { state, base, places, .. } = served;
    let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
    std::fs::write(script.path(), wrk_script(kind, connections, places, &state.keys))?;
    if arguments.warmup_seconds > 0 {
        wrk(base, connections, arguments.warmup_seconds, script.path()).await?;
        settle().await;
    }
    let before = state.log.head().await?.position;
    let busy_before = machine_busy_seconds();
    let writer_before = state.log.writer_counts();
    let output = wrk(base, connections, arguments.seconds, script.path()).await?;
    let busy_seconds = machine_busy_seconds().zip(busy_before).map(|(after, before)| after - before);
    let writer = writer_since(&state.log, writer_before);
    settle().await;
    let written = state.log.head().await?.position - before;
    let mut run = parse_wrk(&output, busy_seconds)?;
    run.writer = writer;
    let per_command = match kind {
        Kind::Propose => 3,
        Kind::File => 2,
    };
    let counted = run.commands * per_command;
    if written < counted || written > counted + connections as u64 * per_command {
        return Err(format!(
            "wrk counted {} commands ({counted} events), but the log took {written} events",
            run.commands
        )
        .into());
    }
    Ok(run)
}

/// Waits for the commands in flight when wrk stopped (at most one per connection) to commit.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Runs `wrk` for `seconds` with the script; its report.
async fn wrk(
    base: &str,
    connections: usize,
    seconds: u64,
    script: &std::path::Path,
) -> Result<String, Failure> {
    let output = tokio::process::Command::new("wrk")
        .arg("--threads")
        .arg("2")
        .arg("--connections")
        .arg(connections.to_string())
        .arg("--duration")
        .arg(format!("{seconds}s"))
        .arg("--latency")
        .arg("--script")
        .arg(script)
        .arg(base)
        // The ids' prefix, new for every run: warm-up and measurement never share an id.
        .arg("--")
        .arg(&Uuid::new_v4().simple().to_string()[..8])
        .output()
        .await
        .map_err(|error| {
            format!("cannot run wrk ({error}); it is Debian's package `wrk`: apt-get install wrk")
        })?;
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let error = String::from_utf8_lossy(&output.stderr);
        return Err(format!("wrk failed ({}): {error}{report}", output.status).into());
    }
    Ok(report)
}

/// The Lua script that makes wrk send `kind`'s commands: each wrk thread's requests take the
/// built-in clients' tokens and communities in turn (a file request's body has no community
/// to replace), and each request's id is new (UUID version 8: the random
/// prefix each run of wrk is given, the wrk thread, a counter).
fn wrk_script(kind: Kind, connections: usize, places: &DemoPlaces, keys: &TokenKeys) -> String {
    let mut clients = String::new();
    for client in 0..connections {
        let (community, _, _) = &places.communities[client % places.communities.len()];
        let token = token(kind, client, places, keys);
        clients.push_str(&format!("  {{ \"Bearer {token}\", \"{community}\" }},\n"));
    }
    // The body with markers the script replaces: the request's id, the connection's community.
    let (path, body) = command_body(kind, "$ID", "$COMMUNITY");
    format!(
        r#"local clients = {{
{clients}}}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end
local sent = 0
local prefix
function init(args)
  prefix = args[1]
end
function request()
  sent = sent + 1
  local client = clients[(sent % #clients) + 1]
  local id = string.format("%s-%04x-8000-8000-%012x", prefix, thread_id, sent)
  local body = ([==[{body}]==]):gsub("%$ID", id):gsub("%$COMMUNITY", client[2])
  return wrk.format("POST", "{path}", {{ ["authorization"] = client[1], ["content-type"] = "application/json" }}, body)
end
"#
    )
}

/// commands/s, latency and failures from wrk's report (`--latency`).
fn parse_wrk(report: &str, busy_seconds: Option<f64>) -> Result<Run, Failure> {
    let unreadable = || format!("cannot read wrk's report:\n{report}");
    let mut words =
        report.lines().find(|line| line.contains(" requests in ")).ok_or_else(unreadable)?.split_whitespace();
    let requests: u64 = words.next().and_then(|count| count.parse().ok()).ok_or_else(unreadable)?;
    let seconds =
        words.nth(2).and_then(|time| parse_wrk_time(time.trim_end_matches(','))).ok_or_else(unreadable)?;
    let count_after = |label: &str| -> u64 {
        report
            .lines()
            .filter_map(|line| line.trim().strip_prefix(label))
            .map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|number| number.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum()
    };
    let failures = count_after("Non-2xx or 3xx responses:") + count_after("Socket errors:");
    let percentile = |label: &str| -> Result<f64, String> {
        report
            .lines()
            .map(str::split_whitespace)
            .find_map(|mut words| (words.next() == Some(label)).then(|| words.next()).flatten())
            .and_then(parse_wrk_time)
            .map(|seconds| seconds * 1000.0)
            .ok_or_else(unreadable)
    };
    Ok(Run {
        commands: requests.saturating_sub(count_after("Non-2xx or 3xx responses:")),
        failures,
        elapsed: Duration::from_secs_f64(seconds),
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        busy_seconds,
        writer: WriterCounts::default(),
    })
}

/// wrk's times: `812.00us`, `5.12ms`, `8.00s`, `1.02m`; in seconds.
fn parse_wrk_time(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(number * scale)
}

/// The same events a command records, appended straight to the store by as many clients:
/// a proposal is its mandate's two events and the reservation on the district's ledger, in
/// one append to both streams, as served; a request is its two events.
async fn measure_bare(
    url: &str,
    kind: Kind,
    connections: usize,
    samples: &Samples,
    arguments: &LoadArguments,
) -> Result<Run, Failure> {
    let log = EventLog::open(url).await?;
    let types: &[&str] = match kind {
        Kind::Propose => &["MandateProposed", "MandateAdmitted", "TransferRecorded"],
        Kind::File => &["RequestFiled", "RequestRouted"],
    };
    let mut recorded = Vec::new();
    for event_type in types {
        let (data, metadata) = samples.get(*event_type).ok_or_else(|| {
            let seen: Vec<&String> = samples.keys().collect();
            format!("the served run's last events hold no {event_type}, only {seen:?}")
        })?;
        recorded.push((event_type.to_string(), data.clone(), metadata.clone()));
    }
    let recorded = Arc::new(recorded);
    let started = Instant::now();
    let warmup_until = started + Duration::from_secs(arguments.warmup_seconds);
    let until = warmup_until + Duration::from_secs(arguments.seconds);
    let busy = tokio::spawn(busy_between(warmup_until, until));
    let writer = tokio::spawn(writer_between(log.clone(), warmup_until, until));
    let mut clients = Vec::new();
    for _ in 0..connections {
        let log = log.clone();
        let recorded = recorded.clone();
        clients.push(tokio::spawn(async move {
            let event = |index: usize| {
                let (event_type, data, metadata): &(String, String, String) = &recorded[index];
                NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: event_type.clone(),
                    event_version: 1,
                    data: data.clone(),
                    metadata: metadata.clone(),
                }
            };
            let (mut commands, mut latencies) = (0u64, Vec::new());
            while Instant::now() < until {
                let sent = Instant::now();
                let id = Uuid::now_v7();
                let result = match kind {
                    // As served: the mandate's events and the reservation in one append.
                    Kind::Propose => log
                        .append_all(vec![
                            StreamAppend {
                                stream: format!("mandate-{id}"),
                                expected: ExpectedRevision::NoStream,
                                after: None,
                                events: vec![event(0), event(1)],
                            },
                            StreamAppend {
                                stream: "ledger-bench".into(),
                                expected: ExpectedRevision::Any,
                                after: None,
                                events: vec![event(2)],
                            },
                        ])
                        .await
                        .map(|_| ()),
                    Kind::File => log
                        .append(
                            &format!("request-{id}"),
                            ExpectedRevision::NoStream,
                            vec![event(0), event(1)],
                        )
                        .await
                        .map(|_| ()),
                };
                if result.is_ok() && sent >= warmup_until {
                    commands += 1;
                    latencies.push(sent.elapsed().as_micros() as u64);
                }
            }
            (commands, latencies)
        }));
    }
    let (mut commands, mut latencies_us) = (0, Vec::new());
    for client in clients {
        let (client_commands, latencies) = client.await?;
        commands += client_commands;
        latencies_us.extend(latencies);
    }
    let elapsed = Duration::from_secs(arguments.seconds);
    let mut run = Run::of_latencies(commands, 0, elapsed, latencies_us, busy.await?);
    run.writer = writer.await?;
    log.close().await;
    Ok(run)
}

/// What the log's writer did between `from` and `until`.
async fn writer_between(log: EventLog, from: Instant, until: Instant) -> WriterCounts {
    tokio::time::sleep_until(from.into()).await;
    let before = log.writer_counts();
    tokio::time::sleep_until(until.into()).await;
    writer_since(&log, before)
}

fn writer_since(log: &EventLog, before: WriterCounts) -> WriterCounts {
    let after = log.writer_counts();
    WriterCounts {
        batches: after.batches - before.batches,
        events: after.events - before.events,
        failed_batches: after.failed_batches - before.failed_batches,
        commit_micros: after.commit_micros - before.commit_micros,
    }
}

/// The machine's busy CPU seconds between `from` and `until`.
async fn busy_between(from: Instant, until: Instant) -> Option<f64> {
    tokio::time::sleep_until(from.into()).await;
    let before = machine_busy_seconds();
    tokio::time::sleep_until(until.into()).await;
    Some(machine_busy_seconds()? - before?)
}

/// The whole machine's busy CPU time since boot, from `/proc/stat` (Linux): user, nice,
/// system, irq and softirq of every core, in USER_HZ (100 a second on Linux). Idle, I/O wait
/// and time stolen by the host are not ours.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let all_cores = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> =
        all_cores.split_whitespace().map(|field| field.parse().ok()).collect::<Option<_>>()?;
    let busy = [0, 1, 2, 5, 6].iter().map(|&field| ticks.get(field).copied()).sum::<Option<u64>>()?;
    Some(busy as f64 / 100.0)
}

#[cfg(test)]
mod tests;
