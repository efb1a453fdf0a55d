//! Append throughput and latency, side by side in one run:
//!
//! - `shequ-sqlite`, `shequ-postgres`: shequ's event log (group commit, expected revision,
//!   global position, hash chain), one single-event append per command;
//! - `esrs-pgstore`: esrs's own `PgStore` on the same PostgreSQL server, one `persist` per
//!   command (its design: one transaction each);
//! - `raw-sqlite`, `raw-postgres`: the limit: one writer group-committing the same rows
//!   with one multi-row INSERT per batch, with no checks, no chain and no reads.
//!
//! Every client appends to its own stream as fast as it can for the given time. Durability
//! is the same for all: SQLite WAL with synchronous=FULL, PostgreSQL synchronous_commit=on.
//!
//! `cargo run --release -p shequ-bench -- append --clients 16,64 --seconds 10`
//!
//! `decide` times policy decisions (see `decide.rs`); `replay` times replaying, verifying
//! and exporting a long log (see `replay.rs`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use esrs::store::postgres::{PgStore, PgStoreBuilder};
use esrs::store::EventStore;
use esrs::AggregateState;
use shequ_domain::mandate::Proposal;
use shequ_domain::organisation::{Organisation, OrganisationEvent};
use shequ_domain::Fen;
use shequ_store::{CommandContext, EventLog, ExpectedRevision, NewEvent};
use sqlx::{Connection, Executor, QueryBuilder};
use tokio::sync::{mpsc, oneshot};

mod decide;
mod generate;
mod load;
mod replay;
use uuid::Uuid;

/// The same allocator as the `shequ` binary (docs/adr/0009-mimalloc-global-allocator.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rows the raw writer takes into one transaction at most (as shequ's writer).
const RAW_BATCH_ROWS_MAX: usize = 1_024;
/// SQLite binds at most 32,766 values per statement; 10 per row.
const RAW_SQLITE_ROWS_PER_INSERT_MAX: usize = 1_000;

#[derive(Debug, Parser)]
#[command(about = "shequ's benchmarks")]
enum Bench {
    /// Appends: shequ's stores beside esrs's PgStore and a raw batched INSERT.
    Append(Arguments),
    /// Policy decisions: one proposal through the access rules, alone and through the
    /// whole command path.
    Decide(DecideArguments),
    /// Commands over HTTP (proposals, service requests) beside a bare append of their events.
    Load(load::LoadArguments),
    /// Reading a long log of real domain events: replay, verify and export rates and peak
    /// memory, on SQLite and PostgreSQL.
    Replay(replay::ReplayArguments),
    /// One phase of `replay`, in its own process (run by `replay`).
    #[command(hide = true)]
    Phase(replay::PhaseArguments),
}

#[derive(Debug, clap::Args)]
struct DecideArguments {
    /// Decisions to time (after as many untimed ones to warm up).
    #[arg(long, default_value_t = 5_000)]
    decisions: usize,
    /// Proposals to time through the whole command path (on a fresh SQLite demo store).
    #[arg(long, default_value_t = 300)]
    commands: usize,
}

#[derive(Debug, clap::Args)]
struct Arguments {
    /// Concurrent clients, as a comma-separated list.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    clients: Vec<usize>,
    /// How long each measurement runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// How long each target runs before the measurement starts (connections open, caches warm).
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// A PostgreSQL server where the benchmark may create and drop databases.
    #[arg(
        long,
        env = "SHEQU_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Which targets to run, as a comma-separated list.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "shequ-sqlite,raw-sqlite,shequ-postgres,esrs-pgstore,raw-postgres"
    )]
    targets: Vec<Target>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    ShequSqlite,
    RawSqlite,
    ShequPostgres,
    #[value(name = "esrs-pgstore")]
    EsrsPgStore,
    RawPostgres,
}

impl Target {
    fn name(self) -> String {
        argument_name(self)
    }
}

