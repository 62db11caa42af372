#!/usr/bin/env bash
# Install PyTorch into the virtual environment given as $1, before the project's other requirements.
#
# TORCH=cpu (the default) installs the CPU-only build: from PyTorch's CPU wheel index when it answers (on a
# machine with the public internet, PyPI's Linux wheel is the CUDA build, which pulls in gigabytes of NVIDIA
# libraries), else from the default index (a mirror or a local wheel house that carries a CPU build).
# TORCH=cuda installs the default index's build, which is the CUDA one on Linux x86_64.
set -euo pipefail

VENV="${1:?usage: install_torch.sh VENV}"
VERSION="${TORCH_VERSION:-2.13.0}"
FLAVOUR="${TORCH:-cpu}"
CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
PIP=("$VENV/bin/pip" install -q)

log() { echo "install_torch: $*" >&2; }

if "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  log "torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') is already installed"
  exit 0
fi

case "$FLAVOUR" in
  cuda)
    log "installing torch==$VERSION from the default index (CUDA build on Linux x86_64)"
    "${PIP[@]}" "torch==$VERSION"
    ;;
  cpu)
    if "$VENV/bin/python" - "$CPU_INDEX" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=5)
PY
    then
      log "installing CPU-only torch==$VERSION from $CPU_INDEX"
      if "${PIP[@]}" "torch==$VERSION" --index-url "$CPU_INDEX"; then exit 0; fi
      log "$CPU_INDEX has no torch==$VERSION for this platform; trying the default index"
    else
      log "$CPU_INDEX does not answer; installing torch==$VERSION from the default index"
    fi
    "${PIP[@]}" "torch==$VERSION"
    if "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)"; then exit 0; fi
    log "warning: the default index gave a CUDA build of torch; set TORCH_CPU_INDEX to a CPU wheel index to avoid it"
    ;;
  *)
    log "TORCH=$FLAVOUR: expected cpu or cuda"; exit 2
    ;;
esac
