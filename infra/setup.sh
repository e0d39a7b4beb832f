#!/usr/bin/env bash
# Installs what the local stack, the tests and CI need and is missing on this machine.
# Idempotent and quick when everything is there (pip finds the pins satisfied).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r infra/requirements.txt
# `python -m pip` does not refresh pyenv's shims: make new commands (cargo-lambda, weed) visible.
if command -v pyenv >/dev/null; then pyenv rehash; fi

command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }

# `make lint` (and CI) also checks for unused dependencies; cargo-machete reads the sources
# only, so it works offline once installed from crates.io (about a minute to build).
if [ "${1:-}" = "--lint" ] && ! cargo machete --version >/dev/null 2>&1; then
    cargo install --locked --quiet cargo-machete@0.9.2
fi
