"""paths: Veit, Wilber & Belongie 2016, section 5 and Figure 6: "the effective paths are short".

Unrolled, n residual blocks are 2^n paths; a path of length k passes through k branches and
n - k shortcuts, so the lengths are Binomial(n, 1/2): C(n, k) paths of length k.

Gradient per path length, as Veit et al. measure it: the forward pass is the normal one; in the
backward pass each block lets the gradient through its branch only (k sampled blocks) or its
shortcut only (the others), and the norm of the gradient reaching the first block's input is
recorded. The gate is exact: a block returns
  y + (1 - g) (y_s - sg(y_s)) + g ((y - sg(y)) - (y_s - sg(y_s))),
with sg = stop_gradient, y the block output and y_s the same block run with its branch under
stop_gradient; the value is y, and the derivative is the shortcut's (g = 0) or the branch's
(g = 1) part of dy/dx, ReLU mask included. Summed over all 2^n gate patterns it is the full
gradient (tests/test_analysis_paths.py). BatchNorm runs in eval mode, so each example's gradient
is its own.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jax_resnet.analysis import common, report
from jax_resnet.training.steps import cross_entropy
from jax_resnet.layers import DropPath


def _stop_branches(next_fun, args, kwargs, context):
  out = next_fun(*args, **kwargs)
  if context.method_name == '__call__' and isinstance(context.module, DropPath):
    return jax.lax.stop_gradient(out)
  return out


def gated_loss(subject):
  """(eps, gate, images, labels) -> summed cross-entropy, eps added to the first block's input,
  gate[i] = 1: the gradient passes block i's branch only; 0: its shortcut only."""
  model, variables = subject.model, subject.variables
  sg = jax.lax.stop_gradient

  def loss(eps, gate, images, labels):
    interceptor = None

    def on_block(index, module, x, kwargs, call):
      if not module.residual:
        raise common.AnalysisError(f'{module.name} is a plain block: a plain net has a single '
                                   'path.')
      x = x + eps if index == 0 else x
      y = call(x)
      with interceptor.standalone(), nn.intercept_methods(_stop_branches):
        y_s = module.clone(parent=None).apply(module.variables, x, **kwargs)
      skip, full = y_s - sg(y_s), y - sg(y)
      return sg(y) + (1 - gate[index]) * skip + gate[index] * (full - skip)

    interceptor = common.BlockInterceptor(on_block)
    with common.intercept(interceptor):
      logits = model.apply(variables, images, train=False)
    return jnp.sum(cross_entropy(logits, labels))
  return loss


def path_counts(n: int):
  """C(n, k) for k = 0..n: how many of the 2^n paths have length k."""
  return [math.comb(n, k) for k in range(n + 1)]


def path_gradients(subject, images, labels, draws: int = 32, batch_size: int = 32,
                   seed: int = 0) -> dict:
  """Mean per-example ||dL/dx_0|| through one sampled path of each length k = 0..n."""
  images, labels = np.asarray(images), np.asarray(labels)
  blocks = common.find_blocks(subject, jnp.asarray(images[:1]))
  if not all(b.residual for b in blocks):
    raise common.AnalysisError(f'{subject.label} is a plain net: it has a single path, '
                               'nothing to sample.')
  n = len(blocks)
  eps = jnp.zeros((batch_size,) + tuple(blocks[0].in_shape[1:]), subject.gradient_dtype)
  grad = jax.jit(jax.grad(gated_loss(subject)))
  rng = np.random.default_rng(seed)
  means, stds = [], []
  for k in range(n + 1):
    values = []
    for _ in range(draws):
      gate = np.zeros(n, np.float32)
      gate[rng.choice(n, k, replace=False)] = 1.0
      pick = rng.choice(len(images), batch_size, replace=len(images) < batch_size)
      g = grad(eps, jnp.asarray(gate), jnp.asarray(images[pick]), jnp.asarray(labels[pick]))
      values.append(float(jnp.mean(jnp.linalg.norm(g.reshape(batch_size, -1), axis=1))))
    means.append(float(np.mean(values)))
    stds.append(float(np.std(values)))
  return summarise(subject.label, n, means, stds, draws, batch_size)


