#!/usr/bin/env bash
# Installs the Node tools otpd's tests run (tests/tools/package.json) from npm into
# target/tools, once per version of that list, and prints their node_modules directory.
# Needs node and npm. Tests that call it at once wait for each other.
set -euo pipefail
cd "$(dirname "$0")/../.."
manifest=tests/tools/package.json
stamp=$(sha256sum "$manifest" | cut -c1-12)
mkdir -p target/tools
dir="$PWD/target/tools/node-$stamp"
exec 9>"target/tools/.node.lock"
flock 9
if [[ ! -e "$dir/.installed" ]]; then
  echo "Installing the tests' Node tools from npm into $dir (once)..." >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$manifest" "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
  touch "$dir/.installed"
fi
echo "$dir/node_modules"
