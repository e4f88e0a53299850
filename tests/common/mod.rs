//! Fixtures shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "console")]
pub mod browser;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use jiff::Timestamp;
use std::sync::Arc;

use tower_apikey::hash::HashParams;
use tower_apikey::key::{KeyFormat, KeyId, PlaintextKey};
use tower_apikey::store::{FleetRates, RateShare};
use tower_apikey::test_util::{Forward, StoreDouble};
use tower_apikey::{KeyRecord, MemoryStore, StoreError, UsageStore};

/// A test-vector file from `tests/data` (copied there from the project's shared vectors; see
/// `tests/data/README.md`). A missing or broken file fails the test: these must never skip.
pub fn vectors(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("test vectors missing at {path}: {e}; they must not be skipped")
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid JSON: {e}"))
}

/// Polls `future` until it has waited (returned `Pending`) `waits` times, then drops it
/// there, as hyper drops a request's future when its client disconnects. Each wait is real:
/// the future is polled again only when it is woken. `Some(output)` if it finished first.
pub async fn drop_after_waits<F: std::future::Future>(
    future: F,
    waits: usize,
) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut waited = 0;
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
        std::task::Poll::Pending if waited == waits => std::task::Poll::Ready(None),
        std::task::Poll::Pending => {
            waited += 1;
            std::task::Poll::Pending
        }
    })
    .await
}

/// Maximo export rows for `keys` (user `USER<i>` for the i-th), hashed with `iterations`.
pub fn maximo_rows(keys: &[String], iterations: u32) -> Vec<tower_apikey::lifecycle::MaximoKey> {
    let params = HashParams::default().with_iterations(iterations).unwrap();
    keys.iter()
        .enumerate()
        .map(|(i, key)| tower_apikey::lifecycle::MaximoKey {
            userid: format!("USER{i}"),
            apikey: tower_apikey::hash::Pbkdf2Hash::create(key.as_bytes(), &params)
                .unwrap()
                .to_string(),
            expiration: -1,
        })
        .collect()
}

/// A fresh key for `principal`; the record carries the `read` permission.
pub fn issue(principal: &str) -> (KeyRecord, PlaintextKey) {
    let (mut record, key) =
        KeyRecord::generate(principal, &KeyFormat::default(), &HashParams::default()).unwrap();
    record.permissions = vec!["read".into()];
    (record, key)
}

/// A memory store that can be switched off, as a database that went away.
pub type FlakyStore = Forward<Flaky>;

/// The double behind [`FlakyStore`].
#[derive(Clone, Default)]
pub struct Flaky {
    pub inner: MemoryStore,
    down: Arc<AtomicBool>,
    /// Every call fails as a store bug would (a panicked task): not an outage.
    broken: Arc<AtomicBool>,
    /// Every call first yields to the runtime once: an await point where a caller may vanish.
    yielding: Arc<AtomicBool>,
    /// How many `record_last_used` batches reached the store.
    pub last_used_writes: Arc<AtomicUsize>,
    /// `share_rate_usage` panics, as a buggy store implementation would.
    panicking_shares: Arc<AtomicBool>,
    /// How many `share_rate_usage` calls reached the store (panicked ones too).
    pub share_calls: Arc<AtomicUsize>,
    /// Milliseconds each `share_rate_usage` takes before it reaches the store.
    share_delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Flaky {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }

    pub fn set_panicking_shares(&self, panicking: bool) {
        self.panicking_shares.store(panicking, Ordering::SeqCst);
    }

    pub fn set_share_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.share_delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn set_yielding(&self, yielding: bool) {
        self.yielding.store(yielding, Ordering::SeqCst);
    }
}

impl StoreDouble for Flaky {
    type Inner = MemoryStore;

    fn inner(&self) -> &MemoryStore {
        &self.inner
    }

    async fn before(&self, _method: &'static str) -> Result<(), StoreError> {
        if self.yielding.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("connection refused".into()))
        } else if self.broken.load(Ordering::SeqCst) {
            Err(StoreError::Internal("a store task panicked".into()))
        } else {
            Ok(())
        }
    }

    async fn record_last_used(&self, used: Vec<(KeyId, Timestamp)>) -> Result<(), StoreError> {
        self.last_used_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.record_last_used(used).await
    }

    async fn share_rate_usage(&self, share: RateShare) -> Result<FleetRates, StoreError> {
        self.share_calls.fetch_add(1, Ordering::SeqCst);
        assert!(
            !self.panicking_shares.load(Ordering::SeqCst),
            "a store bug: share_rate_usage panicked"
        );
        let delay = self.share_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        self.inner.share_rate_usage(share).await
    }
}

