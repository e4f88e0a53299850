//! One cold verify of a Maximo record: PBKDF2-HMAC-SHA1, 1000 iterations, 24-byte salt and
//! hash. `bench/run.sh` times Python's `hashlib.pbkdf2_hmac` (OpenSSL) on the same record in
//! the same run and prints the ratio.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tower_apikey::record::{Pbkdf2Hash, Prf};

/// The first interop vector, made by Python's hashlib (`bench/openssl_pbkdf2.py` uses it too).
const KEY: &str = "DOIfRzrWSZ6zt9N2axzd41m2";
const RECORD: &str = "1000:9324cb602a857ff0e7d0713c62a9b90285bce134cfb3a1ae:18532e80f50f225378776e882e88bcf4b1abca52815e0f02";

fn cold_verify(c: &mut Criterion) {
    let record: Pbkdf2Hash = RECORD.parse().unwrap();
    assert!(record.verify(Prf::Sha1, KEY.as_bytes()));
    let mut group = c.benchmark_group("cold_verify");
    group.bench_function("correct_key", |b| {
        b.iter(|| assert!(record.verify(Prf::Sha1, black_box(KEY.as_bytes()))))
    });
    group.bench_function("wrong_key", |b| {
        b.iter(|| assert!(!record.verify(Prf::Sha1, black_box(b"DOIfRzrWSZ6zt9N2axzd41m3"))))
    });
    group.bench_function("pbkdf2_crate", |b| {
        b.iter(|| {
            let mut out = [0u8; 24];
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(
                black_box(KEY.as_bytes()),
                record.salt(),
                1000,
                &mut out,
            );
            out
        })
    });
    group.finish();
}

criterion_group!(benches, cold_verify);
criterion_main!(benches);
