//! Reading a long log: replay (every event folded into the projection, held in memory), state
//! (`shequ replay`'s code path: the state written as JSON, one mandate or request held at a
//! time), verify (`shequ verify`'s: the hash chain and the Merkle tree, in one walk) and
//! export (`shequ export`'s), in events per second, with the peak memory of each; and proofs
//! (the first, which builds the Merkle tree's kept subtrees, then warm ones, timed one by one).
//!
//! Each log is generated once (see `generate`) and kept: SQLite files under `--dir`,
//! PostgreSQL databases `shequ_bench_log_<events>` on `--postgres`; a rerun reuses a log that
//! is complete and rebuilds one that is not. Each phase runs in a fresh child process (this
//! binary, `phase …`), which reports its time and its peak resident set (`VmHWM`), so that
//! one phase's memory is not another's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use shequ_service::projection::AsOf;
use shequ_service::replay;
use shequ_store::{merkle, EventLog, StoreError};
use sqlx::{Connection, Executor};

use crate::generate::{self, Generator, Templates};
use crate::{Backend, Databases};

#[derive(Debug, clap::Args)]
pub struct ReplayArguments {
    /// Log sizes, in events, as a comma-separated list.
    #[arg(long, value_delimiter = ',', default_value = "250000,1000000")]
    events: Vec<u64>,
    #[command(flatten)]
    databases: Databases,
    /// Which phases, as a comma-separated list.
    #[arg(long, value_delimiter = ',', default_value = "scan,replay,state,verify,export")]
    phases: Vec<Phase>,
    /// Where the SQLite logs are kept between runs and exports are written (default: a
    /// `shequ-bench` directory in the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Generate the logs again even where complete ones are kept.
    #[arg(long)]
    rebuild: bool,
}

/// One phase, run by the parent in a child process.
#[derive(Debug, clap::Args)]
pub struct PhaseArguments {
    #[arg(long)]
    url: String,
    #[arg(long)]
    phase: Phase,
    /// The events the log must hold.
    #[arg(long)]
    events: u64,
    /// Where an export writes.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// The limit: the same pages of the same query through sqlx, rows read and dropped.
    Scan,
    Replay,
    State,
    Verify,
    Export,
    /// Merkle proofs: the first builds the kept subtrees over the whole log (its time is the
    /// phase's); the warm ones after it are timed one by one and reported on stderr.
    Proofs,
}

impl Phase {
    fn name(self) -> String {
        crate::argument_name(self)
    }

    /// The rate the issue asks for, in events per second.
    fn goal(self) -> Option<f64> {
        match self {
            Phase::Replay | Phase::State => Some(200_000.0),
            Phase::Verify => Some(1_000_000.0),
            Phase::Scan | Phase::Export | Phase::Proofs => None,
        }
    }
}

/// Where one log lives.
enum LogTarget {
    Sqlite(PathBuf),
    Postgres { admin: String, database: String },
}

impl LogTarget {
    fn new(backend: Backend, events: u64, dir: &Path, admin: &str) -> Self {
        match backend {
            Backend::Sqlite => LogTarget::Sqlite(dir.join(format!("log-{events}.db"))),
            Backend::Postgres => {
                LogTarget::Postgres { admin: admin.to_owned(), database: format!("shequ_bench_log_{events}") }
            }
        }
    }

    fn url(&self) -> String {
        match self {
            LogTarget::Sqlite(path) => format!("sqlite://{}", path.display()),
            LogTarget::Postgres { admin, database } => crate::database_url(admin, database),
        }
    }

    /// Creates the PostgreSQL database if it is missing (a SQLite file is created on open).
    async fn create(&self) -> Result<(), Box<dyn std::error::Error>> {
        let LogTarget::Postgres { admin, database } = self else { return Ok(()) };
        let mut connection = sqlx::PgConnection::connect(admin).await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut connection)
            .await?;
        if !exists {
            // The name is `shequ_bench_log_` and digits: an identifier, not a value to bind.
            connection.execute(format!("CREATE DATABASE {database}").as_str()).await?;
        }
        connection.close().await?;
        Ok(())
    }

    /// Removes the log entirely.
    async fn wipe(&self) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            LogTarget::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let file = PathBuf::from(format!("{}{suffix}", path.display()));
                    match std::fs::remove_file(&file) {
                        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                            return Err(error.into())
                        }
                        _ => {}
                    }
                }
            }
            LogTarget::Postgres { admin, database } => {
                let mut connection = sqlx::PgConnection::connect(admin).await?;
                connection
                    .execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
                    .await?;
                connection.close().await?;
            }
        }
        Ok(())
    }
}

