# Sourced by the scripts in this folder: makes (or refreshes) .venv from uv.lock,
# so every machine runs the same pinned versions. Needs python3 (3.11+) on PATH;
# uv itself is installed, pinned, into .tools/ with pip.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION="0.13.9"
PYTHON="${PYTHON:-python3}"

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "dispatcher needs Python 3.11 or newer as $PYTHON" >&2
  exit 1
}
if ! "$ROOT/.tools/bin/uv" --version 2>/dev/null | grep -q "^uv $UV_VERSION"; then
  "$PYTHON" -m venv "$ROOT/.tools"
  "$ROOT/.tools/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
export UV_PROJECT_ENVIRONMENT="$ROOT/.venv"
export UV_PYTHON_DOWNLOADS=never

sync_env() {  # sync_env [uv sync options...]
  local python=()
  # Name the interpreter only to create the environment: naming it again can make uv
  # rebuild an environment that is fine, dropping what another script installed.
  [ -x "$ROOT/.venv/bin/python" ] || python=(--python "$(command -v "$PYTHON")")
  "$ROOT/.tools/bin/uv" sync --frozen --quiet "${python[@]}" --project "$ROOT" "$@"
}
