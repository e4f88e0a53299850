#!/usr/bin/env python3
"""Splits one criterion case's time among the steps of the hot path, from a perf profile.

Usage: attribute.py PERF_SCRIPT MEDIAN_NS
  PERF_SCRIPT: `perf script -F comm,ip,sym` of `perf record --call-graph dwarf` on the bench
  binary run with `--profile-time` (bench/profile.sh makes it).

Only samples inside criterion's `Bencher::iter` count (set-up and teardown fall outside it);
each is charged to the step of the layer it was in, and a step's share of those samples times
the case's median is its nanoseconds. moka's `get` is split into its own parts the same way.
"""
import collections
import re
import sys


def frames(block):
    out = []
    for line in block.splitlines()[1:]:
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            out.append(parts[1].replace(" (inlined)", ""))
    return out


def short(name):
    for _ in range(3):
        name = re.sub(r"<[^<>]*>", "", name)
    return name.replace("tower_apikey::", "")[:80]


def moka_part(below):
    names = " ".join(below)
    if "run_pending_tasks" in names:
        return "housekeeping (read ops applied: LRU deque, frequency sketch)"
    if "BucketArray" in names or "bucket" in names:
        return "bucket lookup" + (": the key compare (memcmp)" if "memcmp" in names else "")
    if "FrequencySketch" in names:
        return "frequency sketch"
    if "channel" in names or "try_send" in names:
        return "read-op record"
    if "Instant" in names or "clock_gettime" in names or "now" in names:
        return "clock"
    return "other"


def main():
    script, median = sys.argv[1], float(sys.argv[2])
    total = 0
    top = collections.Counter()
    steps = collections.Counter()
    moka = collections.Counter()
    for block in open(script).read().split("\n\n"):
        stack = frames(block)
        at = [i for i, f in enumerate(stack) if "Bencher" in f and f.endswith("::iter")]
        if not at:
            continue
        total += 1
        path = [f for f in reversed(stack[: at[0]]) if "{{closure}}" not in f or "validate_cached" in f]
        if not path:
            top["(the loop itself)"] += 1
            continue
        first = path[0]
        if "ApiKey" in first and first.endswith("::call"):
            top["the layer (ApiKey::call)"] += 1
            step = short(path[1]) if len(path) > 1 else "(call itself)"
            if "validate_cached" in step and len(path) > 2:
                step = short(path[2])
                if "Cache::answer" in step and len(path) > 3:
                    step = short(path[3])
            if step.endswith("::call") and "ApiKey" not in step:
                step = "the inner service (the handler; drops the request)"
            steps[step] += 1
            gets = [i for i, f in enumerate(stack) if f.startswith("moka::sync::cache::Cache") and f.endswith("::get")]
            if gets:
                moka[moka_part(stack[: gets[-1]])] += 1
        else:
            top[short(first)] += 1
    ns = lambda n: n / total * median
    print(f"{total} samples inside the measured loop; median {median:.0f} ns per request")
    for name, n in top.most_common():
        print(f"{ns(n):7.0f} ns {100 * n / total:5.1f}%  {name}")
        if name.startswith("the layer"):
            for step, m in steps.most_common():
                if ns(m) >= 1:
                    print(f"    {ns(m):7.0f} ns  {step}")
    if moka:
        print("moka's get, by part:")
        for part, m in moka.most_common():
            print(f"    {ns(m):7.0f} ns  {part}")


main()
