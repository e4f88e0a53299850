#!/usr/bin/env bash
# Keeps a hot-path change only if it shows: builds the `hot_path` bench at two revisions and
# runs them alternately (AB_ROUNDS rounds, 4 unless set), so drift on a noisy machine falls on
# both sides alike, then prints each case's medians and the new/old ratio of every round.
#   bench/ab.sh OLD NEW [FILTER]      e.g. bench/ab.sh main HEAD 'cached_(1k|100k)$|fair'
# NEW may be `.` for the working tree as it stands (taken as `git stash create` makes it).
# Builds in target/ab, a fresh worktree per side: the two sides share one target directory,
# where a tree whose files are older than the last build would pass for built.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: bench/ab.sh OLD NEW [FILTER]}
new=${2:?usage: bench/ab.sh OLD NEW [FILTER]}
filter=${3:-'hot_path/(fair_baseline_(1k|100k)|apikey_layer_cached_(1k|100k))$'}
rounds=${AB_ROUNDS:-4}
# One core for the bench process when taskset is there: no migrations mid-measurement.
pin=(); command -v taskset >/dev/null && pin=(taskset -c 1)
out=target/ab
mkdir -p "$out"
export CARGO_TARGET_DIR="$PWD/$out/target"

build() { # side revision
  local dir="$PWD/$out/$1" rev=$2
  if [ "$rev" = . ]; then
    rev=$(git stash create)
    rev=${rev:-HEAD}
  fi
  git worktree remove --force "$dir" 2>/dev/null || rm -rf "$dir"
  git worktree add --detach --quiet "$dir" "$rev"
  local exe
  exe=$( (cd "$dir" && cargo bench --features tokens --bench hot_path --no-run --message-format=json) \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "hot_path":
        print(m["executable"])')
  cp "$exe" "$out/hot_path-$1"
  git worktree remove --force "$dir"
}
build old "$old"
build new "$new"

: >"$out/runs.txt"
# The side that runs second was measured faster by about 3% with the same binary on both
# sides (5 rounds here), so the order turns each round: old first, then new first.
for round in $(seq "$rounds"); do
  order="old new"
  [ $((round % 2)) = 0 ] && order="new old"
  for side in $order; do
    "${pin[@]}" "$out/hot_path-$side" --bench --warm-up-time 2 --measurement-time 5 "$filter" 2>/dev/null \
      | sed "s/^/$round $side /" >>"$out/runs.txt"
  done
done
python3 - "$out/runs.txt" <<'EOF'
import re, statistics, sys
scale = {"ps": 1e-3, "ns": 1, "µs": 1e3, "us": 1e3, "ms": 1e6}
medians, name = {}, None
for line in open(sys.argv[1]):
    rnd, side, text = line.split(" ", 2)
    m = re.match(r"(hot_path/\S+)", text.strip())
    if m:
        name = m.group(1)
    t = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", text)
    if t and name:
        medians[(name, int(rnd), side)] = float(t.group(1)) * scale[t.group(2)]
names = sorted({k[0] for k in medians})
rounds = sorted({k[1] for k in medians})
print(f"{'case':45} " + "  ".join(f"r{r} old ns  new ns  new/old" for r in rounds) + "  median new/old")
for n in names:
    cells, ratios = [], []
    for r in rounds:
        o, w = medians.get((n, r, "old")), medians.get((n, r, "new"))
        cells.append(f"{o:9.0f} {w:7.0f} {w / o:8.3f}" if o and w else " " * 26)
        if o and w:
            ratios.append(w / o)
    median = f"{statistics.median(ratios):8.3f}" if ratios else ""
    print(f"{n:45} " + "  ".join(cells) + f"  {median}")
for size in ("1k", "100k"):
    cached, fair = f"hot_path/apikey_layer_cached_{size}", f"hot_path/fair_baseline_{size}"
    for side in ("old", "new"):
        ratios = [medians[(cached, r, side)] / medians[(fair, r, side)]
                  for r in rounds if (cached, r, side) in medians and (fair, r, side) in medians]
        if ratios:
            print(f"cached/fair {size:4} {side}: " + ", ".join(f"{x:.2f}x" for x in ratios))
EOF
