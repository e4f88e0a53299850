//! TLS to PostgreSQL, against a real server that admits TCP only over TLS (`hostssl`) with a
//! password: each `sslmode` means what it means to libpq, the CLI, the pool and the change
//! follower all use it, and each failure names its cause and never the password.
#![cfg(all(feature = "postgres", feature = "cli"))]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tower_apikey::key::PresentedKey;
use tower_apikey::store::{KeyQuery, PgKeyStore};
use tower_apikey::test_util::TempCluster;
use tower_apikey::validator::RejectReason;
use tower_apikey::{StoreError, ValidationError, Validator};

const PASSWORD: &str = "pw-Secr3t-never-shown";

/// A certificate authority: its certificate (PEM) and what signs with it.
struct Authority {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn authority(name: &str) -> Authority {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Authority {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A server certificate for `localhost` only (not for 127.0.0.1), and its key.
fn server_certificate(ca: &Authority) -> (String, String) {
    let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A TLS-only cluster with a password set and a database `keys`; `None` without PostgreSQL.
async fn tls_cluster(ca: &Authority) -> Option<TempCluster> {
    let (cert, key) = server_certificate(ca);
    let cluster = match TempCluster::start_with_tls(&cert, &key) {
        Ok(cluster) => cluster,
        Err(error) if std::env::var_os("TOWER_APIKEY_REQUIRE_PG").is_some() => {
            panic!("PostgreSQL is required here (TOWER_APIKEY_REQUIRE_PG) but: {error}")
        }
        Err(error) => {
            eprintln!("SKIPPED: no PostgreSQL ({error})");
            return None;
        }
    };
    // Over the socket, which trusts the local user.
    let (client, connection) =
        tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("ALTER ROLE postgres PASSWORD '{PASSWORD}'"))
        .await
        .unwrap();
    client.batch_execute("CREATE DATABASE keys").await.unwrap();
    drop(client);
    let _ = driver.await;
    Some(cluster)
}

/// A key=value connection string to the cluster's TCP port; `host` is the name checked
/// against the certificate, the address is always 127.0.0.1.
fn url(cluster: &TempCluster, host: &str, tls: &str) -> String {
    format!(
        "host={host} hostaddr=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=keys {tls}",
        cluster.tcp_port().unwrap()
    )
}

fn write(dir: &Path, name: &str, pem: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The CLI with the database named by DATABASE_URL (so the password is not in argv).
fn cli(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tower-apikey"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .output()
        .unwrap()
}

/// Neither the options nor the store print the connection string's password.
#[tokio::test]
async fn debug_output_never_holds_the_password() {
    let url = format!("postgresql://u:{PASSWORD}@db.invalid/keys?sslmode=require");
    let builder = PgKeyStore::builder(url.as_str());
    assert!(!format!("{builder:?}").contains(PASSWORD), "{builder:?}");
    let store = builder.follow_changes(false).connect().await.unwrap();
    assert!(!format!("{store:?}").contains(PASSWORD), "{store:?}");
    let kv = format!("host=db.invalid password='{PASSWORD}' sslmode=bogus");
    let error = PgKeyStore::connect(kv).await.unwrap_err();
    assert!(
        !format!("{error:?} {error}").contains(PASSWORD),
        "{error:?}"
    );
}

/// Connects (the pool connects lazily) and reads: the store's answer.
async fn try_store(url: &str) -> Result<PgKeyStore, StoreError> {
    let store = PgKeyStore::builder(url)
        .follow_changes(false)
        .connect()
        .await?;
    store.query(&KeyQuery::new()).await?;
    Ok(store)
}

use tower_apikey::KeyStore as _;

/// The error `url` fails with, checked for the password.
async fn failure(url: &str) -> String {
    let error = match try_store(url).await {
        Ok(_) => panic!("connected with {}", url.replace(PASSWORD, "***")),
        Err(error) => error,
    };
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let (shown, debug) = (error.to_string(), format!("{error:?}"));
    assert!(
        !shown.contains(PASSWORD) && !debug.contains(PASSWORD),
        "{debug}"
    );
    shown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_works_end_to_end_and_each_misconfiguration_names_its_cause() {
    let ca = authority("tower-apikey test CA");
    let Some(cluster) = tls_cluster(&ca).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let other_ca = write(dir.path(), "other-ca.pem", &authority("another CA").pem);
    let verified = url(
        &cluster,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={ca_file}"),
    );

    // The CLI migrates and issues over verify-full.
    let out = cli(&verified, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        &verified,
        &["issue", "--principal", "ops", "--iterations", "1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let id = key.split('_').nth(1).unwrap().to_owned();

    // Two servers, each with its pool and its follower (LISTEN) over verify-full, in URL form.
    let url_form = format!(
        "postgresql://postgres:{PASSWORD}@localhost:{}/keys?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        cluster.tcp_port().unwrap(),
        ca_file.replace('/', "%2F")
    );
    let mut fleet = Vec::new();
    for url in [&verified, &url_form] {
        fleet.push(Validator::builder(PgKeyStore::connect(url.as_str()).await.unwrap()).build());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let presented = PresentedKey::new(key.as_bytes()).unwrap();
    for server in &fleet {
        let identity = server.validate(&presented).await.unwrap();
        assert_eq!(identity.principal(), "ops");
    }
    let out = cli(&verified, &["revoke", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = Instant::now();
    for server in &fleet {
        while matches!(server.validate_cached(&presented), Some(Ok(_))) {
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "a revocation took over 1 s to reach a server over TLS"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(matches!(
            server.validate(&presented).await,
            Err(ValidationError::Rejected(RejectReason::Revoked))
        ));
    }

    // A certificate signed by another CA.
    let shown = failure(&url(
        &cluster,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={other_ca}"),
    ))
    .await;
    assert!(
        shown.contains("UnknownIssuer") && shown.contains("no root certificate in sslrootcert"),
        "{shown}"
    );
    // The right CA, the wrong name: the certificate is for localhost, not 127.0.0.1.
    let shown = failure(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=verify-full sslrootcert={ca_file}"),
    ))
    .await;
    assert!(shown.contains("not valid for name"), "{shown}");
    // verify-ca checks the chain and not the name, as libpq.
    try_store(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=verify-ca sslrootcert={ca_file}"),
    ))
    .await
    .unwrap();
    let shown = failure(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=verify-ca sslrootcert={other_ca}"),
    ))
    .await;
    assert!(shown.contains("UnknownIssuer"), "{shown}");
    // Without TLS the server's pg_hba.conf says no.
    let shown = failure(&url(&cluster, "localhost", "sslmode=disable")).await;
    assert!(
        shown.contains("pg_hba.conf") && shown.contains("no encryption"),
        "{shown}"
    );
    // require and prefer encrypt without a CA (any name, any issuer), as libpq.
    try_store(&url(&cluster, "127.0.0.1", "sslmode=require"))
        .await
        .unwrap();
    try_store(&url(&cluster, "127.0.0.1", "")).await.unwrap();

    // The CLI says the same, without the password.
    let out = cli(
        &url(
            &cluster,
            "localhost",
            &format!("sslmode=verify-full sslrootcert={other_ca}"),
        ),
        &["list"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    // verify-full with no root certificate anywhere is refused before connecting.
    let out = Command::new(env!("CARGO_BIN_EXE_tower-apikey"))
        .args(["list"])
        .env(
            "DATABASE_URL",
            url(&cluster, "localhost", "sslmode=verify-full"),
        )
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("sslrootcert=PATH"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

/// A "server" that answers TLS requests with `N` (no TLS), as PostgreSQL built without it.
#[tokio::test]
async fn require_refuses_a_server_without_tls_and_prefer_falls_back() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (asked, mut asks) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 8];
            if socket.read_exact(&mut request).await.is_ok() {
                // SSLRequest: length 8, code 80877103.
                let _ = asked.send(request == [0, 0, 0, 8, 4, 210, 22, 47]);
                let _ = socket.write_all(b"N").await;
            }
        }
    });
    let url = |mode: &str| {
        format!("host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=keys sslmode={mode}")
    };
    let shown = failure(&url("require")).await;
    assert!(shown.contains("server does not support TLS"), "{shown}");
    assert_eq!(asks.recv().await, Some(true), "the client asked for TLS");
    // prefer goes on in plain text, and fails here only because this is no database.
    let shown = failure(&url("prefer")).await;
    assert!(!shown.contains("TLS"), "{shown}");
}
