"""ode: a residual block x + h F(x) is a forward-Euler step of dx/dt = F(x, t) (E 2017; Haber &
Ruthotto 2017; Chen et al. 2018). With h = 1/L and weights that vary smoothly with depth, nets
of growing depth L should converge to the ODE's flow, with error O(1/L) (Euler is first order).

The experiment. A base net (default: the pre-activation CIFAR ResNet, identity shortcuts with no
ReLU after the merge, so each block is exactly x + h F(x)) is initialised with K knot blocks per
stage after each stage's entry block. The depth-L net has L + 1 blocks per stage and
residual_scale h = 1/L; its entry blocks, stem and head are the base's, and its block k of a
stage (k = 0..L-1, time t_k = (k + 1/2)/L) gets the base's knot weights linearly interpolated at
t_k (knot m sits at (m + 1/2)/K; BatchNorm statistics interpolated alike). So theta(t) is one
piecewise-linear function of depth-time for every L, and only the step count changes.
Interpolating rather than tiling keeps theta(t) continuous; the weights are random (at
initialisation) because a trained net was trained at h = 1 and one depth, which is no
discretisation of anything. The control: the same weights with h = 1, where depth adds up
instead of refining. BatchNorm runs in eval mode.
"""

import numpy as np

import jax
import jax.numpy as jnp

from jax_resnet.analysis import common, report
import jax_resnet

DEFAULT_DEPTHS = (1, 2, 4, 8, 16, 32, 64)


def _interpolate(knots, t):
  pos = float(np.clip(t * len(knots) - 0.5, 0, len(knots) - 1))
  lo = int(np.floor(pos))
  hi, w = min(lo + 1, len(knots) - 1), pos - lo
  return jax.tree.map(lambda a, b: (1 - w) * a + w * b, knots[lo], knots[hi])


def depth_variables(base_variables, depth: int, knots: int, stages: int):
  """Variables of the depth-`depth` net from the base net's (see the module docstring)."""
  out = {}
  for collection, tree in base_variables.items():
    new = {k: v for k, v in tree.items() if not k.startswith('stage')}
    for s in range(1, stages + 1):
      if f'stage{s}_block1' in tree:
        new[f'stage{s}_block1'] = tree[f'stage{s}_block1']
      knot_trees = [tree[f'stage{s}_block{m + 2}'] for m in range(knots)
                    if f'stage{s}_block{m + 2}' in tree]
      for k in range(depth):
        if knot_trees:
          new[f'stage{s}_block{k + 2}'] = _interpolate(knot_trees, (k + 0.5) / depth)
    out[collection] = new
  return out


def ode_outputs(spec: str, images, depths=DEFAULT_DEPTHS, knots: int = 3, seed: int = 0,
                scale_with_depth: bool = True, dtype=None):
  """{depth: {'stage1': ..., 'logits': ...}} for the nets of the experiment; `dtype` as in
  `common.in_dtype` (the same weights, computed in it)."""
  name, overrides = common.parse_model_spec(spec)
  stages = len(overrides.get('stage_sizes', jax_resnet.model_defaults(name)[1]['stage_sizes']))
  overrides.setdefault('num_classes', 10)
  base = jax_resnet.create_model(name, **{**overrides, 'stage_sizes': (knots + 1,) * stages})
  base_vars = jax.jit(lambda k: base.init(k, images[:1], train=False))(jax.random.key(seed))
  outputs = {}
  for depth in depths:
    h = 1.0 / depth if scale_with_depth else 1.0
    model = jax_resnet.create_model(name, **{**overrides, 'stage_sizes': (depth + 1,) * stages,
                                             'residual_scale': h})
    model, variables = common.in_dtype(model, depth_variables(base_vars, depth, knots, stages),
                                       dtype)
    features = model.apply(variables, images, train=False, return_features=True)
    outputs[depth] = {'stage1': np.asarray(features['stage1']),
                      'logits': np.asarray(features['logits'])}
  return outputs


def _relative(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)  # h = 1 outputs get huge
  with np.errstate(invalid='ignore', over='ignore'):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def convergence(outputs) -> dict:
  """Relative distance of each depth to the deepest, and between consecutive depths."""
  depths = sorted(outputs)
  ref = outputs[depths[-1]]
  result = {'depths': depths}
  for key in ('stage1', 'logits'):
    result[f'{key}_to_deepest'] = [_relative(outputs[d][key], ref[key]) for d in depths[:-1]]
    result[f'{key}_successive'] = [_relative(outputs[a][key], outputs[b][key])
                                   for a, b in zip(depths, depths[1:])]
    result[f'{key}_norm'] = [float(np.linalg.norm(np.asarray(outputs[d][key], np.float64)))
                             for d in depths]
  result['top1_agreement_with_deepest'] = [
      float(np.mean(outputs[d]['logits'].argmax(-1) == ref['logits'].argmax(-1)))
      for d in depths[:-1]]
  # Order from successive differences ||y_L - y_2L|| ~ C L^-p, free of the reference's own
  # error; L = 1 is left out (one step is far from the asymptotic regime).
  pairs = [(a, e) for a, e in zip(depths, result['stage1_successive']) if a > 1 and e > 0]
  result['stage1_order'] = (float(-np.polyfit(np.log([a for a, _ in pairs]),
                                              np.log([e for _, e in pairs]), 1)[0])
                            if len(pairs) >= 2 else float('nan'))
  return result


