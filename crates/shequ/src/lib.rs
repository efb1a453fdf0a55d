//! The `shequ` command as a library, so tests drive it exactly as a user would, in process.
//! `main.rs` only parses the arguments, sets up logging and a runtime, and calls [`run`].

pub mod demo;
pub mod export;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::value::RawValue;
use shequ_store::{EventLog, RecordedEvent, StoreError};

/// Events read per page by `shequ log`.
const LOG_PAGE_EVENTS: u32 = 1_000;

/// shequ (社区): the community public service system's case and service-access workflow
/// engine. Every command takes --db (or SHEQU_DATABASE_URL).
#[derive(Debug, Parser)]
#[command(name = "shequ", version, about)]
pub struct Cli {
    /// The event store: sqlite://PATH (created if missing) or postgres://USER@HOST/DATABASE.
    #[arg(
        long,
        global = true,
        env = "SHEQU_DATABASE_URL",
        default_value = "sqlite://shequ.db",
        hide_env_values = true
    )]
    pub db: String,

    /// The file holding the key that signs bearer tokens (created on first use).
    #[arg(long, global = true, env = "SHEQU_KEY_FILE", default_value = "shequ.key")]
    pub key_file: std::path::PathBuf,

    /// The file holding the Ed25519 key that signs checkpoints (created on first use).
    #[arg(long, global = true, env = "SHEQU_CHECKPOINT_KEY_FILE", default_value = "shequ-checkpoint.key")]
    pub checkpoint_key_file: std::path::PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (GET /health, GET /ready).
    Serve {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Load the demo data set first (once; see `shequ demo`).
        #[arg(long)]
        demo: bool,
        /// Days a contest may stay unanswered before it escalates to the district.
        #[arg(long, default_value_t = shequ_service::CONTEST_DAYS_DEFAULT, value_parser = clap::value_parser!(i64).range(1..=365))]
        contest_days: i64,
        /// How often the contest timers are checked, in seconds.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timer_interval_seconds: u64,
        /// How long a request may take, reading its body included, before it is answered 408.
        #[arg(long, default_value_t = shequ_http::REQUEST_TIMEOUT_MS / 1_000, value_parser = clap::value_parser!(u64).range(1..=600))]
        request_timeout_seconds: u64,
    },
    /// Load the demo data set (a district, its streets and communities, budgets, the
    /// catalogue and a scenario through every access rule) and print what happened.
    Demo,
    /// Set up a store for real use, instead of the demo: register the district and publish the
    /// shipped catalogue of matters. Running it again with the same name changes nothing. The
    /// district then registers its departments, streets and communities over the API
    /// (`POST /api/v1/organisations`, with a district token).
    Setup {
        /// The district's name, e.g. 东城区.
        #[arg(long)]
        district: String,
        /// The district's id; by default one derived from its name.
        #[arg(long)]
        id: Option<uuid::Uuid>,
    },
    /// Bring the database's schema up to date (serve does this on start too).
    Migrate,
    /// Walk the hash chain and check every signed checkpoint; exit 1 and name the first bad
    /// position if the log was tampered with.
    Verify,
    /// Sign the log's current size and Merkle root with Ed25519 and record the checkpoint.
    Checkpoint,
    /// Inspectors' tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Bearer tokens for the API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write the whole log to a new directory: every stream as a KurrentDB events document,
    /// and the log as JSON lines with positions and hashes (see docs/audit-format.md).
    Export {
        #[arg(long, value_enum)]
        format: export::Format,
        /// The directory to write: created if missing, refused if not empty.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Import a directory written by `shequ export` into an empty store, keeping positions,
    /// hashes and the Merkle root.
    Import {
        /// The export's directory.
        #[arg(long)]
        from: std::path::PathBuf,
    },
    /// Rebuild every projection from the log up to a point and write the state as JSON:
    /// organisations, catalogue version, mandates, balances, open contests, requests.
    Replay {
        /// Where to stop: a position (e.g. 1200), an RFC 3339 time (e.g.
        /// 2026-11-29T08:00:00Z), or `head` for the whole log.
        #[arg(long, default_value = "head", value_parser = parse_as_of)]
        as_of: shequ_service::projection::AsOf,
        /// The file to write (replaced whole, never half-written); standard output if absent.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Print events as JSON lines, in position order.
    Log {
        /// The first position to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Print at most this many events (all by default).
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed token for a role acting for an organisation.
    Issue {
        /// district, department, street_office, community, inspector or resident.
        #[arg(long, value_parser = parse_role)]
        role: shequ_service::Role,
        /// The organisation's id.
        #[arg(long)]
        org: uuid::Uuid,
        /// Who holds it, for the audit trail.
        #[arg(long, default_value = "api-user")]
        subject: String,
        /// Days until it expires.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=366))]
        days: u64,
    },
}

fn parse_as_of(text: &str) -> Result<shequ_service::projection::AsOf, String> {
    shequ_service::projection::AsOf::parse(text)
}

fn parse_role(text: &str) -> Result<shequ_service::Role, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        format!("unknown role `{text}`: use district, department, street_office, community, inspector or resident")
    })
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Re-run every recorded policy decision on the bundle and input recorded with it (from
    /// the log, not from today's policies/); exit 1 if any differs.
    Redecide,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] shequ_service::ServiceError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Auth(#[from] shequ_http::auth::AuthError),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    #[error(transparent)]
    Export(#[from] export::ExportError),
}

/// How a command ended, when it ran to the end: `Failure` is a finding (such as a broken
/// chain), reported on `out`, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// Runs one command, writing its report to `out`.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<Outcome, CliError> {
    match cli.command {
        // Tokens need the key, not the database: no store is opened or created for them.
        Command::Token(command) => issue_token(&cli.key_file, command, out),
        command => run_on_log(Cli { command, ..cli }, out).await,
    }
}

