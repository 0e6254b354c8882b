#!/usr/bin/env bash
# Installs what ringflow needs and builds it; quick when everything is in place.
#   1. Debian packages: clang/llvm (BPF compiler), libbpf/libelf/zlib headers,
#      bpftool (vmlinux.h), a JDK and Maven (the local Kafka broker)
#   2. Node.js >= 24 (scripts/node-env.sh) and the npm dependencies
#   3. bpf/.output/*.bpf.o, the native addon, and the Kafka broker's jars
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { echo "setup: $*" >&2; }
. "$root/scripts/preflight.sh"

# --- 0. what stands in the way, before anything is installed -----------------
# npm start, test, bench and soak go on to load BPF programs: without the
# privileges for that, every step below would be wasted (or fail half-way, as
# a mkdir in another user's home): say the one fix now.
case "${npm_lifecycle_event:-}" in
  start|test) again="npm $npm_lifecycle_event" ;;
  bench|soak) again="npm run $npm_lifecycle_event" ;;
  *) again="" ;;
esac
if [ -n "$again" ] && ! rf_can_load_bpf && ! rf_node_has_bpf_caps; then
  rf_fail 3 "loading eBPF programs needs root or CAP_BPF+CAP_PERFMON; run with sudo: sudo $again"
fi
# what setup writes: build outputs in the tree, Node.js and Kafka's jars in the cache
for d in "$root/node_modules" "$root/bpf/.output" "$root/native/build" "$RINGFLOW_CACHE"; do
  rf_can_create "$d" || rf_fail 1 "setup cannot write $(rf_existing_parent "$d") as $(id -un) (owned by $(stat -c %U "$(rf_existing_parent "$d")")); run it as that user or with sudo: sudo ${again:-bash scripts/setup.sh}"
done

# --- 1. system packages ------------------------------------------------------
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have clang || missing+=(clang)
have llvm-strip || missing+=(llvm)
[ -e /usr/include/bpf/libbpf.h ] || missing+=(libbpf-dev)
[ -e /usr/include/libelf.h ] || missing+=(libelf-dev)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
{ have bpftool || [ -x /usr/sbin/bpftool ]; } || missing+=(bpftool)
have make || missing+=(make)
have g++ || missing+=(g++)
have python3 || missing+=(python3)
have java || missing+=(openjdk-17-jre-headless)
have mvn || missing+=(maven)
have npm || missing+=(npm)
# L7 tests: a real DNS server and client (dnsmasq answers a test zone; dig asks it), curl as an HTTP client
{ have dnsmasq || [ -x /usr/sbin/dnsmasq ]; } || missing+=(dnsmasq-base)
have dig || missing+=(dnsutils)
have curl || missing+=(curl)
# CPU profiling: perf is the reference the profiler and the symboliser are checked against (symbols-perf, profile fidelity)
have perf || missing+=(linux-perf)
# npm run bench: the HTTP load generator of http_overhead_ratio
have wrk || missing+=(wrk)
# the soak (test/soak): a gRPC client and server that are not grpc-js, for Debian's own python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || missing+=(python3-grpcio)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    rf_fail 1 "missing Debian packages: ${missing[*]}; install them: sudo apt-get install -y ${missing[*]}"
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. Node.js 24 and npm dependencies ---------------------------------------
. "$root/scripts/node-env.sh"
stamp=node_modules/.ringflow-lock
want="$(sha256sum package-lock.json | cut -d' ' -f1) $(node --version)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi
[ "${1:-}" = "--deps-only" ] && exit 0

# --- 3. builds -----------------------------------------------------------------
make -s -C bpf >&2
addon=native/build/Release/ringflow_native.node
if [ ! -f "$addon" ] || [ -n "$(find native/src native/binding.gyp -newer "$addon" 2>/dev/null | head -1)" ]; then
  say "building the native addon"
  (cd native && "$root/node_modules/.bin/node-gyp" rebuild --loglevel=error >&2)
fi
if [ -f native/bench/Makefile ]; then make -s -C native/bench >&2; fi
node --disable-warning=ExperimentalWarning cli/kafka.ts resolve >&2
# the OpenTelemetry Collector the end-to-end tests ship OTLP to (Go, from the module proxy; cached)
if ! have go && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
have go || { echo "setup: Go (>= 1.26) is needed to build the test OpenTelemetry Collector; install it from go.dev or your distribution" >&2; exit 1; }
node --disable-warning=ExperimentalWarning cli/otelcol.ts build >&2