/// Runs the `tower-apikey` binary with `stdin` and waits for it.
#[cfg(feature = "cli")]
pub fn run_cli(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tower-apikey"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading stdin closes it: not an error here.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// A PostgreSQL database for one test.
#[cfg(feature = "postgres")]
pub mod pg {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tower_apikey::store::PgKeyStore;
    use tower_apikey::test_util::TempCluster;

    /// A fresh, empty database, and the throwaway cluster it lives in (none when it is on
    /// DATABASE_URL's server).
    pub struct TestDb {
        pub url: String,
        pub cluster: Option<TempCluster>,
    }

    /// A fresh database with the schema in place, and a store on it.
    pub async fn migrated_store() -> Option<(TestDb, PgKeyStore)> {
        let db = database().await?;
        let store = PgKeyStore::connect(db.url.as_str()).await.unwrap();
        assert_eq!(
            store.migrate().await.unwrap(),
            6,
            "a fresh database takes every migration"
        );
        Some((db, store))
    }

    /// A database on DATABASE_URL's server when that is set, else in a throwaway cluster.
    /// Without PostgreSQL: `None` and a notice, or a failure when TOWER_APIKEY_REQUIRE_PG is
    /// set (as `.ci/run` does).
    pub async fn database() -> Option<TestDb> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "tak_test_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("DATABASE_URL reachable");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("CREATE DATABASE on DATABASE_URL's server");
            let url = if url.contains("://") {
                let (base, _) = url.rsplit_once('/').unwrap();
                format!("{base}/{name}")
            } else {
                format!("{url} dbname={name}")
            };
            return Some(TestDb { url, cluster: None });
        }
        match TempCluster::start() {
            Ok(cluster) => {
                let url = cluster.fresh_database().await.expect("a fresh database");
                Some(TestDb {
                    url,
                    cluster: Some(cluster),
                })
            }
            Err(error) if std::env::var_os("TOWER_APIKEY_REQUIRE_PG").is_some() => {
                panic!("PostgreSQL is required here (TOWER_APIKEY_REQUIRE_PG) but: {error}")
            }
            Err(error) => {
                eprintln!(
                    "SKIPPED: no PostgreSQL ({error}); install the server or set DATABASE_URL"
                );
                None
            }
        }
    }
}

/// A server process, killed when the test ends, however it ends.
pub struct Server {
    pub child: std::process::Child,
    /// Every line it printed (its log included) since it said where it listens.
    output: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// The lines printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// Sends SIGTERM (as `kill`, systemd and Kubernetes do) and waits for the process to
    /// exit, at most `within`; its exit status.
    pub fn terminate(&mut self, within: std::time::Duration) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM");
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "still running {within:?} after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Resident memory now, in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An example's binary: `cargo test` builds the examples beside the test binaries' directory.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let path = deps.parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "the {name} example was not built at {}",
        path.display()
    );
    path
}

/// Starts an example server as `command` says, on 127.0.0.1 port 0. Returns the guard, the
/// address it printed (`listening on http://ADDR`), and the first key it printed, if any.
pub fn start_example(mut command: std::process::Command) -> (Server, String, Option<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = command
        .env("ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let output = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = Server {
        child,
        output: Arc::clone(&output),
    };
    let mut key = None;
    for line in stdout.by_ref() {
        let line = line.unwrap();
        let trimmed = line.trim();
        if trimmed.starts_with("tak_") && key.is_none() {
            key = Some(trimmed.to_owned());
        }
        if let Some(rest) = trimmed.strip_prefix("listening on http://") {
            let addr = rest.split(' ').next().unwrap().to_owned();
            // Keep reading the server's output, so a full pipe never stalls it; show it on
            // failure (the test harness captures it).
            std::thread::spawn(move || {
                for line in stdout.map_while(Result::ok) {
                    eprintln!("server: {line}");
                    output.lock().unwrap().push(line);
                }
            });
            return (server, addr, key);
        }
    }
    panic!("the server did not say where it listens");
}

/// Status code and body of a raw HTTP/1.1 GET of `target` from `addr`.
pub fn http_get(addr: &str, target: &str, apikey: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let header = apikey
        .map(|k| format!("apikey: {k}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\n{header}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// Status and body of a raw HTTP/1.1 POST of `body` to `target`, with `headers`.
pub fn http_post(addr: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    http_request("POST", addr, target, headers, body)
}

/// Status and body of a raw HTTP/1.1 `method` request of `target` with a JSON `body`.
pub fn http_request(
    method: &str,
    addr: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let (status, _, body) = http_exchange(method, addr, target, &all, body);
    (status, body)
}

/// Status, headers (names lower-cased) and body of a raw HTTP/1.1 `method` request of
/// `target` with `headers` and `body`.
pub fn http_exchange(
    method: &str,
    addr: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}
