#!/usr/bin/env bash
# Installs one kind of the tools otpd's tests run, from its pinned list, into target/tools,
# once per version of that list, and prints where they are:
#   python  tests/tools/requirements.txt (PyPI) into a virtualenv; prints its bin directory.
#           Needs python3 with venv.
#   node    tests/tools/package.json (npm); prints its node_modules directory. Needs node, npm.
# Tests that call it at once wait for each other.
set -euo pipefail
cd "$(dirname "$0")/../.."
kind=${1:?say python or node}
case "$kind" in
  python) manifest=tests/tools/requirements.txt ;;
  node) manifest=tests/tools/package.json ;;
  *) echo "unknown kind of tools: $kind (python or node)" >&2; exit 2 ;;
esac
stamp=$(sha256sum "$manifest" | cut -c1-12)
mkdir -p target/tools
dir="$PWD/target/tools/$kind-$stamp"
exec 9>"target/tools/.$kind.lock"
flock 9
if [[ ! -e "$dir/.installed" ]]; then
  echo "Installing the tests' $kind tools into $dir (once; about a minute)..." >&2
  rm -rf "$dir"
  case "$kind" in
    python)
      python3 -m venv "$dir" >&2
      "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$manifest" >&2
      ;;
    node)
      mkdir -p "$dir"
      cp "$manifest" "$dir/package.json"
      (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
      ;;
  esac
  touch "$dir/.installed"
fi
case "$kind" in
  python) echo "$dir/bin" ;;
  node) echo "$dir/node_modules" ;;
esac
