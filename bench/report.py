#!/usr/bin/env python3
"""Prints the ratios README quotes from one run: criterion's estimates and the OpenSSL times.

Usage: report.py OPENSSL_NS [OPENSSL_NS ...]   (the timings taken around the cargo bench run)
"""
import json
import pathlib
import statistics
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"


def ns(group, name):
    path = root / group / name / "new" / "estimates.json"
    try:
        return json.loads(path.read_text())["median"]["point_estimate"]
    except FileNotFoundError:
        sys.exit(f"no estimate at {path}: run the benches first")


openssl = statistics.median(float(x) for x in sys.argv[1:])
fixed = ns("hot_path", "fixed_header")
cached = ns("hot_path", "apikey_layer_cached_1k")
correct = ns("cold_verify", "correct_key")
wrong = ns("cold_verify", "wrong_key")
crate = ns("cold_verify", "pbkdf2_crate")

rows = [
    ("cached key through ApiKeyLayer (1k keys) / fixed-header layer", cached / fixed, "<= 2.0"),
    ("cold verify, correct key / OpenSSL (hashlib)", correct / openssl, "<= 0.5"),
    ("cold verify, wrong key / OpenSSL (hashlib)", wrong / openssl, ""),
    ("cold verify, correct key / pbkdf2 crate", correct / crate, ""),
]
print(f"{'measure':<66} {'ratio':>7}  target")
for name, ratio, target in rows:
    print(f"{name:<66} {ratio:>6.2f}x  {target}")
print()
print(f"(medians: fixed header {fixed:.0f} ns, cached {cached:.0f} ns, correct {correct/1e3:.1f} us, "
      f"wrong {wrong/1e3:.1f} us, pbkdf2 crate {crate/1e3:.1f} us, OpenSSL {openssl/1e3:.1f} us)")
