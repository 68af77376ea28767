"""lesion: Veit, Wilber & Belongie 2016 ("Residual networks behave like ensembles of relatively
shallow networks"), Figures 3 and 5: delete blocks of a trained net at test time.

Deleting residual block i keeps its shortcut: the branch is replaced by zeros where it enters the
merge (its drop_path module), so the block returns shortcut(x) (post-activation: ReLU(shortcut(x)),
which is x itself for an identity shortcut since x >= 0 there). A downsampling block keeps its
projection or zero-padded subsampling. A plain block has no shortcut: deleting it means removing
the layer, i.e. the identity, which only exists where the block keeps the shape; downsampling
plain blocks cannot be deleted. Random k-block deletions draw from the blocks that keep the shape
in both kinds of net, so the two curves delete the same population.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jax_resnet.analysis import common, report


def lesioned_apply(subject, image_shape):
  """(jit fn(variables, keep, images) -> logits, blocks, deletable) where block i is deleted
  when keep[i] is False. Deletion is traced (jnp.where), so one compilation serves all."""
  blocks = common.find_blocks(subject, jnp.zeros((1,) + tuple(image_shape)))
  deletable = [b.residual or not b.downsampling for b in blocks]
  model = subject.model

  def apply(variables, keep, images):
    current = [None]

    def on_block(index, module, x, kwargs, call):
      if module.residual:
        current[0] = index
        try:
          return call(x)
        finally:
          current[0] = None
      out = call(x)
      return jnp.where(keep[index], out, x) if deletable[index] else out

    def on_branch(module, branch):
      if current[0] is None:
        return branch
      return jnp.where(keep[current[0]], branch, jnp.zeros_like(branch))

    with common.intercept(common.BlockInterceptor(on_block, on_branch)):
      return model.apply(variables, images, train=False)
  return jax.jit(apply), blocks, deletable


def accuracy(apply, variables, keep, images, labels, batch_size: int) -> float:
  """Top-1 over all of `images`, in fixed-size batches (the last one padded, then masked)."""
  correct, n = 0, len(images)
  keep = jnp.asarray(keep, bool)
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    size = len(chunk)
    if size < batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - size, 0)])
    predicted = np.asarray(jnp.argmax(apply(variables, keep, chunk), -1))[:size]
    correct += int(np.sum(predicted == labels[start:start + size]))
  return correct / n


def _subsets(candidates, k, draws, rng):
  """All k-subsets when there are at most `draws` of them, else `draws` distinct random ones."""
  if math.comb(len(candidates), k) <= draws:
    return [list(c) for c in itertools.combinations(candidates, k)]
  chosen = set()
  while len(chosen) < draws:
    chosen.add(tuple(sorted(rng.choice(candidates, k, replace=False).tolist())))
  return [list(c) for c in sorted(chosen)]


def lesion_study(subject, images=None, labels=None, draws: int = 20, seed: int = 0,
                 batch_size: int = 0) -> dict:
  """Accuracy with nothing deleted, with each block deleted, and with k random blocks deleted
  (k = 1 .. number of shape-keeping blocks; mean and std over the draws)."""
  if images is None:
    images, labels = common.eval_arrays(subject.data)
  batch_size = batch_size or min(len(images), int(subject.data.eval_batch_size))
  apply, blocks, deletable = lesioned_apply(subject, images.shape[1:])
  n = len(blocks)
  run = lambda deleted: accuracy(apply, subject.variables,
                                 [i not in deleted for i in range(n)], images, labels, batch_size)
  baseline = run(())
  single = [run((i,)) if deletable[i] else float('nan') for i in range(n)]
  candidates = [i for i, b in enumerate(blocks) if not b.downsampling]
  rng = np.random.default_rng(seed)
  k_mean, k_std, k_draws = [], [], []
  for k in range(1, len(candidates) + 1):
    accs = [run(tuple(s)) for s in _subsets(candidates, k, draws, rng)]
    k_mean.append(float(np.mean(accs)))
    k_std.append(float(np.std(accs)))
    k_draws.append(len(accs))
  return {'label': subject.label, 'residual': subject.residual, 'baseline_top1': baseline,
          'blocks': [b.name for b in blocks], 'downsampling': [b.downsampling for b in blocks],
          'deletable': deletable, 'single_top1': single, 'k': list(range(1, len(candidates) + 1)),
          'k_mean_top1': k_mean, 'k_std_top1': k_std, 'k_draws': k_draws,
          'num_examples': int(len(images))}


def _plots(plt, results):
  single, ax = plt.subplots(figsize=(7, 4))
  for r in results:
    x = np.arange(1, len(r['blocks']) + 1)
    err = 1 - np.asarray(r['single_top1'])
    line, = ax.plot(x, err, marker='o', label=f'{r["label"]} (one block deleted)')
    down = np.asarray(r['downsampling']) & np.isfinite(err)
    ax.scatter(x[down], err[down], marker='X', s=120, color=line.get_color(), zorder=3)
    ax.axhline(1 - r['baseline_top1'], ls='--', color=line.get_color(), lw=1)
  ax.set_xlabel('deleted block (X: downsampling block)')
  ax.set_ylabel('test error')
  ax.set_title('Deleting one block at test time (dashed: nothing deleted)')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  k_fig, ax = plt.subplots(figsize=(7, 4))
  for r in results:
    ax.errorbar(r['k'], 1 - np.asarray(r['k_mean_top1']), yerr=r['k_std_top1'], marker='o',
                capsize=3, label=r['label'])
  ax.set_xlabel('number of deleted blocks k')
  ax.set_ylabel('test error (mean +- std over draws)')
  ax.set_title('Deleting k random shape-keeping blocks')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  return single, k_fig


def write_report(results, out, argv=None, draws=20):
  plt = report.pyplot()
  rep = report.Report(out, 'lesion: deleting blocks at test time (Veit et al. 2016)', argv)
  rep.text(__doc__.split('\n\n', 1)[1])
  rep.table(['model', 'residual', 'eval examples', 'top-1, nothing deleted'],
            [[r['label'], r['residual'], r['num_examples'], r['baseline_top1']]
             for r in results], 'Baselines')
  for r in results:
    rows = [[i + 1, name, down, r['single_top1'][i] if ok else 'n/a (shape changes)']
            for i, (name, down, ok) in enumerate(zip(r['blocks'], r['downsampling'],
                                                      r['deletable']))]
    rep.table(['#', 'deleted block', 'downsampling', 'top-1'], rows,
              f'{r["label"]}: one block deleted')
  for r in results:
    rep.table(['k', 'draws', 'mean top-1', 'std'],
              list(zip(r['k'], r['k_draws'], r['k_mean_top1'], r['k_std_top1'])),
              f'{r["label"]}: k random shape-keeping blocks deleted (at most {draws} draws; '
              'all subsets when there are fewer)')
  single, k_fig = _plots(plt, results)
  rep.figure(single, 'lesion_single.png', 'Test error when one block is deleted (Veit Fig. 3)')
  rep.figure(k_fig, 'lesion_k.png', 'Test error when k random blocks are deleted (Veit Fig. 5a)')
  return rep.write({'draws': draws, 'models': results})


def add_arguments(parser):
  parser.add_argument('--workdir', action='append', default=[],
                      help='train.py workdir of a trained net (repeatable: residual and plain)')
  parser.add_argument('--draws', type=common.positive_int, default=20, help='random subsets per k')
  parser.add_argument('--seed', type=int, default=0)


def main(args, argv=None):
  if not args.workdir:
    raise common.AnalysisError('lesion needs a trained net: python train.py --workdir '
                               'runs/resnet20, then --workdir runs/resnet20 (add a plain20 '
                               'workdir to compare).')
  results = []
  for workdir in args.workdir:
    subject = common.workdir_subject(workdir, common.command_dtype(args))
    results.append(lesion_study(subject, draws=args.draws, seed=args.seed))
    print(f'lesion: {subject.label}: baseline {results[-1]["baseline_top1"]:.4f}', flush=True)
  return write_report(results, args.out, argv, args.draws), results
