//! What every test shares: a fresh database per test on either backend, and event makers.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt;
use libtest_mimic::Failed;
use shequ_store::{CommandContext, NewEvent};
use sqlx::Connection;
use uuid::Uuid;

/// How long the suite waits for PostgreSQL to answer before calling it unreachable.
const POSTGRES_PROBE_TIMEOUT_MS: u64 = 3_000;
const POSTGRES_DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendUnderTest {
    Sqlite,
    Postgres,
}

impl BackendUnderTest {
    pub fn label(self) -> &'static str {
        match self {
            BackendUnderTest::Sqlite => "sqlite",
            BackendUnderTest::Postgres => "postgres",
        }
    }
}

/// The database one test gets, fresh and empty.
#[derive(Debug, Clone)]
pub struct Db {
    pub backend: BackendUnderTest,
    pub url: String,
}

pub type TestFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
pub type TestFn = fn(Db) -> TestFuture;

/// `tests![a, b]` lists async test functions `async fn a(db: Db)` by name.
macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|db| Box::pin($name(db))) as $crate::helpers::TestFn)),*]
    };
}
pub(crate) use tests;

/// Whether a PostgreSQL server answers, and whether it must.
#[derive(Debug, Clone)]
pub struct Postgres {
    admin_url: String,
    required: bool,
    unreachable: Option<String>,
}

