//! The hyper and tonic examples from outside: each started as its own process on 127.0.0.1,
//! and called by a real client (a raw HTTP/1.1 request; a tonic gRPC client).

mod common;

#[path = "../examples/tonic/proto.rs"]
#[allow(dead_code)]
mod proto;

use std::process::Command;
use std::time::Duration;

use tonic::transport::Endpoint;
use tonic::Code;

fn start(example: &str) -> (common::Server, String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(common::example_binary(example));
    command.env("APIKEY_STORE", dir.path().join("apikeys.json"));
    let (server, addr, key) = common::start_example(command);
    let key = key.expect("the demo key is printed on an empty store");
    (server, addr, key, dir)
}

#[tokio::test]
async fn tonic_example_answers_a_grpc_client_with_and_without_a_key() {
    let (_server, addr, key, dir) = start("tonic");
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();

    let reply = proto::who_am_i(channel.clone(), Some(&key)).await.unwrap();
    assert_eq!(reply.principal, "demo");
    assert_eq!(reply.permissions, ["read"]);
    assert!(key.starts_with(&format!("tak_{}_", reply.key_id)));

    for apikey in [None, Some(format!("{key}x")), Some("tak_nope".to_owned())] {
        let status = proto::who_am_i(channel.clone(), apikey.as_deref())
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{apikey:?}: {status:?}"
        );
        assert!(
            !status.message().contains(&key[4..]),
            "the key is not echoed"
        );
    }
    // The same channel still works after refusals: a refusal is an answer, not a broken stream.
    assert!(proto::who_am_i(channel.clone(), Some(&key)).await.is_ok());

    // A valid key without `read`: the permission check answers in gRPC's words too.
    let store = tower_apikey::FileStore::builder(dir.path().join("apikeys.json"))
        .no_polling()
        .open()
        .await
        .unwrap();
    let (_, unprivileged) = tower_apikey::KeyManager::new(store)
        .issue(tower_apikey::NewKey::new("guest"))
        .await
        .unwrap();
    let mut attempts = 0;
    let status = loop {
        // The server reads the file within its poll interval.
        match proto::who_am_i(channel.clone(), Some(unprivileged.expose())).await {
            Err(status) if status.code() == Code::Unauthenticated && attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other.unwrap_err(),
        }
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // HTTP/2 carries whitespace around a field value as sent (HTTP/1.1 parsers strip it); RFC
    // 9110 says it is not part of the value, so it is accepted here as over HTTP/1.1.
    for padded in [format!("{key}  "), format!(" {key}"), format!("\t{key}\t")] {
        let reply = proto::who_am_i(channel.clone(), Some(&padded)).await;
        assert!(reply.is_ok(), "{:?}: {reply:?}", padded.len());
    }
}

/// The same padded key over HTTP/1.1: one rule on both protocols.
#[test]
fn whitespace_around_the_header_is_not_part_of_the_key_over_http1() {
    let (_server, addr, key, _dir) = start("hyper");
    for padded in [format!("{key}  "), format!(" {key}"), format!("\t{key}\t")] {
        assert_eq!(common::http_get(&addr, "/", Some(&padded)).0, 200);
    }
}

#[test]
fn hyper_example_serves_identities_behind_the_layer() {
    let (_server, addr, key, _dir) = start("hyper");
    let (status, body) = common::http_get(&addr, "/", Some(&key));
    assert_eq!(status, 200, "{body}");
    let who: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["principal"], "demo");
    assert_eq!(common::http_get(&addr, "/", None).0, 401);
    assert_eq!(
        common::http_get(&addr, "/", Some(&format!("{key}x"))).0,
        401
    );
}

/// SIGTERM (what `kill`, systemd and Kubernetes send) stops every example as Ctrl-C does:
/// it drains, writes the last-use batch, and exits 0.
// Two workers: the gRPC client's connection task must run (and answer the server's GOAWAY)
// while this test blocks waiting for the server to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_example_and_the_last_use_is_written() {
    for example in ["axum", "hyper", "admin", "tonic"] {
        let (mut server, addr, key, dir) = start(example);
        // One accepted request, so there is a last use to write.
        match example {
            "tonic" => {
                let channel = Endpoint::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                proto::who_am_i(channel, Some(&key)).await.unwrap();
            }
            "hyper" => assert_eq!(common::http_get(&addr, "/", Some(&key)).0, 200),
            _ => assert_eq!(common::http_get(&addr, "/whoami", Some(&key)).0, 200),
        }
        // A client that never finishes its request (its first bytes only) must not hold
        // the shutdown beyond the drain time (5 s): it held it for good before.
        let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
        std::io::Write::write_all(
            &mut stalled,
            if example == "tonic" {
                &b"PRI * HTTP/2.0\r\n"[..]
            } else {
                &b"GET /whoami HTTP/1.1\r\nHost: x\r\n"[..]
            },
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let status = server.terminate(Duration::from_secs(10));
        assert!(status.success(), "{example}: {status:?}");
        drop(stalled);

        let file = std::fs::read_to_string(dir.path().join("apikeys.json")).unwrap();
        let file: serde_json::Value = serde_json::from_str(&file).unwrap();
        let id = key.split('_').nth(1).unwrap();
        let record = file["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap();
        assert!(
            record["last_used_at"].is_string(),
            "{example}: the last use was written on SIGTERM: {record}"
        );
    }
}