fn issue_token(
    key_file: &std::path::Path,
    command: TokenCommand,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    let TokenCommand::Issue { role, org, subject, days } = command;
    let keys = shequ_http::auth::TokenKeys::load_or_create(key_file)?;
    let token = keys.issue(role, org, &subject, now_seconds(), days * 24 * 3600);
    writeln!(out, "{token}").map_err(CliError::Output)?;
    Ok(Outcome::Success)
}

async fn run_on_log(cli: Cli, out: &mut (dyn Write + Send)) -> Result<Outcome, CliError> {
    let log = EventLog::open(&cli.db).await?;
    match cli.command {
        Command::Serve {
            addr,
            demo: load_demo,
            contest_days,
            timer_interval_seconds,
            request_timeout_seconds,
        } => {
            if load_demo {
                demo(&log, &mut std::io::sink()).await?;
            }
            let policies = shequ_policy::Policies::embedded().map_err(shequ_service::ServiceError::from)?;
            let clock = std::sync::Arc::new(shequ_service::SystemClock);
            let service = shequ_service::Service::new(log.clone(), policies, clock)
                .await?
                .with_contest_days(contest_days);
            let keys = shequ_http::auth::TokenKeys::load_or_create(&cli.key_file)?;
            if load_demo {
                print_demo_tokens(&keys, out)?;
            }
            // The live projection folds the whole log once before it answers a read promptly:
            // started now, so that `/ready` turns ready as soon as it has.
            let catching_up = tokio::spawn(catch_up(service.read_model().clone()));
            let timers = tokio::spawn(run_timers(
                service.clone(),
                std::time::Duration::from_secs(timer_interval_seconds),
            ));
            let checkpoint_key =
                shequ_service::checkpoint::CheckpointKey::load_or_create(&cli.checkpoint_key_file)?;
            let state = shequ_http::AppState::new(shequ_http::AppParts {
                log,
                service,
                keys,
                metrics: shequ_http::metrics::Metrics::new(),
                checkpoint_public_key: checkpoint_key.public_key_hex().into(),
            });
            let timeout = std::time::Duration::from_secs(request_timeout_seconds);
            let outcome = serve(state, addr, timeout).await;
            timers.abort();
            catching_up.abort();
            outcome
        }
        Command::Demo => demo(&log, out).await,
        Command::Setup { district, id } => setup(&log, &district, id, out).await,
        Command::Migrate => {
            let head = log.head().await?;
            let report =
                format!("{} schema is up to date; the log holds {} events", log.kind(), head.position);
            writeln!(out, "{report}").map_err(CliError::Output)?;
            Ok(Outcome::Success)
        }
        Command::Verify => verify(&log, out).await,
        Command::Checkpoint => {
            let key = shequ_service::checkpoint::CheckpointKey::load_or_create(&cli.checkpoint_key_file)?;
            let checkpoint = key.sign(&log).await?;
            writeln!(
                out,
                "checkpoint: tree size {}, root {}, signed at {}\npublic key (Ed25519): {}\nsignature: {}",
                checkpoint.tree_size,
                checkpoint.root_hash,
                checkpoint.signed_at,
                checkpoint.public_key,
                checkpoint.signature
            )
            .map_err(CliError::Output)?;
            Ok(Outcome::Success)
        }
        Command::Audit(AuditCommand::Redecide) => redecide(&log, out).await,
        Command::Token(command) => issue_token(&cli.key_file, command, out),
        Command::Log { from, limit } => print_log(&log, from, limit, out).await,
        Command::Export { format, out: dir } => export::export(&log, format, &dir, out).await,
        Command::Import { from } => export::import(&log, &from, out).await,
        Command::Replay { as_of, out: file } => replay(&log, as_of, file.as_deref(), out).await,
    }
}

