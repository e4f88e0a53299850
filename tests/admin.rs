//! The admin REST API end to end: the admin example running as its own process on 127.0.0.1,
//! driven by a real HTTP client (hyper), the way an operator's tooling would.
#![cfg(feature = "admin")]

mod common;

use std::process::Command;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    /// Every response body seen, to check no error ever held a key.
    bodies: Vec<String>,
    _server: common::Server,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    json: Value,
}

impl Api {
    /// The admin example on a fresh store, and the admin key it printed.
    fn start() -> (Self, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(common::example_binary("admin"));
        command.env("APIKEY_STORE", dir.path().join("apikeys.json"));
        let (server, addr, key) = common::start_example(command);
        let api = Api {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
            bodies: Vec::new(),
            _server: server,
            _dir: dir,
        };
        (
            api,
            key.expect("the admin key is printed on an empty store"),
        )
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("apikey", key);
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        self.raw(request.body(Full::new(body)).unwrap()).await
    }

    async fn raw(&mut self, request: Request<Full<Bytes>>) -> Answer {
        let response = self.client.request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        self.bodies.push(text);
        Answer {
            status: parts.status,
            headers: parts.headers,
            json,
        }
    }

    async fn get(&mut self, path: &str, key: &str) -> Answer {
        self.send(Method::GET, path, Some(key), None).await
    }

    async fn whoami(&mut self, key: &str) -> StatusCode {
        self.get("/whoami", key).await.status
    }
}

