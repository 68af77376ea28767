"""gradflow: ||dL/dx_l|| at every block input and ||dL/dW|| of every layer, on one batch.

The identity path claims dL/dx_l = dL/dx_L * prod(I + dF_i/dx_i) (He et al. 2016, eq. 5), so
the gradient reaching early blocks should not vanish with depth in residual nets. The block-input
gradient is measured exactly: a zero tensor eps_l is added to each block input by interception,
and dL/d eps_l = dL/dx_l.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np

from jax_resnet.analysis import common, report
from jax_resnet.training.steps import cross_entropy

DEFAULT_MODELS = ('plain20', 'plain56', 'resnet20', 'resnet56', 'resnet110')


def loss_with_perturbations(subject, images, labels, train: bool = True):
  """(params, eps) -> mean cross-entropy, where eps[l] is added to the input of block l."""
  model, variables = subject.model, subject.variables

  def loss_fn(params, eps):
    def add(index, module, x, kwargs, call):
      return call(x + eps[index])

    with common.intercept(common.BlockInterceptor(add)):
      full = {**variables, 'params': params}
      if train:
        logits, _ = model.apply(full, images, train=True, mutable=['batch_stats'],
                                rngs={'dropout': jax.random.key(0)})
      else:
        logits = model.apply(full, images, train=False)
    return jnp.mean(cross_entropy(logits, labels))
  return loss_fn


def kernel_order(params, block_names):
  """Paths ('a/b/kernel') of conv and dense kernels in forward order: stem, blocks, head."""
  def kernels(tree, prefix):
    found = []
    for key in sorted(tree, key=_natural):
      value = tree[key]
      if isinstance(value, dict) or hasattr(value, 'items'):
        found += kernels(value, f'{prefix}{key}/')
      elif key == 'kernel':
        found.append(f'{prefix}{key}')
    return found
  top = [k for k in params if k not in block_names]
  stem = [k for k in top if k != 'head']
  ordered = kernels({k: params[k] for k in stem}, '')
  for name in block_names:
    ordered += kernels(params[name], f'{name}/')
  if 'head' in params:
    ordered += kernels({'head': params['head']}, '')
  return ordered


def _natural(key):
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', str(key))]


def _lookup(tree, path):
  for key in path.split('/'):
    tree = tree[key]
  return tree


def gradient_norms(subject, images, labels, train: bool = True) -> dict:
  """Per-block ||dL/dx_l|| (Frobenius over the batch) and per-layer kernel-gradient norms.

  `train=True` uses batch statistics in BatchNorm, as a training step sees the net.
  """
  images, labels = jnp.asarray(images), jnp.asarray(labels)
  blocks = common.find_blocks(subject, images[:1])
  eps = [jnp.zeros(images.shape[:1] + tuple(b.in_shape[1:]), subject.gradient_dtype)
         for b in blocks]
  loss_fn = loss_with_perturbations(subject, images, labels, train)
  params = subject.variables['params']
  loss, (grad_params, grad_eps) = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))(
      params, eps)
  names = [b.name for b in blocks]
  layers = kernel_order(params, names)
  block_norms = [float(jnp.linalg.norm(g)) for g in grad_eps]
  layer_norms = [float(jnp.linalg.norm(_lookup(grad_params, p))) for p in layers]
  last_conv = max(i for i, p in enumerate(layers) if not p.startswith('head/'))
  return {
      'label': subject.label, 'loss': float(loss), 'blocks': names,
      'downsampling': [b.downsampling for b in blocks], 'block_grad_norms': block_norms,
      'layers': layers, 'weight_grad_norms': layer_norms,
      'block_ratio_first_last': _ratio(block_norms[0], block_norms[-1]),
      'weight_ratio_first_last': _ratio(layer_norms[0], layer_norms[last_conv]),
  }


def _ratio(a, b):
  return a / b if b else float('nan')


def _plot(plt, results, key, names_key, ylabel, title):
  fig, ax = plt.subplots(figsize=(7, 4))
  for r in results:
    values = r[key]
    ax.semilogy(np.arange(1, len(values) + 1), values, marker='.', label=r['label'])
  ax.set_xlabel(f'{names_key} index (input side = 1)')
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=8)
  return fig


def write_report(results, out, argv=None, batch_size=None, train=True):
  plt = report.pyplot()
  rep = report.Report(out, 'gradflow: gradient norms through depth', argv)
  rep.text(f'One batch of {batch_size} eval examples, mean cross-entropy, BatchNorm in '
           f'{"train (batch statistics)" if train else "eval (running statistics)"} mode. '
           '||dL/dx_l|| is the Frobenius norm over the batch of the gradient at the input of '
           "block l; the weight ratio is the stem conv's kernel gradient over the last block "
           "conv's (the head excluded).")
  rep.table(['model', 'blocks', 'loss', '||dL/dx_1||', '||dL/dx_L||', 'first/last',
             'min', 'max', 'weights first/last'],
            [[r['label'], len(r['blocks']), r['loss'], r['block_grad_norms'][0],
              r['block_grad_norms'][-1], r['block_ratio_first_last'],
              min(r['block_grad_norms']), max(r['block_grad_norms']),
              r['weight_ratio_first_last']] for r in results], 'Summary')
  depth = max(len(r['blocks']) for r in results)
  rows = [[i + 1] + [r['block_grad_norms'][i] if i < len(r['blocks']) else '' for r in results]
          for i in range(depth)]
  rep.text('<details><summary>||dL/dx_l|| per block</summary>\n')
  rep.table(['block'] + [r['label'] for r in results], rows)
  rep.text('</details>')
  rep.figure(_plot(plt, results, 'block_grad_norms', 'block', '||dL/dx_l||',
                   'Gradient at each block input'), 'gradflow_blocks.png',
             'Gradient norm at each block input, log scale, by depth')
  rep.figure(_plot(plt, results, 'weight_grad_norms', 'layer', '||dL/dW||',
                   'Kernel gradient of each layer'), 'gradflow_layers.png',
             'Kernel-gradient norm of each conv/dense layer, log scale, by depth')
  for r in results:
    rep.text(f'<details><summary>{r["label"]}: ||dL/dW|| per layer</summary>\n')
    rep.table(['layer', '||dL/dW||'], list(zip(r['layers'], r['weight_grad_norms'])))
    rep.text('</details>')
  return rep.write({'batch_size': batch_size, 'train_mode': train, 'models': results})


def add_arguments(parser):
  parser.add_argument('--models', default=','.join(DEFAULT_MODELS),
                      help='comma-separated model specs at initialisation (name or '
                           "'name:key=value;...'); '' for none")
  parser.add_argument('--workdir', action='append', default=[],
                      help='a train.py workdir (repeatable): its newest checkpoint')
  parser.add_argument('--batch-size', type=int, default=128)
  parser.add_argument('--dataset', default='digits', help='data for the models at init')
  parser.add_argument('--eval-mode', action='store_true',
                      help='BatchNorm with running statistics instead of batch statistics')
  parser.add_argument('--seed', type=int, default=0)


def main(args, argv=None):
  data, dtype = common.data_spec(args.dataset), common.command_dtype(args)
  subjects = [common.init_subject(m, data, args.seed, dtype)
              for m in common.split_specs(args.models)]
  subjects += [common.workdir_subject(w, dtype) for w in args.workdir]
  if not subjects:
    raise common.AnalysisError('gradflow needs --models or --workdir.')
  results = []
  for subject in subjects:
    images, labels = common.eval_arrays(subject.data, args.batch_size)
    results.append(gradient_norms(subject, images, labels, train=not args.eval_mode))
    print(f'gradflow: {subject.label}: first/last {results[-1]["block_ratio_first_last"]:.4g}',
          flush=True)
  return write_report(results, args.out, argv, args.batch_size, not args.eval_mode), results
