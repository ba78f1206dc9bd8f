#!/usr/bin/env bash
# Creates .venv (Python >= 3.11, 3.12 preferred) and installs jaxgen with its test extras.
# Installs Debian's Fashion-MNIST IDX files where apt-get is usable (root), so the
# fashion_mnist experiments and tests work offline. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
  local candidates=(python3.12)
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)"/versions/3.12*/bin/python3.12)
  fi
  candidates+=(python3.13 python3.11 python3)
  for py in "${candidates[@]}"; do
    if "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then
      echo "$py"; return 0
    fi
  done
  echo "setup.sh: no Python >= 3.11 found (tried ${candidates[*]})" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  py=$(pick_python)
  echo "setup.sh: creating .venv with $("$py" --version)"
  "$py" -m venv .venv
fi
log=.venv/pip-install.log
if ! { .venv/bin/python -m pip install -q --upgrade pip \
       && .venv/bin/python -m pip install -q -e '.[test]'; } >"$log" 2>&1 \
   || ! .venv/bin/python -c 'import jax, flax, optax, orbax.checkpoint, jaxgen' 2>>"$log"; then
  tail -n 40 "$log" >&2
  echo "setup.sh: installation failed (full log: $log)" >&2
  exit 1
fi

fmnist=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$fmnist" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup.sh: installing Debian's dataset-fashion-mnist"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
    || echo "setup.sh: could not install dataset-fashion-mnist; fashion_mnist will need tfds" >&2
fi
