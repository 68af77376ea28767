"""The trainer's configuration, the top library layer: the schema (`base_config`), recipe
loading (`load_config`), the boundary that turns a ConfigDict into plain values (`resolve` ->
`RunSpec`) and the trainer from a ConfigDict (`train_and_evaluate`).

    import jax_resnet as jr
    config = jr.load_config('cifar10_resnet20')   # a shipped recipe (configs/), by name
    config = jr.base_config()                                # or the schema, to fill in
    summary = jr.config.train_and_evaluate(config, 'runs/x')
"""

from jax_resnet.config.base import base_config
from jax_resnet.config.boundary import RunSpec, from_json, resolve
from jax_resnet.config.recipes import load_config
from jax_resnet.config.run import eval_preprocessing, train_and_evaluate, trained_image_size

__all__ = ['RunSpec', 'base_config', 'eval_preprocessing', 'from_json', 'load_config', 'resolve',
           'train_and_evaluate', 'trained_image_size']
