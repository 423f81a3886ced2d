#!/usr/bin/env bash
# Set up (or reuse) .venv, then run the nightly-refit demo against a local sandbox.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
exec ionworks-prefect demo "$@"
