#!/usr/bin/env bash
# Run the whole test suite on SQLite and on a real PostgreSQL (started here when none is reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
PREWARM_TEST_POSTGRES_URL="$(scripts/ensure_postgres.sh)"
export PREWARM_TEST_POSTGRES_URL
echo "test.sh: PostgreSQL at $PREWARM_TEST_POSTGRES_URL"
PROMETHEUS_BIN="$(scripts/ensure_prometheus.sh)"
echo "test.sh: Prometheus and promtool in $PROMETHEUS_BIN"
exec .venv/bin/python -m pytest "$@"
