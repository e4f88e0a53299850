//! Interop: records made by implementations this project did not write.
//!
//! `tests/data/interop.json` comes from Python's `hashlib.pbkdf2_hmac` (OpenSSL) and
//! `rfc6070.json` from RFC 6070. Both files are required: a missing one fails the run.

mod common;

use common::vectors as shared;
use serde_json::Value;
use tower_apikey::hash::{derive, HashError, Pbkdf2Hash, Prf};

fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector without string field {field}: {v}"))
}

/// Every key one character away: changed, added, removed, at each position.
fn near_misses(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut out = Vec::new();
    for i in 0..chars.len() {
        let mut changed = chars.clone();
        changed[i] = if changed[i] == 'a' { 'b' } else { 'a' };
        out.push(changed.iter().collect());
        let mut removed = chars.clone();
        removed.remove(i);
        out.push(removed.iter().collect());
    }
    for i in 0..=chars.len() {
        let mut added = chars.clone();
        added.insert(i, 'x');
        out.push(added.iter().collect());
    }
    out
}

#[test]
fn interop_valid_records_verify_and_near_misses_do_not() {
    let vectors = shared("interop.json");
    let valid = vectors["valid"]
        .as_array()
        .expect("interop.json has a `valid` array");
    assert!(
        valid.len() >= 10,
        "expected the full vector set, found {}",
        valid.len()
    );
    for v in valid {
        let key = str_field(v, "key");
        let prf: Prf = str_field(v, "prf").parse().unwrap();
        let record: Pbkdf2Hash = str_field(v, "record")
            .parse()
            .unwrap_or_else(|e| panic!("{v}: {e}"));
        assert!(
            record.verify(prf, key.as_bytes()),
            "valid vector does not verify: {v}"
        );
        let misses = near_misses(key);
        for miss in &misses {
            assert!(
                !record.verify(prf, miss.as_bytes()),
                "near miss verified for {v}"
            );
        }
        // Also the record's own derived bytes, through the one-shot derivation.
        let mut out = vec![0u8; record.hash().len()];
        derive(
            prf,
            key.as_bytes(),
            record.salt(),
            record.iterations(),
            &mut out,
        );
        assert_eq!(out, record.hash());
    }
}

#[test]
fn interop_malformed_records_are_refused_with_a_reason() {
    let vectors = shared("interop.json");
    let malformed = vectors["malformed"]
        .as_array()
        .expect("interop.json has a `malformed` array");
    assert!(!malformed.is_empty());
    for v in malformed {
        let record = str_field(v, "record");
        let err: HashError = record.parse::<Pbkdf2Hash>().expect_err(&format!(
            "malformed record accepted ({})",
            str_field(v, "why")
        ));
        let message = err.to_string();
        assert!(!message.is_empty());
        // The message names the problem without echoing the record.
        if record.len() > 8 {
            assert!(!message.contains(record), "{message}");
        }
    }
}

#[test]
fn malformed_reasons_name_the_problem() {
    let s = "00112233445566778899aabbccddeeff0011223344556677";
    let cases = [
        ("", HashError::Empty),
        ("1000:abcd", HashError::FieldCount(2)),
        (&format!("0:{s}:{s}"), HashError::ZeroIterations),
        (&format!("4294967296:{s}:{s}"), HashError::TooManyIterations),
        (&format!("-1000:{s}:{s}"), HashError::IterationsNotDecimal),
        (&format!("+1000:{s}:{s}"), HashError::IterationsNotDecimal),
        (&format!(" 1000:{s}:{s}"), HashError::IterationsNotDecimal),
        (&format!("1e3:{s}:{s}"), HashError::IterationsNotDecimal),
        (&format!("1000::{s}"), HashError::EmptyField("salt")),
        (&format!("1000:{s}:"), HashError::EmptyField("hash")),
        (&format!("1000:0011223:{s}"), HashError::OddLength("salt")),
        (
            &format!("1000:{s}:zz{}", &s[2..]),
            HashError::NotHex("hash"),
        ),
        ("1000:\u{ff10}\u{ff10}11:0011", HashError::NotHex("salt")),
        (
            "99999999999999999999999:00:00",
            HashError::TooManyIterations,
        ),
    ];
    for (record, expected) in cases {
        assert_eq!(record.parse::<Pbkdf2Hash>(), Err(expected), "{record:?}");
    }
}

#[test]
fn rfc6070_vectors() {
    let vectors = shared("rfc6070.json");
    let list = vectors["vectors"]
        .as_array()
        .expect("rfc6070.json has a `vectors` array");
    let mut ran = 0;
    for v in list {
        if v["slow"].as_bool() == Some(true) {
            continue;
        }
        let iterations = u32::try_from(v["iterations"].as_u64().unwrap()).unwrap();
        let len = usize::try_from(v["dk_len"].as_u64().unwrap()).unwrap();
        let mut out = vec![0u8; len];
        derive(
            Prf::Sha1,
            str_field(v, "password").as_bytes(),
            str_field(v, "salt").as_bytes(),
            iterations,
            &mut out,
        );
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, str_field(v, "dk_hex"), "{v}");
        ran += 1;
    }
    assert_eq!(ran, 5, "RFC 6070 lists five vectors that are not slow");
}