/// The databases a benchmark runs on, and the PostgreSQL server it may use for them.
#[derive(Debug, clap::Args)]
struct Databases {
    /// Which databases, as a comma-separated list.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<Backend>,
    /// A PostgreSQL server where the benchmark may create and drop databases.
    #[arg(
        long,
        env = "SHEQU_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The database's own name, for the tables' headings.
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The name `value` takes on the command line; the tables print it too.
fn argument_name(value: impl clap::ValueEnum) -> String {
    value.to_possible_value().expect("no value is skipped").get_name().to_owned()
}

/// One way of appending one single-event command.
#[derive(Clone)]
enum Appender {
    Shequ(EventLog),
    Esrs(Arc<PgStore<Organisation>>),
    Raw(mpsc::Sender<(NewEvent, String, oneshot::Sender<()>)>),
}

struct Measurement {
    target: Target,
    clients: usize,
    events: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Measurement {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, percentile: f64) -> f64 {
        let index = ((self.latencies_us.len() as f64 * percentile).ceil() as usize).saturating_sub(1);
        self.latencies_us.get(index).copied().unwrap_or(0) as f64 / 1000.0
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let result = match Bench::parse() {
        Bench::Append(arguments) => runtime.block_on(run(arguments)),
        Bench::Decide(arguments) => runtime.block_on(decide::run(arguments)),
        Bench::Load(arguments) => {
            runtime.block_on(load::run(arguments)).map_err(|error| error as Box<dyn std::error::Error>)
        }
        Bench::Replay(arguments) => runtime.block_on(replay::run(arguments)),
        Bench::Phase(arguments) => runtime.block_on(replay::phase(arguments)),
    };
    if let Err(error) = result {
        eprintln!("shequ-bench: error: {error}");
        std::process::exit(1);
    }
}

async fn run(arguments: Arguments) -> Result<(), Box<dyn std::error::Error>> {
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    println!("# shequ append benchmark: {} s per run, {cores} cores\n", arguments.seconds);
    let mut measurements = Vec::new();
    for &clients in &arguments.clients {
        for &target in &arguments.targets {
            eprintln!("running {} with {clients} clients…", target.name());
            let measurement = measure(target, clients, &arguments).await?;
            eprintln!(
                "  {:.0} events/s, p99 {:.1} ms",
                measurement.events_per_second(),
                measurement.percentile_ms(0.99)
            );
            measurements.push(measurement);
        }
    }
    println!("| target | clients | events/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for measurement in &measurements {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} |",
            measurement.target.name(),
            measurement.clients,
            measurement.events_per_second(),
            measurement.percentile_ms(0.50),
            measurement.percentile_ms(0.99)
        );
    }
    println!();
    for &clients in &arguments.clients {
        let rate = |target| {
            measurements
                .iter()
                .find(|measurement| measurement.target == target && measurement.clients == clients)
                .map(Measurement::events_per_second)
        };
        let ratios = [
            ("shequ-postgres / esrs-pgstore", Target::ShequPostgres, Target::EsrsPgStore),
            ("shequ-postgres / raw-postgres", Target::ShequPostgres, Target::RawPostgres),
            ("shequ-sqlite / raw-sqlite", Target::ShequSqlite, Target::RawSqlite),
        ];
        for (label, numerator, denominator) in ratios {
            if let (Some(numerator), Some(denominator)) = (rate(numerator), rate(denominator)) {
                println!("- {clients} clients: {label} = {:.2}×", numerator / denominator);
            }
        }
    }
    Ok(())
}

async fn measure(
    target: Target,
    clients: usize,
    arguments: &Arguments,
) -> Result<Measurement, Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let sqlite_url = format!("sqlite://{}", directory.path().join("bench.db").display());
    let database = format!("shequ_bench_{}", Uuid::now_v7().simple());
    let postgres_url = database_url(&arguments.postgres, &database);
    let on_postgres = matches!(target, Target::ShequPostgres | Target::EsrsPgStore | Target::RawPostgres);
    if on_postgres {
        let mut admin = sqlx::PgConnection::connect(&arguments.postgres).await?;
        admin.execute(format!("CREATE DATABASE {database}").as_str()).await?;
        admin.close().await?;
    }
    let appender = match target {
        Target::ShequSqlite => Appender::Shequ(EventLog::open(&sqlite_url).await?),
        Target::ShequPostgres => Appender::Shequ(EventLog::open(&postgres_url).await?),
        Target::EsrsPgStore => {
            let options = sqlx::postgres::PgConnectOptions::from_str(&postgres_url)?
                .options([("synchronous_commit", "on")]);
            let connections = u32::try_from(clients)?.min(90);
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(connections)
                .connect_with(options)
                .await?;
            Appender::Esrs(Arc::new(PgStoreBuilder::<Organisation>::new(pool).try_build().await?))
        }
        Target::RawSqlite => Appender::Raw(raw_writer(RawDatabase::sqlite(&sqlite_url).await?)),
        Target::RawPostgres => Appender::Raw(raw_writer(RawDatabase::postgres(&postgres_url).await?)),
    };
    let measure_from = Instant::now() + Duration::from_secs(arguments.warmup_seconds);
    let deadline = measure_from + Duration::from_secs(arguments.seconds);
    let tasks: Vec<_> =
        (0..clients).map(|_| tokio::spawn(client(appender.clone(), measure_from, deadline))).collect();
    let mut latencies_us = Vec::new();
    let mut appended = 0;
    for task in tasks {
        let (measured, total) = task.await??;
        latencies_us.extend(measured);
        appended += total;
    }
    // Appends that started inside the window count; the window is exactly `seconds` long.
    let elapsed = Duration::from_secs(arguments.seconds);
    latencies_us.sort_unstable();
    if let Appender::Shequ(log) = &appender {
        // The figures count only if the chain the store produced under load is intact.
        let report = log.verify(|_| {}).await?;
        assert_eq!(report.failure, None, "the chain must verify after the run");
        assert_eq!(report.events, appended);
        log.close().await;
    }
    drop(appender);
    if on_postgres {
        let mut admin = sqlx::PgConnection::connect(&arguments.postgres).await?;
        admin.execute(format!("DROP DATABASE {database} WITH (FORCE)").as_str()).await?;
    }
    Ok(Measurement { target, clients, events: latencies_us.len() as u64, elapsed, latencies_us })
}

