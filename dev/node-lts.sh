#!/usr/bin/env bash
# Runs a command with the Node.js LTS the image targets (the Dockerfile's) first on PATH:
# the npm registry's `node` package, a Node binary shipped as a registry package, installed
# once into the cache. CI runs part of the suite with it (npm run test:lts) beside the
# machine's own Node.
set -euo pipefail
version="${SAGAFLOW_NODE_LTS:-24}"
cache="${SAGAFLOW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sagaflow}/node-lts-$version"
bin="$cache/node_modules/node/bin"
if [ ! -x "$bin/node" ]; then
  echo "[node-lts] installing Node.js $version from the npm registry's node package into $cache" >&2
  rm -rf "$cache" && mkdir -p "$cache"
  npm install --prefix "$cache" --no-save --no-audit --no-fund --loglevel=error "node@$version" >&2
fi
export PATH="$bin:$PATH"
echo "[node-lts] $(node --version) at $bin" >&2
exec "$@"