/// What one phase measured, as the child reports it.
#[derive(Debug, Clone, Copy)]
struct Measured {
    seconds: f64,
    peak_rss_kib: u64,
    /// The resident set when the log was open and the phase about to start.
    start_rss_kib: u64,
}

pub async fn run(arguments: ReplayArguments) -> Result<(), Box<dyn std::error::Error>> {
    let dir = arguments.dir.clone().unwrap_or_else(|| std::env::temp_dir().join("shequ-bench"));
    std::fs::create_dir_all(&dir)?;
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    println!("# shequ read benchmark: replay, verify, export; {cores} cores\n");
    let mut templates: Option<Templates> = None;
    for &backend in &arguments.databases.backends {
        let mut rows = Vec::new();
        for &events in &arguments.events {
            let target = LogTarget::new(backend, events, &dir, &arguments.databases.postgres);
            ensure_log(&target, events, arguments.rebuild, &mut templates).await?;
            for &phase in &arguments.phases {
                eprintln!("{} {events} events: {}…", backend.name(), phase.name());
                let out = dir.join(format!("export-{}-{events}", backend.name().to_lowercase()));
                remove_dir(&out)?;
                let measured = run_phase(&target.url(), phase, events, &out).await;
                remove_dir(&out)?;
                let measured = measured?;
                eprintln!(
                    "  {:.0} events/s, peak RSS {:.1} MiB",
                    events as f64 / measured.seconds,
                    mib(measured.peak_rss_kib)
                );
                rows.push((events, phase, measured));
            }
        }
        print_table(backend, &arguments, &rows);
    }
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn remove_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn print_table(backend: Backend, arguments: &ReplayArguments, rows: &[(u64, Phase, Measured)]) {
    println!("## {}\n", backend.name());
    let mut header = "| phase |".to_owned();
    let mut rule = "|---|".to_owned();
    for events in &arguments.events {
        header.push_str(&format!(" events/s ({events}) | s ({events}) |"));
        rule.push_str("---:|---:|");
    }
    for events in &arguments.events {
        header.push_str(&format!(" peak RSS MiB ({events}) |"));
        rule.push_str("---:|");
    }
    println!("{header}\n{rule}");
    for &phase in &arguments.phases {
        let found = |events: u64| rows.iter().find(|row| row.0 == events && row.1 == phase).map(|row| row.2);
        let mut line = format!("| {} |", phase.name());
        for &events in &arguments.events {
            match found(events) {
                Some(measured) => line.push_str(&format!(
                    " {:.0} | {:.2} |",
                    events as f64 / measured.seconds,
                    measured.seconds
                )),
                None => line.push_str(" – | – |"),
            }
        }
        for &events in &arguments.events {
            match found(events) {
                Some(measured) => line.push_str(&format!(
                    " {:.1} (at start {:.1}) |",
                    mib(measured.peak_rss_kib),
                    mib(measured.start_rss_kib)
                )),
                None => line.push_str(" – |"),
            }
        }
        println!("{line}");
    }
    println!();
    let (Some(&smallest), Some(&largest)) = (arguments.events.iter().min(), arguments.events.iter().max())
    else {
        return;
    };
    for &phase in &arguments.phases {
        let found = |events: u64| rows.iter().find(|row| row.0 == events && row.1 == phase).map(|row| row.2);
        let Some(large) = found(largest) else { continue };
        let rate = largest as f64 / large.seconds;
        let mut line = format!("- {} at {largest} events: {rate:.0} events/s", phase.name());
        if let Some(goal) = phase.goal() {
            line.push_str(&format!(" = {:.2}× the goal of {goal:.0}", rate / goal));
        }
        if let (Some(small), true) = (found(smallest), smallest != largest) {
            line.push_str(&format!(
                "; peak RSS {:.1} MiB at {largest} vs {:.1} MiB at {smallest} ({:.2}× for {:.0}× the events)",
                mib(large.peak_rss_kib),
                mib(small.peak_rss_kib),
                large.peak_rss_kib as f64 / small.peak_rss_kib.max(1) as f64,
                largest as f64 / smallest as f64
            ));
        }
        println!("{line}");
    }
    println!();
}

/// Makes sure `target` holds a complete generated log of `events` events.
async fn ensure_log(
    target: &LogTarget,
    events: u64,
    rebuild: bool,
    templates: &mut Option<Templates>,
) -> Result<(), Box<dyn std::error::Error>> {
    if rebuild {
        target.wipe().await?;
    }
    target.create().await?;
    let mut log = EventLog::open(&target.url()).await?;
    let head = log.head().await?;
    if head.position == events {
        eprintln!("{}: a log of {events} events is there; reusing it", target.url());
        log.close().await;
        return Ok(());
    }
    if head.position != 0 {
        eprintln!("{}: holds {} events, not {events}; generating it again", target.url(), head.position);
        log.close().await;
        drop(log);
        target.wipe().await?;
        target.create().await?;
        log = EventLog::open(&target.url()).await?;
    }
    let templates = match templates {
        Some(templates) => templates,
        None => {
            eprintln!("running the demo and the template episodes through the command path…");
            let built = generate::templates().await?;
            eprintln!("  {}", built.summary());
            templates.insert(built)
        }
    };
    if events < templates.prefix_events() {
        return Err(format!("a log needs at least {} events", templates.prefix_events()).into());
    }
    eprintln!("{}: generating {events} events…", target.url());
    let started = Instant::now();
    let mut reported = 0;
    let generated = futures::stream::iter(Generator::new(templates, events).map(Ok::<_, StoreError>));
    let report = log
        .import(generated, |imported| {
            if imported >= reported + 100_000 {
                reported = imported;
                eprintln!("  {imported} events ({:.0} s)", started.elapsed().as_secs_f64());
            }
        })
        .await?;
    log.close().await;
    eprintln!("  {} events in {:.1} s", report.events, started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs one phase in a child process and reads what it reports.
async fn run_phase(
    url: &str,
    phase: Phase,
    events: u64,
    out: &Path,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .arg("phase")
        .args(["--url", url, "--phase", &phase.name(), "--events", &events.to_string()])
        .arg("--out")
        .arg(out)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!("the {} phase failed: {}", phase.name(), output.status).into());
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let number = |field: &str| report[field].as_f64().ok_or_else(|| format!("no `{field}` in {report}"));
    Ok(Measured {
        seconds: number("seconds")?,
        peak_rss_kib: number("peak_rss_kib")? as u64,
        start_rss_kib: number("start_rss_kib")? as u64,
    })
}

/// The child: opens the log, runs one phase over all of it, and prints its time and memory
/// as one JSON object.
pub async fn phase(arguments: PhaseArguments) -> Result<(), Box<dyn std::error::Error>> {
    let log = EventLog::open(&arguments.url).await?;
    let head = log.head().await?;
    if head.position != arguments.events {
        return Err(format!("the log holds {} events, not {}", head.position, arguments.events).into());
    }
    let start_rss_kib = proc_status_kib("VmRSS")?;
    let started = Instant::now();
    let mut first_proof_root = None;
    match arguments.phase {
        Phase::Scan => {
            let scanned = scan(&arguments.url).await?;
            if scanned != arguments.events {
                return Err(format!("the scan read {scanned} rows").into());
            }
        }
        Phase::Replay => {
            let projection = replay::replay(&log, AsOf::Head, |_| {}).await?;
            if projection.position() != arguments.events {
                return Err(format!("replay stopped at position {}", projection.position()).into());
            }
        }
        Phase::State => {
            // What `shequ replay` does, the JSON counted and dropped instead of written to a file.
            let cut = replay::cut(&log, AsOf::Head).await?;
            if cut.position != arguments.events {
                return Err(format!("replay stops at position {}", cut.position).into());
            }
            let kept = replay::kept(&log, cut).await?;
            let mut counted = Counted(0);
            replay::write_state_into(&log, kept, None, replay::JsonStyle::Pretty, |_| {}, &mut counted)
                .await?;
            if counted.0 == 0 {
                return Err("the replay wrote nothing".into());
            }
        }
        Phase::Verify => {
            // What `shequ verify` does: the chain, the Merkle tree and any recorded checkpoint.
            let verification = shequ_service::checkpoint::verify_log(&log, |_| {}).await?;
            let report = verification.report;
            if let Some(failure) = report.failure {
                return Err(format!("verify failed at {}: {}", failure.position, failure.reason).into());
            }
            if let Some(failure) = verification.failure {
                return Err(format!("checkpoint at {} failed: {}", failure.position, failure.reason).into());
            }
            if report.events != arguments.events {
                return Err(format!("verify checked {} events", report.events).into());
            }
        }
        Phase::Export => {
            let out = arguments.out.as_deref().ok_or("an export needs --out")?;
            let format = shequ::export::Format::Kurrentdb;
            let mut said = Vec::new();
            shequ::export::export(&log, format, out, &mut said).await?;
        }
        Phase::Proofs => first_proof_root = Some(log.inclusion_proof(1, arguments.events).await?.root_hash),
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(root) = first_proof_root {
        warm_proofs(&log, arguments.events, &root).await?;
    }
    let peak_rss_kib = proc_status_kib("VmHWM")?;
    log.close().await;
    let report = serde_json::json!({
        "phase": arguments.phase.name(),
        "events": arguments.events,
        "seconds": seconds,
        "peak_rss_kib": peak_rss_kib,
        "start_rss_kib": start_rss_kib,
    });
    println!("{report}");
    Ok(())
}

/// After the first proof: inclusion proofs of positions spread through the log and
/// consistency proofs from tree sizes spread through it, each timed and checked as RFC 9162
/// says; the latencies go to stderr.
async fn warm_proofs(
    log: &EventLog,
    events: u64,
    root: &merkle::Hash,
) -> Result<(), Box<dyn std::error::Error>> {
    const INCLUSION: u64 = 1_000;
    const CONSISTENCY: u64 = 100;
    // A fixed spread (a multiplicative hash of the count), so that runs compare.
    let spread = |n: u64| 1 + n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % events;
    let mut micros = Vec::new();
    for n in 0..INCLUSION {
        let position = spread(n);
        let started = Instant::now();
        let proof = log.inclusion_proof(position, events).await?;
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        if !merkle::verify_inclusion(position - 1, events, &proof.leaf_hash, &proof.audit_path, root) {
            return Err(format!("the inclusion proof of {position} does not verify").into());
        }
    }
    report_latencies("inclusion proofs", &mut micros);
    for n in 0..CONSISTENCY {
        let first = spread(n);
        let started = Instant::now();
        let proof = log.consistency_proof(first, events).await?;
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        if !merkle::verify_consistency(first, events, &proof.first_root, root, &proof.proof) {
            return Err(format!("the consistency proof from {first} does not verify").into());
        }
    }
    report_latencies("consistency proofs", &mut micros);
    Ok(())
}

fn report_latencies(what: &str, micros: &mut Vec<f64>) {
    micros.sort_by(f64::total_cmp);
    let at = |share: f64| micros[((micros.len() - 1) as f64 * share).round() as usize];
    eprintln!(
        "  then {} {what} at tree size = the log: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        micros.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    micros.clear();
}

/// Rows read per page by the scan, as `replay` and `verify` read them.
const SCAN_PAGE_ROWS: i64 = 5_000;

/// Reads every event row, page after page, with the query the store reads pages with, and
/// drops them: what reading costs before anything is done with the events.
async fn scan(url: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let (rows_read, bytes) = if url.starts_with("sqlite:") {
        scan_pages::<sqlx::Sqlite>(
            url,
            "SELECT position, stream, revision, event_id, event_type, event_version, data, metadata, \
             recorded_at, hash FROM events WHERE position >= ? ORDER BY position LIMIT ?",
        )
        .await?
    } else {
        scan_pages::<sqlx::Postgres>(
            url,
            "SELECT position, stream, revision, event_id, event_type, event_version, data, metadata, \
             recorded_at, hash FROM events WHERE position >= $1 ORDER BY position LIMIT $2",
        )
        .await?
    };
    eprintln!("  scanned {rows_read} rows, {:.0} MiB of data", bytes as f64 / 1_048_576.0);
    Ok(rows_read)
}

/// The scan on one database, `query` taking the first position and the page's rows: the rows
/// read and the bytes of their data. The bounds are what sqlx needs to run the query and read
/// its columns on either database.
async fn scan_pages<Database>(url: &str, query: &'static str) -> Result<(u64, usize), sqlx::Error>
where
    Database: sqlx::Database,
    for<'connection> &'connection mut Database::Connection: Executor<'connection, Database = Database>,
    for<'query> Database::Arguments<'query>: sqlx::IntoArguments<'query, Database>,
    for<'value> i64: sqlx::Type<Database> + sqlx::Encode<'value, Database> + sqlx::Decode<'value, Database>,
    for<'row> &'row str: sqlx::Type<Database> + sqlx::Decode<'row, Database>,
    usize: sqlx::ColumnIndex<Database::Row>,
{
    use sqlx::Row;
    let pool = sqlx::Pool::<Database>::connect(url).await?;
    let (mut next, mut rows_read, mut bytes) = (1i64, 0u64, 0usize);
    loop {
        let rows = sqlx::query(query).bind(next).bind(SCAN_PAGE_ROWS).fetch_all(&pool).await?;
        let Some(last) = rows.last() else { break };
        next = last.try_get::<i64, _>(0)? + 1;
        rows_read += rows.len() as u64;
        for row in &rows {
            bytes += row.try_get::<&str, _>(6)?.len();
        }
    }
    pool.close().await;
    Ok((rows_read, bytes))
}

/// A `kB` field of `/proc/self/status` (Linux): `VmHWM` is the peak resident set so far.
fn proc_status_kib(field: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/self/status").into())
}

/// A writer that counts the bytes written to it and keeps none.
struct Counted(u64);

impl std::io::Write for Counted {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