def ode_convergence(spec: str = 'preact_resnet110', images=None, depths=DEFAULT_DEPTHS,
                    knots: int = 3, seed: int = 0, dtype=None) -> dict:
  """The experiment with h = 1/L and the h = 1 control, on `images` (default: 64 digits)."""
  if images is None:
    images, _ = common.eval_arrays(common.data_spec(), 64)
  images = jnp.asarray(images)
  scaled = convergence(ode_outputs(spec, images, depths, knots, seed, True, dtype))
  control = convergence(ode_outputs(spec, images, depths, knots, seed, False, dtype))
  return {'model': spec, 'knots': knots, 'seed': seed, 'num_examples': int(len(images)),
          'scaled': scaled, 'unscaled': control}


def write_report(result, out, argv=None):
  plt = report.pyplot()
  rep = report.Report(out, 'ode: residual nets as Euler steps, h = 1/L', argv)
  rep.text(__doc__.split('\n\n', 1)[1])
  s, c = result['scaled'], result['unscaled']
  rep.text(f'Model {result["model"]}, {result["knots"]} knots per stage, seed {result["seed"]}, '
           f'{result["num_examples"]} eval examples. Distances are relative Frobenius norms over '
           f'the batch; the deepest net (L = {s["depths"][-1]}) is the reference. Fitted order p '
           'of the stage-1 output from ||y_L - y_L\'|| ~ L^-p over consecutive depths L < L\' '
           f'(L >= 2; Euler predicts 1): '
           f'{common.fmt(s["stage1_order"])}.')
  rows = []
  for i, d in enumerate(s['depths'][:-1]):
    rows.append([d, s['stage1_to_deepest'][i], s['logits_to_deepest'][i],
                 s['top1_agreement_with_deepest'][i], s['stage1_successive'][i],
                 c['stage1_successive'][i], c['stage1_norm'][i], c['logits_norm'][i]])
  rep.table(['L', 'stage1 to deepest (h=1/L)', 'logits to deepest (h=1/L)',
             'top-1 agreement (h=1/L)', "stage1 L vs next L' (h=1/L)",
             "stage1 L vs next L' (h=1)", '||stage1|| (h=1)', '||logits|| (h=1)'], rows,
            'Convergence with depth (inf/nan: the h = 1 net overflowed float32)')
  fig, ax = plt.subplots(figsize=(7, 4))
  depths = np.asarray(s['depths'][:-1], float)
  ax.loglog(depths, s['stage1_successive'], 'o-', label="stage-1 output, L vs next L', h = 1/L")
  ax.loglog(depths, s['logits_successive'], 's-', label="logits, L vs next L', h = 1/L")
  ax.loglog(depths, s['stage1_to_deepest'], '^:', label='stage-1 output to deepest, h = 1/L')
  ax.loglog(depths, c['stage1_successive'], 'x--', label="stage-1 output, L vs next L', h = 1")
  anchor = min(1, len(depths) - 1)  # L = 1 is far from the asymptotic regime
  ax.loglog(depths, s['stage1_successive'][anchor] * depths[anchor] / depths, ':',
            color='gray', label='1/L slope')
  ax.set_xticks(depths, [str(int(d)) for d in depths])
  ax.minorticks_off()
  ax.set_xlabel('Euler steps per stage L')
  ax.set_ylabel('relative distance')
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(fontsize=8)
  rep.figure(fig, 'ode_convergence.png', 'Relative change of the outputs against depth')
  return rep.write(result)


def add_arguments(parser):
  parser.add_argument('--model', default='preact_resnet110',
                      help="model spec ('name:key=value;...'); stage_sizes is set per depth")
  parser.add_argument('--depths', default=','.join(map(str, DEFAULT_DEPTHS)),
                      help='Euler steps per stage, ascending; the last is the reference')
  parser.add_argument('--knots', type=int, default=3, help='base blocks per stage')
  parser.add_argument('--examples', type=int, default=64)
  parser.add_argument('--seed', type=int, default=0)


def main(args, argv=None):
  depths = sorted(int(d) for d in args.depths.split(','))
  images, _ = common.eval_arrays(common.data_spec(), args.examples)
  result = ode_convergence(args.model, images, depths, args.knots, args.seed,
                           common.command_dtype(args))
  print(f'ode: fitted order {result["scaled"]["stage1_order"]:.3g}', flush=True)
  return write_report(result, args.out, argv), result
