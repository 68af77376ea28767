"""The gradient decomposition of He et al. 2016 (identity mappings), checked on this library's
own blocks:

  x_{l+1} = x_l + F(x_l)  =>  d x_L / d x_l = prod_i (I + dF_i/dx_i),
  dL/dx_l = dL/dx_L * prod_i (I + dF_i/dx_i),   x_L = x_l + sum_i F_i(x_i).

Every identity is also evaluated on the plain twin (same layers, no shortcut), where it must
fail, so no test can pass vacuously.
"""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jax_resnet as jr

# Long numerical checks of code that does not differ between JAX versions: CI runs them in its
# newest environment only (pytest -m "not slow" elsewhere).
pytestmark = pytest.mark.slow

SHAPE = (1, 4, 4, 3)  # one sample: eval-mode blocks are per-sample functions
DIM = int(np.prod(SHAPE))
# Identities of maths, so every test here runs in float64 (blocks, inputs, statistics) and the
# tolerance sits near its round-off on any CPU.
RTOL = 1e-12
F64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)


@pytest.fixture(autouse=True)
def _float64(x64):
  yield


def _random_batch_stats(variables, key):
  """Non-trivial running statistics so BatchNorm is a real affine map in eval mode."""
  def randomise(path, leaf):
    k = jax.random.fold_in(key, zlib.crc32(jax.tree_util.keystr(path).encode()))
    if path[-1].key == 'mean':
      return 0.1 * jax.random.normal(k, leaf.shape)
    return jax.random.uniform(k, leaf.shape, minval=0.5, maxval=1.5)
  return jax.tree_util.tree_map_with_path(randomise, variables)


def make_stack(block_cls, num_blocks, residual=True, zero_init_residual=False, seed=0):
  """`num_blocks` identity blocks of width 3 in eval mode; returns (apply_fns, branch_fns)."""
  conv, norm = jr.make_layers(train=False, **F64)
  applies, branches = [], []
  x = jnp.zeros(SHAPE)
  for i in range(num_blocks):
    kwargs = dict(features=SHAPE[-1], strides=(1, 1), conv=conv, norm=norm, shortcut='B',
                  zero_init_residual=zero_init_residual)
    block = block_cls(residual=residual, **kwargs)
    branch_only = block_cls(residual=False, **kwargs)  # same parameters: the branch F alone
    variables = block.init(jax.random.key(seed + i), x, train=False)
    variables = {**variables, 'batch_stats': _random_batch_stats(
        variables['batch_stats'], jax.random.key(100 + i))}
    applies.append(lambda x, b=block, v=variables: b.apply(v, x, train=False))
    branches.append(lambda x, b=branch_only, v=variables: b.apply(v, x, train=False))
  return applies, branches


def compose(fns):
  def run(x):
    for f in fns:
      x = f(x)
    return x
  return run


def trajectory(fns, x):
  """[x_0, x_1, ..., x_L]: the input of every block and the stack's output."""
  xs = [x]
  for f in fns:
    xs.append(f(xs[-1]))
  return xs


def jacobian(f, x):
  return jax.jacfwd(lambda v: f(v.reshape(SHAPE)).reshape(-1))(x.reshape(-1))


