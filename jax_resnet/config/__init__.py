"""The trainer's configuration: the schema (`base_config`), recipe loading (`load_config`) and
the boundary that turns a ConfigDict into plain values (`resolve` -> `RunSpec`).

    import jax_resnet as jr
    config = jr.load_config('cifar10_resnet20')   # a shipped recipe (configs/), by name
    config = jr.base_config()                                # or the schema, to fill in
"""

from jax_resnet.config.base import base_config
from jax_resnet.config.boundary import RunSpec, from_json, resolve
from jax_resnet.config.recipes import load_config

__all__ = ['RunSpec', 'base_config', 'from_json', 'load_config', 'resolve']
