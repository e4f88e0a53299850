#!/usr/bin/env bash
# Where a cached request's time goes (issue 27): one hot_path case measured by criterion, then
# profiled with perf (Debian's linux-perf; as root or with perf_event_paranoid <= 1) and split
# among the layer's steps by bench/attribute.py.
#   bench/profile.sh [CASE]     CASE defaults to apikey_layer_cached_100k
set -euo pipefail
cd "$(dirname "$0")/.."
case=${1:-apikey_layer_cached_100k}
exe=$(cargo bench --features tokens --bench hot_path --no-run --message-format=json \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "hot_path":
        print(m["executable"])')
out=target/profile
mkdir -p "$out"
"$exe" --bench --warm-up-time 2 --measurement-time 5 "hot_path/$case\$" | tee "$out/$case.criterion"
median=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' \
  "target/criterion/hot_path/$case/new/estimates.json")
perf record -q -F 999 --call-graph dwarf,16384 -o "$out/$case.data" \
  "$exe" --bench --profile-time 5 "hot_path/$case\$" >/dev/null 2>&1
perf script -i "$out/$case.data" -F comm,ip,sym 2>/dev/null >"$out/$case.script"
python3 bench/attribute.py "$out/$case.script" "$median"
