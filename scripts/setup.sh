#!/usr/bin/env bash
# Set up pypm on a fresh machine: torch (the CPU wheel, unless a torch is already installed),
# pypm itself in editable mode with its test and triton extras, and, with --coq, the Coq proof
# assistant from Debian (needed by the test suite, which checks the proofs in coq/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    # Install torch first and pinned: a looser spec with no torch installed pulls several GB of CUDA packages.
    "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test,triton]"

if [ "${1:-}" = "--coq" ] && ! command -v coqc >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q coq
fi
