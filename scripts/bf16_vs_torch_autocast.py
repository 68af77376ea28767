"""Our bfloat16 training against torch's autocast, and both float32 twins, from the same
weights and batches: four loss curves in one figure and the relative gaps per 10 steps.

    python scripts/bf16_vs_torch_autocast.py --steps 100 --out docs/bf16_vs_torch_autocast.png

torchvision's resnet18 (10 classes) is initialised by torch and converted to ours
(`weights.from_torchvision`). The data are scikit-learn's handwritten digits, upsampled to
--image-size (16) with 3 channels, in one fixed order of batches. Both sides train with SGD
(momentum 0.9, coupled weight decay 1e-4 on every parameter, constant learning rate): ours
through the
trainer's own `make_optimizer` / `make_train_step` with `dtype='bfloat16'` (parameters float32),
torch's with its forward and loss under `torch.autocast('cpu', dtype=torch.bfloat16)`.
The script also records, with forward hooks, the dtype each kind of torch layer returns, and
prints it beside ours.
"""

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jax_resnet as jr
from jax_resnet import weights
from jax_resnet.training import make_optimizer, make_schedule, steps

CLASSES = 10


def digits_batches(count, batch_size, size, seed=0):
  """`count` batches (NHWC float32 images, int labels) of the digits, 8x8 -> size, RGB."""
  from sklearn.datasets import load_digits
  digits = load_digits()
  images = np.kron(digits.images / 16.0, np.ones((size // 8, size // 8)))
  images = ((images - images.mean()) / images.std()).astype(np.float32)
  images = np.repeat(images[..., None], 3, axis=-1)
  rng = np.random.default_rng(seed)
  order = np.concatenate([rng.permutation(len(images)) for _ in range(
      count * batch_size // len(images) + 1)])
  return [(images[order[i * batch_size:(i + 1) * batch_size]],
           digits.target[order[i * batch_size:(i + 1) * batch_size]].astype(np.int64))
          for i in range(count)]


def train_torch(net, batches, lr, autocast):
  import torch
  net = net.train()
  optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
  losses, dtypes = [], {}

  def record(module, _, output):
    dtypes.setdefault(type(module).__name__, str(output.dtype).replace('torch.', ''))

  hooks = [m.register_forward_hook(record) for m in net.modules()
           if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear,
                             torch.nn.AdaptiveAvgPool2d, torch.nn.ReLU, torch.nn.MaxPool2d))]
  start = time.perf_counter()
  for i, (images, labels) in enumerate(batches):
    if i % 20 == 0:
      print(f'  step {i}: {time.perf_counter() - start:.0f} s', file=sys.stderr, flush=True)
    optimizer.zero_grad()
    x = torch.from_numpy(images.transpose(0, 3, 1, 2)).contiguous()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
      logits = net(x)
      loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
    dtypes.setdefault('loss', str(loss.dtype).replace('torch.', ''))
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
  for hook in hooks:
    hook.remove()
  dtypes['running_var'] = str(net.bn1.running_var.dtype).replace('torch.', '')
  return np.array(losses), dtypes


def train_ours(state_dict, batches, lr, dtype):
  model = jr.create_model('resnet18', num_classes=CLASSES, dtype=dtype)
  variables = weights.from_torchvision('resnet18', state_dict)
  tx = make_optimizer('sgd', momentum=0.9, weight_decay=1e-4)
  schedule = make_schedule('constant', peak_learning_rate=lr, total_steps=len(batches))
  state = steps.TrainState(
      step=jnp.zeros((), jnp.int32), params=variables['params'],
      batch_stats=variables['batch_stats'], opt_state=tx.init(variables['params']),
      ema_params=None, warming_up=jnp.asarray(False))
  train_step = jax.jit(steps.make_train_step(model, tx, schedule))
  losses = []
  for images, labels in batches:
    state, metrics = train_step(state, {'image': jnp.asarray(images),
                                        'label': jnp.asarray(labels, jnp.int32)},
                                jax.random.key(0))
    losses.append(metrics['loss'])
  batch = jnp.asarray(batches[0][0])
  logits, _ = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, batch,
                          train=True, mutable=['batch_stats'])
  dtypes = {'logits': str(logits.dtype), 'loss': str(metrics['loss'].dtype),
            'running_var': str(state.batch_stats['bn_init']['var'].dtype)}
  return np.array(jax.device_get(losses), np.float64), dtypes


def gaps(ours, theirs, window=10):
  """Per window of steps: (first step, mean and max over its steps of |ours - theirs| / theirs,
  and the relative gap of the window's mean losses)."""
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  relative = np.abs(ours - theirs) / np.abs(theirs)
  return [(i + 1, float(np.mean(relative[i:i + window])), float(np.max(relative[i:i + window])),
           float(abs(np.mean(ours[i:i + window]) / np.mean(theirs[i:i + window]) - 1)))
          for i in range(0, len(relative), window)]


def plot(curves, out, title):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  figure, axis = plt.subplots(figsize=(7, 4))
  for (label, losses), style in zip(curves.items(), ('-', '--', '-', '--')):
    axis.plot(np.arange(1, len(losses) + 1), losses, style, label=label, linewidth=1.2)
  axis.set_xlabel('step')
  axis.set_ylabel('train loss (batch)')
  axis.set_title(title)
  axis.legend()
  figure.tight_layout()
  figure.savefig(out, dpi=120)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--steps', type=int, default=100)
  p.add_argument('--batch-size', type=int, default=16)
  p.add_argument('--image-size', type=int, default=16, help='a multiple of 8')
  p.add_argument('--learning-rate', type=float, default=0.01)
  p.add_argument('--out', default='docs/bf16_vs_torch_autocast.png')
  p.add_argument('--json', help='write losses, gaps and dtypes here')
  p.add_argument('--replot', metavar='JSON', help="a --json file's losses: table and figure "
                 'again, without training')
  args = p.parse_args(argv)
  if args.replot:
    with open(args.replot) as f:
      saved = json.load(f)
    return report({k: np.asarray(v) for k, v in saved['losses'].items()}, saved['dtypes'], args)
  curves, dtypes = train_all(args)
  return report(curves, dtypes, args)


def train_all(args):
  """The four runs from one torch initialisation and one order of batches."""
  import torch
  import torchvision
  torch.manual_seed(0)
  torch.set_num_threads(1)
  net = torchvision.models.resnet18(num_classes=CLASSES)
  state_dict = {k: v.clone() for k, v in net.state_dict().items()}
  batches = digits_batches(args.steps, args.batch_size, args.image_size)
  curves, dtypes = {}, {}
  runs = [('torch float32', False), ('jax_resnet float32', 'float32'),
          ('jax_resnet bfloat16', 'bfloat16'), ('torch autocast bfloat16', True)]
  for label, setting in runs:  # torch's bfloat16, by far the slowest on a CPU, last
    if label.startswith('torch'):
      twin = torchvision.models.resnet18(num_classes=CLASSES)
      twin.load_state_dict(state_dict)
      curves[label], dtypes[label] = train_torch(twin, batches, args.learning_rate, setting)
    else:
      curves[label], dtypes[label] = train_ours(state_dict, batches, args.learning_rate, setting)
    print(f'{label}: every 10th loss {np.round(curves[label][::10], 3).tolist()}',
          file=sys.stderr, flush=True)
  return curves, dtypes


def report(curves, dtypes, args):
  ordered = {k: curves[k] for k in ('jax_resnet bfloat16', 'torch autocast bfloat16',
                                    'jax_resnet float32', 'torch float32')}
  plot(ordered, args.out, f'resnet18, digits {args.image_size}x{args.image_size}, batch '
       f'{args.batch_size}: jax_resnet vs torch, bfloat16 and float32')
  result = {
      'bfloat16': gaps(curves['jax_resnet bfloat16'], curves['torch autocast bfloat16']),
      'float32': gaps(curves['jax_resnet float32'], curves['torch float32']),
      'torch_bf16_vs_f32': gaps(curves['torch autocast bfloat16'], curves['torch float32']),
      'ours_bf16_vs_f32': gaps(curves['jax_resnet bfloat16'], curves['jax_resnet float32']),
      'dtypes': dtypes, 'final_loss': {k: float(v[-1]) for k, v in curves.items()}}
  print('Relative loss gaps per 10 steps: mean / max over the steps, and between the 10-step '
        'mean losses.')
  print('| steps | ours vs torch, bfloat16 | ours vs torch, float32 | torch bfloat16 vs float32 '
        '| ours bfloat16 vs float32 |')
  print('| --- | --- | --- | --- | --- |')
  for row in zip(*(result[k] for k in ('bfloat16', 'float32', 'torch_bf16_vs_f32',
                                       'ours_bf16_vs_f32'))):
    first = row[0][0]
    cells = ' | '.join(f'{100 * m:.1f}% / {100 * x:.1f}%; {100 * w:.1f}%' for _, m, x, w in row)
    print(f'| {first}-{first + 9} | {cells} |')
  print(json.dumps({'dtypes': dtypes, 'final_loss': result['final_loss']}, indent=1))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({**result, 'losses': {k: v.tolist() for k, v in curves.items()}}, f, indent=1)


if __name__ == '__main__':
  main()