def relative_error(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def _input(seed=7):
  return jax.random.normal(jax.random.key(seed), SHAPE)


@pytest.mark.parametrize('block_cls', [jr.PreActBasicBlock, jr.PreActBottleneckBlock])
def test_block_jacobian_is_identity_plus_branch_jacobian(block_cls):
  width = SHAPE[-1] * (4 if block_cls is jr.PreActBottleneckBlock else 1)
  shape = SHAPE[:-1] + (width,)
  x = jax.random.normal(jax.random.key(3), shape)
  conv, norm = jr.make_layers(train=False, **F64)
  features = SHAPE[-1]
  block = block_cls(features, (1, 1), conv, norm)
  branch = block_cls(features, (1, 1), conv, norm, residual=False)
  variables = block.init(jax.random.key(0), x, train=False)
  flat = lambda f: jax.jacfwd(lambda v: f(v.reshape(shape)).reshape(-1))(x.reshape(-1))
  j_block = flat(lambda v: block.apply(variables, v, train=False))
  j_branch = flat(lambda v: branch.apply(variables, v, train=False))
  eye = jnp.eye(x.size)
  assert j_block.shape == (x.size, x.size)
  assert relative_error(j_block, eye + j_branch) <= RTOL
  # The plain block's Jacobian is dF/dx alone: it misses the identity by exactly I.
  assert relative_error(j_branch, eye + j_branch) > 0.1


def test_stack_jacobian_is_ordered_product_of_identity_plus_branch():
  applies, branches = make_stack(jr.PreActBasicBlock, 3)
  x = _input()
  xs = trajectory(applies, x)
  product = jnp.eye(DIM)
  for branch, x_i in zip(branches, xs[:-1]):
    product = (jnp.eye(DIM) + jacobian(branch, x_i)) @ product  # later blocks multiply left
  measured = jacobian(compose(applies), x)
  assert relative_error(measured, product) <= RTOL
  # The same product does not describe the plain stack of the same layers.
  plain = compose(branches)
  assert relative_error(jacobian(plain, x), product) > 0.1


def _loss(x_final):
  return jnp.sum(jnp.sin(x_final)) + 0.5 * jnp.sum(x_final ** 2)


def test_identity_path_carries_gradient_unchanged_when_branches_are_zero():
  applies, _ = make_stack(jr.PreActBasicBlock, 4, zero_init_residual=True)
  x = _input()
  x_final = compose(applies)(x)
  grad_at_start = jax.grad(lambda v: _loss(compose(applies)(v)))(x)
  grad_at_end = jax.grad(_loss)(x_final)
  np.testing.assert_array_equal(np.asarray(x_final), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(grad_at_start), np.asarray(grad_at_end))


def test_gradient_is_upstream_plus_branch_terms():
  applies, branches = make_stack(jr.PreActBasicBlock, 3)
  x = _input()
  xs = trajectory(applies, x)
  upstream = jax.grad(_loss)(xs[-1])
  for i in reversed(range(3)):
    _, branch_vjp = jax.vjp(branches[i], xs[i])
    branch_term = branch_vjp(upstream)[0]
    measured = jax.grad(lambda v, i=i: _loss(compose(applies[i:])(v)))(xs[i])
    assert relative_error(measured, upstream + branch_term) <= RTOL
    # Without the identity term the branch alone is not the gradient.
    assert relative_error(branch_term, measured) > 0.1
    upstream = measured


def test_post_activation_relu_masks_the_identity_path():
  """v1 blocks end in ReLU(x + F(x)): even with F = 0 the path multiplies the upstream
  gradient by the ReLU derivative, which is why He et al. 2016 moved the activation."""
  applies, _ = make_stack(jr.BasicBlock, 3, zero_init_residual=True)
  x = _input()
  grad_at_start = jax.grad(lambda v: _loss(compose(applies)(v)))(x)
  grad_at_end = jax.grad(_loss)(compose(applies)(x))
  mask = (x > 0).astype(x.dtype)  # relu is idempotent: only the first mask bites
  np.testing.assert_allclose(grad_at_start, grad_at_end * mask, rtol=RTOL, atol=0)
  blocked = int(jnp.sum((mask == 0) & (grad_at_end != 0)))
  assert blocked == int(jnp.sum(mask == 0)) > 0
  assert float(jnp.max(jnp.abs(grad_at_start - grad_at_end))) > 0.1


def _stage_capture(residual):
  model = jr.create_model('preact_resnet110', stage_sizes=(3, 1, 1), residual=residual,
                          num_classes=0, **F64)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  features, state = model.apply(variables, x, train=False, return_features=True,
                                mutable=['intermediates'], capture_intermediates=True)
  return features, state['intermediates']


def test_expansion_holds_on_captured_intermediates():
  features, inter = _stage_capture(residual=True)
  residuals = [inter[f'stage1_block{i}']['residual'][0] for i in (1, 2, 3)]
  x_l, x_final = features['stem'], features['stage1']
  assert relative_error(x_l + sum(residuals), x_final) <= RTOL
  assert relative_error(x_l + residuals[0], inter['stage1_block1']['__call__'][0]) <= RTOL


def test_expansion_fails_for_the_plain_twin():
  features, inter = _stage_capture(residual=False)
  outputs = [inter[f'stage1_block{i}']['__call__'][0] for i in (1, 2, 3)]
  assert 'residual' not in inter['stage1_block1']
  # In a plain net each block output is F_i(x_i) itself; their sum plus x_l is not x_L.
  assert relative_error(features['stem'] + sum(outputs), features['stage1']) > 0.1
