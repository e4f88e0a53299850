#!/usr/bin/env python3
"""Prints the table the performance guide quotes from one run: criterion's estimates and the OpenSSL times.

Usage: report.py [OPENSSL_JSON ...]  (the timings taken around the cargo bench run; without
them, as `bench/run.sh hot` calls it, the hot path's rows alone)
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


runs = [json.loads(arg) for arg in sys.argv[1:]]
openssl = {prf: statistics.median(run[prf] for run in runs) for prf in runs[0]} if runs else {}

rows = []
fixed = ns("hot_path", "fixed_header")
cached = ns("hot_path", "apikey_layer_cached_1k")
cached_100k = ns("hot_path", "apikey_layer_cached_100k")
limited = ns("hot_path", "apikey_layer_cached_1k_rate_limited")
uncounted = ns("hot_path", "apikey_layer_cached_1k_uncounted")
rows.append(("hot path: cached key through ApiKeyLayer (1k keys) / fixed-header layer", cached / fixed, "<= 1.5"))
rows.append(("hot path: cached key through ApiKeyLayer (100k keys) / fixed-header layer", cached_100k / fixed, "<= 1.5"))
fair_dir = root / "hot_path" / "fair_baseline_1k"
if fair_dir.exists():
    fair_1k, fair_100k = ns("hot_path", "fair_baseline_1k"), ns("hot_path", "fair_baseline_100k")
    rows.append(("hot path: cached key (1k) / fair baseline (same 1k keys, same order)", cached / fair_1k, "<= 1.3"))
    rows.append(("hot path: cached key (100k) / fair baseline (same 100k keys, same order)", cached_100k / fair_100k, "<= 2.0"))
rows.append(("hot path: cached key with a rate limit / without (1k keys)", limited / cached, "<= 1.1"))
rows.append(("hot path: cached key with usage counted / not counted (1k keys)", cached / uncounted, "<= 1.05"))
tokens_dir = root / "tokens"
if tokens_dir.exists():
    by_key = ns("tokens", "apikey_layer_cached_1k")
    by_token = ns("tokens", "bearer_layer_cached_1k")
    rows.append(("tokens: cached token through BearerTokenLayer / cached key through ApiKeyLayer (1k)", by_token / by_key, "<= 1.5"))
for prf, target_right, target_wrong in [("sha1", "1.1", "0.55"), ("sha256", "1.1", ""), ("sha512", "1.1", "")] if openssl else []:
    group = f"cold_verify_{prf}"
    floor, right, wrong, crate = (ns(group, n) for n in ("floor", "correct_key", "wrong_key", "pbkdf2_crate"))
    rows += [
        (f"{prf}: correct key / floor", right / floor, f"<= {target_right}"),
        (f"{prf}: wrong key / floor", wrong / floor, f"<= {target_wrong}" if target_wrong else ""),
        (f"{prf}: correct key / OpenSSL", right / openssl[prf], "<= 0.5" if prf == "sha1" else ""),
        (f"{prf}: wrong key / OpenSSL", wrong / openssl[prf], ""),
        (f"{prf}: pbkdf2 crate / floor", crate / floor, ""),
        (f"{prf}: OpenSSL / floor", openssl[prf] / floor, ""),
    ]

print(f"| {'measure':<76} | {'ratio':>6} | target |")
print(f"|{'-' * 78}|{'-' * 8}|--------|")
for name, ratio, target in rows:
    print(f"| {name:<76} | {ratio:>5.2f}x | {target:<6} |")
print()
if tokens_dir.exists():
    endpoint = ns("tokens", "token_endpoint_cached_key")
    print(f"token endpoint, cached key: {endpoint / 1e3:.1f} us per token (signing included), "
          f"{1e9 / endpoint:,.0f} tokens/s on one core; cached token {by_token:.0f} ns, cached key {by_key:.0f} ns")
if fair_dir.exists():
    print("the cache alone, same ids, same order: " + ", ".join(
        f"{name} {ns('hot_path', name):.0f} ns" for name in (
            "moka_get_1k", "moka_plain_get_1k", "hashmap_get_1k",
            "moka_get_100k", "moka_plain_get_100k", "hashmap_get_100k")))
print(f"medians: fixed header {fixed:.0f} ns, cached {cached:.0f} ns (1k), {cached_100k:.0f} ns (100k); "
      + ", ".join(f"{prf} floor {ns('cold_verify_' + prf, 'floor') / 1e3:.0f} us, OpenSSL {openssl[prf] / 1e3:.0f} us" for prf in openssl))
