#!/bin/bash
# Issue 14's GPU checks (one NVIDIA H100; results of 2026-11-27 in BUILD_NOTES.md).
# Prepare on the development machine once (no network on the device machine):
#   printf '/.whl/\n/.data/\n' >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl ml_collections tensorboardX
#   mkdir -p .data && cp -r /usr/share/datasets/fashion-mnist .data/
# Then: run(command="bash benchmarks/gpu_checks.sh speed", carry=[".whl", ".data"], timeout_s=560)
# Every result lands in $OUT as JSON naming the device, the versions and the command.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:. || exit 1
export PYTHONUNBUFFERED=1 JAXGEN_CACHE=/tmp/jaxgen_cache
OUT=${OUT:-/tmp/gpu_checks}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"
python3 -c "import jax, flax, optax; print(jax.__version__, flax.__version__, optax.__version__)" \
    | tee -a "$OUT/device.txt"
step() { echo "== $(date +%T) $*"; timeout "$1" "${@:2}" 2>&1 | grep -v "^WARNING\|cuda_timer" ; }
# Two parts, each inside one device call of at most 10 minutes:
#   bash benchmarks/gpu_checks.sh speed    throughput, MFU, profile, cost of determinism (~9 min)
#   bash benchmarks/gpu_checks.sh checks   bit-identical runs, kill + restart, bf16 curve (~2.5 min)
#   bash benchmarks/gpu_checks.sh variants levers on the big UNet's step side by side (~6 min)
# A dry run on CPU: STEPS=2 BIG=vae_digits SMALL=gan_digits DET_STEPS=40 CURVE_STEPS=10 ...
STEPS=${STEPS:-30} BIG=${BIG:-ddpm_cifar10} UNET=${UNET:-ddpm_fashion_mnist}
SMALL=${SMALL:-vae_fashion_mnist gan_fashion_mnist ddpm_fashion_mnist}
for part in "${@:-speed}"; do
  if [ "$part" = speed ]; then
    # One process per row: a row that outlives its limit costs that row only.
    step 150 python3 -m benchmarks.train_step --synthetic --steps "$STEPS" --dtype bfloat16 \
        --experiments "$BIG" --profile /tmp/profile --out "$OUT/train_step_big_bf16.json"
    step 130 python3 -m benchmarks.train_step --synthetic --steps "$STEPS" --dtype float32 \
        --experiments "$BIG" --out "$OUT/train_step_big_f32.json"
    step 75 python3 -m benchmarks.train_step --synthetic --steps "$STEPS" --dtype bfloat16 \
        --experiments ddpm_fashion_mnist --out "$OUT/train_step_unet_nondeterministic.json"
    step 75 python3 -m benchmarks.train_step --synthetic --deterministic --steps "$STEPS" \
        --dtype bfloat16 --experiments ddpm_fashion_mnist \
        --out "$OUT/train_step_unet_deterministic.json"
    # shellcheck disable=SC2086
    step 100 python3 -m benchmarks.train_step --synthetic --steps "$STEPS" \
        --dtype float32 bfloat16 --experiments $SMALL --out "$OUT/train_step_small.json"
  elif [ "$part" = variants ]; then
    # Levers on the big UNet's step, one process each: compiled side by side, timed one at a
    # time (train_step.py --timing-barrier), results as JSON lines in $OUT/variants.jsonl.
    export XLA_PYTHON_CLIENT_PREALLOCATE=false
    rm -rf /tmp/barrier && mkdir -p /tmp/variants
    variant() {  # NAME XLA_FLAGS train_step.py-arguments...
      local name=$1 flags=$2; shift 2
      XLA_FLAGS="$flags" timeout "${VARIANT_LIMIT:-480}" python3 -m benchmarks.train_step \
          --synthetic --steps "$STEPS" --timing-barrier "/tmp/barrier:$NUM_VARIANTS" \
          --out "/tmp/variants/$name.json" "$@" 2>&1 | grep -v "^WARNING\|cuda_timer" \
          | sed "s/^/[$name] /" >> "$OUT/variants_log.txt"
      [ -f "/tmp/variants/$name.json" ] && flock "$OUT/.lock" python3 -c \
          "import json, sys; r = json.load(open(sys.argv[1])); r['variant'] = sys.argv[2];
print(json.dumps(r))" "/tmp/variants/$name.json" "$name" >> "$OUT/variants.jsonl"
    }
    NUM_VARIANTS=${NUM_VARIANTS:-11}
    big="--experiments $BIG --dtype bfloat16"
    rbg="--override train.dropout_prng=rbg"
    variant base "" $big --profile /tmp/profile_base &
    variant rbg "" $big $rbg --profile /tmp/profile_rbg &
    variant no_command_buffers "--xla_gpu_enable_command_buffer=" $big &
    variant rbg_batch256 "" $big $rbg --override train.batch_size=256 &
    variant float32 "" --experiments "$BIG" --dtype float32 &
    variant deterministic "" $big --deterministic &
    variant rbg_deterministic "" $big $rbg --deterministic &
    variant no_dropout "" $big --override model.dropout=0.0 &
    variant autotune_level0 "--xla_gpu_autotune_level=0" $big &
    variant unet_small_bf16 "" --experiments "$UNET" --dtype bfloat16 &
    variant unet_small_float32 "" --experiments "$UNET" --dtype float32 &
    wait
    rm -f "$OUT/.lock"
    python3 - "$OUT/variants.jsonl" <<'PY'
import json, sys
print(f"{'variant':20s} {'images/s':>9s} {'ms/step':>8s} {'dispatch ms':>11s} {'MFU':>6s} "
      f"{'cold s':>7s} {'warm s':>7s} {'alone':>5s}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    for row in r["results"]:
        mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] else "-"
        print(f"{r['variant']:20s} {row['images_per_second']:9.0f} "
              f"{1e3 * row['step_seconds']:8.2f} {1e3 * row['dispatch_seconds_per_step']:11.2f} "
              f"{mfu:>6s} {row['compile_seconds_cold']:7.1f} {row['compile_seconds_warm']:7.1f} "
              f"{str(row['timed_alone']):>5s}")
        if row["profile"]:
            p = row["profile"]
            print("    kernels %.1f ms/step of %.1f, %d events/step; " % (
                1e3 * p["device_seconds"] / p["steps"], 1e3 * row["step_seconds"],
                p["events"] // p["steps"]) + ", ".join(
                f"{k} {100 * v / p['device_seconds']:.0f}%" for k, v in p["by_kind"].items()))
PY
  elif [ "$part" = checks ]; then
    # Their figures do not depend on timing, so they share the GPU.
    export XLA_PYTHON_CLIENT_MEM_FRACTION=0.3
    step 170 python3 -m benchmarks.determinism --steps "${DET_STEPS:-400}" \
        --out "$OUT/determinism.json" &
    step 170 python3 -m benchmarks.precision_curves --experiment ddpm_fashion_mnist \
        --steps "${CURVE_STEPS:-1500}" --override data.source=idx \
        --override data.data_dir=.data/fashion-mnist --override eval.track_samples=0 \
        --out "$OUT/precision_curves.json" &
    wait
  fi
done
echo "== $(date +%T) done"
