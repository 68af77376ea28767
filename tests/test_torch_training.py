"""Train steps equal torch's, step for step, in float64.

torchvision's nets and torch.optim, started from the same weights, take the same batches; after
each step the loss, and at the end every parameter and every BatchNorm statistic, agree to
1e-6 relative (per tensor: max |ours - torch| / max |torch|). float64 on both sides, so the
bound holds on any CPU: what remains is round-off, not summation order. The learning rates
come from the trainer's schedules on our side and from the formulas written out below on
torch's, so the schedules are checked too.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr
from jax_resnet import weights
from jax_resnet.config import resolve
from jax_resnet.training import optim, steps

torch = pytest.importorskip('torch')
torchvision = pytest.importorskip('torchvision')

RTOL = 1e-6
CLASSES = 10


def warmup_cosine(step, peak, warmup, total):
  """Linear warmup from 0, then half a cosine down to 0 at `total` (Loshchilov & Hutter)."""
  if step < warmup:
    return peak * step / warmup
  return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def step_decay(step, peak, boundaries, factor):
  """He et al. 2015's schedule: the rate times `factor` once each boundary step is reached."""
  return peak * factor ** sum(step >= b for b in boundaries)


def _batches(count, batch_size, size, seed=0):
  rng = np.random.default_rng(seed)
  return [(rng.normal(size=(batch_size, size, size, 3)),
           rng.integers(0, CLASSES, batch_size)) for _ in range(count)]


def _torch_net(name):
  torch.manual_seed(0)
  net = getattr(torchvision.models, name)(num_classes=CLASSES)
  with torch.no_grad():  # BN statistics and affine parameters away from their initial values
    for module in net.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        for tensor in (module.weight, module.bias, module.running_mean):
          tensor.uniform_(-0.5, 0.5)
        module.weight.add_(1.0)
        module.running_var.uniform_(0.5, 1.5)
  return net


def _torch_train(net, batches, optimizer, lr_at, label_smoothing):
  net = net.double().train()
  losses = []
  for i, (images, labels) in enumerate(batches):
    for group in optimizer.param_groups:
      group['lr'] = lr_at(i)
    optimizer.zero_grad()
    logits = net(torch.from_numpy(images.transpose(0, 3, 1, 2)).contiguous())
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels),
                                             label_smoothing=label_smoothing)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
  return np.array(losses)


def _our_train(name, state_dict, batches, config, steps_per_epoch, total_steps, **model_options):
  """The trainer's own pieces: make_optimizer, make_schedule, make_train_step, with the values
  the config boundary resolves from `config`."""
  model = jr.create_model(name, num_classes=CLASSES, dtype='float64', param_dtype='float64',
                          **model_options)
  variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                           weights.from_torchvision(name, state_dict))
  spec = resolve(config)
  tx = optim.make_optimizer(**dataclasses.asdict(spec.optimizer))
  schedule = optim.make_schedule(**spec.schedule.schedule_kwargs(steps_per_epoch, total_steps))
  state = steps.TrainState(
      step=jnp.zeros((), jnp.int32), params=variables['params'],
      batch_stats=variables['batch_stats'], opt_state=tx.init(variables['params']),
      ema_params=None, warming_up=jnp.asarray(False))
  train_step = jax.jit(steps.make_train_step(model, tx, schedule,
                                             **dataclasses.asdict(spec.step)))
  losses, rates = [], []
  for images, labels in batches:
    state, metrics = train_step(state, {'image': jnp.asarray(images),
                                        'label': jnp.asarray(labels, jnp.int32)},
                                jax.random.key(0))
    losses.append(float(metrics['loss']))
    rates.append(float(metrics['learning_rate']))
  exported = weights.to_torchvision(name, {'params': state.params,
                                           'batch_stats': state.batch_stats})
  return np.array(losses), np.array(rates), exported


def _worst_relative_error(ours, net):
  """max over tensors of max |ours - torch| / max |torch|, with the tensor that reaches it."""
  worst = (0.0, '')
  for key, value in net.state_dict().items():
    if key.endswith('num_batches_tracked'):
      continue
    theirs = value.detach().numpy()
    assert ours[key].dtype == np.float64, key
    error = float(np.max(np.abs(ours[key] - theirs)) / np.max(np.abs(theirs)))
    worst = max(worst, (error, key))
  return worst


