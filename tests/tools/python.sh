#!/usr/bin/env bash
# Installs the Python tools otpd's tests run (tests/tools/requirements.txt) from PyPI into a
# virtualenv under target/tools, once per version of that list, and prints the virtualenv's
# bin directory. Needs python3 with venv. Tests that call it at once wait for each other.
set -euo pipefail
cd "$(dirname "$0")/../.."
requirements=tests/tools/requirements.txt
stamp=$(sha256sum "$requirements" | cut -c1-12)
mkdir -p target/tools
venv="$PWD/target/tools/python-$stamp"
exec 9>"target/tools/.python.lock"
flock 9
if [[ ! -e "$venv/.installed" ]]; then
  echo "Installing the tests' Python tools from PyPI into $venv (once; about a minute)..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  touch "$venv/.installed"
fi
echo "$venv/bin"
