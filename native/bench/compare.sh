#!/usr/bin/env bash
# Drain benchmark: c_consumer vs the addon, interleaved, N events per run.
# Usage: bash native/bench/compare.sh [N=5000000] [RUNS=5]   (as root, from anywhere)
# Prints every run, then the median events/s of each and the addon/C ratios.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
n="${1:-5000000}"; runs="${2:-5}"
make -s -C "$root/native/bench"
[ -f "$root/bpf/.output/bench.bpf.o" ] || make -s -C "$root/bpf"
[ -f "$root/native/build/Release/ringflow_native.node" ] ||
  bash "$root/scripts/with-node.sh" node-gyp rebuild --directory "$root/native" >/dev/null
out="$(mktemp)"
for _ in $(seq "$runs"); do
  echo "c_level    $("$root/native/build/bench/c_consumer" "$n")"
  echo "c_edge     $("$root/native/build/bench/c_consumer" --edge "$n")"
  echo "addon_level $(bash "$root/scripts/with-node.sh" node "$root/native/bench/addon_drain.ts" --level "$n" 2>/dev/null)"
  echo "addon_edge $(bash "$root/scripts/with-node.sh" node "$root/native/bench/addon_drain.ts" "$n" 2>/dev/null)"
done | tee "$out"
python3 - "$out" <<'PY'
import collections, json, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, js = line.split(None, 1)
    runs[name].append(json.loads(js))
med = {k: statistics.median(r['events_per_s'] for r in v) for k, v in runs.items()}
cpu = {k: statistics.median(r.get('cpu_s', 0) for r in v) for k, v in runs.items()}
for k in med:
    drops = sum(r['drops'] for r in runs[k])
    print(f"{k:12s} median {med[k]/1e6:.3f} M events/s  cpu {cpu[k]:.2f} s  drops {drops}")
print(f"addon_edge / c_level  = {med['addon_edge']/med['c_level']:.3f}  (addon default vs libbpf default)")
print(f"addon_edge / c_edge   = {med['addon_edge']/med['c_edge']:.3f}")
print(f"addon_level / c_level = {med['addon_level']/med['c_level']:.3f}")
PY
rm -f "$out"
