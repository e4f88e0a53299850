#!/usr/bin/env bash
# Runs the benchmarks and prints the ratios the performance guide quotes
# (src/docs/performance.md), each side measured in one run.
#   bench/run.sh          full run (about a quarter of an hour: PostgreSQL at a million keys)
#   bench/run.sh hot      the hot path and the load run alone (about 5 minutes): issue 27's ratios
#   bench/run.sh fleet    what a fleet costs PostgreSQL, and its per-key policies (about 3 minutes)
#   bench/run.sh smoke    build and run each benchmark once, in the test profile (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = smoke ]; then
  # That each runs, not how fast: the test profile, whose dependencies the tests built.
  cargo test --all-features --benches -- --test
  python3 bench/openssl_pbkdf2.py 1 >/dev/null
  exit 0
fi

if [ "${1:-}" = hot ]; then
  cargo bench --features tokens --bench hot_path -- --warm-up-time 2 --measurement-time 6
  load=$(cargo bench --bench load 2>target/bench-load.log | grep -E '^(end to end|flood)') \
    || load="load bench failed: see target/bench-load.log"
  echo
  echo "$(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  python3 bench/report.py
  echo
  echo "$load"
  exit 0
fi

fleet_runs() {
  fleet=$(cargo bench --features postgres --bench fleet 2>target/bench-fleet.log | grep -E '^fleet') \
    || fleet="fleet bench failed: see target/bench-fleet.log"
  # Per-key policies across three example servers on one throwaway PostgreSQL (tests/fleet_policies.rs).
  policies=$( (cargo build --release --all-features --examples && \
    cargo test --release --all-features --test fleet_policies -- --nocapture --test-threads 1) 2>&1 \
    | grep -oE 'fleet (flood|rate limit|quota|outage).*') \
    || policies="fleet policy run failed: cargo test --release --all-features --test fleet_policies"
}

if [ "${1:-}" = fleet ]; then
  fleet_runs
  echo "$(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "$fleet"
  echo
  echo "$policies"
  exit 0
fi

# OpenSSL before and after the Rust run, so drift on a noisy machine shows in both.
before=$(python3 bench/openssl_pbkdf2.py)
cargo bench --features tokens --bench cold_verify --bench hot_path -- --warm-up-time 2 --measurement-time 6
after=$(python3 bench/openssl_pbkdf2.py)
# Their own output goes to target/bench-*.log; a failure says so instead of ending the run.
load=$(cargo bench --bench load 2>target/bench-load.log | grep -E '^(end to end|flood)') \
  || load="load bench failed: see target/bench-load.log"
scale=$(cargo bench --features postgres,console --bench scale 2>target/bench-scale.log | grep -E '^scale') \
  || scale="scale bench failed: see target/bench-scale.log"
fleet_runs
echo
echo "$(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
python3 bench/report.py "$before" "$after"
echo
echo "$load"
echo
echo "$scale"
echo
echo "$fleet"
echo
echo "$policies"