def summarise(label, n, means, stds, draws, batch_size) -> dict:
  counts = path_counts(n)
  total = [c * m for c, m in zip(counts, means)]
  share = np.asarray(total) / np.sum(total)
  cumulative = np.cumsum(share)
  low = int(np.searchsorted(cumulative, 0.05))
  high = int(np.searchsorted(cumulative, 0.95))
  return {'label': label, 'n': n, 'lengths': list(range(n + 1)), 'counts': counts,
          'count_total': int(sum(counts)), 'mean_grad_norm': means, 'std_grad_norm': stds,
          'total_grad': total, 'share': share.tolist(), 'draws': draws,
          'batch_size': batch_size, 'peak_length': int(np.argmax(total)),
          'central_90_range': [low, high],
          'mean_length_paths': n / 2,
          'mean_length_gradient': float(np.sum(share * np.arange(n + 1)))}


def write_report(result, out, argv=None):
  plt = report.pyplot()
  rep = report.Report(out, 'paths: path lengths and the gradient they carry (Veit et al. 2016)',
                      argv)
  rep.text(__doc__.split('\n\n', 1)[1])
  r = result
  rep.table(['model', 'blocks n', 'paths (sum of counts)', '2^n', 'peak length (gradient)',
             '90% of gradient in lengths', 'mean path length', 'gradient-weighted mean length'],
            [[r['label'], r['n'], r['count_total'], 2 ** r['n'], r['peak_length'],
              f'{r["central_90_range"][0]}-{r["central_90_range"][1]}', r['mean_length_paths'],
              r['mean_length_gradient']]], 'Summary')
  rep.table(['length k', 'paths C(n,k)', 'mean ||dL/dx_0|| per path', 'std over draws',
             'C(n,k) x mean', 'share of total'],
            list(zip(r['lengths'], r['counts'], r['mean_grad_norm'], r['std_grad_norm'],
                     r['total_grad'], r['share'])),
            f'Per length ({r["draws"]} draws per length, {r["batch_size"]} examples each; '
            'norms are per example, averaged)')
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
  k = np.asarray(r['lengths'])
  axes[0].bar(k, np.asarray(r['counts']) / r['count_total'])
  axes[0].set_title('(a) distribution of path lengths')
  axes[1].semilogy(k, r['mean_grad_norm'], marker='o')
  axes[1].set_title('(b) gradient magnitude of one path')
  axes[2].bar(k, r['total_grad'])
  axes[2].set_title('(c) total gradient magnitude per length')
  for ax in axes:
    ax.set_xlabel('path length k')
    ax.grid(alpha=0.3)
  fig.suptitle(r['label'])
  rep.figure(fig, 'paths.png', 'Path lengths and gradient per length (Veit et al. Fig. 6)')
  return rep.write(result)


def add_arguments(parser):
  parser.add_argument('--model', default='resnet56', help='model spec at init (no --workdir)')
  parser.add_argument('--workdir', default='', help='train.py workdir of a trained residual net')
  parser.add_argument('--dataset', default='digits', help='data for a model at init')
  parser.add_argument('--draws', type=common.positive_int, default=32,
                      help='sampled paths per length')
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--seed', type=int, default=0)


def main(args, argv=None):
  if args.workdir:
    subject = common.workdir_subject(args.workdir, common.command_dtype(args))
  else:
    subject = common.init_subject(args.model, common.data_spec(args.dataset), args.seed,
                                  common.command_dtype(args))
  images, labels = common.eval_arrays(subject.data)
  result = path_gradients(subject, images, labels, args.draws, args.batch_size, args.seed)
  print(f'paths: {subject.label}: peak length {result["peak_length"]} of {result["n"]}',
        flush=True)
  return write_report(result, args.out, argv), result
