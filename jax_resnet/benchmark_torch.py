"""The torch side of `python -m jax_resnet.benchmark --vs torch`: the same model, shapes and
step (forward, cross-entropy, backward, SGD momentum with weight decay), channels_last, AMP
bfloat16 where asked, timed the same way (median of synchronised steps).

It runs in a child process without JAX: beside a JAX client in one process, torch on an H100
ran the resnet50 bf16 train step far slower than alone (docs/benchmarks.md).
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np

ARGS = ('model', 'batch_size', 'image_size', 'num_classes', 'dtype', 'mode', 'steps', 'warmup')


def bench_torch_in_child(args):
  """bench_torch(args) in a fresh Python process; its result dict."""
  spec = json.dumps({k: getattr(args, k) for k in ARGS})
  done = subprocess.run([sys.executable, '-m', 'jax_resnet.benchmark_torch', spec],
                        capture_output=True, text=True, check=False)
  if done.returncode:
    raise RuntimeError(f'the torch benchmark failed (exit {done.returncode}):\n{done.stderr}')
  return json.loads(done.stdout.strip().splitlines()[-1])


def _cifar_resnet(torch, depth, num_classes):
  """He et al. 2015 CIFAR ResNet with option-A shortcuts (torchvision has none)."""
  nn = torch.nn

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.stride, self.extra = stride, cout - cin

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      shortcut = x[:, :, ::self.stride, ::self.stride]
      if self.extra:
        shortcut = nn.functional.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
      return torch.relu(y + shortcut)

  n = (depth - 2) // 6
  layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
  for i, cout in enumerate((16, 32, 64)):
    for j in range(n):
      layers.append(Block(cin, cout, 2 if i > 0 and j == 0 else 1))
      cin = cout
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
  return nn.Sequential(*layers)


def _is_cifar_resnet(name: str) -> bool:
  return name.startswith('resnet') and name[6:].isdigit() and (int(name[6:]) - 2) % 6 == 0


def counterpart_problem(name: str):
  """Why `--vs torch` cannot time `name` here (torch or torchvision missing, or no torch
  model to build for it), or None; checked before anything is timed."""
  import importlib.util
  from jax_resnet import registry
  missing = [m for m in ('torch', 'torchvision') if importlib.util.find_spec(m) is None]
  if missing:
    return f'{" and ".join(missing)} not installed (pip install torch torchvision)'
  if not (_is_cifar_resnet(name) or name in registry.models_with_source('torchvision')):
    return (f'torchvision has no {name} (the torch side builds torchvision\'s models and the '
            'CIFAR ResNets of He et al. 2015); pick another --model or leave out --vs')
  return None


def build_model(torch, name, num_classes):
  import torchvision
  if _is_cifar_resnet(name):
    return _cifar_resnet(torch, int(name[6:]), num_classes)
  if not hasattr(torchvision.models, name):
    raise ValueError(f'--vs torch: torchvision has no model {name!r}.')
  return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)


def bench_torch(args):
  import torch
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.backends.cudnn.benchmark = True  # autotuned convolutions, as XLA autotunes its own
  model = build_model(torch, args.model, args.num_classes).to(device)
  model = model.to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
  rng = np.random.default_rng(0)
  x = torch.tensor(rng.normal(size=(args.batch_size, 3, args.image_size, args.image_size)),
                   dtype=torch.float32, device=device).to(memory_format=torch.channels_last)
  y = torch.tensor(rng.integers(0, args.num_classes, args.batch_size), device=device)
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=args.dtype == 'bfloat16')
  model.train(args.mode == 'train')

  def step():
    with autocast:
      if args.mode == 'eval':
        with torch.no_grad():
          return model(x)
      loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss

  def timed():
    start = time.perf_counter()
    step()
    if device == 'cuda':
      torch.cuda.synchronize()
    return time.perf_counter() - start

  first = timed()
  for _ in range(args.warmup):
    timed()
  times = [timed() for _ in range(args.steps)]
  median = float(np.median(times))
  return {
      'framework': 'torch', 'model': args.model, 'mode': args.mode, 'dtype': args.dtype,
      'batch_size': args.batch_size, 'image_size': args.image_size,
      'images_per_second': args.batch_size / median,
      'images_per_second_min': args.batch_size / max(times),
      'images_per_second_max': args.batch_size / min(times),
      'step_ms': 1e3 * median, 'first_step_seconds': first, 'timed_steps': len(times),
      'device': torch.cuda.get_device_name() if device == 'cuda' else 'cpu',
      'torch': torch.__version__, 'threads': torch.get_num_threads(),
  }


if __name__ == '__main__':
  print(json.dumps(bench_torch(argparse.Namespace(**json.loads(sys.argv[1])))))
