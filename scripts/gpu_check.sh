#!/usr/bin/env bash
# One prepared run of the GPU checks on a lent NVIDIA machine (issue 6): the GPU-relevant tests,
# resnet50 train/eval in bf16 at batch 256 beside torchvision, and the CIFAR nets. Results go to
# $OUT (or ./gpu_results), one JSON per benchmark plus a log; copy the numbers to
# docs/benchmarks.md with the machine and versions printed at the top of the log.
#
#   bash scripts/gpu_check.sh            # about 8-10 minutes on one H100, installs included
set -uo pipefail
out=${OUT:-gpu_results}
mkdir -p "$out"
log="$out/gpu_check.log"
exec > >(tee "$log") 2>&1
export PYTHONUNBUFFERED=1

# The lent machines reach no network: pip works only from wheels carried in .whl/ (see the
# device tool's README); elsewhere it installs from the index.
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --find-links .whl -e ".[test]" "jax[cuda12]" torch torchvision || exit 1
else
  python3 -m pip install -q -e ".[test]" "jax[cuda12]" torch torchvision || exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c 'import jax, flax, torch; print("jax", jax.__version__, "flax", flax.__version__, "torch", torch.__version__, jax.devices())'

# The tests that exercise device code paths (parallel steps, training loop, bf16 models).
JAX_PLATFORMS=cuda timeout 300 python3 -m pytest -q -x tests/test_api.py tests/test_steps.py \
  tests/test_scan.py -k "not eight" || echo "GPU TESTS FAILED"

bench() {  # name args...
  local name=$1; shift
  timeout 240 python3 -m jax_resnet.benchmark "$@" --json "$out/$name.json" || echo "FAILED: $name"
}
bench r50_train_bf16 --model resnet50 --batch-size 256 --dtype bfloat16 --mode train --steps 20 --vs torch
bench r50_eval_bf16 --model resnet50 --batch-size 256 --dtype bfloat16 --mode eval --steps 20 --vs torch
bench r50_train_bf16_scan --model resnet50 --batch-size 256 --dtype bfloat16 --steps 20 --scan-blocks
bench r20_train --model resnet20 --image-size 32 --num-classes 10 --batch-size 128 --steps 50 --vs torch
bench r56_train --model resnet56 --image-size 32 --num-classes 10 --batch-size 128 --steps 50 --vs torch
echo "done: results in $out"
