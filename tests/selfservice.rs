//! Self-service keys through the JSON API, in process: two users of a host app, alice
//! (`read`, `write`) and bob (`read`), each signed in by the app (here a header its own
//! middleware would set), acting on their own keys and trying each other's; and a property
//! test over random sequences of both users' actions.
#![cfg(feature = "selfservice")]

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_apikey::events::AuditQuery;
use tower_apikey::hash::HashParams;
use tower_apikey::selfservice::{AccountUser, SelfService};
use tower_apikey::{ApiKeyLayer, Identity, KeyManager, KeyStore, MemoryStore, NewKey, Validator};

struct App {
    router: Router,
    keys: KeyManager,
    store: MemoryStore,
}

/// The app: its users, its sign-in (`x-user`), the self-service API at `/api/account/keys`
/// and `/whoami` behind the key layer.
fn app() -> App {
    let store = MemoryStore::new();
    let keys = KeyManager::new(store.clone())
        .hash_params(HashParams::default().with_iterations(1).unwrap())
        .max_keys_per_principal(NonZeroUsize::new(3).unwrap());
    let users: HashMap<&str, &[&str]> =
        HashMap::from([("alice", &["read", "write"][..]), ("bob", &["read"][..])]);
    let account = SelfService::new(keys.clone(), move |parts: &http::request::Parts| {
        let name = parts.headers.get("x-user")?.to_str().ok()?;
        let held = users.get(name)?;
        Some(AccountUser::new(name, held.iter().copied()))
    });
    let validator = Validator::builder(store.clone()).build();
    let router = Router::new()
        .route(
            "/whoami",
            axum::routing::get(|who: Identity| async move { axum::Json(who) }),
        )
        .layer(ApiKeyLayer::new(validator))
        .nest("/api/account/keys", account.into_api_router());
    App {
        router,
        keys,
        store,
    }
}

struct Answer {
    status: StatusCode,
    json: Value,
}

