//! Key events as Standard Webhooks: the signature matches the specification's vector; the
//! admin example delivers every change made with the CLI to a receiver that is down for a
//! while, each under one `webhook-id`, every signature valid; a server killed mid-delivery
//! and started again loses nothing.
#![cfg(all(feature = "webhooks", feature = "admin", feature = "cli"))]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tower_apikey::webhook::WebhookSecret;

#[test]
fn the_signature_is_the_standard_webhooks_vectors() {
    let vector = common::vectors("standard_webhooks.json");
    let secret: WebhookSecret = vector["secret"].as_str().unwrap().parse().unwrap();
    let signature = secret.sign(
        vector["id"].as_str().unwrap(),
        vector["timestamp"].as_i64().unwrap(),
        vector["body"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(signature, vector["signature"].as_str().unwrap());
    assert_eq!(format!("{secret:?}"), "WebhookSecret(<redacted>)");
    assert!(
        "whsec_c2hvcnQ=".parse::<WebhookSecret>().is_err(),
        "too short"
    );
    assert!("whsec_not base64!".parse::<WebhookSecret>().is_err());
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the receiver answers: 503, 200, or nothing at all (the request hangs).
const DOWN: u8 = 0;
const UP: u8 = 1;
const HANG: u8 = 2;

#[derive(Default)]
struct Seen {
    /// Every attempt: (webhook-id, type, key id), accepted or not.
    attempts: Vec<(String, String, String)>,
    /// Accepted deliveries by webhook-id: how many times.
    accepted: BTreeMap<String, usize>,
    /// Bodies accepted, to look for secrets.
    bodies: Vec<String>,
}

struct Receiver {
    mode: Arc<AtomicU8>,
    seen: Arc<Mutex<Seen>>,
    url: String,
}

async fn receive(
    State((mode, seen)): State<(Arc<AtomicU8>, Arc<Mutex<Seen>>)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let secret: WebhookSecret = SECRET.parse().unwrap();
    assert_eq!(
        secret.sign(&id, timestamp.parse().unwrap(), &body),
        signature,
        "a delivery whose signature does not verify"
    );
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        payload["data"]["id"],
        id.as_str(),
        "webhook-id is the event id"
    );
    let kind = payload["type"].as_str().unwrap().to_owned();
    let key_id = payload["data"]["key_id"].as_str().unwrap().to_owned();
    seen.lock()
        .unwrap()
        .attempts
        .push((id.clone(), kind, key_id));
    match mode.load(Ordering::SeqCst) {
        UP => {
            let mut seen = seen.lock().unwrap();
            *seen.accepted.entry(id).or_default() += 1;
            seen.bodies.push(String::from_utf8(body.to_vec()).unwrap());
            StatusCode::NO_CONTENT
        }
        HANG => std::future::pending().await,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn start_receiver(runtime: &tokio::runtime::Runtime, mode: u8) -> Receiver {
    runtime.block_on(serve_receiver(mode))
}

/// A receiver served on the current runtime.
async fn serve_receiver(mode: u8) -> Receiver {
    let mode = Arc::new(AtomicU8::new(mode));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/hooks", post(receive))
        .with_state((mode.clone(), seen.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        mode,
        seen,
        url: format!("http://{addr}/hooks"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_gets_each_event_and_one_that_accepted_gets_no_retries() {
    use tower_apikey::hash::HashParams;
    use tower_apikey::webhook::WebhookSender;
    use tower_apikey::{KeyManager, MemoryStore, NewKey};

    let store = MemoryStore::new();
    let keys = KeyManager::new(store.clone())
        .hash_params(HashParams::default().with_iterations(1).unwrap());
    keys.issue(NewKey::new("dana")).await.unwrap();
    let (up, down) = (serve_receiver(UP).await, serve_receiver(DOWN).await);
    let secret = || SECRET.parse::<WebhookSecret>().unwrap();
    let sender = WebhookSender::new(store.clone(), &up.url, secret())
        .unwrap()
        .endpoint(&down.url, secret())
        .unwrap()
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(10));
    let shown = format!(
        "{:?}",
        WebhookSender::new(
            store.clone(),
            "https://hooks.example.com/T000/s3cr3tpath?token=abc",
            secret()
        )
        .unwrap()
    );
    assert!(shown.contains("hooks.example.com"), "{shown}");
    assert!(
        !shown.contains("s3cr3tpath") && !shown.contains("abc"),
        "{shown}"
    );
    let counts = |r: &Receiver| {
        let seen = r.seen.lock().unwrap();
        (seen.attempts.len(), seen.accepted.values().sum::<usize>())
    };
    assert_eq!(sender.deliver_due().await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        sender.deliver_due().await.unwrap(),
        1,
        "retried: one endpoint refused"
    );
    assert_eq!(
        counts(&up),
        (1, 1),
        "the endpoint that accepted is not sent it again"
    );
    assert_eq!(counts(&down), (2, 0));
    down.mode.store(UP, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(sender.deliver_due().await.unwrap(), 1);
    assert_eq!(counts(&down), (3, 1));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        sender.deliver_due().await.unwrap(),
        0,
        "delivered everywhere: done"
    );
    let id = |r: &Receiver| {
        r.seen
            .lock()
            .unwrap()
            .accepted
            .keys()
            .next()
            .unwrap()
            .clone()
    };
    assert_eq!(id(&up), id(&down), "the same webhook-id at both");
}

fn cli(store: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--store", store]);
    let out = common::run_cli(&all, b"");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn admin_example(store: &str, receiver: &Receiver) -> common::Server {
    let mut command = Command::new(common::example_binary("admin"));
    command
        .env("APIKEY_STORE", store)
        .env("WEBHOOK_URL", &receiver.url)
        .env("WEBHOOK_SECRET", SECRET)
        .env("WEBHOOK_RETRY_MS", "200");
    common::start_example(command).0
}

/// Waits until `done` holds for what the receiver saw, at most `within`.
fn wait_for(receiver: &Receiver, within: Duration, what: &str, done: impl Fn(&Seen) -> bool) {
    let started = Instant::now();
    while !done(&receiver.seen.lock().unwrap()) {
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; attempts {:?}",
            receiver.seen.lock().unwrap().attempts
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_change_made_with_the_cli_reaches_a_receiver_that_was_down_each_id_once_or_more() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = start_receiver(&runtime, DOWN);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let store = store.to_str().unwrap();
    let _server = admin_example(store, &receiver);

    // Changes made by another process, while the receiver is down.
    let key = cli(
        store,
        &["issue", "--principal", "alice", "--iterations", "1"],
    );
    let id = key.split('_').nth(1).unwrap().to_owned();
    cli(store, &["deactivate", &id]);
    cli(store, &["activate", &id]);
    cli(
        store,
        &[
            "revoke",
            &id,
            "--reason",
            "leaked",
            "--location",
            "https://x/y.env",
        ],
    );
    let want = [
        "key.issued",
        "key.deactivated",
        "key.activated",
        "key.revoked",
        "key.leaked",
    ];
    let ours = |seen: &Seen| -> Vec<(String, String)> {
        seen.attempts
            .iter()
            .filter(|(_, _, key_id)| *key_id == id)
            .map(|(event, kind, _)| (event.clone(), kind.clone()))
            .collect()
    };
    // Tried while down (503): each event at least once, none accepted.
    wait_for(
        &receiver,
        Duration::from_secs(20),
        "attempts while down",
        |seen| {
            want.iter()
                .all(|kind| ours(seen).iter().any(|(_, k)| k == kind))
        },
    );
    let tried: Vec<(String, String)> = ours(&receiver.seen.lock().unwrap());
    assert!(receiver.seen.lock().unwrap().accepted.is_empty());

    receiver.mode.store(UP, Ordering::SeqCst);
    wait_for(
        &receiver,
        Duration::from_secs(20),
        "every event accepted",
        |seen| {
            tried
                .iter()
                .all(|(event, _)| seen.accepted.contains_key(event))
        },
    );
    let seen = receiver.seen.lock().unwrap();
    // Each event kept its id across retries: the ids tried while down are the ids accepted,
    // one per change.
    let mut accepted_kinds: Vec<&str> = seen
        .attempts
        .iter()
        .filter(|(event, _, key_id)| *key_id == id && seen.accepted.contains_key(event))
        .map(|(event, kind, _)| (event.as_str(), kind.as_str()))
        .collect::<BTreeMap<&str, &str>>()
        .into_values()
        .collect();
    accepted_kinds.sort_unstable();
    let mut want_sorted = want.to_vec();
    want_sorted.sort_unstable();
    assert_eq!(accepted_kinds, want_sorted, "one id per change");
    let secret = &key[key.len() - 20..];
    for body in &seen.bodies {
        assert!(!body.contains(secret), "a key in a webhook payload");
        assert!(
            !body.contains("1000:"),
            "a PBKDF2 record in a webhook payload"
        );
    }
}

#[test]
fn a_server_killed_mid_delivery_and_started_again_loses_no_event() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = start_receiver(&runtime, HANG);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let store = store.to_str().unwrap();
    let mut server = admin_example(store, &receiver);
    let key = cli(store, &["issue", "--principal", "bob", "--iterations", "1"]);
    let id = key.split('_').nth(1).unwrap().to_owned();
    // The delivery is under way (the receiver holds it): kill the server there.
    wait_for(
        &receiver,
        Duration::from_secs(20),
        "a delivery under way",
        |seen| seen.attempts.iter().any(|(_, _, key_id)| *key_id == id),
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    receiver.mode.store(UP, Ordering::SeqCst);
    let _again = admin_example(store, &receiver);
    // Sent again once the dead server's claim has lapsed (its lease: 2 requests of 2 s + 5 s).
    wait_for(
        &receiver,
        Duration::from_secs(30),
        "the event delivered after the restart",
        |seen| {
            seen.attempts.iter().any(|(event, kind, key_id)| {
                *key_id == id && kind == "key.issued" && seen.accepted.contains_key(event)
            })
        },
    );
}

/// The admin example on `url`'s database, sending webhooks to `receiver`.
#[cfg(feature = "postgres")]
fn admin_on_postgres(url: &str, dir: &std::path::Path, receiver: &Receiver) -> Command {
    let mut command = Command::new(common::example_binary("admin"));
    command
        .env("DATABASE_URL", url)
        .env("APIKEY_STORE", dir.join("unused.json"))
        .env("WEBHOOK_URL", &receiver.url)
        .env("WEBHOOK_SECRET", SECRET)
        .env("WEBHOOK_RETRY_MS", "200");
    command
}

#[cfg(feature = "postgres")]
#[test]
fn three_servers_on_one_postgres_send_each_event_once_and_warn_of_expiry_once() {
    use tower_apikey::hash::HashParams;
    use tower_apikey::store::PgKeyStore;
    use tower_apikey::{KeyManager, NewKey};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some((db, _)) = runtime.block_on(common::pg::migrated_store()) else {
        return;
    };
    let receiver = start_receiver(&runtime, UP);
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<common::Server> = (0..3)
        .map(|_| {
            let mut command = admin_on_postgres(&db.url, dir.path(), &receiver);
            command
                .env("EXPIRY_WARNINGS", "2s")
                .env("EXPIRY_SWEEP_MS", "100");
            common::start_example(command).0
        })
        .collect();
    // A key that expires in 4 s: warned 2 s before, then expired.
    let id = runtime.block_on(async {
        let store = PgKeyStore::connect(db.url.as_str()).await.unwrap();
        let keys =
            KeyManager::new(store).hash_params(HashParams::default().with_iterations(1).unwrap());
        let (record, _) = keys
            .issue(NewKey::new("carol").expires("4s".parse().unwrap()))
            .await
            .unwrap();
        record.id.to_string()
    });
    let delivered = |seen: &Seen, kind: &str| -> Vec<usize> {
        let ids: std::collections::BTreeSet<&String> = seen
            .attempts
            .iter()
            .filter(|(_, k, key_id)| *key_id == id && k == kind)
            .map(|(event, _, _)| event)
            .collect();
        ids.into_iter()
            .map(|event| seen.accepted.get(event).copied().unwrap_or(0))
            .collect()
    };
    wait_for(
        &receiver,
        Duration::from_secs(30),
        "issued, expiring, expired",
        |seen| {
            ["key.issued", "key.expiring", "key.expired"]
                .iter()
                .all(|kind| !delivered(seen, kind).is_empty())
        },
    );
    // More sweeps on every server: nothing more is sent.
    std::thread::sleep(Duration::from_secs(2));
    let seen = receiver.seen.lock().unwrap();
    for kind in ["key.issued", "key.expiring", "key.expired"] {
        assert_eq!(
            delivered(&seen, kind),
            [1],
            "{kind}: one event, delivered once, across three servers"
        );
    }
    drop(servers);
}

/// The CLI on `url`'s database as the user `auditor`; what it printed.
#[cfg(feature = "postgres")]
fn cli_on(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tower-apikey"))
        .args(args)
        .args(["--database-url", url])
        .env("USER", "auditor")
        .output()
        .unwrap();
    assert!(
        out.status.success() || args[0] == "scan",
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[cfg(feature = "postgres")]
#[test]
fn the_audit_trail_names_who_did_what_after_delivery_and_the_outboxs_week() {
    use tower_apikey::events::AuditQuery;
    use tower_apikey::store::{OutboxStore, PgKeyStore, UsageStore};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some((db, _)) = runtime.block_on(common::pg::migrated_store()) else {
        return;
    };
    let receiver = start_receiver(&runtime, UP);
    let dir = tempfile::tempdir().unwrap();
    let command = admin_on_postgres(&db.url, dir.path(), &receiver);
    let (_server, addr, admin) = common::start_example(command);
    let admin = admin.expect("the admin key is printed on an empty store");
    let by_admin = format!("admin:admin/{}", admin.split('_').nth(1).unwrap());

    // The CLI: issue, deactivate, activate.
    let key = cli_on(
        &db.url,
        &["issue", "--principal", "alice", "--iterations", "1"],
    );
    let alice = key.split('_').nth(1).unwrap().to_owned();
    cli_on(&db.url, &["deactivate", &alice]);
    cli_on(&db.url, &["activate", &alice]);
    // The admin API: create bob's key, switch it off.
    let headers = [("apikey", admin.as_str())];
    let (status, body) = common::http_request(
        "POST",
        &addr,
        "/admin/keys",
        &headers,
        br#"{"principal": "bob"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bob = created["record"]["id"].as_str().unwrap().to_owned();
    let (status, body) = common::http_request(
        "PATCH",
        &addr,
        &format!("/admin/keys/{bob}"),
        &headers,
        br#"{"status": "inactive"}"#,
    );
    assert_eq!(status, 200, "{body}");
    // A scan finds alice's key in a file and revokes it as leaked.
    let leaky = dir.path().join("config.env");
    std::fs::write(&leaky, format!("# settings\nAPI_KEY={key}\n")).unwrap();
    let found = cli_on(&db.url, &["scan", leaky.to_str().unwrap(), "--revoke"]);
    assert!(found.contains("revoked now"), "{found}");

    // Every change delivered: 8 events (the bootstrap key's issue among them).
    wait_for(
        &receiver,
        Duration::from_secs(20),
        "every event delivered",
        |seen| seen.accepted.len() == 8,
    );
    // A week and a day later, as far as the outbox knows: a sender's idle claim prunes it.
    let client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    });
    let outbox_rows = |client: &tokio_postgres::Client| -> i64 {
        runtime
            .block_on(client.query_one("SELECT count(*) FROM tower_apikey_events", &[]))
            .unwrap()
            .get(0)
    };
    assert_eq!(outbox_rows(&client), 8);
    runtime
        .block_on(client.execute(
            "UPDATE tower_apikey_events SET delivered_at = now() - interval '8 days'",
            &[],
        ))
        .unwrap();
    runtime.block_on(async {
        let store = PgKeyStore::connect(db.url.as_str()).await.unwrap();
        let claimed = store
            .claim_events(10, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(claimed.is_empty());
        let trail = store.read_events(&AuditQuery::new()).await.unwrap();
        assert_eq!(trail.len(), 8, "the trail outlives the outbox");
    });
    assert_eq!(outbox_rows(&client), 0, "delivered a week ago: pruned");

    // The trail through the admin API, three at a time, newest first.
    let mut items: Vec<serde_json::Value> = Vec::new();
    let mut target = "/admin/events?limit=3".to_owned();
    loop {
        let (status, body) = common::http_get(&addr, &target, Some(&admin));
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let on_page = page["items"].as_array().unwrap();
        assert!(on_page.len() <= 3);
        items.extend(on_page.iter().cloned());
        match page["next"].as_str() {
            Some(next) => target = format!("/admin/events?limit=3&after={next}"),
            None => break,
        }
    }
    let seen: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["key_id"].as_str().unwrap(),
                e["actor"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    let admin_id = admin.split('_').nth(1).unwrap();
    let want = [
        ("key.leaked", alice.as_str(), "cli:auditor"),
        ("key.revoked", alice.as_str(), "cli:auditor"),
        ("key.deactivated", bob.as_str(), by_admin.as_str()),
        ("key.issued", bob.as_str(), by_admin.as_str()),
        ("key.activated", alice.as_str(), "cli:auditor"),
        ("key.deactivated", alice.as_str(), "cli:auditor"),
        ("key.issued", alice.as_str(), "cli:auditor"),
        ("key.issued", admin_id, "bootstrap"),
    ];
    assert_eq!(seen, want);
    let location = format!("{}:2", leaky.display());
    assert_eq!(items[0]["location"], location.as_str());
    assert_eq!(items[0]["reason"], "leaked");

    // Filters; the CLI reads the same trail.
    let (_, body) = common::http_get(
        &addr,
        &format!("/admin/events?key={alice}&type=revoked"),
        Some(&admin),
    );
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(page["items"][0], items[1]);
    let (_, body) = common::http_get(
        &addr,
        &format!("/admin/events?actor={}", by_admin.replace('/', "%2F")),
        Some(&admin),
    );
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"].as_array().unwrap()[..], items[2..4]);
    let cli: serde_json::Value =
        serde_json::from_str(&cli_on(&db.url, &["events", "--json", "--limit", "100"])).unwrap();
    assert_eq!(
        cli.as_array().unwrap(),
        &items,
        "one JSON array, as the API's items"
    );
    let table = cli_on(&db.url, &["events", "--key", &alice]);
    assert_eq!(table.lines().count(), 1 + 5, "{table}");
    assert!(table.contains(&location), "{table}");
    for (target, what) in [
        ("/admin/events?type=stolen", "type"),
        ("/admin/events?after=x", "after"),
        ("/admin/events?limit=0", "limit"),
        ("/admin/events?since=yesterday", "since"),
        ("/admin/events?key=not%20an%20id", "key"),
    ] {
        let (status, body) = common::http_get(&addr, target, Some(&admin));
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.contains(what), "{target}: {body}");
    }
    // Past its retention an event goes from the trail too: pruned with the usage a validator
    // prunes once a minute, so with no webhook sender as well.
    runtime.block_on(async {
        client
            .execute(
                "UPDATE tower_apikey_audit SET at = now() - interval '401 days' \
                 WHERE key_id = $1",
                &[&bob],
            )
            .await
            .unwrap();
        let store = PgKeyStore::connect(db.url.as_str()).await.unwrap();
        let long_ago = jiff::Timestamp::UNIX_EPOCH;
        store.prune_usage(long_ago, long_ago, 100).await.unwrap();
        let trail = store.read_events(&AuditQuery::new()).await.unwrap();
        assert_eq!(trail.len(), 6, "bob's two events are past 400 days");
    });
    let secret = &key[key.len() - 20..];
    for item in &items {
        assert!(!item.to_string().contains(secret), "a key in the trail");
    }
}
