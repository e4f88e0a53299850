#!/usr/bin/env python3
"""Times Python's hashlib.pbkdf2_hmac (OpenSSL) on the record benches/cold_verify.rs uses.

Prints the median nanoseconds per derivation. Checks the result against the record first, so
both sides are timed on the same work.
"""
import hashlib
import statistics
import sys
import timeit

KEY = b"DOIfRzrWSZ6zt9N2axzd41m2"
RECORD = "1000:9324cb602a857ff0e7d0713c62a9b90285bce134cfb3a1ae:18532e80f50f225378776e882e88bcf4b1abca52815e0f02"

iterations, salt_hex, hash_hex = RECORD.split(":")
salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(hash_hex)
derive = lambda: hashlib.pbkdf2_hmac("sha1", KEY, salt, int(iterations), len(expected))
if derive() != expected:
    sys.exit("hashlib does not reproduce the record")

number = 200
runs = timeit.repeat(derive, number=number, repeat=int(sys.argv[1]) if len(sys.argv) > 1 else 15)
print(f"{statistics.median(runs) / number * 1e9:.0f}")
