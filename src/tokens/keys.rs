//! Signing keys and the public keys that verify them: read from PEM, made fresh, published as
//! a JWKS (RFC 7517).
//!
//! A key's algorithm is its type: an Ed25519 key signs with `EdDSA` (the default), a P-256 key
//! with `ES256`. Its `kid` is its RFC 7638 thumbprint (SHA-256), so every server of a fleet
//! given the same PEM names it the same way without configuration.

use std::fmt;
use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::random::fill_random;

/// The signature algorithm of a token key. A key's type decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenAlgorithm {
    /// Ed25519 signatures (RFC 8037): the default.
    EdDsa,
    /// ECDSA over P-256 with SHA-256 (RFC 7518 §3.4).
    Es256,
}

impl TokenAlgorithm {
    /// The JWS `alg` it goes by.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenAlgorithm::EdDsa => "EdDSA",
            TokenAlgorithm::Es256 => "ES256",
        }
    }

    pub(crate) const fn jwt(self) -> Algorithm {
        match self {
            TokenAlgorithm::EdDsa => Algorithm::EdDSA,
            TokenAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

impl fmt::Display for TokenAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token key could not be read or made. Never holds key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenKeyError {
    /// The text holds no PEM block, or a malformed one.
    #[error("not PEM: {0}")]
    Pem(#[source] pem::PemError),
    /// The text holds no PEM block of the kind wanted.
    #[error("no {0} in the PEM text")]
    Missing(&'static str),
    /// A PEM block of a kind that is not a key of this kind (its tag).
    #[error("a PEM block `{0}` where a {1} was expected")]
    WrongBlock(String, &'static str),
    /// A key of a type tokens are not signed with.
    #[error("not an Ed25519 or P-256 {0} (PKCS#8 or SPKI, SEC1 for a P-256 private key)")]
    Unsupported(&'static str),
    /// The PEM file could not be read.
    #[error("cannot read the key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error(transparent)]
    Rng(#[from] crate::random::RngError),
    /// The JWT library refused the key.
    #[error("the key cannot be used: {0}")]
    Jwt(#[source] jsonwebtoken::errors::Error),
}

/// A public key that verifies tokens: what a JWKS lists.
#[derive(Clone)]
pub struct VerifyingKey {
    algorithm: TokenAlgorithm,
    kid: String,
    jwk: Jwk,
    decoding: DecodingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish()
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.algorithm == other.algorithm
    }
}

impl VerifyingKey {
    /// Reads every public key (`-----BEGIN PUBLIC KEY-----`, SPKI) in `pem`: a file of
    /// earlier keys, kept for verification after a rotation.
    ///
    /// # Errors
    /// [`TokenKeyError`] when the text is not PEM, holds a block of another kind, or a key of
    /// a type other than Ed25519 or P-256.
    pub fn from_pem_many(pem: &str) -> Result<Vec<Self>, TokenKeyError> {
        let blocks = pem::parse_many(pem).map_err(TokenKeyError::Pem)?;
        blocks
            .iter()
            .map(|block| {
                if block.tag() != "PUBLIC KEY" {
                    return Err(TokenKeyError::WrongBlock(
                        block.tag().to_owned(),
                        "public key",
                    ));
                }
                Self::from_spki_der(block.contents())
            })
            .collect()
    }

    /// Reads one public key from PEM.
    ///
    /// # Errors
    /// As [`from_pem_many`](Self::from_pem_many); [`TokenKeyError::Missing`] for none.
    pub fn from_pem(pem: &str) -> Result<Self, TokenKeyError> {
        Self::from_pem_many(pem)?
            .into_iter()
            .next()
            .ok_or(TokenKeyError::Missing("public key"))
    }

    fn from_spki_der(der: &[u8]) -> Result<Self, TokenKeyError> {
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_der(der) {
            return Self::ed25519(&key);
        }
        if let Ok(key) = p256::PublicKey::from_public_key_der(der) {
            return Self::p256(&key);
        }
        Err(TokenKeyError::Unsupported("public key"))
    }

    fn ed25519(key: &ed25519_dalek::VerifyingKey) -> Result<Self, TokenKeyError> {
        Self::from_decoding(
            TokenAlgorithm::EdDsa,
            DecodingKey::from_ed_der(key.as_bytes()),
        )
    }

    fn p256(key: &p256::PublicKey) -> Result<Self, TokenKeyError> {
        // Uncompressed SEC1 (0x04 || x || y): what the ECDSA verifier reads.
        Self::from_decoding(
            TokenAlgorithm::Es256,
            DecodingKey::from_ec_der(&key.to_sec1_bytes()),
        )
    }

    fn from_decoding(
        algorithm: TokenAlgorithm,
        decoding: DecodingKey,
    ) -> Result<Self, TokenKeyError> {
        ensure_crypto_provider();
        let mut jwk =
            Jwk::from_decoding_key(&decoding, Some(algorithm.jwt())).map_err(TokenKeyError::Jwt)?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(TokenKeyError::Jwt)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self {
            algorithm,
            kid,
            jwk,
            decoding,
        })
    }

    /// Reads a key from a JWKS entry, as a verifier given a JWKS does. Entries without a
    /// `kid`, of other algorithms, or meant for encryption are refused.
    pub(crate) fn from_jwk(jwk: &Jwk) -> Option<Self> {
        ensure_crypto_provider();
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|used| *used != PublicKeyUse::Signature)
        {
            return None;
        }
        let kid = jwk.common.key_id.clone()?;
        let algorithm = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(params)
                if params.curve == jsonwebtoken::jwk::EllipticCurve::Ed25519 =>
            {
                TokenAlgorithm::EdDsa
            }
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(params)
                if params.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
            {
                TokenAlgorithm::Es256
            }
            _ => return None,
        };
        // An entry that names an algorithm must name this one.
        if let Some(named) = jwk.common.key_algorithm {
            if named.to_string() != algorithm.as_str() {
                return None;
            }
        }
        let decoding = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self {
            algorithm,
            kid,
            jwk: jwk.clone(),
            decoding,
        })
    }

    /// The algorithm it verifies.
    pub fn algorithm(&self) -> TokenAlgorithm {
        self.algorithm
    }

    /// Its key id: the RFC 7638 thumbprint for keys read from PEM; the JWKS's for keys
    /// read from one.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Its JWK (RFC 7517), with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// The private key tokens are signed with. Its `Debug` shows the algorithm and `kid` only.
#[derive(Clone)]
pub struct SigningKey {
    encoding: EncodingKey,
    verifying: VerifyingKey,
    /// The PKCS#8 PEM, kept to hand to other servers of a fleet (zeroed when dropped).
    pem: zeroize::Zeroizing<String>,
    /// The public half's SPKI PEM.
    public_pem: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.verifying.algorithm)
            .field("kid", &self.verifying.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the operating system's RNG: Ed25519 for [`TokenAlgorithm::EdDsa`],
    /// P-256 for [`TokenAlgorithm::Es256`].
    ///
    /// # Errors
    /// [`TokenKeyError::Rng`] when the RNG fails.
    pub fn generate(algorithm: TokenAlgorithm) -> Result<Self, TokenKeyError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        match algorithm {
            TokenAlgorithm::EdDsa => {
                fill_random(&mut seed[..])?;
                Self::ed25519(&ed25519_dalek::SigningKey::from_bytes(&seed))
            }
            TokenAlgorithm::Es256 => loop {
                // A scalar at or above the group order (odds about 2^-32) is drawn again.
                fill_random(&mut seed[..])?;
                if let Ok(key) = p256::SecretKey::from_slice(&seed[..]) {
                    break Self::p256(&key);
                }
            },
        }
    }

    /// Reads the private key in `pem`: PKCS#8 (`-----BEGIN PRIVATE KEY-----`, Ed25519 or
    /// P-256, what `openssl genpkey` writes) or SEC1 (`-----BEGIN EC PRIVATE KEY-----`).
    ///
    /// # Errors
    /// [`TokenKeyError`] when the text holds no such key; the error never holds the text.
    pub fn from_pem(pem: &str) -> Result<Self, TokenKeyError> {
        let blocks = pem::parse_many(pem).map_err(TokenKeyError::Pem)?;
        let block = blocks
            .iter()
            .find(|block| block.tag().ends_with("PRIVATE KEY"))
            .ok_or(TokenKeyError::Missing("private key"))?;
        let der = block.contents();
        match block.tag() {
            "PRIVATE KEY" => {
                if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
                    return Self::ed25519(&key);
                }
                match p256::SecretKey::from_pkcs8_der(der) {
                    Ok(key) => Self::p256(&key),
                    Err(_) => Err(TokenKeyError::Unsupported("private key")),
                }
            }
            "EC PRIVATE KEY" => match p256::SecretKey::from_sec1_der(der) {
                Ok(key) => Self::p256(&key),
                Err(_) => Err(TokenKeyError::Unsupported("private key")),
            },
            tag => Err(TokenKeyError::WrongBlock(tag.to_owned(), "private key")),
        }
    }

    /// Reads the private key from `value`: PEM text itself when it holds a PEM header, else
    /// the path of a PEM file (what `TOKEN_SIGNING_KEY` holds in the examples).
    ///
    /// # Errors
    /// As [`from_pem`](Self::from_pem); [`TokenKeyError::Io`] when the file cannot be read.
    pub fn from_pem_or_path(value: &str) -> Result<Self, TokenKeyError> {
        if value.contains("-----BEGIN") {
            return Self::from_pem(value);
        }
        let text = zeroize::Zeroizing::new(read(Path::new(value))?);
        Self::from_pem(&text)
    }

    fn ed25519(key: &ed25519_dalek::SigningKey) -> Result<Self, TokenKeyError> {
        let public = key.verifying_key();
        Self::assemble(
            key.to_pkcs8_der(),
            EncodingKey::from_ed_der,
            VerifyingKey::ed25519(&public)?,
            public.to_public_key_pem(Default::default()),
        )
    }

    fn p256(key: &p256::SecretKey) -> Result<Self, TokenKeyError> {
        use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
        let public = key.public_key();
        Self::assemble(
            key.to_pkcs8_der(),
            EncodingKey::from_ec_der,
            VerifyingKey::p256(&public)?,
            public.to_public_key_pem(Default::default()),
        )
    }

    /// A signing key from its PKCS#8 document, the JWT library's constructor for its type,
    /// its public half and that half's SPKI PEM.
    fn assemble<E, F>(
        pkcs8: Result<ed25519_dalek::pkcs8::SecretDocument, E>,
        encoding: fn(&[u8]) -> EncodingKey,
        verifying: VerifyingKey,
        public_pem: Result<String, F>,
    ) -> Result<Self, TokenKeyError> {
        let unsupported = || TokenKeyError::Unsupported("private key");
        let der = pkcs8.map_err(|_| unsupported())?;
        let pem = der
            .to_pem("PRIVATE KEY", Default::default())
            .map_err(|_| unsupported())?;
        Ok(Self {
            encoding: encoding(der.as_bytes()),
            verifying,
            pem,
            public_pem: public_pem.map_err(|_| unsupported())?,
        })
    }

    /// The private key as PKCS#8 PEM: what to give the other servers of a fleet (as
    /// `TOKEN_SIGNING_KEY`). Secret: keep it out of logs.
    pub fn to_pem(&self) -> &str {
        &self.pem
    }

    /// Its public half.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The public half as SPKI PEM: what a `TOKEN_VERIFY_KEYS` file holds after a rotation.
    pub fn public_key_pem(&self) -> String {
        self.public_pem.clone()
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// The keys of a token issuer: the one it signs with now, and the earlier ones whose tokens
/// may still be alive (published in the JWKS until they have expired).
#[derive(Debug, Clone)]
pub struct TokenKeys {
    signing: SigningKey,
    previous: Vec<VerifyingKey>,
}

impl TokenKeys {
    /// Signs with `signing`; publishes it alone.
    pub fn new(signing: SigningKey) -> Self {
        Self {
            signing,
            previous: Vec::new(),
        }
    }

    /// Also publishes `previous` (the public keys of earlier signing keys) for verification.
    /// The current key is not listed twice.
    pub fn verify_also(mut self, previous: impl IntoIterator<Item = VerifyingKey>) -> Self {
        for key in previous {
            if key != self.signing.verifying && !self.previous.contains(&key) {
                self.previous.push(key);
            }
        }
        self
    }

    /// Reads `TOKEN_VERIFY_KEYS`-style input: the path of a PEM file of public keys.
    ///
    /// # Errors
    /// [`TokenKeyError`] when the file cannot be read or holds something else.
    pub fn read_verify_keys(path: &Path) -> Result<Vec<VerifyingKey>, TokenKeyError> {
        VerifyingKey::from_pem_many(&read(path)?)
    }

    /// The key tokens are signed with.
    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    /// Every public key, the current one first.
    pub fn verifying(&self) -> impl Iterator<Item = &VerifyingKey> {
        std::iter::once(&self.signing.verifying).chain(&self.previous)
    }

    /// The JWKS (RFC 7517) of every public key, the current one first.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.verifying().map(|key| key.jwk.clone()).collect(),
        }
    }
}

fn read(path: &Path) -> Result<String, TokenKeyError> {
    std::fs::read_to_string(path).map_err(|source| TokenKeyError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// jsonwebtoken picks its crypto backend from its features; when a dependency also enabled
/// another one, it needs one installed, or it panics at first use. This crate's is RustCrypto.
pub(crate) fn ensure_crypto_provider() {
    if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
        // Err: another thread installed one meanwhile, which does as well.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_read_back_from_their_pem_with_the_same_kid() {
        for algorithm in [TokenAlgorithm::EdDsa, TokenAlgorithm::Es256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let again = SigningKey::from_pem(key.to_pem()).unwrap();
            assert_eq!(again.verifying_key().kid(), key.verifying_key().kid());
            assert_eq!(again.verifying_key().algorithm(), algorithm);
            let public = VerifyingKey::from_pem(&key.public_key_pem()).unwrap();
            assert_eq!(public.kid(), key.verifying_key().kid());
            assert_eq!(public.jwk(), key.verifying_key().jwk());
            let debug = format!("{key:?}");
            assert!(!debug.contains("PRIVATE") && !debug.contains(&key.to_pem()[40..60]));
        }
    }

    #[test]
    fn garbage_and_wrong_blocks_are_errors_that_hold_no_key() {
        assert!(matches!(
            SigningKey::from_pem("nothing here"),
            Err(TokenKeyError::Pem(_) | TokenKeyError::Missing(_))
        ));
        let public = SigningKey::generate(TokenAlgorithm::EdDsa)
            .unwrap()
            .public_key_pem();
        assert!(SigningKey::from_pem(&public).is_err());
        let private = SigningKey::generate(TokenAlgorithm::EdDsa).unwrap();
        let error = VerifyingKey::from_pem_many(private.to_pem()).unwrap_err();
        assert!(matches!(error, TokenKeyError::WrongBlock(..)), "{error}");
        assert!(!error.to_string().contains(&private.to_pem()[30..50]));
    }
}
