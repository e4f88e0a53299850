//! The validator's cache: keys that validated and ids that were refused, the keyed digest the
//! entries hold instead of a secret, and the epoch fence that keeps a cold-path fill racing a
//! store change out of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::counters::Counters;
use super::counting::outcome_of;
use super::RejectReason;
use crate::identity::Identity;
use crate::key::KeyId;
use crate::record::{KeyRecord, KeyStatus};
use crate::store::StoreChange;
use crate::usage::{KeyTally, Outcome};

/// Held inline in moka's entry: one allocation and one pointer chase fewer than an `Arc`
/// (the identity already is one), and a get copies 40 bytes.
#[derive(Clone)]
pub(super) struct ValidEntry {
    pub(super) digest: [u8; 32],
    pub(super) identity: Identity,
}

/// A refused id, cached for the negative TTL: why, and where the key's requests are
/// counted (an id with no record has no tally).
#[derive(Clone)]
pub(super) struct Refusal {
    pub(super) reason: RejectReason,
    pub(super) tally: Option<Arc<KeyTally>>,
}

/// What a cold lookup found, to cache.
pub(super) enum Fill {
    Valid(ValidEntry),
    Refused(Refusal),
}

pub(super) struct Cache {
    /// Keys that validated. Only ids of real records get here, so the hasher can be a fast
    /// one (foldhash: 262 ns against SipHash's 325 ns per get at 1k entries, measured here).
    valid: moka::sync::Cache<KeyId, ValidEntry, foldhash::fast::RandomState>,
    /// Refused ids, for the negative TTL. Callers choose these ids, so the hasher stays
    /// SipHash, which resists collisions crafted to slow the table down.
    refused: moka::sync::Cache<KeyId, Refusal>,
    /// SHA-256 state that has absorbed one random 64-byte block; cloned per digest of a
    /// secret longer than one block holds.
    digest_key: Sha256,
    /// The same state as SHA-256's eight words, for a secret that fits one block.
    keyed_state: [u32; 8],
    /// Bumped by every store change; a cold fill that saw it move is not cached.
    epoch: AtomicU64,
}

