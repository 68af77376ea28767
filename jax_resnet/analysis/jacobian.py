"""jacobian: the product formula d x_L / d x_l = prod(I + J_i) with J_i = dF_i/dx_i (He et al.
2016, eq. 4-5), checked numerically on dense Jacobians of a tiny input, and at the real input
size the spectral norms ||J_i|| by power iteration (jvp/vjp only, no dense matrix) against the
bound ||prod(I + J_i)|| <= prod(1 + ||J_i||).

Post-activation blocks (He et al. 2015) end in ReLU(x + F(x)), so their factor is D_i (I + J_i)
with D_i the ReLU mask; the report gives the error of both forms.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jax_resnet.analysis import common, report

DEFAULT_MODELS = ('resnet20', 'preact_resnet110:stage_sizes=(3,3,3)', 'plain20')


def spectral_norm(f, x, iters: int = 100, seed: int = 0) -> float:
  """Largest singular value of df/dx at x by power iteration on J^T J (one jvp, one vjp each)."""
  _, jvp = jax.linearize(f, x)
  _, vjp = jax.vjp(f, x)

  def run(v):
    def step(_, v):
      w = vjp(jvp(v))[0]
      return w / jnp.linalg.norm(w)
    v = jax.lax.fori_loop(0, iters, step, v / jnp.linalg.norm(v))
    return jnp.linalg.norm(jvp(v))
  return float(jax.jit(run)(jax.random.normal(jax.random.key(seed), x.shape, x.dtype)))


def identity_runs(blocks):
  """Index runs of consecutive residual blocks whose shortcut is the identity."""
  runs, current = [], []
  for i, b in enumerate(blocks):
    if b.residual and not b.downsampling and not b.projection:
      current.append(i)
    else:
      runs, current = runs + [current] if current else runs, []
  return [r for r in runs + [current] if r]


def compose(fns):
  def run(x):
    for f in fns:
      x = f(x)
    return x
  return run


def _dense(f, x):
  return jax.jacfwd(lambda v: f(v.reshape(x.shape)).reshape(-1))(x.reshape(-1))


def product_check(subject, x) -> dict:
  """Dense d x_L/d x_l of the first identity run (>= 2 blocks if any) against the product."""
  blocks = common.find_blocks(subject, x)
  runs = identity_runs(blocks)
  if not runs:
    return {'skipped': 'no residual blocks with an identity shortcut'}
  run = next((r for r in runs if len(r) >= 2), max(runs, key=len))
  _, inputs = common.block_inputs(subject, x)
  x_l = inputs[run[0]]
  eye = jnp.eye(x_l.size)
  product = naive = no_identity = eye
  for i in run:
    info, x_i = blocks[i], inputs[i]
    j_branch = _dense(common.branch_fn(info, subject.variables), x_i)
    factor = eye + j_branch
    if not info.preact:  # ReLU(x + F(x)): the mask multiplies the whole factor
      pre = x_i + common.branch_fn(info, subject.variables)(x_i)
      factor = (pre.reshape(-1) > 0)[:, None] * factor
    product, naive, no_identity = factor @ product, (eye + j_branch) @ naive, j_branch @ no_identity
  measured = _dense(compose([common.block_fn(blocks[i], subject.variables) for i in run]), x_l)
  error = lambda p: float(jnp.max(jnp.abs(measured - p)) / jnp.max(jnp.abs(measured)))
  return {'blocks': [blocks[i].name for i in run], 'dim': int(x_l.size),
          'relative_error': error(product), 'relative_error_naive': error(naive),
          'relative_error_without_identity': error(no_identity),
          'preact': bool(blocks[run[0]].preact)}


def spectral_analysis(subject, x, iters: int = 100) -> dict:
  """||J_i|| of every block's branch (the whole block for plain nets), ||block Jacobian||, and
  for the first identity run the measured ||d x_L/d x_l|| against prod(1 + ||J_i||)."""
  blocks = common.find_blocks(subject, x)
  _, inputs = common.block_inputs(subject, x)
  branch_norms, block_norms = [], []
  for info, x_i in zip(blocks, inputs):
    block = common.block_fn(info, subject.variables)
    block_norms.append(spectral_norm(block, x_i, iters))
    branch = common.branch_fn(info, subject.variables) if info.residual else block
    branch_norms.append(spectral_norm(branch, x_i, iters))
  result = {'blocks': [b.name for b in blocks], 'downsampling': [b.downsampling for b in blocks],
            'branch_norms': branch_norms, 'block_norms': block_norms, 'iters': iters}
  everything = compose([common.block_fn(b, subject.variables) for b in blocks])
  result['all_blocks_norm'] = spectral_norm(everything, inputs[0], iters)
  runs = identity_runs(blocks) if subject.residual else [list(range(len(blocks)))]
  if runs:
    run = max(runs, key=len)
    chain = compose([common.block_fn(blocks[i], subject.variables) for i in run])
    result.update(
        run=[blocks[i].name for i in run],
        product_norm=spectral_norm(chain, inputs[run[0]], iters),
        bound=float(np.prod([(1.0 if subject.residual else 0.0) + branch_norms[i]
                             for i in run])),
        product_of_block_norms=float(np.prod([block_norms[i] for i in run])))
  return result


def jacobian_analysis(subject, image, check_size: int = 8, iters: int = 100) -> dict:
  """Both parts for one example `image` (1, H, W, C): the dense check on the image resized to
  check_size x check_size, the spectral part at full size."""
  image = jnp.asarray(image)
  tiny = jax.image.resize(image, (1, check_size, check_size, image.shape[-1]), 'linear')
  check = product_check(subject, tiny) if subject.residual else {'skipped': 'plain net'}
  return {'label': subject.label, 'check': check,
          'spectral': spectral_analysis(subject, image, iters)}


def write_report(results, out, argv=None, check_size=8):
  plt = report.pyplot()
  rep = report.Report(out, 'jacobian: the product formula and the norm bound', argv)
  rep.text(f'One eval example, BatchNorm in eval mode. The dense check resizes it to '
           f'{check_size}x{check_size} and compares jacfwd of the first run of identity-shortcut '
           'blocks with the ordered product of its factors. Post-activation factors are '
           'D_i (I + J_i), D_i the ReLU mask; "naive" is prod(I + J_i) without the masks; '
           '"without identity" is prod(J_i), the plain-net analogue.')
  rows = [[r['label'], ', '.join(r['check'].get('blocks', [])), r['check'].get('dim', ''),
           r['check'].get('relative_error', r['check'].get('skipped')),
           r['check'].get('relative_error_naive', ''),
           r['check'].get('relative_error_without_identity', '')] for r in results]
  rep.table(['model', 'blocks', 'dim', 'rel. error (product)', 'rel. error (naive)',
             'rel. error (without identity)'], rows, 'Dense check of d x_L / d x_l')
  rows = [[r['label'], ', '.join(s.get('run', [])), s.get('product_norm', ''), s.get('bound', ''),
           s.get('product_of_block_norms', ''), s['all_blocks_norm']]
          for r in results for s in [r['spectral']]]
  rep.table(['model', 'run', '||d x_L/d x_l|| measured', 'prod(1 + ||J_i||)',
             'prod ||block Jacobian||', '||d x_out/d x_in|| all blocks'], rows,
            f'Spectral norms at full size (power iteration, {results[0]["spectral"]["iters"]} '
            'steps); J_i is the whole block for plain nets, so the bound is prod ||J_i||')
  for r in results:
    s = r['spectral']
    rep.table(['block', 'downsampling', '||J_i||', '||block Jacobian||'],
              list(zip(s['blocks'], s['downsampling'], s['branch_norms'], s['block_norms'])),
              f'{r["label"]}: per-block spectral norms')
  fig, ax = plt.subplots(figsize=(7, 4))
  for r in results:
    s = r['spectral']
    ax.semilogy(np.arange(1, len(s['blocks']) + 1), s['branch_norms'], marker='.',
                label=f'{r["label"]} ||J_i||')
  ax.set_xlabel('block index')
  ax.set_ylabel('spectral norm')
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=8)
  rep.figure(fig, 'jacobian_norms.png', 'Spectral norm of each residual branch Jacobian '
             '(whole block for plain nets)')
  return rep.write({'check_size': check_size, 'models': results})


def add_arguments(parser):
  parser.add_argument('--models', default=','.join(DEFAULT_MODELS),
                      help="comma-separated model specs at init ('name:key=value;...')")
  parser.add_argument('--workdir', action='append', default=[], help='train.py workdir')
  parser.add_argument('--dataset', default='digits')
  parser.add_argument('--check-size', type=int, default=8,
                      help='image side for the dense-Jacobian check')
  parser.add_argument('--iters', type=int, default=100, help='power-iteration steps')
  parser.add_argument('--seed', type=int, default=0)


def main(args, argv=None):
  data, dtype = common.data_spec(args.dataset), common.command_dtype(args)
  specs = common.split_specs(args.models)
  subjects = [common.init_subject(m, data, args.seed, dtype) for m in specs]
  subjects += [common.workdir_subject(w, dtype) for w in args.workdir]
  results = []
  for subject in subjects:
    images, _ = common.eval_arrays(subject.data, 1)
    results.append(jacobian_analysis(subject, images, args.check_size, args.iters))
    print(f'jacobian: {subject.label}: {results[-1]["check"]}', flush=True)
  return write_report(results, args.out, argv, args.check_size), results
