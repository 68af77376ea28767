"""Model calls as compiled programs, for tests of small nets: `jax.jit` compiles such a net in
one program, where op-by-op dispatch compiles each distinct layer on its own and costs several
times more on CPU (docs/testing.md, "Test time"). Deep nets of identical blocks (the every-model
shape tests) are the exception and stay eager."""

import functools

import jax


def _compiled(method, static):
  # Lists (mutable=['batch_stats']) as tuples: the options are fixed in the program.
  fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in static.items()}
  return jax.jit(functools.partial(method, **fixed))


def init(model, *arrays, **options):
  """`model.init(*arrays, **options)` compiled; keys and inputs are the arrays."""
  return _compiled(model.init, options)(*arrays)


def apply(model, variables, *arrays, rngs=None, **options):
  """`model.apply(variables, *arrays, rngs=rngs, **options)` compiled."""
  program = _compiled(model.apply, options)
  return program(variables, *arrays) if rngs is None else program(variables, *arrays, rngs=rngs)
