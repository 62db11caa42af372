#!/usr/bin/env bash
# Run the whole test suite on SQLite and on a real PostgreSQL (started here when none is reachable), with the
# interop servers (MLServer, KServe) installed in their own venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PREWARM_TEST_POSTGRES_URL="$(scripts/ensure_postgres.sh)"
export PREWARM_TEST_POSTGRES_URL
echo "test.sh: PostgreSQL at $PREWARM_TEST_POSTGRES_URL"
interop_python="$(scripts/ensure_interop.sh)"  # an assignment, so that a failed install stops the run
echo "test.sh: interop servers run with $interop_python"
PROMETHEUS_BIN="$(scripts/ensure_prometheus.sh)"
echo "test.sh: Prometheus and promtool in $PROMETHEUS_BIN"
exec .venv/bin/python -m pytest "$@"