impl App {
    async fn call(
        &self,
        user: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/api/account/keys{path}"));
        if let Some(user) = user {
            request = request.header("x-user", user);
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None if method == "POST" => {
                request = request.header("content-type", "application/json");
                Body::empty()
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, json }
    }

    async fn create(&self, user: &str, permissions: &[&str]) -> Answer {
        self.call(
            Some(user),
            "POST",
            "",
            Some(json!({"name": "job", "permissions": permissions, "expires": "30d"})),
        )
        .await
    }

    async fn whoami(&self, key: &str) -> StatusCode {
        let request = Request::get("/whoami")
            .header("apikey", key)
            .body(Body::empty())
            .unwrap();
        self.router.clone().oneshot(request).await.unwrap().status()
    }
}

fn ids(list: &Answer) -> Vec<String> {
    list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_user_acts_on_their_own_keys_within_the_policy() {
    let app = app();
    // No one signed in: 401, for every route.
    for (method, path) in [
        ("GET", ""),
        ("POST", ""),
        ("DELETE", "/x"),
        ("POST", "/x/revoke"),
    ] {
        assert_eq!(
            app.call(None, method, path, None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }

    // alice creates a read key and uses it.
    let made = app.create("alice", &["read"]).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.json);
    let (alice_id, alice_key) = (
        made.json["record"]["id"].as_str().unwrap().to_owned(),
        made.json["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(made.json["record"]["principal"], "alice");
    assert!(made.json["record"]["expires_at"].is_string());
    assert_eq!(app.whoami(&alice_key).await, StatusCode::OK);

    // bob never sees it, and his every action on its id is a 404 like a missing id.
    let bobs = app.call(Some("bob"), "GET", "", None).await;
    assert!(!ids(&bobs).contains(&alice_id));
    let missing = app
        .call(Some("bob"), "POST", "/NoSuchKey123/revoke", None)
        .await;
    for (method, path) in [
        ("POST", format!("/{alice_id}/revoke")),
        ("POST", format!("/{alice_id}/rotate")),
        ("POST", format!("/{alice_id}/regenerate")),
        ("DELETE", format!("/{alice_id}")),
    ] {
        let answer = app.call(Some("bob"), method, &path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(answer.json["error"], missing.json["error"]);
        assert_eq!(
            answer.json["message"]
                .as_str()
                .unwrap()
                .replace(&alice_id, "ID"),
            missing.json["message"]
                .as_str()
                .unwrap()
                .replace("NoSuchKey123", "ID"),
        );
    }
    assert_eq!(app.whoami(&alice_key).await, StatusCode::OK);

    // bob asking for write: 403 naming it.
    let more = app.create("bob", &["write"]).await;
    assert_eq!(more.status, StatusCode::FORBIDDEN);
    assert_eq!(more.json["error"], "forbidden");
    assert!(more.json["message"].as_str().unwrap().contains("write"));

    // Expiry beyond the maximum, or none; no name: 400 bad_request.
    for body in [
        json!({"name": "x", "permissions": ["read"], "expires": "367d"}),
        json!({"name": "x", "permissions": ["read"]}),
        json!({"name": "x", "permissions": ["read"], "expires": "never"}),
        json!({"permissions": ["read"], "expires": "30d"}),
        json!({"name": "x", "expires": "30d", "protected": true}),
    ] {
        let answer = app.call(Some("bob"), "POST", "", Some(body.clone())).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.json["error"], "bad_request");
    }

    // Past the per-user cap (3): 409.
    for _ in 0..2 {
        assert_eq!(
            app.create("alice", &["read"]).await.status,
            StatusCode::CREATED
        );
    }
    let capped = app.create("alice", &["read"]).await;
    assert_eq!(capped.status, StatusCode::CONFLICT);
    assert_eq!(capped.json["error"], "limit_reached");

    // Cross-site: 403; a plain form: 415.
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let request = Request::post("/api/account/keys")
            .header("x-user", "bob")
            .header("host", "app.example")
            .header(name, value)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"name":"x","permissions":[],"expires":"1d"}"#,
            ))
            .unwrap();
        assert_eq!(
            app.send(request).await.status,
            StatusCode::FORBIDDEN,
            "{name}"
        );
    }
    let form = Request::post("/api/account/keys")
        .header("x-user", "bob")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("name=x&expires=1d"))
        .unwrap();
    assert_eq!(
        app.send(form).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert!(app.call(Some("bob"), "GET", "", None).await.json["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // alice revokes her key: refused at once.
    let revoked = app
        .call(
            Some("alice"),
            "POST",
            &format!("/{alice_id}/revoke"),
            Some(json!({"reason": "retired"})),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let started = Instant::now();
    while app.whoami(&alice_key).await != StatusCode::UNAUTHORIZED {
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The audit trail names alice as the actor of her own changes.
    let events = app
        .keys
        .events(&AuditQuery::new().principal("alice"))
        .await
        .unwrap();
    assert!(events.len() >= 4);
    assert!(events
        .iter()
        .all(|e| e.event.actor.as_deref() == Some("alice")));
}

#[tokio::test]
async fn keys_an_administrator_made_are_listed_and_protected_ones_stay() {
    let app = app();
    let (record, _) = app
        .keys
        .issue(NewKey::new("bob").name("from ops").protected(true))
        .await
        .unwrap();
    let list = app.call(Some("bob"), "GET", "", None).await;
    assert_eq!(ids(&list), [record.id.to_string()]);
    let delete = app
        .call(Some("bob"), "DELETE", &format!("/{}", record.id), None)
        .await;
    assert_eq!(delete.status, StatusCode::CONFLICT);
    assert_eq!(delete.json["error"], "protected");
    assert!(app.store.get(&record.id).await.unwrap().is_some());
    // Rotating a key made with no expiry gives one within the user's longest lifetime.
    let rotated = app
        .call(
            Some("bob"),
            "POST",
            &format!("/{}/rotate", record.id),
            Some(json!({"grace": "1h"})),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.json);
    let expires: jiff::Timestamp = rotated.json["record"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(expires <= jiff::Timestamp::now() + jiff::SignedDuration::from_hours(366 * 24));
}

/// One user's action in the property test.
#[derive(Debug, Clone)]
enum Action {
    Create { permissions: Vec<&'static str> },
    Rotate(usize),
    Regenerate(usize),
    Revoke(usize),
    Delete(usize),
    List,
}

fn action() -> impl Strategy<Value = Action> {
    let permissions = proptest::sample::subsequence(vec!["read", "write", "admin", "*"], 0..=2);
    prop_oneof![
        permissions.prop_map(|permissions| Action::Create { permissions }),
        any::<usize>().prop_map(Action::Rotate),
        any::<usize>().prop_map(Action::Regenerate),
        any::<usize>().prop_map(Action::Revoke),
        any::<usize>().prop_map(Action::Delete),
        Just(Action::List),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Over random sequences of both users' actions (each id picked among every key made so
    /// far, both users'), no action changes or reveals a key of the other user, and no key
    /// ever holds a permission its owner lacked.
    #[test]
    fn no_user_reaches_the_other_users_keys(steps in proptest::collection::vec((any::<bool>(), action()), 1..24)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let app = app();
            let held = HashMap::from([("alice", vec!["read", "write"]), ("bob", vec!["read"])]);
            // Every key made, and whose.
            let mut made: Vec<(String, &str)> = Vec::new();
            for (is_alice, action) in steps {
                let (user, other) = if is_alice { ("alice", "bob") } else { ("bob", "alice") };
                let pick = |n: usize| made.get(n % made.len().max(1)).cloned();
                let before: HashMap<String, String> = {
                    let records = app.store.query(&tower_apikey::store::KeyQuery::new().principal(other)).await.unwrap();
                    records.iter().map(|r| (r.id.to_string(), format!("{r:?}"))).collect()
                };
                // The id the user named, which a 404 names back (as it would a missing one).
                let mut named = String::new();
                let answer = match &action {
                    Action::Create { permissions } => app.call(Some(user), "POST", "", Some(json!({"name": "k", "permissions": permissions, "expires": "7d"}))).await,
                    Action::List => app.call(Some(user), "GET", "", None).await,
                    Action::Rotate(n) | Action::Regenerate(n) | Action::Revoke(n) | Action::Delete(n) => {
                        let Some((id, owner)) = pick(*n) else { continue };
                        let (method, path) = match action {
                            Action::Rotate(_) => ("POST", format!("/{id}/rotate")),
                            Action::Regenerate(_) => ("POST", format!("/{id}/regenerate")),
                            Action::Revoke(_) => ("POST", format!("/{id}/revoke")),
                            _ => ("DELETE", format!("/{id}")),
                        };
                        named = id.clone();
                        let answer = app.call(Some(user), method, &path, None).await;
                        if owner != user {
                            prop_assert_eq!(answer.status, StatusCode::NOT_FOUND, "{} {} by {}", method, path, user);
                        }
                        answer
                    }
                };
                // Nothing of the other user's changed, and nothing of theirs was shown.
                let after: HashMap<String, String> = {
                    let records = app.store.query(&tower_apikey::store::KeyQuery::new().principal(other)).await.unwrap();
                    records.iter().map(|r| (r.id.to_string(), format!("{r:?}"))).collect()
                };
                prop_assert_eq!(&before, &after, "{:?} by {} changed {}'s keys", action, user, other);
                let text = answer.json.to_string().replace(&named, "");
                let theirs = format!("\"principal\":\"{}\"", other);
                prop_assert!(!text.contains(&theirs), "{:?} by {} showed {}'s record", action, user, other);
                for id in before.keys() {
                    prop_assert!(!text.contains(id.as_str()), "{:?} by {} showed {}'s key {}", action, user, other, id);
                }
                if answer.status.is_success() {
                    if let Some(record) = answer.json.get("record") {
                        made.push((record["id"].as_str().unwrap().to_owned(), user));
                    }
                }
            }
            // No key holds a permission its owner lacked.
            for record in app.store.query(&tower_apikey::store::KeyQuery::new()).await.unwrap() {
                let owner = &held[record.principal.as_str()];
                for permission in &record.permissions {
                    prop_assert!(owner.contains(&permission.as_str()), "{} holds {}", record.principal, permission);
                }
            }
            Ok(())
        })?;
    }
}
