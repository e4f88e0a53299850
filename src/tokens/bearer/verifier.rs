//! Verifying an access token: the checks in order, and the cache that makes a repeated token
//! cost about what a cached API key does.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jsonwebtoken::Validation;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::jwks::Jwks;
use crate::hash::KeyVersion;
use crate::identity::Identity;
use crate::key::KeyId;
use crate::tokens::claims::{AccessTokenClaims, Audience};
use crate::tokens::issuer::{MAX_LEEWAY, MAX_TOKEN_LIFETIME};
use crate::tokens::revocation::{Check, TokenFacts, TokenRevocations};

/// The longest token read; a longer one is refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The skew allowed unless configured.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// Why a token was refused. For logs: the caller gets one answer for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidToken {
    /// Over [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not a JWS in compact form, or a header or claims that do not parse (`alg: none`
    /// among them: no such algorithm is read).
    Malformed,
    /// `typ` is not `at+jwt` (RFC 9068 §4).
    WrongType,
    /// `alg` is not one of the verifying keys' own (an HMAC over the public key, say).
    WrongAlgorithm,
    /// No key with its `kid`.
    UnknownKey,
    /// The signature does not verify: a tampered header, payload or signature.
    BadSignature,
    /// Expired (past `exp` and the leeway).
    Expired,
    /// Not valid yet (`nbf` or `iat` ahead of the clock beyond the leeway).
    NotYetValid,
    /// Another issuer.
    WrongIssuer,
    /// Not for this audience.
    WrongAudience,
    /// A claim RFC 9068 requires is missing or malformed, or it lives longer than an hour.
    BadClaims,
    /// Its key was revoked, deactivated, regenerated or lost a permission of its scope since.
    Revoked,
}

impl InvalidToken {
    /// A short lower-case label, for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            InvalidToken::TooLarge => "too_large",
            InvalidToken::Malformed => "malformed",
            InvalidToken::WrongType => "wrong_type",
            InvalidToken::WrongAlgorithm => "wrong_algorithm",
            InvalidToken::UnknownKey => "unknown_key",
            InvalidToken::BadSignature => "bad_signature",
            InvalidToken::Expired => "expired",
            InvalidToken::NotYetValid => "not_yet_valid",
            InvalidToken::WrongIssuer => "wrong_issuer",
            InvalidToken::WrongAudience => "wrong_audience",
            InvalidToken::BadClaims => "bad_claims",
            InvalidToken::Revoked => "revoked",
        }
    }
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for InvalidToken {}

/// Why a token could not be verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BearerError {
    /// The token is not valid.
    #[error("access token refused: {0}")]
    Invalid(InvalidToken),
    /// Its key changed since it was issued and the store could not be read to check: retry.
    #[error("access token could not be checked now")]
    Unavailable(#[source] crate::StoreError),
}

/// Verifies access tokens offline: against a JWKS, for one issuer and audience; and, given
/// [`TokenRevocations`], against the changes of the key store. Cheap to clone; clones share
/// the cache.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    jwks: Jwks,
    issuer: String,
    audience: String,
    leeway: Duration,
    revocations: Option<TokenRevocations>,
    /// Verified tokens by their signing input (header and claims: public), each holding a
    /// keyed digest of its signature, never the signature itself.
    cache: moka::sync::Cache<Box<[u8]>, Cached, foldhash::fast::RandomState>,
    /// SHA-256 state that has absorbed one random 64-byte block; cloned per digest.
    digest_key: Sha256,
}

#[derive(Clone)]
struct Cached {
    digest: [u8; 32],
    identity: Identity,
    iat: i64,
    exp: i64,
    version: Option<KeyVersion>,
    /// The revocations' generation it was last checked at.
    checked: Arc<AtomicU64>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("TokenVerifier")
            .field("jwks", &inner.jwks)
            .field("issuer", &inner.issuer)
            .field("audience", &inner.audience)
            .field("leeway", &inner.leeway)
            .field("revocations", &inner.revocations)
            .field("cached_tokens", &inner.cache.entry_count())
            .finish()
    }
}

/// Configures a [`TokenVerifier`].
#[derive(Debug, Clone)]
pub struct TokenVerifierBuilder {
    jwks: Jwks,
    issuer: String,
    audience: String,
    leeway: Duration,
    revocations: Option<TokenRevocations>,
    max_cached_tokens: u64,
}