async fn demo(log: &EventLog, out: &mut (dyn Write + Send)) -> Result<Outcome, CliError> {
    let policies = shequ_policy::Policies::embedded().map_err(shequ_service::ServiceError::from)?;
    let report = match crate::demo::load(log, &policies).await? {
        crate::demo::DemoOutcome::AlreadyLoaded { .. } => {
            "The demo data set is already loaded in this store; nothing was changed.".to_owned()
        }
        crate::demo::DemoOutcome::Loaded { summary, .. } => summary.join("\n"),
    };
    tracing::info!("demo data set ready");
    writeln!(out, "{report}").map_err(CliError::Output)?;
    Ok(Outcome::Success)
}

/// Where the ids `shequ setup` derives from a district's name live (UUID version 5).
const SETUP_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5e7c_a1d0_0b3e_4c5d_9a21_d157_c0de_0001);

async fn setup(
    log: &EventLog,
    name: &str,
    id: Option<uuid::Uuid>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    use shequ_domain::organisation::{OrganisationError, OrganisationKind};
    use shequ_service::ServiceError;
    let policies = shequ_policy::Policies::embedded().map_err(ServiceError::from)?;
    let clock = std::sync::Arc::new(shequ_service::SystemClock);
    let service = shequ_service::Service::new(log.clone(), policies, clock).await?;
    let name = name.trim();
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v5(&SETUP_NAMESPACE, name.as_bytes()));
    let mut report = Vec::new();
    let (mut version, matters) = service.catalogue().await?;
    if matters.is_empty() {
        let matters = shequ_policy::starting_catalogue().map_err(ServiceError::from)?;
        let count = matters.len();
        version = service.publish_catalogue_as_operator(matters).await?;
        report.push(format!("Published the shipped catalogue: {count} matters (version {version})."));
    } else {
        report.push(format!(
            "The catalogue is already published: {} matters (version {version}).",
            matters.len()
        ));
    }
    // One district of a name: `--id` names a district's id, not a second district.
    let namesake = service.read_model().read().await?.organisations().find(|existing| {
        existing.kind == OrganisationKind::District && existing.name == name && existing.id != id
    });
    if let Some(namesake) = namesake {
        return Err(ServiceError::Invalid(format!(
            "the district {name} is already registered as {}; run setup without --id, or with --id {}",
            namesake.id, namesake.id
        ))
        .into());
    }
    let district = shequ_service::NewOrganisation {
        id,
        kind: OrganisationKind::District,
        name,
        parent: None,
        code: None,
    };
    match service.register_organisation_as_operator(district).await {
        Ok(()) => report.push(format!("Registered the district {name}: {id}.")),
        Err(ServiceError::Organisation(OrganisationError::AlreadyRegistered)) => {
            let projection = service.read_model().read().await?;
            match projection.organisation(id) {
                Some(existing) if existing.kind == OrganisationKind::District && existing.name == name => {
                    report.push(format!("The district {name} is already registered: {id}."));
                }
                Some(existing) => {
                    return Err(ServiceError::Invalid(format!(
                        "id {id} is already the {:?} {}; choose another --id",
                        existing.kind, existing.name
                    ))
                    .into())
                }
                None => return Err(ServiceError::NotFound(format!("organisation {id}")).into()),
            }
        }
        Err(error) => return Err(error.into()),
    }
    report.push(format!(
        "Next: a district token (shequ token issue --role district --org {id}), then register its \
         departments, streets and communities with POST /api/v1/organisations."
    ));
    writeln!(out, "{}", report.join("\n")).map_err(CliError::Output)?;
    Ok(Outcome::Success)
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// One token per role on the demo's organisations, for the README's tour.
fn print_demo_tokens(
    keys: &shequ_http::auth::TokenKeys,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    use shequ_service::Role;
    let places = crate::demo::places();
    let holders = [
        ("DISTRICT", Role::District, places.district, "东城区"),
        ("DEPARTMENT", Role::Department, places.departments[0].0, places.departments[0].1.as_str()),
        ("STREET", Role::StreetOffice, places.streets[0].0, places.streets[0].1.as_str()),
        ("COMMUNITY", Role::Community, places.communities[0].0, places.communities[0].2.as_str()),
        ("INSPECTOR", Role::Inspector, places.district, "东城区"),
        ("RESIDENT", Role::Resident, places.communities[0].0, places.communities[0].2.as_str()),
    ];
    let mut text = String::from("Demo tokens (valid 1 day), for example `export STREET=…`:\n");
    for (name, role, organisation, label) in holders {
        let token =
            keys.issue(role, organisation, &format!("demo {}", role.as_str()), now_seconds(), 24 * 3600);
        text.push_str(&format!("{name}={token}   # {} for {label} ({organisation})\n", role.as_str()));
    }
    write!(out, "{text}").and_then(|()| out.flush()).map_err(CliError::Output)
}

