#!/usr/bin/env bash
# A virtualenv with Label Studio (pinned), for tests/e2e/test_real_label_studio.py: made once
# and cached outside the repository (REFTAG_LABEL_STUDIO_VENV, else
# ~/.cache/reftag/label-studio-<version>); later runs only check its stamp (well under a second).
# Prints the virtualenv's path. The first install takes a few minutes (about 200 packages from PyPI).
#
#   bash tests/e2e/label_studio_venv.sh          # -> /root/.cache/reftag/label-studio-1.23.2
set -euo pipefail
VERSION=1.23.2
VENV=${REFTAG_LABEL_STUDIO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/reftag/label-studio-$VERSION}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.reftag-label-studio-$VERSION"

if [ -f "$STAMP" ]; then
  echo "$VENV"
  exit 0
fi
mkdir -p "$(dirname "$VENV")"
# One install at a time (two test runs at once wait for each other); the stamp is written last, so
# a killed install is started again from scratch.
exec 9>"$VENV.lock"
flock 9
if [ ! -f "$STAMP" ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install --quiet "label-studio==$VERSION" >&2
  # Not `label-studio --version`: it migrates a database under ~/.local/share/label-studio first.
  "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('label-studio') == '$VERSION'"
  touch "$STAMP"
fi
echo "$VENV"