impl TokenVerifierBuilder {
    /// The clock skew allowed for `exp`, `nbf` and `iat`: at most [`MAX_LEEWAY`] (more is
    /// cut to it); [`DEFAULT_LEEWAY`] unless set.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(MAX_LEEWAY);
        self
    }

    /// Refuses the tokens of keys changed in the store since they were issued.
    pub fn revocations(mut self, revocations: TokenRevocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// How many verified tokens are kept (100,000 unless set).
    pub fn max_cached_tokens(mut self, n: u64) -> Self {
        self.max_cached_tokens = n;
        self
    }

    /// The verifier.
    pub fn build(self) -> TokenVerifier {
        let mut block = [0u8; 64];
        // A failed RNG leaves the block zero: the digests are then unkeyed, still exact.
        if crate::random::fill_random(&mut block).is_err() {
            tracing::warn!("OS RNG failed; token cache digests are unkeyed");
        }
        let mut digest_key = Sha256::new();
        digest_key.update(block);
        crate::tokens::keys::ensure_crypto_provider();
        TokenVerifier {
            inner: Arc::new(Inner {
                jwks: self.jwks,
                issuer: self.issuer.trim_end_matches('/').to_owned(),
                audience: self.audience,
                leeway: self.leeway,
                revocations: self.revocations,
                cache: moka::sync::Cache::builder()
                    .max_capacity(self.max_cached_tokens)
                    // No token lives longer; expired ones are refused before this anyway.
                    .time_to_live(MAX_TOKEN_LIFETIME + MAX_LEEWAY)
                    .build_with_hasher(foldhash::fast::RandomState::default()),
                digest_key,
            }),
        }
    }
}

/// What the cache says of a token.
enum Hit {
    Valid(Identity),
    Refused(InvalidToken),
    /// Its key changed since it was last checked: check again, perhaps with a store read.
    Recheck,
}

