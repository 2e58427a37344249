#!/usr/bin/env bash
# Create bench/.venv-mlflow: MLflow (the peer server bench/bench_serving.py compares against),
# kept out of the project's environment. Idempotent: reruns only when the pins change.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv-mlflow"
requirements="$here/requirements-mlflow.txt"
stamp="$venv/.requirements-installed"
# The same interpreter as the project's venv, so pickles move between the two unchanged.
python="${PYTHON:-$repo/.venv/bin/python}"

if [[ -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
    echo "bench/.venv-mlflow is up to date"
    exit 0
fi

if command -v uv >/dev/null 2>&1; then
    uv venv --quiet --allow-existing --python "$python" "$venv"
    uv pip install --quiet --python "$venv/bin/python" -r "$requirements"
else
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$requirements"
fi
cp "$requirements" "$stamp"
"$venv/bin/mlflow" --version
