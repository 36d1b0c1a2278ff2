#!/usr/bin/env bash
# Creates ./.venv and installs litesrl into it (idempotent). Sourced by scripts/demo and scripts/test.
# Torch: an existing torch in the venv is kept (JetPack wheels); otherwise the release that this
# project is tested with is installed, or LITESRL_TORCH_SPEC if set (e.g. "torch==2.5.0 torchvision==0.20.0").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LITESRL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    echo "==> installing torch (about 2 minutes)"
    # shellcheck disable=SC2086
    "${PIP[@]}" install ${LITESRL_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
fi
stamp="$VENV/.litesrl-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "==> installing litesrl and its dependencies"
    "${PIP[@]}" install -e "$ROOT[test]"
    touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