impl Cache {
    /// A cache of `capacity` keys (and as many refusals); `evicted` hears of every valid
    /// entry that leaves it, with the last use noted on it (unix seconds, 0 for none).
    pub(super) fn new(
        capacity: u64,
        ttl: Duration,
        negative_ttl: Duration,
        evicted: impl Fn(KeyId, i64) + Send + Sync + 'static,
    ) -> Self {
        let mut digest_key = [0u8; 64];
        // Without OS randomness the digests would be predictable; a fixed key still keeps
        // the cache free of secrets, so carry on and say so.
        if let Err(error) = crate::random::fill_random(&mut digest_key) {
            tracing::error!(%error, "no OS randomness for the cache digest key");
        }
        let digest_state = Sha256::new_with_prefix(digest_key);
        let mut keyed_state = SHA256_IV;
        sha2::block_api::compress256(&mut keyed_state, &[digest_key]);
        zeroize::Zeroize::zeroize(&mut digest_key);
        // Valid entries live for the cache TTL; a key that expires sooner is refused by the
        // hit's own expiry check. A global TTL costs less per hit than per-entry expiry
        // (measured here at 1k entries: 325 ns against 377 ns per moka get).
        let valid = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .eviction_listener(move |id: Arc<KeyId>, entry: ValidEntry, _| {
                evicted(KeyId::clone(&id), entry.identity.last_used());
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        let refused = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(negative_ttl)
            .build();
        Self {
            valid,
            refused,
            digest_key: digest_state,
            keyed_state,
            epoch: AtomicU64::new(0),
        }
    }

    /// The cache's digest of a key's secret part: SHA-256 over a per-process random block,
    /// then the secret.
    ///
    /// This is the inner half of HMAC-SHA256 with the keyed state precomputed: one
    /// compression for a 38-byte secret where a cloned HMAC needs two (measured here: 81 ns
    /// against 153 ns). It is only ever compared for equality inside this process, so
    /// HMAC's outer hash, which guards a MAC that is sent somewhere against length
    /// extension, buys nothing; without the random block nothing in the cache verifies a
    /// guess offline.
    #[inline]
    pub(super) fn digest(&self, secret: &[u8]) -> [u8; 32] {
        match last_block(secret) {
            Some(mut block) => {
                // A secret that fits one block (every key this crate issues): SHA-256's last
                // block padded by hand and compressed on the keyed state, where cloning the
                // hasher, buffering and finalizing cost more. Measured with `bench/ab.sh`,
                // with the one-barrier compare below: a cached key (1k) 0.93x its time before.
                let mut state = self.keyed_state;
                sha2::block_api::compress256(&mut state, std::slice::from_ref(&block));
                zeroize::Zeroize::zeroize(&mut block);
                let mut out = [0u8; 32];
                for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
                    bytes.copy_from_slice(&word.to_be_bytes());
                }
                out
            }
            None => {
                let mut hash = self.digest_key.clone();
                hash.update(secret);
                hash.finalize().into()
            }
        }
    }

    /// The hot path: the answer for `id` presented with `secret`, or `None` when the id is
    /// not cached at all. The digest is computed only on a hit.
    // `#[inline]` here and on the hot path's other small functions: since the validator was
    // split into files they may sit in other codegen units, which do not inline otherwise.
    #[inline]
    pub(super) fn answer(
        &self,
        id: &str,
        secret: &[u8],
        counters: &Counters,
    ) -> Option<Result<Identity, RejectReason>> {
        let Some(entry) = self.valid.get(id) else {
            let refusal = self.refused.get(id)?;
            if let (Some(tally), Some(outcome)) = (&refusal.tally, outcome_of(refusal.reason)) {
                tally.count(outcome);
            }
            return Some(Err(counters.rejected(Some(id), refusal.reason)));
        };
        if !digests_equal(&self.digest(secret), &entry.digest) {
            entry.identity.count(Outcome::WrongSecret);
            return Some(Err(counters.rejected(Some(id), RejectReason::WrongSecret)));
        }
        Some(check_expiry(entry, counters))
    }

    /// The valid entry cached for `id`.
    pub(super) fn valid_entry(&self, id: &str) -> Option<ValidEntry> {
        self.valid.get(id)
    }

    /// The store's version as this cache last heard of it; read before a store read.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches `entry` unless the store changed since `epoch` was read (fence by version).
    pub(super) fn fill(&self, id: KeyId, entry: Fill, epoch: u64) {
        if self.epoch() != epoch {
            return;
        }
        match entry {
            Fill::Valid(entry) => {
                self.refused.invalidate(id.as_str());
                self.valid.insert(id.clone(), entry);
            }
            Fill::Refused(refusal) => {
                self.valid.invalidate(id.as_str());
                self.refused.insert(id.clone(), refusal);
            }
        }
        // A change that landed between the check and the insert: its invalidation may have
        // run before our insert, so undo it ourselves.
        if self.epoch() != epoch {
            self.valid.invalidate(id.as_str());
            self.refused.invalidate(id.as_str());
        }
    }

    /// A store change: bumps the epoch first (a fill that read the store before it then sees
    /// it moved), then drops what it touched.
    pub(super) fn on_change(&self, change: &StoreChange) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match change {
            StoreChange::Changed(id) => {
                self.valid.invalidate(id.as_str());
                self.refused.invalidate(id.as_str());
            }
            _ => {
                self.valid.invalidate_all();
                self.refused.invalidate_all();
            }
        }
    }

    /// Every valid entry's id and last use (unix seconds, 0 for none), after letting
    /// expired entries leave (and hand over their uses) first.
    pub(super) fn last_uses(&self) -> Vec<(Arc<KeyId>, i64)> {
        self.valid.run_pending_tasks();
        self.valid
            .iter()
            .map(|(id, entry)| (id, entry.identity.last_used()))
            .collect()
    }