async fn serve(
    state: shequ_http::AppState,
    addr: SocketAddr,
    request_timeout: std::time::Duration,
) -> Result<Outcome, CliError> {
    let log = state.log.clone();
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|source| CliError::Listen { addr, source })?;
    let local = listener.local_addr().map_err(CliError::Serve)?;
    tracing::info!(store = %log.kind(), "shequ listening on http://{local}");
    let app = shequ_http::app_with_timeout(state, request_timeout);
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.map_err(CliError::Serve)?;
    log.close().await;
    tracing::info!("shequ stopped");
    Ok(Outcome::Success)
}

/// Folds the log into the live projection, as the first read after a start would, and says
/// how long it took.
async fn catch_up(model: shequ_service::ReadModel) {
    let started = std::time::Instant::now();
    tracing::info!("catching the projection up with the log…");
    match model.catch_up().await {
        Ok(position) => {
            tracing::info!(position, seconds = started.elapsed().as_secs_f64(), "projection caught up; ready")
        }
        Err(error) => tracing::error!(%error, "the projection could not catch up; /ready tries again"),
    }
}

/// Fires due contest timers every `interval`: an unanswered contest escalates to the district
/// by itself. Each escalation is an event, so a restart neither loses nor repeats one.
async fn run_timers(service: shequ_service::Service, interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        match service.escalate_due().await {
            Ok(escalated) if escalated.is_empty() => {}
            Ok(escalated) => tracing::info!(count = escalated.len(), "contests escalated to the district"),
            Err(error) => tracing::error!(%error, "contest timers failed; trying again at the next tick"),
        }
    }
}

