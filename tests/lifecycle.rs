//! The key lifecycle rules, on every store backend, seen by a validator watching the store.

mod common;

use jiff::{Span, Timestamp};
use tower_apikey::hash::HashParams;
use tower_apikey::key::{KeyFormat, PresentedKey};
use tower_apikey::lifecycle::{Expiry, Export, MaximoKey};
use tower_apikey::store::{KeyQuery, OutboxStore, UsageStore};
use tower_apikey::test_util::{Forward, StoreDouble};
use tower_apikey::validator::RejectReason;
use tower_apikey::{
    FileStore, KeyManager, KeyStatus, KeyStore, LifecycleError, MemoryStore, NewKey,
    ValidationError, Validator,
};

fn presented(key: &str) -> PresentedKey {
    PresentedKey::new(key.as_bytes()).unwrap()
}

async fn accepted(validator: &Validator, key: &str) -> bool {
    match validator.validate(&presented(key)).await {
        Ok(_) => true,
        Err(ValidationError::Rejected(_)) => false,
        Err(other) => panic!("unexpected {other}"),
    }
}

/// Every rule of the lifecycle, on one backend.
async fn lifecycle_rules<S: UsageStore + OutboxStore + Clone>(store: S) {
    // One iteration: these tests are about rules, not hashing cost.
    let params = HashParams::default().with_iterations(1).unwrap();
    let keys = KeyManager::new(store.clone())
        .hash_params(params)
        .actor("tests");
    let validator = Validator::builder(store.clone()).build();

    // Issue: two live keys per principal by default; the third is refused.
    let (a, key_a) = keys
        .issue(
            NewKey::new("alice")
                .name("ci")
                .permissions(["read"])
                .expires("30d".parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(a.created_by.as_deref(), Some("tests"));
    assert_eq!(a.permissions, ["read"]);
    assert!(a.expires_at.is_some());
    let (b, key_b) = keys.issue(NewKey::new("alice")).await.unwrap();
    let third = keys.issue(NewKey::new("alice")).await;
    assert!(
        matches!(&third, Err(LifecycleError::LimitReached { principal, limit: 2 }) if principal == "alice"),
        "{third:?}"
    );
    assert!(third.unwrap_err().is_refusal());
    assert!(accepted(&validator, key_a.expose()).await);
    assert!(accepted(&validator, key_b.expose()).await);

    // Deactivated keys count toward the limit, and are refused at once (even when cached).
    keys.deactivate(&b.id).await.unwrap();
    assert!(!accepted(&validator, key_b.expose()).await);
    assert!(matches!(
        keys.issue(NewKey::new("alice")).await,
        Err(LifecycleError::LimitReached { .. })
    ));
    // Regenerating an inactive key is refused.
    assert!(matches!(
        keys.regenerate(&b.id).await,
        Err(LifecycleError::Inactive(id)) if id == b.id
    ));
    keys.activate(&b.id).await.unwrap();
    assert!(accepted(&validator, key_b.expose()).await);
    let updated = keys.get(&b.id).await.unwrap();
    assert_eq!(updated.updated_by.as_deref(), Some("tests"));
    assert!(updated.updated_at.is_some());

    // Regenerate: same id and metadata, new secret; the old one is refused at once.
    let (regenerated, new_a) = keys.regenerate(&a.id).await.unwrap();
    assert_eq!(regenerated.id, a.id);
    assert_eq!(regenerated.name.as_deref(), Some("ci"));
    assert_eq!(regenerated.permissions, ["read"]);
    assert_eq!(regenerated.expires_at, a.expires_at);
    assert_ne!(regenerated.hash, a.hash);
    assert!(!accepted(&validator, key_a.expose()).await);
    assert!(accepted(&validator, new_a.expose()).await);

    // Revoke is final, and frees a slot.
    keys.revoke(&b.id).await.unwrap();
    assert!(!accepted(&validator, key_b.expose()).await);
    assert!(matches!(
        keys.activate(&b.id).await,
        Err(LifecycleError::Revoked(_))
    ));
    assert!(matches!(
        keys.deactivate(&b.id).await,
        Err(LifecycleError::Revoked(_))
    ));
    assert!(matches!(
        keys.regenerate(&b.id).await,
        Err(LifecycleError::Revoked(_))
    ));
    assert_eq!(keys.get(&b.id).await.unwrap().status, KeyStatus::Revoked);

    // Rotate: a second key like the first; the old one keeps working for the grace period.
    let (rotated, rotated_key) = keys.rotate(&a.id, Span::new().days(7)).await.unwrap();
    assert_ne!(rotated.id, a.id);
    assert_eq!(rotated.principal, "alice");
    assert_eq!(rotated.name.as_deref(), Some("ci"));
    assert_eq!(rotated.permissions, ["read"]);
    assert!(rotated.expires_at.is_some(), "as long-lived as the old key");
    assert!(accepted(&validator, rotated_key.expose()).await);
    assert!(
        accepted(&validator, new_a.expose()).await,
        "within the grace period"
    );
    let old = keys.get(&a.id).await.unwrap();
    let in_a_week = Timestamp::now() + jiff::SignedDuration::from_hours(7 * 24);
    assert!(old.expires_at.unwrap() <= in_a_week);
    // Both count now, so a third is refused; a zero grace ends the old key at once.
    assert!(matches!(
        keys.rotate(&rotated.id, Span::new().days(1)).await,
        Err(LifecycleError::LimitReached { .. })
    ));
    let (_, newest) = keys.rotate(&a.id, Span::new()).await.unwrap();
    assert!(
        !accepted(&validator, new_a.expose()).await,
        "no grace: refused at once"
    );
    assert!(accepted(&validator, newest.expose()).await);

    // A limit of one is Maximo's rule; rotation with no grace still works under it.
    let single = KeyManager::new(store.clone())
        .hash_params(params)
        .max_keys_per_principal(std::num::NonZeroUsize::new(1).unwrap());
    let (m, _) = single.issue(NewKey::new("maximo")).await.unwrap();
    assert!(matches!(
        single.issue(NewKey::new("maximo")).await,
        Err(LifecycleError::LimitReached { limit: 1, .. })
    ));
    assert!(matches!(
        single.rotate(&m.id, Span::new().days(1)).await,
        Err(LifecycleError::LimitReached { .. })
    ));
    let (m2, m2_key) = single.rotate(&m.id, Span::new()).await.unwrap();
    assert!(accepted(&validator, m2_key.expose()).await);

    // Delete: protected keys only with force; unknown ids are refused.
    let (p, p_key) = single
        .issue(NewKey::new("protected-user").protected(true))
        .await
        .unwrap();
    assert!(matches!(
        keys.delete(&p.id, false).await,
        Err(LifecycleError::Protected(_))
    ));
    assert!(accepted(&validator, p_key.expose()).await);
    keys.delete(&p.id, true).await.unwrap();
    assert!(!accepted(&validator, p_key.expose()).await);
    assert!(matches!(
        keys.delete(&p.id, true).await,
        Err(LifecycleError::NotFound(_))
    ));
    keys.delete(&m2.id, false).await.unwrap();
    assert!(!accepted(&validator, m2_key.expose()).await);

    // A known plaintext key (Maximo's insertapikey): ours keeps its id, others are legacy.
    let (id, plaintext) = KeyFormat::default().generate().unwrap();
    let given = keys
        .issue_with_key(NewKey::new("bob"), &presented(plaintext.expose()))
        .await
        .unwrap();
    assert_eq!(given.id, id);
    assert!(!given.legacy);
    assert!(accepted(&validator, plaintext.expose()).await);
    assert!(matches!(
        keys.issue_with_key(NewKey::new("bob"), &presented(plaintext.expose()))
            .await,
        Err(LifecycleError::AlreadyExists(_))
    ));
    let opaque = keys
        .issue_with_key(NewKey::new("bob"), &presented("MAXIMOOPAQUEKEY0123456789"))
        .await
        .unwrap();
    assert!(opaque.legacy);
    assert_eq!(opaque.lookup_digest.as_ref().map(String::len), Some(64));

    // A key with every policy, used once so its quota has a period: export carries it all.
    let (limited, limited_key) = keys
        .issue(
            NewKey::new("partner")
                .rate_limit(Some("100/1m".parse().unwrap()))
                .quota(Some("10/1d".parse().unwrap()))
                .allowed_ips(["10.0.0.0/8".parse().unwrap()]),
        )
        .await
        .unwrap();
    let _ = limited_key;
    store.take_quota(&limited.id, 3).await.unwrap();

    // Export, import into an empty store of the same kind: the keys still work.
    let export = keys.export().await.unwrap();
    let exported = export.keys.iter().find(|r| r.id == limited.id).unwrap();
    assert_eq!(
        (
            exported.rate_limit.map(|l| l.to_string()),
            exported.quota.map(|q| q.to_string()),
            exported.usage.quota_remaining,
            exported.allowed_ips.len(),
        ),
        (Some("100/1m".into()), Some("10/1d".into()), Some(7), 1)
    );
    assert!(exported.usage.quota_period_start.is_some());
    assert_eq!(export.keys.len(), keys.list(None).await.unwrap().len());
    let json = serde_json::to_string(&export).unwrap();
    assert!(
        !json.contains(rotated_key.expose()),
        "no secrets in an export"
    );
    let empty = MemoryStore::new();
    let restored = KeyManager::new(empty.clone());
    let back: Export = serde_json::from_str(&json).unwrap();
    assert_eq!(
        restored.import(back.clone()).await.unwrap(),
        export.keys.len()
    );
    assert_eq!(empty.query(&KeyQuery::new()).await.unwrap(), export.keys);
    let other = Validator::builder(empty.clone()).build();
    assert!(accepted(&other, rotated_key.expose()).await);
    assert!(accepted(&other, plaintext.expose()).await);
    // Importing again adds nothing: all or none.
    assert!(matches!(
        restored.import(back).await,
        Err(LifecycleError::AlreadyExists(_))
    ));
    assert_eq!(
        empty.query(&KeyQuery::new()).await.unwrap().len(),
        export.keys.len()
    );
}

#[tokio::test]
async fn memory_store_lifecycle() {
    lifecycle_rules(MemoryStore::new()).await;
}

#[tokio::test]
async fn file_store_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("keys.json")).await.unwrap();
    lifecycle_rules(store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_store_lifecycle() {
    let Some((_db, store)) = common::pg::migrated_store().await else {
        return;
    };
    lifecycle_rules(store).await;
}

#[tokio::test]
async fn maximo_import_makes_legacy_records_and_names_bad_rows() {
    let store = MemoryStore::new();
    let keys = KeyManager::new(store.clone());
    let record = "1000:d8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8:a9bca9bca9bca9bca9bca9bca9bca9bca9bca9bca9bca9bc";
    let row = |userid: &str, apikey: &str, expiration| MaximoKey {
        userid: userid.into(),
        apikey: apikey.into(),
        expiration,
    };
    let added = keys
        .import_maximo(vec![
            row("MXINTADM", record, -1),
            row("WILSON", record, 1440),
        ])
        .await
        .unwrap();
    assert_eq!(added.len(), 2);
    assert!(added.iter().all(|r| r.legacy && r.lookup_digest.is_none()));
    assert_eq!(added[0].expires_at, None);
    let day = added[1]
        .expires_at
        .unwrap()
        .duration_since(Timestamp::now());
    assert!(day.as_secs() > 86_000 && day.as_secs() <= 86_400);

    // A bad row refuses the whole import, names the row, and never echoes the record.
    let secretish = "1000:zz:a9bc";
    let err = keys
        .import_maximo(vec![row("A", record, -1), row("B", secretish, -1)])
        .await
        .unwrap_err();
    assert!(matches!(err, LifecycleError::Invalid(_)));
    let message = err.to_string();
    assert!(message.contains("row 2"), "{message}");
    assert!(!message.contains(secretish), "{message}");
    let err = keys
        .import_maximo(vec![row("A", record, 0)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row 1"));
    assert_eq!(
        store.query(&KeyQuery::new()).await.unwrap().len(),
        2,
        "nothing more added"
    );
}

#[tokio::test]
async fn expiry_forms_apply_on_issue() {
    let store = MemoryStore::new();
    let keys = KeyManager::new(store.clone())
        .hash_params(HashParams::default().with_iterations(1).unwrap())
        .max_keys_per_principal(std::num::NonZeroUsize::new(10).unwrap());
    let now = Timestamp::now();
    for (form, at_least, at_most) in [
        ("P1W", 7 * 86_400 - 5, 7 * 86_400),
        ("30 days", 30 * 86_400 - 5, 30 * 86_400),
        ("90", 90 * 60 - 5, 90 * 60),
    ] {
        let expiry: Expiry = form.parse().unwrap();
        let (r, _) = keys.issue(NewKey::new("x").expires(expiry)).await.unwrap();
        let left = r.expires_at.unwrap().duration_since(now).as_secs();
        assert!((at_least..=at_most + 5).contains(&left), "{form}: {left}");
    }
    let (r, _) = keys
        .issue(NewKey::new("x").expires("-1".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(r.expires_at, None);
    let (r, key) = keys
        .issue(NewKey::new("x").expires("2020-01-01T00:00:00Z".parse().unwrap()))
        .await
        .unwrap();
    assert!(r.is_expired_at(now));
    let validator = Validator::builder(store).build();
    assert!(matches!(
        validator.validate(&presented(key.expose())).await,
        Err(ValidationError::Rejected(RejectReason::Expired))
    ));
}

/// A memory store where another writer revokes a key between a manager's read and its write,
/// once: the race a read-modify-write must not lose.
#[derive(Clone)]
struct RevokedMeanwhile {
    inner: MemoryStore,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StoreDouble for RevokedMeanwhile {
    type Inner = MemoryStore;

    fn inner(&self) -> &MemoryStore {
        &self.inner
    }

    async fn replace(
        &self,
        current: &tower_apikey::KeyRecord,
        new: tower_apikey::KeyRecord,
    ) -> Result<(), tower_apikey::StoreError> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let mut revoked = current.clone();
            revoked.status = KeyStatus::Revoked;
            self.inner.replace(current, revoked).await?;
        }
        self.inner.replace(current, new).await
    }
}

#[tokio::test]
async fn a_change_never_undoes_a_revocation_made_meanwhile() {
    use tower_apikey::KeyPatch;

    let store = Forward(RevokedMeanwhile {
        inner: MemoryStore::new(),
        armed: Default::default(),
    });
    let keys = KeyManager::new(store.clone())
        .hash_params(HashParams::default().with_iterations(1).unwrap());
    let validator = Validator::builder(store.clone()).build();
    let arm = || store.armed.store(true, std::sync::atomic::Ordering::SeqCst);

    // A rename racing a revocation: the rename lands, the key stays revoked.
    let (a, key_a) = keys.issue(NewKey::new("alice")).await.unwrap();
    assert!(accepted(&validator, key_a.expose()).await);
    arm();
    let renamed = keys
        .update(&a.id, KeyPatch::new().name(Some("renamed".into())))
        .await
        .unwrap();
    assert_eq!(renamed.status, KeyStatus::Revoked);
    assert_eq!(renamed.name.as_deref(), Some("renamed"));
    assert!(!accepted(&validator, key_a.expose()).await);

    // Deactivating, or regenerating, a key revoked meanwhile is refused by the rules as they
    // apply to the record now; nothing brings it back.
    let (b, key_b) = keys.issue(NewKey::new("bob")).await.unwrap();
    arm();
    assert!(matches!(
        keys.deactivate(&b.id).await,
        Err(LifecycleError::Revoked(_))
    ));
    let (c, key_c) = keys.issue(NewKey::new("carol")).await.unwrap();
    arm();
    assert!(matches!(
        keys.regenerate(&c.id).await,
        Err(LifecycleError::Revoked(_))
    ));
    for key in [&key_b, &key_c] {
        assert!(!accepted(&validator, key.expose()).await);
    }
    for id in [&a.id, &b.id, &c.id] {
        assert_eq!(keys.get(id).await.unwrap().status, KeyStatus::Revoked);
    }
}

#[tokio::test]
async fn the_manager_refuses_input_over_its_limits_whoever_sends_it() {
    use tower_apikey::lifecycle::{InvalidInput, KeyPatch, MAX_NAME_CHARS, MAX_PERMISSIONS};

    let keys = KeyManager::new(MemoryStore::new());
    let long_name = "n".repeat(MAX_NAME_CHARS + 1);
    let refused = keys
        .issue(NewKey::new("alice").name(long_name.clone()))
        .await;
    assert!(
        matches!(
            refused,
            Err(LifecycleError::Invalid(InvalidInput::TooLong {
                field: "name",
                ..
            }))
        ),
        "{refused:?}"
    );
    let at_limit = keys
        .issue(NewKey::new("alice").name("n".repeat(MAX_NAME_CHARS)))
        .await;
    assert!(at_limit.is_ok(), "a name of exactly the limit is fine");
    let (record, _key) = at_limit.unwrap();

    for (new, field) in [
        (NewKey::new("a\u{1b}[31m"), "principal"),
        (
            NewKey::new("bob").permissions(["read\nwrite"]),
            "a permission",
        ),
    ] {
        let refused = keys.issue(new).await;
        assert!(
            matches!(&refused, Err(LifecycleError::Invalid(InvalidInput::ControlCharacters { field: f })) if *f == field),
            "{refused:?}"
        );
    }
    let too_many = (0..=MAX_PERMISSIONS).map(|i| format!("p{i}"));
    let refused = keys
        .update(&record.id, KeyPatch::new().permissions(too_many))
        .await;
    assert!(
        matches!(
            refused,
            Err(LifecycleError::Invalid(
                InvalidInput::TooManyPermissions { .. }
            ))
        ),
        "{refused:?}"
    );
    let refused = keys
        .update(&record.id, KeyPatch::new().name(Some(long_name)))
        .await;
    assert!(
        matches!(refused, Err(LifecycleError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(
        keys.get(&record.id).await.unwrap(),
        record,
        "refused changes wrote nothing"
    );
}
