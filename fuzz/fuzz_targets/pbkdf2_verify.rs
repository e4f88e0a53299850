//! `Pbkdf2Hash::verify` on arbitrary records and keys: never panics, and agrees with the
//! RustCrypto `pbkdf2` crate (an implementation this project did not write) for every PRF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_apikey::hash::{Pbkdf2Hash, Prf};

/// Above this the reference derivation makes the run too slow to find anything.
const MAX_FUZZ_ITERATIONS: u32 = 4_096;

fn reference(prf: Prf, key: &[u8], record: &Pbkdf2Hash) -> bool {
    let mut out = vec![0u8; record.hash().len()];
    let (salt, rounds) = (record.salt(), record.iterations());
    match prf {
        Prf::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(key, salt, rounds, &mut out),
        Prf::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(key, salt, rounds, &mut out),
        Prf::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(key, salt, rounds, &mut out),
    }
    out == record.hash()
}

fuzz_target!(|data: &[u8]| {
    // Layout: record text, NUL, key bytes.
    let Some(split) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let (record, key) = (&data[..split], &data[split + 1..]);
    let Ok(record) = std::str::from_utf8(record) else {
        return;
    };
    let Ok(record) = record.parse::<Pbkdf2Hash>() else {
        return;
    };
    if record.iterations() > MAX_FUZZ_ITERATIONS {
        return;
    }
    for prf in [Prf::Sha1, Prf::Sha256, Prf::Sha512] {
        assert_eq!(
            record.verify(prf, key),
            reference(prf, key, &record),
            "{prf:?} disagrees with the reference"
        );
    }
    // The key itself, hashed with the record's parameters, verifies.
    if let Ok(params) = tower_apikey::hash::HashParams::default()
        .with_iterations(record.iterations())
        .and_then(|p| p.with_salt_len(record.salt().len()))
        .and_then(|p| p.with_hash_len(record.hash().len()))
    {
        if let Ok(made) = Pbkdf2Hash::create(key, &params) {
            assert!(made.verify(Prf::Sha1, key));
        }
    }
});
