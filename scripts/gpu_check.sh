#!/usr/bin/env bash
# One prepared run of the GPU checks on a lent NVIDIA machine (goals: resnet50 bf16 at
# >= 7,900 img/s train and >= 25,000 eval per H200, CIFAR resnet20's 64k steps in < 3 min).
# Sections, most important numbers first (each one's estimated seconds, and what the estimates
# rest on, are in docs/benchmarks.md):
#   bench    resnet50 bf16 batch 256 train and eval beside torchvision (--vs torch), MFU
#   cifar    resnet20/56/110 on-device input, 20 steps per dispatch: time per 1k steps
#   profile  jax.profiler trace of 5 resnet50 bf16 train steps, time by op category
#   trainer  train.py --config configs/fake_data_benchmark.py (host input pipeline)
#   jpeg     host pipeline on 2,000 generated 500x375 JPEGs: per core and 16 workers
#   tune     resnet50 bf16 train: the other two stem_conv, batch 384/512, 10 steps per
#            dispatch, XLA's latency-hiding scheduler (as many runs as the deadline leaves)
#   tests    tests/test_stem_options.py on the GPU (exactness under cuDNN)
# The whole stops at a deadline (GPU_CHECK_SECONDS, default 530 s, for a 600 s call): every
# command's timeout is cut to the time left, and a section with under 30 s left is skipped,
# so the first sections always report. Results: $OUT (or ./gpu_results) gets gpu_check.log,
# results.json (every JSON, keyed by name) and profile/ (the trace's summary); copy the
# numbers to docs/benchmarks.md with the versions printed at the top.
#
#   bash scripts/gpu_check.sh [bench] [cifar] [profile] [trainer] [jpeg] [tune] [tests]
#   GPU_CHECK_SECONDS=530 bash scripts/gpu_check.sh tune tests    # a second call: the rest
#
# The lent machines reach no network and already hold jax (CUDA), flax, optax, orbax, torch and
# torchvision; the few pure-Python needs missing there travel as wheels in .whl/ (git-ignored),
# installed below when present.
set -uo pipefail
if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then  # the comment above, then stop
  sed -n '2,/^$/p' "$0" | sed -n '/^#/s/^# \{0,1\}//p'
  exit 0
fi
out=${OUT:-gpu_results}
mkdir -p "$out"
exec > >(tee -a "$out/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
sections=${*:-bench cifar profile trainer jpeg tune tests}
json_dir=$(mktemp -d)
deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-530}))

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c 'import jax, flax, optax, torch, torchvision
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "torch",
      torch.__version__, "torchvision", torchvision.__version__, jax.devices())'

left() { echo $((deadline - SECONDS)); }
want() {  # section: asked for, and 30 s or more left
  [[ " $sections " == *" $1 "* ]] || return 1
  if [ "$(left)" -lt 30 ]; then echo "== SKIPPED $1: $(left) s left before the deadline"; return 1; fi
  echo "== section $1 ($(left) s left)"
}
limited() {  # seconds command...: run with timeout min(seconds, time left)
  local limit=$1; shift
  local t=$(( limit < $(left) ? limit : $(left) ))
  [ "$t" -ge 5 ] || { echo "SKIPPED (deadline): $*"; return 124; }
  timeout "$t" "$@"
}
bench() {  # name seconds args...
  local name=$1 limit=$2; shift 2
  echo "== $name: python -m jax_resnet.benchmark $*"
  limited "$limit" python3 -m jax_resnet.benchmark "$@" --json "$json_dir/$name.json" \
    || echo "FAILED or timed out: $name"
}
r50=(--model resnet50 --batch-size 256 --dtype bfloat16 --steps 20)
cifar=(--image-size 32 --num-classes 10 --batch-size 128 --device-data 50000 \
  --steps-per-dispatch 20 --steps 5)

if want bench; then
  bench r50_train_bf16 110 "${r50[@]}" --vs torch
  bench r50_eval_bf16 80 "${r50[@]}" --mode eval --vs torch
fi