impl TokenVerifier {
    /// Trusts the keys of `jwks`, for tokens with `iss` = `issuer` and `aud` = `audience`.
    pub fn builder(
        jwks: Jwks,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> TokenVerifierBuilder {
        TokenVerifierBuilder {
            jwks,
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            revocations: None,
            max_cached_tokens: 100_000,
        }
    }

    /// The hot path: answers from the cache alone, or `None` when the token must be verified
    /// in full ([`verify`](Self::verify)). Never blocks.
    pub fn verify_cached(&self, token: &[u8]) -> Option<Result<Identity, InvalidToken>> {
        match self.hit(token)? {
            Hit::Valid(identity) => Some(Ok(identity)),
            Hit::Refused(reason) => Some(Err(reason)),
            Hit::Recheck => None,
        }
    }

    fn hit(&self, token: &[u8]) -> Option<Hit> {
        if token.len() > MAX_TOKEN_BYTES {
            return Some(Hit::Refused(InvalidToken::TooLarge));
        }
        let dot = token.iter().rposition(|&b| b == b'.')?;
        let (input, signature) = (&token[..dot], &token[dot + 1..]);
        let inner = &self.inner;
        let cached = inner.cache.get(input)?;
        let digest = self.digest(signature);
        if !bool::from(digest.ct_eq(&cached.digest)) {
            // Not the token that was verified: verify this one in full.
            return None;
        }
        let now = Timestamp::now().as_second();
        if now > cached.exp.saturating_add(inner.leeway.as_secs() as i64) {
            return Some(Hit::Refused(InvalidToken::Expired));
        }
        if let Some(revocations) = &inner.revocations {
            let generation = revocations.generation();
            if cached.checked.load(Ordering::Acquire) != generation {
                let facts = TokenFacts {
                    key_id: cached.identity.key_id(),
                    iat: cached.iat,
                    version: cached.version,
                    permissions: cached.identity.permissions(),
                };
                match revocations.check_now(&facts) {
                    Check::Pass => cached.checked.store(generation, Ordering::Release),
                    Check::Refuse => return Some(Hit::Refused(InvalidToken::Revoked)),
                    Check::Read => return Some(Hit::Recheck),
                }
            }
        }
        Some(Hit::Valid(cached.identity))
    }

    fn digest(&self, signature: &[u8]) -> [u8; 32] {
        let mut hasher = self.inner.digest_key.clone();
        hasher.update(signature);
        hasher.finalize().into()
    }

    /// Verifies a token: from the cache when it can, else in full — header (`typ`, `alg`,
    /// `kid`), signature, claims (`iss`, `aud`, `exp`, `nbf`, `iat`, the lifetime), then
    /// the key's changes in the store when the verifier follows them.
    ///
    /// # Errors
    /// [`BearerError::Invalid`] for a token that is not valid; [`BearerError::Unavailable`]
    /// when its key changed and the store could not be read.
    pub async fn verify(&self, token: &[u8]) -> Result<Identity, BearerError> {
        match self.hit(token) {
            Some(Hit::Valid(identity)) => return Ok(identity),
            Some(Hit::Refused(reason)) => return Err(BearerError::Invalid(reason)),
            Some(Hit::Recheck) | None => {}
        }
        let inner = &self.inner;
        let (claims, identity) = self
            .verify_signed(token)
            .await
            .map_err(BearerError::Invalid)?;
        let generation = inner.revocations.as_ref().map(TokenRevocations::generation);
        if let Some(revocations) = &inner.revocations {
            let facts = TokenFacts {
                key_id: identity.key_id(),
                iat: claims.iat,
                version: identity_version(&claims),
                permissions: identity.permissions(),
            };
            let admitted = revocations
                .check(&facts)
                .await
                .map_err(BearerError::Unavailable)?;
            if !admitted {
                return Err(BearerError::Invalid(InvalidToken::Revoked));
            }
        }
        // A token not valid yet is not cached: the cache checks expiry only.
        let now = Timestamp::now().as_second();
        if claims.nbf.is_none_or(|nbf| nbf <= now) {
            let dot = token.iter().rposition(|&b| b == b'.').unwrap_or(0);
            inner.cache.insert(
                token[..dot].into(),
                Cached {
                    digest: self.digest(&token[dot + 1..]),
                    identity: identity.clone(),
                    iat: claims.iat,
                    exp: claims.exp,
                    version: identity_version(&claims),
                    checked: Arc::new(AtomicU64::new(generation.unwrap_or(0))),
                },
            );
        }
        Ok(identity)
    }

    /// The checks that need no store: structure, header, key, signature, claims.
    async fn verify_signed(
        &self,
        token: &[u8],
    ) -> Result<(AccessTokenClaims, Identity), InvalidToken> {
        let inner = &self.inner;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(InvalidToken::TooLarge);
        }
        let text = std::str::from_utf8(token).map_err(|_| InvalidToken::Malformed)?;
        // The header alone first: no signature work for a token no key here signed.
        let header = jsonwebtoken::decode_header(text).map_err(|_| InvalidToken::Malformed)?;
        let typ = header.typ.as_deref().unwrap_or("");
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return Err(InvalidToken::WrongType);
        }
        let kid = header.kid.as_deref().ok_or(InvalidToken::UnknownKey)?;
        let key = inner
            .jwks
            .find_or_refetch(kid)
            .await
            .ok_or(InvalidToken::UnknownKey)?;
        // The key decides the algorithm, never the token.
        if header.alg != key.algorithm().jwt() {
            return Err(InvalidToken::WrongAlgorithm);
        }
        let mut validation = Validation::new(key.algorithm().jwt());
        validation.leeway = inner.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&inner.issuer]);
        validation.set_audience(&[&inner.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<AccessTokenClaims>(text, key.decoding(), &validation)
            .map_err(|error| refusal(error.kind()))?;
        let claims = data.claims;
        let now = Timestamp::now().as_second();
        let leeway = inner.leeway.as_secs() as i64;
        if claims.iat > now.saturating_add(leeway) {
            return Err(InvalidToken::NotYetValid);
        }
        // A token this crate issues lives an hour at most; the revocations hold a change
        // that long, so a longer-lived one could outlive them.
        if claims.exp.saturating_sub(claims.iat) > MAX_TOKEN_LIFETIME.as_secs() as i64
            || claims.exp < claims.iat
            || claims.jti.is_empty()
        {
            return Err(InvalidToken::BadClaims);
        }
        if matches!(&claims.aud, Audience::Many(list) if list.is_empty()) {
            return Err(InvalidToken::WrongAudience);
        }
        let key_id = KeyId::new(&claims.client_id).map_err(|_| InvalidToken::BadClaims)?;
        let permissions: Vec<String> = claims
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect();
        let expires_at = Timestamp::from_second(claims.exp).ok();
        let version = identity_version(&claims).unwrap_or(KeyVersion::NONE);
        let identity = Identity::from_token(key_id, &claims.sub, permissions, expires_at, version);
        Ok((claims, identity))
    }
}

fn identity_version(claims: &AccessTokenClaims) -> Option<KeyVersion> {
    claims.key_version.as_deref().and_then(KeyVersion::decode)
}

fn refusal(kind: &jsonwebtoken::errors::ErrorKind) -> InvalidToken {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::InvalidSignature => InvalidToken::BadSignature,
        ErrorKind::ExpiredSignature => InvalidToken::Expired,
        ErrorKind::ImmatureSignature => InvalidToken::NotYetValid,
        ErrorKind::InvalidIssuer => InvalidToken::WrongIssuer,
        ErrorKind::InvalidAudience => InvalidToken::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            InvalidToken::WrongAlgorithm
        }
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            InvalidToken::BadClaims
        }
        _ => InvalidToken::Malformed,
    }
}
