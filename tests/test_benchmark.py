"""`python -m jax_resnet.benchmark`: argument errors, the arithmetic of its report, the FLOP
count it reads from XLA, and the torch side in its child process (no timings asserted)."""

import argparse

import jax
import jax.numpy as jnp
import pytest

from jax_resnet import benchmark, benchmark_torch


def _error(capsys, argv):
  with pytest.raises(SystemExit) as exit_info:
    benchmark.parse_args(argv)
  assert exit_info.value.code == 2
  return capsys.readouterr().err.strip().splitlines()[-1]


def test_argument_errors_are_one_clear_line(capsys):
  prefix = 'python -m jax_resnet.benchmark: error: '
  assert _error(capsys, ['--steps', '0']) == (
      prefix + '--steps, --batch-size and --steps-per-dispatch must be positive')
  assert _error(capsys, ['--device-data', '8', '--batch-size', '16']) == (
      prefix + '--device-data N needs --mode train and N >= --batch-size')
  assert _error(capsys, ['--steps-per-dispatch', '4']) == (
      prefix + '--steps-per-dispatch > 1 needs --device-data N')


def test_image_size_and_classes_default_to_the_model_s_own():
  args = benchmark.parse_args(['--model', 'resnet20'])
  config = benchmark.bench_config(args)
  assert (args.image_size, args.num_classes) == (config.image_size, config.num_classes) == (32, 10)
  args = benchmark.parse_args(['--model', 'resnet50'])
  assert (args.image_size, args.num_classes) == (224, 1000)
  args = benchmark.parse_args(['--model', 'resnet20', '--image-size', '16', '--num-classes', '3'])
  assert (args.image_size, args.num_classes) == (16, 3)


def test_unknown_and_video_models_are_one_clear_line(capsys):
  prefix = 'python -m jax_resnet.benchmark: error: '
  assert _error(capsys, ['--model', 'resnet_20']) == (
      prefix + "Unknown model 'resnet_20'. Did you mean resnet20, resnet200, resnet200d? "
      'jax_resnet.list_models() lists all 54.')
  assert _error(capsys, ['--model', 'r3d_18']) == (
      prefix + "r3d_18 takes video clips (model_info input_kind 'video'); the benchmark times "
      "image models only: pick one of jax_resnet.list_models() whose model_info input_kind is "
      "'image'.")


def test_vs_torch_without_a_torch_counterpart_is_one_line_before_anything_runs(capsys):
  prefix = 'python -m jax_resnet.benchmark: error: --vs torch: '
  problem = benchmark_torch.counterpart_problem('resnet50')
  if problem is not None:  # torch or torchvision absent: that is the line
    assert problem.endswith(' not installed (pip install torch torchvision)')
    assert _error(capsys, ['--model', 'resnet50', '--vs', 'torch']) == prefix + problem
    return
  assert benchmark.parse_args(['--model', 'resnet20', '--vs', 'torch']).vs == 'torch'
  assert _error(capsys, ['--model', 'resnet50d', '--vs', 'torch']) == (
      prefix + "torchvision has no resnet50d (the torch side builds torchvision's models and "
      'the CIFAR ResNets of He et al. 2015); pick another --model or leave out --vs')


def test_a_timed_call_of_several_steps_counts_every_step():
  args = benchmark.parse_args(['--model', 'resnet20', '--batch-size', '128', '--device-data',
                               '1024', '--steps-per-dispatch', '20'])
  result = benchmark.summarise(args, [0.2, 0.25, 0.4], compile_seconds=1.0, flops=1e9)
  assert result['images_per_second'] == pytest.approx(128 * 20 / 0.25)
  assert result['step_ms'] == pytest.approx(12.5)
  assert (result['images_per_second_min'], result['images_per_second_max']) == (
      pytest.approx(6400.0), pytest.approx(12800.0))
  assert result['timed_steps'] == 60
  assert 'flops_per_image' not in result  # XLA counts a loop body once


def test_flops_are_read_before_optimisation():
  """A VALID 3x3 convolution, 1 image of 6x6x4 -> 4x4x8: 2 * 16 * 8 * 36 FLOPs."""
  conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  seconds, flops = benchmark._compile(conv, jnp.ones((1, 6, 6, 4)), jnp.ones((3, 3, 4, 8)))
  assert flops == 2 * 16 * 8 * 36
  assert seconds > 0


@pytest.mark.slow
def test_torch_runs_in_a_child_process_with_the_same_shapes():
  pytest.importorskip('torchvision')
  args = argparse.Namespace(model='resnet20', batch_size=4, image_size=16, num_classes=10,
                            dtype='float32', mode='train', steps=2, warmup=0)
  result = benchmark_torch.bench_torch_in_child(args)
  assert (result['framework'], result['model'], result['batch_size'], result['timed_steps']) == (
      'torch', 'resnet20', 4, 2)
  assert result['images_per_second'] > 0