if want cifar; then
  bench r20_device_data_k20 45 --model resnet20 "${cifar[@]}"
  bench r56_device_data_k20 55 --model resnet56 "${cifar[@]}"
  bench r110_device_data_k20 70 --model resnet110 "${cifar[@]}"
fi

if want profile; then
  echo "== profile: scripts/gpu_profile.py, resnet50 bf16 batch 256, 5 traced steps"
  mkdir -p "$out/profile"
  limited 100 python3 scripts/gpu_profile.py --model resnet50 --batch-size 256 \
    --dtype bfloat16 --steps 5 --trace-dir /tmp/jax_trace --json "$json_dir/profile_r50.json" \
    || echo "FAILED or timed out: profile"
  cp "$json_dir/profile_r50.json" "$out/profile/" 2>/dev/null
fi

if want trainer; then
  echo "== trainer: train.py --config configs/fake_data_benchmark.py (host input pipeline)"
  limited 90 python3 train.py --config configs/fake_data_benchmark.py --workdir /tmp/fake \
    --config.num_train_steps=100 --config.num_workers=8 --config.log_every_steps=25 \
    && cp /tmp/fake/summary.json "$json_dir/trainer_fake_data.json" \
    || echo "FAILED or timed out: trainer"
fi

if want jpeg; then
  echo "== jpeg: scripts/jpeg_pipeline.py, 2,000 500x375 JPEGs, Inception train transform"
  limited 90 python3 scripts/jpeg_pipeline.py --images 2000 --workers 16 --seconds 15 \
    --dir /tmp/jpegs --json "$json_dir/jpeg_pipeline.json" || echo "FAILED or timed out: jpeg"
fi

if want tune; then
  # stem_conv 'auto' is conv on GPU (bench above); the other two beside it.
  bench r50_train_stem_pad_channels 45 "${r50[@]}" --stem-conv pad_channels
  bench r50_train_stem_space_to_depth 45 "${r50[@]}" --stem-conv space_to_depth
  bench r50_train_b384 50 --model resnet50 --batch-size 384 --dtype bfloat16 --steps 15
  bench r50_train_b512 55 --model resnet50 --batch-size 512 --dtype bfloat16 --steps 12
  bench r50_train_k10 60 --model resnet50 --batch-size 256 --dtype bfloat16 --device-data 1024 \
    --steps-per-dispatch 10 --steps 3 --warmup 1
  XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true" \
    bench r50_train_lhs 45 "${r50[@]}"
fi

if want tests; then
  # TF32 would loosen float32 products past the tests' tolerances; they check the maths. The
  # CPU backend stays on: jax 0.11.2 ran an eager lax.scan through it ("Unknown backend cpu"
  # under JAX_PLATFORMS=cuda).
  echo "== tests on the GPU"
  JAX_PLATFORMS=cuda,cpu JAX_DEFAULT_MATMUL_PRECISION=highest limited 120 python3 -m pytest \
    -q -p no:cacheprovider tests/test_stem_options.py || echo "GPU TESTS FAILED or timed out"
fi

python3 - "$json_dir" "$out/results.json" <<'EOF'
import json, pathlib, sys
results = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob('*.json'))}
pathlib.Path(sys.argv[2]).write_text(json.dumps(results, indent=1))
print('results.json:', ', '.join(results) or 'nothing')
for name, r in results.items():
  jax_r = r.get('jax') if isinstance(r.get('jax'), dict) else None
  if jax_r:
    line = (f"{name}: {jax_r['images_per_second']:.0f} img/s, {jax_r['step_ms']:.2f} ms/step, "
            f"stem_conv {jax_r.get('stem_conv')}, MFU {100 * jax_r.get('mfu', float('nan')):.1f}%")
    if jax_r.get('device_data'):
      line += f", {jax_r['step_ms']:.2f} s per 1k steps, 64k steps {64 * jax_r['step_ms']:.0f} s"
    if 'torch' in r:
      line += f"; torch {r['torch']['images_per_second']:.0f} img/s"
    print(line)
EOF
echo "== done in $SECONDS s"
