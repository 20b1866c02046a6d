#!/usr/bin/env bash
# The benchmark in one command: installs what is missing (wrk, nginx,
# haproxy come with the test dependencies), builds build/release, runs
# bench/run.py with any arguments given. docs/performance.md explains it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/dev.sh build
exec python3 bench/run.py "$@"
