#!/usr/bin/env bash
# Runs a command with Node.js >= 24 and the project's node_modules/.bin on PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/node-env.sh"
export PATH="$root/node_modules/.bin:$PATH"
exec "$@"