    /// Cached keys and cached refusals.
    pub(super) fn entry_counts(&self) -> (u64, u64) {
        (self.valid.entry_count(), self.refused.entry_count())
    }
}

/// A cached entry's answer: its identity, unless the key has expired since it was cached.
#[inline]
pub(super) fn check_expiry(
    entry: ValidEntry,
    counters: &Counters,
) -> Result<Identity, RejectReason> {
    // The clock is read only for keys that expire.
    if entry
        .identity
        .expires_at()
        .is_some_and(|at| at <= Timestamp::now())
    {
        entry.identity.count(Outcome::Expired);
        return Err(counters.rejected(
            Some(entry.identity.key_id().as_str()),
            RejectReason::Expired,
        ));
    }
    // Moved out, not cloned: the get already took the entry's one reference.
    Ok(entry.identity)
}

/// Why a record refuses every key, if it does: inactive, revoked or expired.
pub(super) fn refusal_of(record: &KeyRecord, now: Timestamp) -> Option<RejectReason> {
    match record.status {
        KeyStatus::Inactive => Some(RejectReason::Inactive),
        KeyStatus::Revoked => Some(RejectReason::Revoked),
        KeyStatus::Active if record.is_expired_at(now) => Some(RejectReason::Expired),
        KeyStatus::Active => None,
    }
}

/// Compares two digests in constant time: the words' differences folded into one, compared
/// once.
///
/// `subtle`'s slice comparison works byte by byte behind an optimisation barrier each
/// (measured here: 52 ns for 32 bytes); one barrier over the folded difference gives the same
/// guarantee.
#[inline]
pub(super) fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let word = |d: &[u8; 32], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&d[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(w)
    };
    let difference = (0..4).fold(0u64, |acc, i| acc | (word(a, i) ^ word(b, i)));
    difference.ct_eq(&0).into()
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SHA-256's last block for `secret` following one 64-byte key block: the secret, `0x80`,
/// zeros, and the message length in bits; `None` when the secret does not fit one block.
#[inline]
fn last_block(secret: &[u8]) -> Option<[u8; 64]> {
    let mut block = [0u8; 64];
    block.get_mut(..secret.len())?.copy_from_slice(secret);
    *block.get_mut(secret.len()..56)?.first_mut()? = 0x80;
    let bits = (64 + secret.len() as u64) * 8;
    block[56..].copy_from_slice(&bits.to_be_bytes());
    Some(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cache {
        Cache::new(
            16,
            Duration::from_secs(60),
            Duration::from_secs(5),
            |_, _| {},
        )
    }

    #[test]
    fn the_one_block_digest_is_the_hashers() {
        let cache = cache();
        // Either side of the one-block limit (55 bytes), and empty.
        for len in 0..=130 {
            let secret: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut hash = cache.digest_key.clone();
            hash.update(&secret);
            let expected: [u8; 32] = hash.finalize().into();
            assert_eq!(cache.digest(&secret), expected, "secret of {len} bytes");
        }
    }

    #[test]
    fn the_keyed_state_is_sha256_of_the_key_block() {
        // SHA-256 of a known key block, then "abc", as Python's hashlib gives it:
        // hashlib.sha256(bytes(range(64)) + b"abc").hexdigest()
        let key: [u8; 64] = std::array::from_fn(|i| i as u8);
        let mut state = SHA256_IV;
        sha2::block_api::compress256(&mut state, &[key]);
        let mut block = last_block(b"abc").unwrap();
        sha2::block_api::compress256(&mut state, std::slice::from_ref(&block));
        block.fill(0);
        let out: Vec<u8> = state.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(
            crate::hash::Hex(&out).to_string(),
            "eb1c9345c34c8a4911d0006df18e6ab431cb9751a49921977fdc00a24ecaffb7"
        );
    }

    #[test]
    fn digests_equal_only_when_every_byte_is() {
        let a = [7u8; 32];
        assert!(digests_equal(&a, &a));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 0x80;
            assert!(!digests_equal(&a, &b), "byte {i}");
        }
    }
}
