#!/usr/bin/env bash
# The servers of the interop tests (MLServer with its scikit-learn runtime, KServe's ModelServer) live in their
# own venv, .venv-interop: their pins clash with the project's. Installs exactly requirements-interop.txt, does
# nothing when that is what the venv holds already, and prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-interop
REQUIREMENTS=requirements-interop.txt
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "$PWD/$VENV/bin/python"
    exit 0
fi
echo "ensure_interop.sh: installing $REQUIREMENTS into $VENV (MLServer, KServe)" >&2
"$PYTHON" -m venv --clear "$VENV"
log="$VENV/install.log"
if ! "$VENV/bin/pip" install --disable-pip-version-check -r "$REQUIREMENTS" > "$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "ensure_interop.sh: pip install -r $REQUIREMENTS failed (full log: $log)" >&2
    exit 1
fi
# Separate imports: MLServer and KServe register the same protobuf messages, so one process holds one of them.
"$VENV/bin/python" -c "import mlserver, mlserver_sklearn, sklearn" >&2
"$VENV/bin/python" -c "import kserve" >&2
echo "$want" > "$stamp"
echo "$PWD/$VENV/bin/python"