/// Ctrl-C or SIGTERM: finish the requests in flight, then stop.
async fn shutdown_signal() {
    let interrupt = async {
        // If the handler cannot be installed, the default (stop at once) still applies.
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn replay(
    log: &EventLog,
    as_of: shequ_service::projection::AsOf,
    file: Option<&std::path::Path>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    let cut = shequ_service::replay::cut(log, as_of).await?;
    let bar = export::progress_bar(cut.position, "replay");
    match file {
        None => {
            let mut output = std::io::BufWriter::new(&mut *out);
            write_state(log, cut, &bar, &mut output).await?;
            output.write_all(b"\n").and_then(|()| output.flush()).map_err(CliError::Output)?;
            bar.finish_and_clear();
        }
        Some(path) => {
            // Written beside the target and renamed over it: a reader never sees half a state,
            // and a replay that fails leaves the target as it was.
            let directory = path.parent().filter(|parent| !parent.as_os_str().is_empty());
            let temporary = tempfile::NamedTempFile::new_in(directory.unwrap_or(std::path::Path::new(".")))
                .map_err(CliError::Output)?;
            let mut output = std::io::BufWriter::new(temporary);
            write_state(log, cut, &bar, &mut output).await?;
            output.write_all(b"\n").map_err(CliError::Output)?;
            let temporary = output.into_inner().map_err(|error| CliError::Output(error.into_error()))?;
            let file = temporary.persist(path).map_err(|error| CliError::Output(error.error))?;
            let bytes = file.metadata().map_err(CliError::Output)?.len();
            bar.finish_and_clear();
            writeln!(
                out,
                "State as of position {} written to {} ({bytes} bytes).",
                cut.position,
                path.display()
            )
            .map_err(CliError::Output)?;
        }
    }
    Ok(Outcome::Success)
}

/// Replays the log up to `cut` and writes the state, pretty, into `output` as it comes: one
/// mandate or request in memory at a time.
async fn write_state(
    log: &EventLog,
    cut: shequ_service::replay::Cut,
    bar: &indicatif::ProgressBar,
    output: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    use shequ_service::replay::{self, JsonStyle, WriteStateError};
    let kept = replay::kept(log, cut).await?;
    let progress = |folded| bar.set_position(folded);
    match replay::write_state_into(log, kept, None, JsonStyle::Pretty, progress, output).await {
        Ok(()) => Ok(()),
        Err(WriteStateError::Replay(error)) => Err(CliError::Service(error)),
        Err(WriteStateError::Output(error)) => Err(CliError::Output(error)),
        // The output is written here, in this process: it cannot go away by itself.
        Err(WriteStateError::Closed) => Err(CliError::Output(std::io::Error::other("output closed"))),
    }
}

/// A long read's progress on one line of standard error (`verified 1000 events…`), shown only
/// when standard error is a terminal, so logs and pipes get none of it.
struct ProgressLine {
    verb: &'static str,
    on_terminal: bool,
}

impl ProgressLine {
    fn new(verb: &'static str) -> Self {
        Self { verb, on_terminal: std::io::stderr().is_terminal() }
    }

    fn show(&self, events: u64) {
        if self.on_terminal {
            eprint!("\r{} {events} events…", self.verb);
        }
    }

    /// Ends the line, once the read is done.
    fn end(&self) {
        if self.on_terminal {
            eprintln!();
        }
    }
}

async fn verify(log: &EventLog, out: &mut (dyn Write + Send)) -> Result<Outcome, CliError> {
    let progress = ProgressLine::new("verified");
    let verification = shequ_service::checkpoint::verify_log(log, |checked| progress.show(checked)).await?;
    progress.end();
    let report = verification.report;
    if let Some(failure) = report.failure {
        writeln!(out, "FAILED at position {}: {}", failure.position, failure.reason)
            .and_then(|()| writeln!(out, "{} events before it are intact", report.events))
            .map_err(CliError::Output)?;
        return Ok(Outcome::Failure);
    }
    if let Some(failure) = verification.failure {
        writeln!(
            out,
            "FAILED at position {}: the checkpoint of tree size {} does not hold: {}",
            failure.position, failure.tree_size, failure.reason
        )
        .map_err(CliError::Output)?;
        return Ok(Outcome::Failure);
    }
    writeln!(
        out,
        "ok: {} events, hash chain intact; head at position {} ({}); Merkle root {}; {} signed checkpoints hold",
        report.events,
        report.head.position,
        hex::encode(report.head.hash),
        hex::encode(report.root),
        verification.checkpoints
    )
    .map_err(CliError::Output)?;
    Ok(Outcome::Success)
}

async fn redecide(log: &EventLog, out: &mut (dyn Write + Send)) -> Result<Outcome, CliError> {
    let progress = ProgressLine::new("read");
    let report = shequ_service::audit::redecide(log, |read| progress.show(read)).await?;
    progress.end();
    let differ = report.differing.len();
    writeln!(out, "{} decisions, {} identical, {differ} differ", report.decisions, report.identical)
        .map_err(CliError::Output)?;
    for difference in &report.differing {
        writeln!(
            out,
            "  position {} ({} in {}): {}",
            difference.position, difference.event_type, difference.stream, difference.reason
        )
        .map_err(CliError::Output)?;
    }
    Ok(match differ {
        0 => Outcome::Success,
        _ => Outcome::Failure,
    })
}

/// One event as `shequ log` prints it; `data` and `metadata` are the stored JSON, verbatim.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogLine<'a> {
    position: u64,
    stream: &'a str,
    revision: u64,
    event_id: String,
    event_type: &'a str,
    event_version: u32,
    data: &'a RawValue,
    metadata: &'a RawValue,
    recorded_at: String,
    hash: String,
}

async fn print_log(
    log: &EventLog,
    from: u64,
    limit: Option<u64>,
    out: &mut (dyn Write + Send),
) -> Result<Outcome, CliError> {
    let mut events = std::pin::pin!(log.stream_all(from, LOG_PAGE_EVENTS));
    let mut printed = 0;
    while limit.is_none_or(|limit| printed < limit) {
        let Some(event) = events.try_next().await? else { break };
        match write_line(out, &event) {
            Ok(()) => {}
            // The reader went away (`shequ log | head`): that is the end, not an error.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Outcome::Success),
            Err(error) => return Err(CliError::Output(error)),
        }
        printed += 1;
    }
    match out.flush() {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Output(error)),
        _ => Ok(Outcome::Success),
    }
}

fn write_line(out: &mut (dyn Write + Send), event: &RecordedEvent) -> std::io::Result<()> {
    let invalid = |error: serde_json::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, error);
    let data: &RawValue = serde_json::from_str(&event.data).map_err(invalid)?;
    let metadata: &RawValue = serde_json::from_str(&event.metadata).map_err(invalid)?;
    let line = LogLine {
        position: event.position,
        stream: &event.stream,
        revision: event.revision,
        event_id: event.event_id.to_string(),
        event_type: &event.event_type,
        event_version: event.event_version,
        data,
        metadata,
        recorded_at: event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        hash: hex::encode(event.hash),
    };
    serde_json::to_writer(&mut *out, &line).map_err(invalid)?;
    out.write_all(b"\n")
}

/// The error and its causes on one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