/// Appends single-event commands to one stream until the deadline; returns the latency of
/// each append started at or after `measure_from`, and how many it appended in all.
async fn client(
    appender: Appender,
    measure_from: Instant,
    deadline: Instant,
) -> Result<(Vec<u64>, u64), String> {
    let aggregate_id = Uuid::now_v7();
    let stream = format!("organisation-{aggregate_id}");
    let metadata = CommandContext::new("system:bench").metadata(chrono::Utc::now()).to_json();
    let mut state: AggregateState<<Organisation as esrs::Aggregate>::State> =
        AggregateState::with_id(aggregate_id);
    let mut expected = ExpectedRevision::NoStream;
    let mut latencies_us = Vec::new();
    let mut count = 0u64;
    while Instant::now() < deadline {
        count += 1;
        let event =
            OrganisationEvent::OrganisationRenamed { name: format!("Community service station {count}") };
        let started = Instant::now();
        match &appender {
            Appender::Shequ(log) => {
                let new_event = new_event(&event, &metadata);
                let appended = log
                    .append(&stream, expected, vec![new_event])
                    .await
                    .map_err(|error| error.to_string())?;
                expected = appended.next_expected_revision().expect("one event was appended");
            }
            Appender::Esrs(store) => {
                store.persist(&mut state, vec![event]).await.map_err(|error| error.to_string())?;
            }
            Appender::Raw(writer) => {
                let (reply, done) = oneshot::channel();
                writer
                    .send((new_event(&event, &metadata), stream.clone(), reply))
                    .await
                    .map_err(|_| "the raw writer stopped")?;
                done.await.map_err(|_| "the raw writer failed")?;
            }
        }
        if started >= measure_from {
            latencies_us.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
    }
    Ok((latencies_us, count))
}

fn new_event(event: &OrganisationEvent, metadata: &str) -> NewEvent {
    use shequ_domain::DomainEvent;
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event.event_type().to_owned(),
        event_version: event.event_version(),
        data: event.to_data().expect("organisation events serialise"),
        metadata: metadata.to_owned(),
    }
}

/// The raw limit: the same rows, batched by one writer, with no reads and no checks.
enum RawDatabase {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RawDatabase {
    async fn sqlite(url: &str) -> Result<Self, sqlx::Error> {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(2).connect_with(options).await?;
        pool.execute(raw_table("INTEGER", "TEXT", "TEXT", "BLOB").as_str()).await?;
        Ok(RawDatabase::Sqlite(pool))
    }

