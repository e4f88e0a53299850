//! Access tokens against libraries this project did not write: Python's `cryptography` makes
//! the signing keys (Ed25519 as PKCS#8, P-256 as SEC1), the axum example signs with them, and
//! `tests/interop/oauth_interop.py` checks the exchange with authlib's OAuth 2 client, the
//! tokens with PyJWT's `PyJWKClient`, and that the example's `BearerTokenLayer` accepts a
//! token PyJWT signs with the JWKS key and refuses `alg: none` and HS256 over the public key.
//!
//! The Python packages live in a venv under the target directory, made on first run (pip
//! needs the package index). Without python3 or the index the test says so and passes,
//! unless `TOWER_APIKEY_REQUIRE_PYTHON` is set (CI sets it).
#![cfg(feature = "tokens")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Pinned, so a run is repeatable.
const PACKAGES: &[&str] = &[
    "Authlib==1.9.10",
    "PyJWT==2.15.1",
    "cryptography==50.0.2",
    "requests==2.34.2",
];

fn venv() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oauth-interop-venv");
    let python = venv.join("bin/python");
    let ready = || {
        Command::new(&python)
            .args(["-c", "import authlib, jwt, cryptography, requests"])
            .status()
            .is_ok_and(|status| status.success())
    };
    if ready() {
        return Some(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|status| status.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet"])
            .args(PACKAGES)
            .status()
            .is_ok_and(|status| status.success());
    if made && ready() {
        return Some(python);
    }
    let why = "python3 with a venv and the packages (pip needs the package index)";
    assert!(
        std::env::var_os("TOWER_APIKEY_REQUIRE_PYTHON").is_none(),
        "TOWER_APIKEY_REQUIRE_PYTHON is set, but there is no {why}"
    );
    eprintln!("skipped: no {why}");
    None
}

/// A private key PEM made by Python's `cryptography`.
fn python_key(python: &Path, kind: &str) -> String {
    let program = match kind {
        "ed25519" => {
            "from cryptography.hazmat.primitives.asymmetric import ed25519\n\
             from cryptography.hazmat.primitives import serialization as s\n\
             k = ed25519.Ed25519PrivateKey.generate()\n\
             print(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()).decode())"
        }
        _ => {
            "from cryptography.hazmat.primitives.asymmetric import ec\n\
             from cryptography.hazmat.primitives import serialization as s\n\
             k = ec.generate_private_key(ec.SECP256R1())\n\
             print(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()).decode())"
        }
    };
    let out = Command::new(python).args(["-c", program]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn authlib_and_pyjwt_interoperate_with_the_token_endpoint_and_the_bearer_layer() {
    let Some(python) = venv() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/oauth_interop.py");
    for (kind, expect) in [("ed25519", "EdDSA"), ("p256", "ES256")] {
        let dir = tempfile::tempdir().unwrap();
        let pem = python_key(&python, kind);
        assert!(pem.contains(if kind == "p256" {
            "EC PRIVATE KEY"
        } else {
            "BEGIN PRIVATE KEY"
        }));
        let pem_file = dir.path().join("signing.pem");
        std::fs::write(&pem_file, &pem).unwrap();
        let mut command = Command::new(common::example_binary("axum"));
        command
            .env("APIKEY_STORE", dir.path().join("apikeys.json"))
            .env("TOKEN_SIGNING_KEY", &pem_file);
        let (_server, addr, key) = common::start_example(command);
        let key = key.expect("the example prints its demo key");
        let id = key
            .strip_prefix("tak_")
            .and_then(|rest| rest.split('_').next())
            .unwrap();
        let (_, jwks) = common::http_get(&addr, "/.well-known/jwks.json", None);
        assert!(jwks.contains(&format!("\"alg\":\"{expect}\"")), "{jwks}");
        let out = Command::new(&python)
            .arg(&script)
            .args([&format!("http://{addr}"), id, &key])
            .arg(&pem_file)
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        eprintln!("{kind}:\n{printed}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "the interop checks failed with a {kind} key"
        );
        assert!(printed.contains("all interop checks passed"));
        assert!(!printed.contains("FAIL"));
    }
}
