"""The ONNX export's error per image family: each model exported (jax_resnet.onnx_export), run
in ONNX Runtime (CPU) at batch 1 and 3, against model.apply; prints the largest relative error
(max |ort - apply| / max |apply|, every output) as a markdown table for docs/sharing.md.

    python scripts/onnx_errors.py                 # one stage of each width (stage_sizes 1),
                                                  # 32 px (CIFAR nets 16 px)
    python scripts/onnx_errors.py --full --side 64   # the registered depths

Needs the [onnx] extra (jax2onnx, onnx, onnxruntime).
"""

import argparse
import os
import tempfile

import jax
import numpy as np

import jax_resnet as jr
from jax_resnet import onnx_export

# (label, model, create_model options, return_features): a model of every image family, and
# the two options the export handles apart.
CASES = [
    ('ResNet', 'resnet18', {}, False), ('ResNet-D', 'resnet18d', {}, False),
    ('pre-activation', 'preact_resnet18', {}, False),
    ('ResNeXt', 'resnext50_32x4d', {}, False), ('Wide', 'wide_resnet50_2', {}, False),
    ('BiT (GroupNorm + WS)', 'bit_resnet50x1', {}, False),
    ('CIFAR', 'resnet20', {}, False), ('CIFAR plain', 'plain20', {}, False),
    ('output_stride=16', 'resnet50d', {'output_stride': 16}, False),
    ('return_features', 'resnet18', {}, True),
]


def _relative(ours, reference):
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def measure(name, options, return_features, side, folder):
  """{batch: worst relative error over the outputs} for one exported model."""
  import onnxruntime as ort
  model = jr.create_model(name, **options)
  x = jax.random.normal(jax.random.key(1), (3, side, side, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  if 'batch_stats' in variables:  # running statistics other than 0 and 1
    _, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
    variables = {'params': variables['params'], 'batch_stats': updates['batch_stats']}
  proto = onnx_export.export_onnx(model, variables, side, None, return_features)
  path = onnx_export.write_onnx(os.path.join(folder, f'{name}.onnx'), proto)
  session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
  errors = {}
  for batch in (1, 3):
    images = np.asarray(x[:batch])
    reference = model.apply(variables, images, train=False, return_features=return_features)
    references = [reference[k] for k in sorted(reference)] if return_features else [reference]
    outputs = session.run(None, {onnx_export.INPUT_NAME: images})
    errors[batch] = max(_relative(o, r) for o, r in zip(outputs, references))
  return errors


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--full', action='store_true', help='registered depths, not 1 a stage')
  parser.add_argument('--side', type=int, default=32, help='image side (CIFAR nets: half)')
  args = parser.parse_args()
  print('| family | model | batch 1 | batch 3 |')
  print('| --- | --- | --- | --- |')
  with tempfile.TemporaryDirectory() as folder:
    for label, name, options, features in CASES:
      cifar = jr.model_info(name).input_size <= 32
      if not args.full and name not in ('plain20',):
        options = dict(options, stage_sizes=(1, 1, 1) if cifar else (1, 1, 1, 1))
      side = args.side // 2 if cifar else args.side
      errors = measure(name, options, features, side, folder)
      print(f'| {label} | {name} | {errors[1]:.1e} | {errors[3]:.1e} |', flush=True)


if __name__ == '__main__':
  main()
