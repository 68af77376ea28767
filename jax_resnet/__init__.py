"""jax_resnet: deep residual networks in JAX/Flax.

    import jax_resnet as jr
    model = jr.create_model('resnet50', num_classes=1000)
    config = jr.load_config('r50')   # a shipped trainer recipe (jax_resnet.config)
    summary = jr.train_and_evaluate(config, 'runs/r50')   # the trainer
    model, variables = jr.load_pretrained('resnet50.tv2_in1k')   # published weights

The names below are loaded on first use (PEP 562), so `import jax_resnet` or one block
(`jax_resnet.layers`) costs no more than Flax itself: the trainer, data pipelines and weight
readers (optax, ml_collections, PIL, ...) are imported only when one of their names is asked for.
"""

import importlib
import importlib.util

from jax_resnet import false_alarms

__version__ = '0.1.0'

# name -> the module that defines it; a name equal to its module's last part is the module.
_ATTRIBUTES = {
    'BasicBlock': 'jax_resnet.blocks',
    'BottleneckBlock': 'jax_resnet.blocks',
    'PreActBasicBlock': 'jax_resnet.blocks',
    'PreActBottleneckBlock': 'jax_resnet.blocks',
    'ResNet': 'jax_resnet.models',
    'ResNetBase': 'jax_resnet.models',
    'make_layers': 'jax_resnet.models',
    'VideoBasicBlock': 'jax_resnet.video',
    'VideoResNet': 'jax_resnet.video',
    'stack_blocks': 'jax_resnet.scan',
    'unstack_blocks': 'jax_resnet.scan',
    'create_model': 'jax_resnet.registry',
    'list_models': 'jax_resnet.registry',
    'model_defaults': 'jax_resnet.registry',
    'register_model': 'jax_resnet.registry',
    'FeatureLevel': 'jax_resnet.model_facts',
    'ModelInfo': 'jax_resnet.model_facts',
    'feature_info': 'jax_resnet.model_facts',
    'model_info': 'jax_resnet.model_facts',
    'count_params': 'jax_resnet.utils',
    'load_pretrained': 'jax_resnet.weights.pretrained',
    'finetune': 'jax_resnet.finetune',
    'nnx': 'jax_resnet.nnx',  # the same models as Flax NNX modules
    'config': 'jax_resnet.config',
    'base_config': 'jax_resnet.config',
    'load_config': 'jax_resnet.config',
    'train_and_evaluate': 'jax_resnet.config',
    'push_to_hub': 'jax_resnet.sharing',
    'save_pretrained': 'jax_resnet.sharing',
    'export': 'jax_resnet.export',  # the module is callable: jax_resnet.export(...)
}

__all__ = [
    'BasicBlock', 'BottleneckBlock', 'FeatureLevel', 'ModelInfo', 'PreActBasicBlock',
    'PreActBottleneckBlock', 'ResNet', 'ResNetBase', 'VideoBasicBlock', 'VideoResNet',
    'base_config', 'config', 'count_params', 'create_model', 'feature_info', 'finetune',
    'list_models', 'load_config', 'load_pretrained', 'make_layers', 'model_defaults', 'model_info',
    'push_to_hub', 'register_model', 'save_pretrained', 'stack_blocks', 'train_and_evaluate',
    'unstack_blocks', 'export',
]


def __getattr__(name: str):
  module_name = _ATTRIBUTES.get(name)
  if module_name is None:  # a subpackage read as an attribute: `jr.weights.list_tags()`
    module_name = f'{__name__}.{name}'
    if name.startswith('_') or importlib.util.find_spec(module_name) is None:
      raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module = importlib.import_module(module_name)
  value = module if module_name.rpartition('.')[2] == name else getattr(module, name)
  globals()[name] = value  # later look-ups skip this function
  return value


def __dir__():
  return sorted(set(globals()) | set(_ATTRIBUTES))


false_alarms.install()
