#!/usr/bin/env python3
"""Times Python's hashlib.pbkdf2_hmac (OpenSSL) on the records benches/cold_verify.rs uses.

Prints one JSON object: median nanoseconds per derivation for each PRF. Checks the SHA-1
record against the stored Maximo-form record first, so both sides time the same work.
"""
import hashlib
import json
import statistics
import sys
import timeit

KEY = b"DOIfRzrWSZ6zt9N2axzd41m2"
SALT = bytes.fromhex("9324cb602a857ff0e7d0713c62a9b90285bce134cfb3a1ae")
ITERATIONS = 1000
RECORDS = {"sha1": 24, "sha256": 32, "sha512": 64}
MAXIMO = bytes.fromhex("18532e80f50f225378776e882e88bcf4b1abca52815e0f02")

if hashlib.pbkdf2_hmac("sha1", KEY, SALT, ITERATIONS, 24) != MAXIMO:
    sys.exit("hashlib does not reproduce the record")

repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 15
number = 100 if repeat > 1 else 1
times = {}
for prf, length in RECORDS.items():
    runs = timeit.repeat(lambda: hashlib.pbkdf2_hmac(prf, KEY, SALT, ITERATIONS, length), number=number, repeat=repeat)
    times[prf] = statistics.median(runs) / number * 1e9
print(json.dumps(times))