def _config(**overrides):
  config = jr.load_config('default')
  config.update(dict(sync_batch_norm=False, label_smoothing=0.1, momentum=0.9,
                     lr_batch_base=0), **overrides)
  return config


def _check(name, config, optimizer_for, lr_at, batches, steps_per_epoch, total_steps,
           **model_options):
  net = _torch_net(name)
  state_dict = {k: v.clone() for k, v in net.state_dict().items()}
  torch_losses = _torch_train(net, batches, optimizer_for(net.double()), lr_at,
                              config.label_smoothing)
  losses, rates, exported = _our_train(name, state_dict, batches, config, steps_per_epoch,
                                       total_steps, **model_options)
  np.testing.assert_allclose(rates, [lr_at(i) for i in range(len(batches))], rtol=1e-12)
  np.testing.assert_allclose(losses, torch_losses, rtol=RTOL)
  error, tensor = _worst_relative_error(exported, net)
  assert error <= RTOL, f'{tensor}: {error:.3g}'
  moved, _ = _worst_relative_error({k: v.double().numpy() for k, v in state_dict.items()}, net)
  assert moved > 1e-3  # the steps really trained


@pytest.mark.slow  # the AdamW comparison below is the default run's float64 check against torch
def test_sgd_nesterov_l2_label_smoothing_warmup_cosine_on_a_basic_block_net(x64):
  config = _config(optimizer='sgd', nesterov=True, weight_decay=1e-4, weight_decay_mode='l2',
                   learning_rate=0.02, lr_schedule='cosine', warmup_epochs=1.0)
  peak, warmup, total = 0.02, 2, 6
  optimizer_for = lambda net: torch.optim.SGD(net.parameters(), lr=0.0, momentum=0.9,
                                              nesterov=True, weight_decay=1e-4)
  _check('resnet18', config, optimizer_for, lambda i: warmup_cosine(i, peak, warmup, total),
         _batches(4, 8, 32), steps_per_epoch=warmup, total_steps=total)


@pytest.mark.slow  # 19 s (resnet50); the basic-block and AdamW comparisons stay in the default run
def test_sgd_step_schedule_on_a_bottleneck_net(x64):
  """resnet50 with 1x1 convolutions as matrix products (the trainer's CPU path); 1x1 maps in
  the last stage, so each of its BatchNorms sees n = 8 values per channel (n/(n-1) = 8/7)."""
  config = _config(optimizer='sgd', nesterov=False, weight_decay=5e-4,
                   weight_decay_mode='l2', learning_rate=0.01, lr_schedule='step',
                   lr_boundaries=(1, 2), lr_decay_factor=0.1, warmup_epochs=0.0)
  optimizer_for = lambda net: torch.optim.SGD(net.parameters(), lr=0.0, momentum=0.9,
                                              weight_decay=5e-4)
  _check('resnet50', config, optimizer_for, lambda i: step_decay(i, 0.01, (1, 2), 0.1),
         _batches(3, 8, 32, seed=1), steps_per_epoch=10, total_steps=3, conv1x1_as_dot=True)


def test_adamw_decoupled_decay_without_bn_and_bias_decay(x64):
  config = _config(optimizer='adamw', weight_decay=0.05, weight_decay_mode='decoupled',
                   decay_bn_and_bias=False, learning_rate=1e-3, lr_schedule='cosine',
                   warmup_epochs=0.0, label_smoothing=0.0)

  def optimizer_for(net):
    params = list(net.parameters())
    return torch.optim.AdamW([{'params': [p for p in params if p.ndim > 1]},
                              {'params': [p for p in params if p.ndim <= 1],
                               'weight_decay': 0.0}],
                             lr=0.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)

  _check('resnet18', config, optimizer_for, lambda i: warmup_cosine(i, 1e-3, 0, 4),
         _batches(3, 8, 32, seed=2), steps_per_epoch=10, total_steps=4)
