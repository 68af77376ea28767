#!/usr/bin/env bash
# One prepared run of the GPU checks on a lent NVIDIA machine (issue 6). Sections, in order:
#   bench   resnet50 bf16 batch 256 train and eval beside torchvision (channels_last, AMP bf16),
#           resnet50 with scan_blocks, CIFAR resnet20/56 beside torch, and the on-device input
#           path (--device-data) at 1 and 20 steps per dispatch          (~5 min on one H100)
#   extra   resnet50 under jit+shard_map, the full trainer on synthetic ImageNet-shaped data
#           (host input pipeline), and the tests that run device code     (~4 min)
# Results: $OUT (or ./gpu_results) gets gpu_check.log and results.json (every benchmark's JSON,
# keyed by name); copy the numbers to docs/benchmarks.md with the versions printed at the top.
#
#   bash scripts/gpu_check.sh [bench] [extra]      # default: both
#
# The lent machines reach no network and already hold jax (CUDA), flax, optax, orbax, torch and
# torchvision; the few pure-Python needs missing there travel as wheels in .whl/ (device README).
set -uo pipefail
out=${OUT:-gpu_results}
mkdir -p "$out"
exec > >(tee -a "$out/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
sections=${*:-bench extra}
json_dir=$(mktemp -d)

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c 'import jax, flax, optax, torch, torchvision
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "torch",
      torch.__version__, "torchvision", torchvision.__version__, jax.devices())'

bench() {  # name seconds args...
  local name=$1 limit=$2; shift 2
  echo "== $name: python -m jax_resnet.benchmark $*"
  timeout "$limit" python3 -m jax_resnet.benchmark "$@" --json "$json_dir/$name.json" \
    || echo "FAILED or timed out: $name"
}
cifar=(--image-size 32 --num-classes 10 --batch-size 128)

if [[ " $sections " == *" bench "* ]]; then
  bench r50_train_bf16 90 --model resnet50 --batch-size 256 --dtype bfloat16 --steps 30 --vs torch
  bench r50_eval_bf16 75 --model resnet50 --batch-size 256 --dtype bfloat16 --mode eval \
    --steps 30 --vs torch
  bench r20_train 60 --model resnet20 "${cifar[@]}" --steps 100 --vs torch
  bench r56_train 60 --model resnet56 "${cifar[@]}" --steps 100 --vs torch
  bench r20_device_data_k1 45 --model resnet20 "${cifar[@]}" --steps 100 --device-data 50000
  bench r20_device_data_k20 60 --model resnet20 "${cifar[@]}" --steps 10 --device-data 50000 \
    --steps-per-dispatch 20
  bench r56_device_data_k20 60 --model resnet56 "${cifar[@]}" --steps 10 --device-data 50000 \
    --steps-per-dispatch 20
  bench r50_train_bf16_scan 75 --model resnet50 --batch-size 256 --dtype bfloat16 --steps 30 \
    --scan-blocks
fi

if [[ " $sections " == *" extra "* ]]; then
  bench r50_train_bf16_shard_map 75 --model resnet50 --batch-size 256 --dtype bfloat16 \
    --steps 30 --parallelism shard_map
  echo "== trainer: train.py --config configs/fake_data_benchmark.py (host input pipeline)"
  timeout 120 python3 train.py --config configs/fake_data_benchmark.py --workdir /tmp/fake \
    --config.num_train_steps=150 --config.num_workers=8 --config.log_every_steps=50 \
    && cp /tmp/fake/summary.json "$json_dir/trainer_fake_data.json" \
    || echo "FAILED or timed out: trainer"
  # TF32 would loosen float32 products past the tests' tolerances; they check the maths. The
  # CPU backend stays on: jax 0.11.2 ran an eager lax.scan through it ("Unknown backend cpu"
  # under JAX_PLATFORMS=cuda). Multi-device tests skip on one GPU; tests that build TFDS mock
  # data need tensorflow_datasets, which the machine lacks.
  echo "== tests on the GPU"
  JAX_PLATFORMS=cuda,cpu JAX_DEFAULT_MATMUL_PRECISION=highest timeout 170 python3 -m pytest -q \
    -p no:cacheprovider tests/test_steps.py tests/test_scan.py tests/test_api.py \
    tests/test_parallel.py tests/test_benchmark.py tests/test_conv1x1.py \
    || echo "GPU TESTS FAILED or timed out"
fi

python3 - "$json_dir" "$out/results.json" <<'EOF'
import json, pathlib, sys
results = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob('*.json'))}
pathlib.Path(sys.argv[2]).write_text(json.dumps(results, indent=1))
print('results.json:', ', '.join(results) or 'nothing')
EOF
