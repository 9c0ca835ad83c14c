#!/usr/bin/env bash
# Installs schemathesis, at the version otpd's tests are written for, from PyPI into
# target/tools once, and prints the path of its `st` command. Needs python3 with venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=4.32.5
venv="$PWD/target/tools/schemathesis-$version"
if [[ ! -e "$venv/.installed" ]]; then
  echo "Installing schemathesis $version from PyPI into $venv (once; about a minute)..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" >&2
  touch "$venv/.installed"
fi
echo "$venv/bin/st"
