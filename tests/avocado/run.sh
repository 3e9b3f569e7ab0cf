#!/usr/bin/env bash
# Run the scenario suite under avocado (the same qmp_scenarios the pytest suite runs).
# Results go to build/avocado; the exit status is avocado's (non-zero on any failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p build/avocado
exec .venv/bin/avocado run --job-results-dir build/avocado \
  --max-parallel-tasks "${VUDM_AVOCADO_PARALLEL:-2}" \
  tests/avocado/test_scenarios.py "$@"
