#!/usr/bin/env bash
# The whole test suite, on real parts: builds what is needed (setup.sh), starts
# a Kafka broker for the integration tests on its own port and state dir, runs
# every test with node's test runner, and stops the broker.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
. scripts/node-env.sh
export PATH="$root/node_modules/.bin:$PATH"
# kafkajs 2.2 sets negative timers on Node >= 24 (harmless); type stripping is no news
export NODE_OPTIONS="${NODE_OPTIONS:-} --disable-warning=TimeoutNegativeWarning --disable-warning=ExperimentalWarning"

echo "test: type-checking" >&2
tsc -p tsconfig.json

state="$(mktemp -d /tmp/ringflow-test.XXXXXX)"
export RINGFLOW_TEST_STATE="$state"
# free ports, so a broker a developer left running never collides with the suite's
read -r port cport < <(python3 -c 'import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
export RINGFLOW_TEST_BROKERS="127.0.0.1:$port"
cleanup() {
  node --disable-warning=ExperimentalWarning cli/main.ts kafka stop --state-dir "$state/kafka" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT
echo "test: starting Kafka for the integration tests" >&2
node --disable-warning=ExperimentalWarning cli/main.ts kafka start --port "$port" --controller-port "$cport" --state-dir "$state/kafka" >&2

# One file at a time: the BPF tests drive known work on a 2-core machine and
# count what comes back, so they must not compete with each other.
node --disable-warning=ExperimentalWarning --test --test-concurrency=1 --test-timeout=600000 \
  --test-reporter=spec \
  "test/unit/**/*.test.ts" "test/native/**/*.test.ts" "test/integration/**/*.test.ts" "$@"
