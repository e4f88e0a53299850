//! A throwaway PostgreSQL cluster, for tests and benchmarks against a real server.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A PostgreSQL cluster in a temporary directory, reachable only on a Unix socket there, with
/// a `postgres` superuser and no password. Stopped and removed when dropped.
///
/// Made with the server's own `initdb` and `pg_ctl`: found on `PATH`, else in Debian's layout
/// (`/usr/lib/postgresql/<version>/bin`). PostgreSQL refuses to run as root, so as root the
/// tools run as the `postgres` user (`runuser`). Durability is switched off: it is for tests.
///
/// # Example
/// ```no_run
/// use tower_apikey::store::PgKeyStore;
/// use tower_apikey::test_util::TempCluster;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = TempCluster::start()?;
/// let store = PgKeyStore::connect(cluster.fresh_database().await?).await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TempCluster {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    /// The port: the socket's file name, and the TCP port when `tcp`.
    port: u16,
    /// Whether the cluster also listens on 127.0.0.1 (TLS only).
    tcp: bool,
}

/// The socket's port number when the cluster listens on no TCP port (only the socket's file
/// name: each cluster has a directory of its own).
const PORT: u16 = 5432;

impl TempCluster {
    /// The directory holding `initdb` and `pg_ctl`, if the server is installed.
    pub fn binaries() -> Option<PathBuf> {
        let on_path = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .find(|dir| dir.join("pg_ctl").is_file() && dir.join("initdb").is_file())
        });
        on_path.or_else(|| {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|bin| bin.join("pg_ctl").is_file())
                .collect();
            versions.sort();
            versions.pop()
        })
    }

    /// Creates a cluster in a new temporary directory and starts it.
    ///
    /// # Errors
    /// When the server is not installed, or `initdb` or `pg_ctl` fails (their output is in
    /// the error).
    pub fn start() -> io::Result<Self> {
        Self::create(None)
    }

    /// As [`start`](Self::start), and also listening on 127.0.0.1 at
    /// [`tcp_port`](Self::tcp_port) with TLS only: `ssl=on` with this server certificate and
    /// key (PEM), and `pg_hba.conf` admitting TCP only over `hostssl` with a password
    /// (`scram-sha-256`; set one with `ALTER ROLE` over the socket, which stays `trust`).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> io::Result<Self> {
        Self::create(Some((cert_pem, key_pem)))
    }

    /// The TCP port on 127.0.0.1, for a cluster made by
    /// [`start_with_tls`](Self::start_with_tls).
    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp.then_some(self.port)
    }

    fn create(tls: Option<(&str, &str)>) -> io::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let bin = Self::binaries().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "PostgreSQL server binaries (pg_ctl, initdb) not found",
            )
        })?;
        let dir = std::env::temp_dir().join(format!(
            "tower-apikey-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let as_postgres = is_root();
        let port = match tls {
            // Free now; taken by the server a moment later.
            Some(_) => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
            None => PORT,
        };
        let cluster = Self {
            dir,
            bin,
            as_postgres,
            port,
            tcp: tls.is_some(),
        };
        if as_postgres {
            check(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&cluster.dir)
                    .output()?,
                "chown",
            )?;
        }
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        )?;
        if let Some((cert, key)) = tls {
            cluster.enable_tls(&data, cert, key)?;
        }
        cluster.start_again()?;
        Ok(cluster)
    }

    fn enable_tls(&self, data: &Path, cert: &str, key: &str) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        for (name, pem) in [("server.crt", cert), ("server.key", key)] {
            let path = data.join(name);
            std::fs::write(&path, pem)?;
            // The server refuses a key others can read.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            if self.as_postgres {
                check(
                    Command::new("chown")
                        .arg("postgres:postgres")
                        .arg(&path)
                        .output()?,
                    "chown",
                )?;
            }
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?
            .write_all(
                b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            )?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
    }

    /// A connection string for database `dbname`, over the Unix socket.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.dir.display(),
            self.port
        )
    }

    /// Creates a new, empty database and returns its connection string.
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub async fn fresh_database(&self) -> Result<String, tokio_postgres::Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        drop(client);
        let _ = driver.await;
        Ok(self.url(&name))
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    ///
    /// # Errors
    /// When `pg_ctl` fails.
    pub fn stop(&self) -> io::Result<()> {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )
    }

    /// Starts the server (again), waiting until it accepts connections.
    ///
    /// Without `fsync` (the machine does not crash, only the server), but with commits
    /// written before they return: a [`stop`](Self::stop) keeps every committed change, as
    /// a real server's crash does. (`synchronous_commit=off` lost a key inserted 300 ms
    /// before a stop.)
    ///
    /// # Errors
    /// When `pg_ctl` fails.
    pub fn start_again(&self) -> io::Result<()> {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let listen = if self.tcp { "127.0.0.1" } else { "" };
        let options = format!(
            "-k {} -p {} -c listen_addresses='{listen}' -c fsync=off -c full_page_writes=off",
            self.dir.display(),
            self.port
        );
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        )
    }

    /// The directory the cluster lives in (data, log and socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> io::Result<()> {
        let path = self.bin.join(tool);
        let output = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .current_dir(&self.dir)
                .output()?
        } else {
            Command::new(&path)
                .args(args)
                .current_dir(&self.dir)
                .output()?
        };
        check(output, tool)
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check(output: Output, what: &str) -> io::Result<()> {
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}
