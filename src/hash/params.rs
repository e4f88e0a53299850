//! What a new key is hashed with: [`HashParams`].

use super::{
    HashError, Prf, MAX_HASH_LEN, MAX_ITERATIONS, MAX_SALT_LEN, MIN_HASH_LEN, MIN_SALT_LEN,
};

/// Parameters for hashing a new key: PRF, iterations, salt and hash lengths.
///
/// The default is the Maximo form: SHA-1, 1000 iterations, 24-byte salt and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    prf: Prf,
    iterations: u32,
    salt_len: usize,
    hash_len: usize,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            prf: Prf::Sha1,
            iterations: 1000,
            salt_len: 24,
            hash_len: 24,
        }
    }
}

impl HashParams {
    /// The PRF new records are made with.
    pub fn with_prf(mut self, prf: Prf) -> Self {
        self.prf = prf;
        self
    }

    /// The iteration count.
    ///
    /// # Errors
    /// [`HashError::ZeroIterations`] or [`HashError::TooManyIterations`].
    pub fn with_iterations(mut self, iterations: u32) -> Result<Self, HashError> {
        if iterations == 0 {
            return Err(HashError::ZeroIterations);
        }
        if iterations > MAX_ITERATIONS {
            return Err(HashError::TooManyIterations);
        }
        self.iterations = iterations;
        Ok(self)
    }

    /// The salt length in bytes.
    ///
    /// # Errors
    /// [`HashError::SaltLength`] outside [`MIN_SALT_LEN`]..=[`MAX_SALT_LEN`].
    pub fn with_salt_len(mut self, len: usize) -> Result<Self, HashError> {
        if !(MIN_SALT_LEN..=MAX_SALT_LEN).contains(&len) {
            return Err(HashError::SaltLength(len));
        }
        self.salt_len = len;
        Ok(self)
    }

    /// The stored hash length in bytes.
    ///
    /// # Errors
    /// [`HashError::HashLength`] outside [`MIN_HASH_LEN`]..=[`MAX_HASH_LEN`].
    pub fn with_hash_len(mut self, len: usize) -> Result<Self, HashError> {
        if !(MIN_HASH_LEN..=MAX_HASH_LEN).contains(&len) {
            return Err(HashError::HashLength(len));
        }
        self.hash_len = len;
        Ok(self)
    }

    /// The PRF new records are made with.
    pub fn prf(&self) -> Prf {
        self.prf
    }

    /// The iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// The salt length in bytes.
    pub fn salt_len(&self) -> usize {
        self.salt_len
    }

    /// The stored hash length in bytes.
    pub fn hash_len(&self) -> usize {
        self.hash_len
    }
}
