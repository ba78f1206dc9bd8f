#!/bin/bash
# Issue 14's GPU checks in one device run (budget: under 9 minutes on one H100).
# Prepare on the development machine once (no network on the device machine):
#   echo /.whl/ >> .git/info/exclude; echo /.data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl ml_collections absl-py
#   mkdir -p .data && cp -r /usr/share/datasets/fashion-mnist .data/
# Then: run(command="bash benchmarks/gpu_checks.sh", carry=[".whl", ".data"], timeout_s=560)
# Every result lands in $OUT as JSON naming the device, the versions and the command.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:. || exit 1
export PYTHONUNBUFFERED=1 JAXGEN_CACHE=/tmp/jaxgen_cache
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"
python3 -c "import jax, flax, optax; print(jax.__version__, flax.__version__, optax.__version__)" \
    | tee -a "$OUT/device.txt"
step() { echo "== $*"; timeout "$1" "${@:2}" 2>&1 | grep -v "^WARNING" ; }
step 200 python3 benchmarks/train_step.py --synthetic --steps 30 --dtype float32 bfloat16 \
    --experiments ddpm_cifar10 vae_fashion_mnist gan_fashion_mnist ddpm_fashion_mnist \
    --out "$OUT/train_step.json"
step 80 python3 benchmarks/train_step.py --synthetic --deterministic --steps 30 \
    --dtype bfloat16 --experiments ddpm_cifar10 --out "$OUT/train_step_deterministic.json"
step 90 python3 benchmarks/determinism.py --steps 200 --out "$OUT/determinism.json"
step 90 python3 benchmarks/precision_curves.py --experiment ddpm_fashion_mnist --steps 1500 \
    --override data.source=idx --override data.data_dir=.data/fashion-mnist \
    --override eval.num_examples=2000 --out "$OUT/precision_curves.json"