impl Postgres {
    /// The server the environment names, not yet probed.
    fn configured() -> Self {
        let admin_url =
            std::env::var("SHEQU_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_DEFAULT_URL.to_owned());
        let required = std::env::var("SHEQU_TEST_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
        Self { admin_url, required, unreachable: None }
    }

    pub fn probe() -> Self {
        let Self { admin_url, required, .. } = Self::configured();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let unreachable = runtime.block_on(async {
            let timeout = Duration::from_millis(POSTGRES_PROBE_TIMEOUT_MS);
            match tokio::time::timeout(timeout, sqlx::PgConnection::connect(&admin_url)).await {
                Ok(Ok(connection)) => {
                    let _ = connection.close().await;
                    None
                }
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some(format!("no answer within {POSTGRES_PROBE_TIMEOUT_MS} ms")),
            }
        });
        Self { admin_url, required, unreachable }
    }

    /// Not reachable, and not required: the PostgreSQL half is reported as not run.
    pub fn skipped(&self) -> bool {
        self.unreachable.is_some() && !self.required
    }

    pub fn describe(&self) -> String {
        let host = self.admin_url.rsplit('@').next().unwrap_or("?");
        match &self.unreachable {
            None => format!("PostgreSQL at {host} answers"),
            Some(error) => format!("PostgreSQL at {host} is unreachable: {error}"),
        }
    }
}

/// Runs one test on one backend in its own runtime and database, and drops the database
/// afterwards whether the test passed or not.
pub fn run_trial(backend: BackendUnderTest, postgres: &Postgres, test: TestFn) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build()?;
    runtime.block_on(async {
        let fresh = FreshDb::create(backend, postgres).await?;
        let outcome = AssertUnwindSafe(test(fresh.db.clone())).catch_unwind().await;
        fresh.drop_database().await;
        match outcome {
            Ok(()) => Ok(()),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// One more fresh database inside a test, for tests that need two stores (e.g. one on each
/// backend). Dropped (PostgreSQL) or deleted (SQLite) when this goes, even if the test panics.
/// A test that makes a PostgreSQL one must be listed so that it is not run when PostgreSQL is
/// unreachable (see `export::ACROSS_BACKENDS`).
pub struct ExtraDb {
    pub db: Db,
    fresh: Option<FreshDb>,
}

impl ExtraDb {
    pub async fn create(backend: BackendUnderTest) -> Self {
        let fresh = FreshDb::create(backend, &Postgres::configured()).await.unwrap_or_else(|error| {
            panic!("cannot make a fresh {} database: {}", backend.label(), error.message().unwrap_or("?"))
        });
        Self { db: fresh.db.clone(), fresh: Some(fresh) }
    }
}

impl Drop for ExtraDb {
    fn drop(&mut self) {
        let Some(fresh) = self.fresh.take() else { return };
        if fresh.postgres.is_none() {
            return;
        }
        // Dropping a database is async, and this may run inside a runtime: use a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                runtime.block_on(fresh.drop_database());
            }
        })
        .join();
    }
}

impl BackendUnderTest {
    pub fn other(self) -> Self {
        match self {
            BackendUnderTest::Sqlite => BackendUnderTest::Postgres,
            BackendUnderTest::Postgres => BackendUnderTest::Sqlite,
        }
    }
}

struct FreshDb {
    db: Db,
    _directory: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl FreshDb {
    async fn create(backend: BackendUnderTest, postgres: &Postgres) -> Result<Self, Failed> {
        match backend {
            BackendUnderTest::Sqlite => {
                let directory = tempfile::tempdir()?;
                let path = directory.path().join("shequ.db");
                let url = format!("sqlite://{}", path.display());
                Ok(Self { db: Db { backend, url }, _directory: Some(directory), postgres: None })
            }
            BackendUnderTest::Postgres => {
                if let Some(error) = &postgres.unreachable {
                    return Err(format!(
                        "PostgreSQL is required (SHEQU_TEST_REQUIRE_POSTGRES=1) but unreachable: {error}"
                    )
                    .into());
                }
                let name = format!("shequ_test_{}", Uuid::now_v7().simple());
                let mut admin = sqlx::PgConnection::connect(&postgres.admin_url).await?;
                // The name is made here from a UUID, never from input; identifiers cannot be bound.
                sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str()).await?;
                admin.close().await?;
                let url = database_url(&postgres.admin_url, &name);
                Ok(Self {
                    db: Db { backend, url },
                    _directory: None,
                    postgres: Some((postgres.admin_url.clone(), name)),
                })
            }
        }
    }

    async fn drop_database(&self) {
        let Some((admin_url, name)) = &self.postgres else { return };
        if let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await {
            let _ = sqlx::Executor::execute(
                &mut admin,
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
            )
            .await;
        }
    }
}

/// `admin_url` with its database name replaced by `name` (a URL that does not parse is taken
/// as it is, and the connection to it says why).
fn database_url(admin_url: &str, name: &str) -> String {
    let Ok(mut url) = url::Url::parse(admin_url) else { return admin_url.to_owned() };
    url.set_path(name);
    url.into()
}

/// A new event with a fresh id and ordinary metadata.
pub fn event(event_type: &str, data: &str) -> NewEvent {
    let metadata = CommandContext::new("system:test").metadata(chrono::Utc::now()).to_json();
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        event_version: 1,
        data: data.to_owned(),
        metadata,
    }
}

/// A fresh stream name in `category`.
pub fn stream(category: &str) -> String {
    format!("{category}-{}", Uuid::now_v7())
}

/// Runs a statement on the test database directly, as an operator (or an attacker) with
/// `sqlite3` or `psql` would.
///
/// It calls `Executor::execute`, whose future is boxed, rather than `raw_sql(..).execute`:
/// rustc cannot prove the latter's future `Send` for every lifetime inside the test futures
/// (rust-lang/rust#96865).
pub async fn execute_directly(db: &Db, sql: &str) -> Result<(), sqlx::Error> {
    match db.backend {
        BackendUnderTest::Sqlite => {
            let mut connection = sqlx::SqliteConnection::connect(&db.url).await?;
            sqlx::Executor::execute(&mut connection, sql).await?;
            connection.close().await
        }
        BackendUnderTest::Postgres => {
            let mut connection = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::Executor::execute(&mut connection, sql).await?;
            connection.close().await
        }
    }
}

/// Runs `sql` on the store behind the log's back, its append-only triggers lifted first
/// (SQLite drops them, so once a database).
pub async fn tamper(db: &Db, sql: &str) {
    execute_directly(db, &format!("{} {sql}", disable_append_only(db))).await.unwrap();
}

/// The statement that lets `execute_directly` edit the log despite its append-only triggers.
pub fn disable_append_only(db: &Db) -> &'static str {
    match db.backend {
        BackendUnderTest::Sqlite => "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;",
        BackendUnderTest::Postgres => "ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete;",
    }
}
