"""Rematerialisation (gradient checkpointing) of residual blocks: what the backward pass keeps
of each block's forward pass, and what it computes again.

- 'none': XLA keeps what it needs (convolution outputs, normalised values, ReLU outputs,
  BatchNorm's float32 intermediates in a bfloat16 net).
- 'block': each residual block keeps only its input; the backward pass runs the block's
  forward again (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost").
- 'save_convs': each block keeps its convolutions' outputs and recomputes only the
  normalisations, ReLUs and the residual sum from them: the elementwise work, cheap to redo,
  while the convolutions (the FLOPs) run once. `jax.checkpoint_policies.checkpoint_dots` is
  that policy: it saves the outputs of `conv_general_dilated` and of `dot_general` (the 1x1
  convolutions computed as matrix products, `conv1x1_as_dot`). `dots_with_no_batch_dims_saveable`
  would not do: a convolution is not a `dot_general`, and a 1x1-as-dot has the batch among its
  free dimensions, so it saves nothing here and equals 'block'.

Parameters, statistics and random masks (drop path, dropout) are those of 'none': the same
module paths draw the same keys, and the recomputation reads them again.
"""

import flax.linen as nn
import jax

from jax_resnet.errors import OptionError, check_choice

REMAT_POLICIES = ('none', 'block', 'save_convs')


def check_remat(remat: str):
  check_choice(OptionError, 'remat', remat, REMAT_POLICIES)


def _policy(remat: str):
  return jax.checkpoint_policies.checkpoint_dots if remat == 'save_convs' else None


def remat_block(block_cls, remat: str, static_argnums=(2,)):
  """`block_cls` wrapped by `nn.remat` as `remat` says (itself for 'none'). Blocks are called
  `block(x, train)`: `train` (argument 2, counting the module) is a Python bool that decides
  the graph, so it is static."""
  check_remat(remat)
  if remat == 'none':
    return block_cls
  return nn.remat(block_cls, policy=_policy(remat), static_argnums=static_argnums)
