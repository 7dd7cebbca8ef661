#!/usr/bin/env bash
# The test command: sets up the environment when needed, then runs ruff and the test suite.
#   tools/test.sh [pytest args...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash tools/install.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