/// Asserts an error answer: its status, its JSON shape and its code.
fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.json);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.json["error"], code, "{}", answer.json);
    assert!(answer.json["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_through_the_admin_api() {
    let (mut api, admin) = Api::start();
    let admin = admin.as_str();
    let by_admin = format!("admin:admin/{}", admin.split('_').nth(1).unwrap());

    // Create: 201, the key once, a Location, the caller recorded as the creator.
    let created = api
        .send(
            Method::POST,
            "/admin/keys",
            Some(admin),
            Some(json!({"principal": "bob", "name": "billing", "permissions": ["read"], "expires": "90d"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let key = created.json["key"].as_str().unwrap().to_owned();
    let id = created.json["record"]["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("tak_{id}_")));
    assert_eq!(
        created.headers["location"],
        format!("/admin/keys/{id}").as_str()
    );
    let record = &created.json["record"];
    assert_eq!(record["principal"], "bob");
    assert_eq!(record["status"], "active");
    assert_eq!(record["created_by"], by_admin.as_str());
    assert_eq!(record["expired"], false);
    assert!(record["expires_at"].is_string());
    assert!(
        record.get("hash").is_none(),
        "the PBKDF2 record is never shown"
    );

    // Use it.
    let who = api.get("/whoami", &key).await;
    assert_eq!(who.status, StatusCode::OK);
    assert_eq!(who.json["principal"], "bob");

    // Patch: the server sees the new permissions at once (the change went through the store).
    let patched = api
        .send(
            Method::PATCH,
            &format!("/admin/keys/{id}"),
            Some(admin),
            Some(json!({"name": "billing v2", "description": "nightly job", "permissions": ["read", "write"], "expires": "never"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    assert_eq!(patched.json["name"], "billing v2");
    assert_eq!(patched.json["description"], "nightly job");
    assert_eq!(patched.json["expires_at"], Value::Null);
    assert_eq!(patched.json["updated_by"], by_admin.as_str());
    assert_eq!(
        api.get("/whoami", &key).await.json["permissions"],
        json!(["read", "write"])
    );
    // `null` clears, a field left out stays.
    let cleared = api
        .send(
            Method::PATCH,
            &format!("/admin/keys/{id}"),
            Some(admin),
            Some(json!({"description": null})),
        )
        .await;
    assert_eq!(cleared.json["description"], Value::Null);
    assert_eq!(cleared.json["name"], "billing v2");

    // Deactivate: refused at once; regenerate refused while inactive; activate: works again.
    let path = format!("/admin/keys/{id}");
    let off = api
        .send(
            Method::PATCH,
            &path,
            Some(admin),
            Some(json!({"status": "inactive"})),
        )
        .await;
    assert_eq!(off.json["status"], "inactive");
    assert_eq!(api.whoami(&key).await, StatusCode::UNAUTHORIZED);
    let regen = format!("/admin/keys/{id}/regenerate");
    assert_error(
        &api.send(Method::POST, &regen, Some(admin), None).await,
        StatusCode::CONFLICT,
        "inactive",
    );
    let on = api
        .send(
            Method::PATCH,
            &path,
            Some(admin),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(on.json["status"], "active");
    assert_eq!(api.whoami(&key).await, StatusCode::OK);

    // Regenerate: same id, new secret; the old one is refused, the new one works.
    let regenerated = api.send(Method::POST, &regen, Some(admin), None).await;
    assert_eq!(regenerated.status, StatusCode::OK, "{}", regenerated.json);
    let new_key = regenerated.json["key"].as_str().unwrap().to_owned();
    assert_eq!(regenerated.json["record"]["id"], id.as_str());
    assert_ne!(new_key, key);
    assert_eq!(api.whoami(&key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(api.whoami(&new_key).await, StatusCode::OK);

    // Delete: 204, then refused, then 404.
    let deleted = api.send(Method::DELETE, &path, Some(admin), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(api.whoami(&new_key).await, StatusCode::UNAUTHORIZED);
    assert_error(
        &api.get(&path, admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.send(Method::DELETE, &path, Some(admin), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Revoked is final: a revoked key cannot be given back a status.
    let (rid, rkey) = create(&mut api, admin, "/admin/keys", json!({"principal": "dave"})).await;
    let rpath = format!("/admin/keys/{rid}");
    api.send(
        Method::PATCH,
        &rpath,
        Some(admin),
        Some(json!({"status": "revoked"})),
    )
    .await;
    assert_eq!(api.whoami(&rkey).await, StatusCode::UNAUTHORIZED);
    assert_error(
        &api.send(
            Method::PATCH,
            &rpath,
            Some(admin),
            Some(json!({"status": "active"})),
        )
        .await,
        StatusCode::CONFLICT,
        "revoked",
    );

    assert_no_key_in_any_body(&api, &[&key, &new_key, &rkey]);
}

async fn create(api: &mut Api, admin: &str, path: &str, body: Value) -> (String, String) {
    let created = api.send(Method::POST, path, Some(admin), Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    (
        created.json["record"]["id"].as_str().unwrap().to_owned(),
        created.json["key"].as_str().unwrap().to_owned(),
    )
}

/// Bodies other than a create or regenerate answer never hold a key.
fn assert_no_key_in_any_body(api: &Api, keys: &[&str]) {
    for body in &api.bodies {
        if body.contains("\"key\":") {
            continue; // the one answer that carries its key
        }
        for key in keys {
            let secret = &key[key.len() - 12..];
            assert!(!body.contains(secret), "a key leaked into {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_admin_permission_every_route_is_forbidden() {
    let (mut api, admin) = Api::start();
    let (id, reader) = create(
        &mut api,
        &admin,
        "/admin/keys",
        json!({"principal": "erin", "permissions": ["read", "apikeyadmin"]}),
    )
    .await;
    let routes = [
        (Method::GET, "/admin/openapi.json".to_owned(), None),
        (Method::GET, "/admin/keys".to_owned(), None),
        (
            Method::POST,
            "/admin/keys".to_owned(),
            Some(json!({"principal": "erin"})),
        ),
        (Method::GET, format!("/admin/keys/{id}"), None),
        (
            Method::PATCH,
            format!("/admin/keys/{id}"),
            Some(json!({"permissions": ["apikeyAdmin"]})),
        ),
        (Method::DELETE, format!("/admin/keys/{id}"), None),
        (Method::POST, format!("/admin/keys/{id}/regenerate"), None),
        (Method::GET, "/admin/principals/erin/keys".to_owned(), None),
        (
            Method::POST,
            "/admin/principals/erin/keys".to_owned(),
            Some(json!({})),
        ),
        (Method::GET, "/admin/no-such-route".to_owned(), None),
    ];
    for (method, path, body) in &routes {
        let answer = api
            .send(method.clone(), path, Some(&reader), body.clone())
            .await;
        assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
        let anonymous = api.send(method.clone(), path, None, body.clone()).await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    // Nothing changed: the key still has no admin permission, and erin still one key.
    let record = api.get(&format!("/admin/keys/{id}"), &admin).await;
    assert_eq!(record.json["permissions"], json!(["read", "apikeyadmin"]));
    let erin = api.get("/admin/principals/erin/keys", &admin).await;
    assert_eq!(erin.json["items"].as_array().unwrap().len(), 1);
    // The reader's key itself works where no admin permission is needed.
    assert_eq!(api.whoami(&reader).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_searching_limits_and_bad_requests() {
    let (mut api, admin) = Api::start();
    let admin = admin.as_str();

    // Per principal: within the limit of two live keys, then 409.
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let (id, _) = create(
            &mut api,
            admin,
            "/admin/principals/frank/keys",
            json!({"name": name}),
        )
        .await;
        ids.push(id);
    }
    let third = api
        .send(
            Method::POST,
            "/admin/principals/frank/keys",
            Some(admin),
            Some(json!({"name": "third"})),
        )
        .await;
    assert_error(&third, StatusCode::CONFLICT, "limit_reached");
    create(
        &mut api,
        admin,
        "/admin/keys",
        json!({"principal": "grace", "name": "Reporting"}),
    )
    .await;

    let frank = api.get("/admin/principals/frank/keys", admin).await;
    let names: Vec<&str> = frank.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"first") && names.contains(&"second"));

    // Pages of one, followed by `next`, give every key once, in id order; the admin key too.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = api
            .get(&format!("/admin/keys?limit=1&after={after}"), admin)
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.json);
        let items = page.json["items"].as_array().unwrap();
        assert!(items.len() <= 1);
        seen.extend(items.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        match page.json["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert!(ids.iter().all(|id| seen.contains(id)));

    // Search (case-insensitive, in names too), filters, and the key in the query string.
    let found = api.get("/admin/keys?q=report", admin).await;
    assert_eq!(found.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(found.json["items"][0]["principal"], "grace");
    let by_principal = api
        .get("/admin/keys?principal=frank&status=active", admin)
        .await;
    assert_eq!(by_principal.json["items"].as_array().unwrap().len(), 2);
    let none = api.get("/admin/keys?status=revoked", admin).await;
    assert_eq!(none.json["items"], json!([]));
    let via_query = api
        .send(
            Method::GET,
            &format!("/admin/keys?principal=grace&apikey={admin}"),
            None,
            None,
        )
        .await;
    assert_eq!(via_query.status, StatusCode::OK);

    // Bad requests: each a JSON error with a code.
    assert_error(
        &api.get("/admin/keys?limit=0", admin).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &api.get("/admin/keys?limit=lots", admin).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &api.get("/admin/keys?status=sleeping", admin).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &api.get("/admin/keys?after=not!an!id", admin).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &api.get("/admin/keys/not_an_id!", admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let no_principal = api
        .send(
            Method::POST,
            "/admin/keys",
            Some(admin),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_error(&no_principal, StatusCode::BAD_REQUEST, "bad_request");
    let unknown_field = api
        .send(
            Method::POST,
            "/admin/keys",
            Some(admin),
            Some(json!({"principal": "x", "secret": "mine"})),
        )
        .await;
    assert_error(
        &unknown_field,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    let bad_expiry = api
        .send(
            Method::POST,
            "/admin/keys",
            Some(admin),
            Some(json!({"principal": "x", "expires": "soonish"})),
        )
        .await;
    assert_error(&bad_expiry, StatusCode::BAD_REQUEST, "bad_request");
    let long_name = api
        .send(
            Method::POST,
            "/admin/keys",
            Some(admin),
            Some(json!({"principal": "x", "name": "n".repeat(201)})),
        )
        .await;
    assert_error(&long_name, StatusCode::BAD_REQUEST, "bad_request");
    let not_json = Request::post(format!("{}/admin/keys", api.base))
        .header("apikey", admin)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"principal\": ")))
        .unwrap();
    assert_error(
        &api.raw(not_json).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let no_type = Request::post(format!("{}/admin/keys", api.base))
        .header("apikey", admin)
        .body(Full::new(Bytes::from_static(b"{\"principal\": \"x\"}")))
        .unwrap();
    assert_error(
        &api.raw(no_type).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let wrong_method = api
        .send(Method::PUT, "/admin/keys", Some(admin), None)
        .await;
    assert_error(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // Nothing was created by the refused requests.
    let x = api.get("/admin/principals/x/keys", admin).await;
    assert_eq!(x.json["items"], json!([]));

    // Protected keys need force.
    let (pid, _) = create(
        &mut api,
        admin,
        "/admin/keys",
        json!({"principal": "hal", "protected": true}),
    )
    .await;
    let ppath = format!("/admin/keys/{pid}");
    assert_error(
        &api.send(Method::DELETE, &ppath, Some(admin), None).await,
        StatusCode::CONFLICT,
        "protected",
    );
    let forced = api
        .send(
            Method::DELETE,
            &format!("{ppath}?force=true"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(forced.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_its_openapi_document_for_where_it_is_mounted() {
    let (mut api, admin) = Api::start();
    let doc = api.get("/admin/openapi.json", &admin).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.json["openapi"].as_str().unwrap().starts_with("3.0"));
    assert_eq!(doc.json["servers"][0]["url"], "/admin");
    assert!(doc.json["paths"]["/keys/{id}/regenerate"]["post"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_quotas_and_allow_lists_through_create_and_patch() {
    let (mut api, admin) = Api::start();
    let admin = admin.as_str();
    let (id, key) = create(
        &mut api,
        admin,
        "/admin/keys",
        json!({"principal": "partner", "rate_limit": "2/1m", "quota": "100/1d",
               "allowed_ips": ["127.0.0.1", "10.0.0.0/8"]}),
    )
    .await;
    let shown = api.get(&format!("/admin/keys/{id}"), admin).await;
    assert_eq!(shown.json["rate_limit"], "2/1m");
    assert_eq!(shown.json["quota"], "100/1d");
    assert_eq!(shown.json["quota_remaining"], 100);
    assert_eq!(
        shown.json["allowed_ips"],
        json!(["127.0.0.1/32", "10.0.0.0/8"])
    );
    // The admin example serves /whoami behind the same layer: the limit holds there.
    assert_eq!(api.whoami(&key).await, StatusCode::OK);
    assert_eq!(api.whoami(&key).await, StatusCode::OK);
    let over = api.get("/whoami", &key).await;
    assert_error(&over, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(over.headers.contains_key("retry-after"));

    // PATCH: null clears, a list replaces; bad values are 400 naming the field.
    let patched = api
        .send(
            Method::PATCH,
            &format!("/admin/keys/{id}"),
            Some(admin),
            Some(json!({"rate_limit": null, "quota": "5", "allowed_ips": []})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    assert_eq!(patched.json["rate_limit"], Value::Null);
    assert_eq!(patched.json["quota"], "5");
    assert_eq!(
        patched.json["quota_remaining"], 5,
        "a quota set starts afresh"
    );
    assert_eq!(patched.json["allowed_ips"], json!([]));
    for (body, field) in [
        (json!({"rate_limit": "0/1s"}), "rate_limit"),
        (json!({"rate_limit": "fast"}), "rate_limit"),
        (json!({"quota": "-1"}), "quota"),
        (json!({"allowed_ips": ["example.com"]}), "allowed_ips"),
    ] {
        let bad = api
            .send(
                Method::PATCH,
                &format!("/admin/keys/{id}"),
                Some(admin),
                Some(body),
            )
            .await;
        assert_error(&bad, StatusCode::BAD_REQUEST, "bad_request");
        assert!(
            bad.json["message"].as_str().unwrap().contains(field),
            "{}",
            bad.json
        );
    }
    let many: Vec<String> = (0..101).map(|i| format!("10.0.{i}.0/24")).collect();
    let bad = api
        .send(
            Method::PATCH,
            &format!("/admin/keys/{id}"),
            Some(admin),
            Some(json!({"allowed_ips": many})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.json);
    assert_no_key_in_any_body(&api, &[&key]);
}
