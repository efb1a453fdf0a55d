//! `shequ serve --demo` as an operator runs it: the real binary, on a SQLite file in a fresh
//! directory, spoken to over plain TCP. What the suite under `tests/` cannot reach in process:
//! the printed tokens, the 408 of a body that never comes, and a graceful stop on SIGTERM
//! that finishes the request in flight and leaves a log that verifies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the server may take to load the demo and listen.
const START_SECONDS: u64 = 120;

/// The running server, killed if the test fails before it stops it.
struct Server {
    child: Child,
    addr: String,
    tokens: Vec<(String, String)>,
    stderr: mpsc::Receiver<String>,
    /// What it said on stderr up to the line that says where it listens.
    said_at_start: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shequ"))
            .args(["serve", "--demo", "--addr", "127.0.0.1:0", "--request-timeout-seconds", "3"])
            .env("SHEQU_DATABASE_URL", format!("sqlite://{}", dir.join("shequ.db").display()))
            .env("SHEQU_KEY_FILE", dir.join("shequ.key"))
            .env("SHEQU_CHECKPOINT_KEY_FILE", dir.join("shequ-checkpoint.key"))
            .env("SHEQU_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the shequ binary runs");
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(START_SECONDS);
        let mut said_at_start = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = stderr.recv_timeout(left).expect("shequ says where it listens");
            if let Some((_, rest)) = line.split_once("listening on http://") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            said_at_start.push(line);
        };
        // The tokens are printed before the server listens: a heading, then one per role.
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
        let heading = stdout.next().unwrap_or_default();
        assert!(heading.starts_with("Demo tokens"), "{heading}");
        let tokens = stdout
            .take(6)
            .map(|line| {
                let (name, rest) = line.split_once('=').unwrap_or_else(|| panic!("not a token: {line}"));
                (name.to_owned(), rest.split_whitespace().next().unwrap_or_default().to_owned())
            })
            .collect();
        Server { child, addr, tokens, stderr, said_at_start }
    }

    fn token(&self, name: &str) -> &str {
        let found = self.tokens.iter().find(|(held, _)| held == name);
        &found.unwrap_or_else(|| panic!("no {name} token in {:?}", self.tokens)).1
    }

    /// Sends SIGTERM, as `systemctl stop` or `docker stop` would.
    fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

/// The head of a request; `body_length` is what Content-Length announces.
fn head(method: &str, path: &str, token: Option<&str>, body_length: usize) -> String {
    let authorization = token.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: shequ\r\nConnection: close\r\n{authorization}\
         Content-Type: application/json\r\nContent-Length: {body_length}\r\n\r\n"
    )
}

/// The status and body of what came back on `stream`.
fn answer(mut stream: TcpStream) -> (u16, String) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

fn call(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(head(method, path, token, body.len()).as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    answer(stream)
}

fn proposal(mandate: &str) -> String {
    serde_json::json!({
        "mandate_id": mandate, "matter_code": "EMP-001",
        "community": shequ::demo::places().communities[0].0,
        "scope": "Unemployment registration assistance", "volume": 5, "deadline": "2026-12-31",
        "funds_offered_fen": 15000, "powers_granted": ["collect-resident-data"],
        "working_conditions": ["service-counter", "information-terminal"],
    })
    .to_string()
}

#[test]
fn serve_demo_prints_working_tokens_times_out_slow_bodies_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let names: Vec<&str> = server.tokens.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["DISTRICT", "DEPARTMENT", "STREET", "COMMUNITY", "INSPECTOR", "RESIDENT"]);
    let addr = server.addr.clone();

    // The server folds the log into its projection as it starts, and says when it is ready.
    assert_eq!(call(&addr, "GET", "/health", None, "").0, 200);
    let deadline = Instant::now() + Duration::from_secs(START_SECONDS);
    loop {
        let (status, body) = call(&addr, "GET", "/ready", None, "");
        match status {
            200 => break assert!(body.contains("\"status\":\"ready\""), "{body}"),
            503 if Instant::now() < deadline => assert!(body.contains("\"catching_up\""), "{body}"),
            _ => panic!("/ready: {status} {body}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let said: Vec<String> = server.said_at_start.iter().cloned().chain(server.stderr.try_iter()).collect();
    assert!(said.iter().any(|line| line.contains("projection caught up; ready")), "{said:#?}");

    // The printed tokens are the server's own: each is let in where its role is.
    let (status, body) = call(&addr, "GET", "/api/v1/mandates?limit=2", Some(server.token("STREET")), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"items\""), "{body}");
    let inspector = server.token("INSPECTOR");
    assert_eq!(call(&addr, "GET", "/api/v1/ledger/balances", Some(inspector), "").0, 200);
    let resident = server.token("RESIDENT");
    assert_eq!(call(&addr, "GET", "/api/v1/ledger/balances", Some(resident), "").0, 403);
    assert_eq!(call(&addr, "GET", "/api/v1/ledger/balances", Some("forged"), "").0, 401);

    // A body announced and never sent in full is answered 408 once the timeout passes, and
    // nothing of it is written.
    let (_, before) = call(&addr, "GET", "/api/v1/audit/state", Some(inspector), "");
    let mandate = uuid::Uuid::now_v7().to_string();
    let body = proposal(&mandate);
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(head("POST", "/api/v1/mandates", Some(server.token("STREET")), body.len()).as_bytes())
        .unwrap();
    slow.write_all(&body.as_bytes()[..body.len() / 2]).unwrap();
    let started = Instant::now();
    let (status, answered) = answer(slow);
    assert_eq!(status, 408, "{answered}");
    assert!(started.elapsed() >= Duration::from_secs(2), "answered after the timeout, not before");
    let (status, _) = call(&addr, "GET", &format!("/api/v1/mandates/{mandate}"), Some(inspector), "");
    assert_eq!(status, 404, "the half-sent proposal was not recorded");
    let (_, after) = call(&addr, "GET", "/api/v1/audit/state", Some(inspector), "");
    assert_eq!(before, after);

    // SIGTERM while a proposal is on its way: it is answered in full, then the server stops
    // by itself, with success, and the log it leaves verifies.
    let mandate = uuid::Uuid::now_v7().to_string();
    let body = proposal(&mandate);
    let mut in_flight = TcpStream::connect(&addr).unwrap();
    in_flight
        .write_all(head("POST", "/api/v1/mandates", Some(server.token("STREET")), body.len()).as_bytes())
        .unwrap();
    in_flight.write_all(&body.as_bytes()[..body.len() / 2]).unwrap();
    // Time for the server to read the head and start the handler (a connection whose request
    // has not begun is idle, and a graceful stop closes it), well within the 3 s timeout.
    std::thread::sleep(Duration::from_millis(500));
    server.terminate();
    std::thread::sleep(Duration::from_millis(300));
    in_flight.write_all(&body.as_bytes()[body.len() / 2..]).unwrap();
    let (status, answered) = answer(in_flight);
    assert_eq!(status, 201, "{answered}");
    assert!(answered.contains(&mandate), "{answered}");
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "shequ did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let said: Vec<String> = server.stderr.try_iter().collect();
    assert!(said.iter().any(|line| line.contains("shequ stopped")), "{said:#?}");
    assert!(TcpStream::connect(&addr).is_err(), "nothing listens any more");

    let verified = Command::new(env!("CARGO_BIN_EXE_shequ"))
        .args(["verify"])
        .env("SHEQU_DATABASE_URL", format!("sqlite://{}", dir.path().join("shequ.db").display()))
        .env("SHEQU_CHECKPOINT_KEY_FILE", dir.path().join("shequ-checkpoint.key"))
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
}
