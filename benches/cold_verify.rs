//! One cold verify per PRF, against the hardware floor and the `pbkdf2` crate, in one run.
//!
//! The records: the Maximo form (PBKDF2-HMAC-SHA1, 1000 iterations, 24-byte salt and hash),
//! and the same key and salt under SHA-256 (32-byte hash) and SHA-512 (64-byte hash). The
//! floor is the bare compression work a correct key needs: output blocks x iterations x 2
//! compress calls (4,000 for the Maximo form). `bench/run.sh` times Python's
//! `hashlib.pbkdf2_hmac` (OpenSSL) on the same records and prints every ratio.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tower_apikey::hash::{derive, Pbkdf2Hash, Prf};

/// The first interop vector's key and salt (made by Python's hashlib).
const KEY: &[u8] = b"DOIfRzrWSZ6zt9N2axzd41m2";
const WRONG: &[u8] = b"DOIfRzrWSZ6zt9N2axzd41m3";
const SALT: &str = "9324cb602a857ff0e7d0713c62a9b90285bce134cfb3a1ae";
const ITERATIONS: u32 = 1000;

fn record(prf: Prf, len: usize) -> Pbkdf2Hash {
    let salt: Vec<u8> = (0..SALT.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&SALT[i..i + 2], 16).unwrap())
        .collect();
    let mut hash = vec![0u8; len];
    derive(prf, KEY, &salt, ITERATIONS, &mut hash);
    Pbkdf2Hash::from_parts(ITERATIONS, &salt, &hash).unwrap()
}

/// `n` bare compressions of the PRF's hash: the least a derivation can cost.
fn floor(prf: Prf, n: u32) {
    let (block64, block128) = ([0x5a; 64], [0x5a; 128]);
    match prf {
        Prf::Sha1 => {
            let mut state = [
                0x6745_2301u32,
                0xEFCD_AB89,
                0x98BA_DCFE,
                0x1032_5476,
                0xC3D2_E1F0,
            ];
            for _ in 0..n {
                sha1::block_api::compress(&mut state, black_box(std::slice::from_ref(&block64)));
            }
            black_box(state);
        }
        Prf::Sha256 => {
            let mut state = [0x6a09_e667u32; 8];
            for _ in 0..n {
                sha2::block_api::compress256(&mut state, black_box(std::slice::from_ref(&block64)));
            }
            black_box(state);
        }
        _ => {
            let mut state = [0x6a09_e667_f3bc_c908u64; 8];
            for _ in 0..n {
                sha2::block_api::compress512(
                    &mut state,
                    black_box(std::slice::from_ref(&block128)),
                );
            }
            black_box(state);
        }
    }
}

fn reference(prf: Prf, salt: &[u8], out: &mut [u8]) {
    match prf {
        Prf::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(KEY, salt, ITERATIONS, out),
        Prf::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(KEY, salt, ITERATIONS, out),
        _ => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(KEY, salt, ITERATIONS, out),
    }
}

fn cold_verify(c: &mut Criterion) {
    for (prf, len) in [(Prf::Sha1, 24), (Prf::Sha256, 32), (Prf::Sha512, 64)] {
        let record = record(prf, len);
        assert!(record.verify(prf, KEY) && !record.verify(prf, WRONG));
        let blocks = len.div_ceil(prf.output_len()) as u32;
        let mut group = c.benchmark_group(format!("cold_verify_{prf}"));
        group.bench_function("floor", |b| b.iter(|| floor(prf, blocks * ITERATIONS * 2)));
        group.bench_function("correct_key", |b| {
            b.iter(|| assert!(record.verify(prf, black_box(KEY))))
        });
        group.bench_function("wrong_key", |b| {
            b.iter(|| assert!(!record.verify(prf, black_box(WRONG))))
        });
        group.bench_function("pbkdf2_crate", |b| {
            b.iter(|| {
                let mut out = [0u8; 64];
                reference(prf, record.salt(), &mut out[..len]);
                out
            })
        });
        group.finish();
    }
}

criterion_group!(benches, cold_verify);
criterion_main!(benches);