    async fn postgres(url: &str) -> Result<Self, sqlx::Error> {
        let options =
            sqlx::postgres::PgConnectOptions::from_str(url)?.options([("synchronous_commit", "on")]);
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_with(options).await?;
        pool.execute(raw_table("BIGINT", "UUID", "TIMESTAMPTZ", "BYTEA").as_str()).await?;
        Ok(RawDatabase::Postgres(pool))
    }
}

/// The raw table: the columns of shequ's `events` table, in one database's types for integers,
/// UUIDs, times and bytes (declared once, so that both databases take the same rows).
fn raw_table(integer: &str, uuid: &str, time: &str, bytes: &str) -> String {
    format!(
        "CREATE TABLE raw_events (position {integer} PRIMARY KEY, stream TEXT NOT NULL, \
         revision {integer} NOT NULL, event_id {uuid} NOT NULL UNIQUE, event_type TEXT NOT NULL, \
         event_version INTEGER NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, \
         recorded_at {time} NOT NULL, hash {bytes} NOT NULL, UNIQUE (stream, revision))"
    )
}

type RawRequest = (NewEvent, String, oneshot::Sender<()>);

fn raw_writer(database: RawDatabase) -> mpsc::Sender<RawRequest> {
    let (sender, mut receiver) = mpsc::channel::<RawRequest>(8_192);
    tokio::spawn(async move {
        let mut position = 0i64;
        let mut revisions = std::collections::HashMap::<String, i64>::new();
        while let Some(first) = receiver.recv().await {
            let mut batch = vec![first];
            while batch.len() < RAW_BATCH_ROWS_MAX {
                match receiver.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let rows: Vec<(i64, &str, i64, &NewEvent)> = batch
                .iter()
                .map(|(event, stream, _)| {
                    position += 1;
                    let revision =
                        revisions.entry(stream.clone()).and_modify(|revision| *revision += 1).or_insert(0);
                    (position, stream.as_str(), *revision, event)
                })
                .collect();
            let now = chrono::Utc::now();
            let result = match &database {
                RawDatabase::Sqlite(pool) => raw_insert_sqlite(pool, &rows, now).await,
                RawDatabase::Postgres(pool) => raw_insert_postgres(pool, &rows, now).await,
            };
            if let Err(error) = result {
                eprintln!("raw writer: {error}");
                return;
            }
            for (_, _, reply) in batch {
                let _ = reply.send(());
            }
        }
    });
    sender
}

async fn raw_insert_sqlite(
    pool: &sqlx::SqlitePool,
    rows: &[(i64, &str, i64, &NewEvent)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    for chunk in rows.chunks(RAW_SQLITE_ROWS_PER_INSERT_MAX) {
        let mut insert: QueryBuilder<sqlx::Sqlite> = QueryBuilder::new(
            "INSERT INTO raw_events (position, stream, revision, event_id, event_type, event_version, data, metadata, recorded_at, hash) ",
        );
        insert.push_values(chunk, |mut values, (position, stream, revision, event)| {
            values
                .push_bind(*position)
                .push_bind(*stream)
                .push_bind(*revision)
                .push_bind(event.event_id.hyphenated().to_string())
                .push_bind(&event.event_type)
                .push_bind(i64::from(event.event_version))
                .push_bind(&event.data)
                .push_bind(&event.metadata)
                .push_bind(now)
                .push_bind([0u8; 32].as_slice());
        });
        insert.build().execute(&mut *transaction).await?;
    }
    transaction.commit().await
}

async fn raw_insert_postgres(
    pool: &sqlx::PgPool,
    rows: &[(i64, &str, i64, &NewEvent)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let positions: Vec<i64> = rows.iter().map(|row| row.0).collect();
    let streams: Vec<&str> = rows.iter().map(|row| row.1).collect();
    let revisions: Vec<i64> = rows.iter().map(|row| row.2).collect();
    let event_ids: Vec<Uuid> = rows.iter().map(|row| row.3.event_id).collect();
    let event_types: Vec<&str> = rows.iter().map(|row| row.3.event_type.as_str()).collect();
    let versions: Vec<i32> = rows.iter().map(|row| i32::try_from(row.3.event_version).unwrap_or(1)).collect();
    let data: Vec<&str> = rows.iter().map(|row| row.3.data.as_str()).collect();
    let metadata: Vec<&str> = rows.iter().map(|row| row.3.metadata.as_str()).collect();
    let hashes: Vec<&[u8]> = rows.iter().map(|_| [0u8; 32].as_slice()).collect();
    let mut transaction = pool.begin().await?;
    sqlx::query(
        "INSERT INTO raw_events (position, stream, revision, event_id, event_type, event_version, data, metadata, recorded_at, hash) \
         SELECT position, stream, revision, event_id, event_type, event_version, data, metadata, $9, hash \
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], $7::text[], $8::text[], $10::bytea[]) \
         AS batch(position, stream, revision, event_id, event_type, event_version, data, metadata, hash)",
    )
    .bind(&positions)
    .bind(&streams)
    .bind(&revisions)
    .bind(&event_ids)
    .bind(&event_types)
    .bind(&versions)
    .bind(&data)
    .bind(&metadata)
    .bind(now)
    .bind(&hashes)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await
}

/// The proposal `decide` and `load` make: one case of unemployment registration assistance in
/// `community`, by its street office, offering 30 yuan.
fn registration_proposal(street: Uuid, community: Uuid, deadline: &str) -> Proposal {
    Proposal {
        matter_code: "EMP-001".into(),
        delegating_unit: street,
        community,
        scope: "Unemployment registration assistance".into(),
        volume: 1,
        deadline: shequ_domain::Date::parse(deadline).expect("a date"),
        funds_offered_fen: Fen::parse(3_000).expect("3,000 fen is an amount"),
        powers_granted: vec!["collect-resident-data".into()],
        working_conditions: vec!["service-counter".into(), "information-terminal".into()],
    }
}

/// `admin_url` with its database name replaced by `name` (a URL that does not parse is taken
/// as it is, and the connection to it says why).
fn database_url(admin_url: &str, name: &str) -> String {
    let Ok(mut url) = url::Url::parse(admin_url) else { return admin_url.to_owned() };
    url.set_path(name);
    url.into()
}
