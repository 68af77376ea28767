"""jax_resnet: deep residual networks in JAX/Flax.

    import jax_resnet as jr
    model = jr.create_model('resnet50', num_classes=1000)
    config = jr.load_config('r50')   # a shipped trainer recipe (jax_resnet.config)
    summary = jr.train_and_evaluate(config, 'runs/r50')   # the trainer
    model, variables = jr.load_pretrained('resnet50.tv2_in1k')   # published weights
"""

from jax_resnet import config, false_alarms, finetune
from jax_resnet import nnx as nnx  # jax_resnet.nnx: the same models as Flax NNX modules
from jax_resnet.blocks import (BasicBlock, BottleneckBlock, PreActBasicBlock,
                               PreActBottleneckBlock)
from jax_resnet.config import base_config, load_config, train_and_evaluate
from jax_resnet.models import ResNet, ResNetBase, make_layers
from jax_resnet.model_facts import FeatureLevel, ModelInfo, feature_info, model_info
from jax_resnet.registry import create_model, list_models, model_defaults, register_model
from jax_resnet.scan import stack_blocks, unstack_blocks
from jax_resnet.sharing import push_to_hub, save_pretrained
from jax_resnet.utils import count_params
from jax_resnet.video import VideoBasicBlock, VideoResNet
from jax_resnet.weights.pretrained import load_pretrained
from jax_resnet import export as export  # jax_resnet.export(...): the module is callable

__version__ = '0.1.0'

false_alarms.install()

__all__ = [
    'BasicBlock', 'BottleneckBlock', 'FeatureLevel', 'ModelInfo', 'PreActBasicBlock',
    'PreActBottleneckBlock', 'ResNet', 'ResNetBase', 'VideoBasicBlock', 'VideoResNet',
    'base_config', 'config', 'count_params', 'create_model', 'feature_info', 'finetune',
    'list_models', 'load_config', 'load_pretrained', 'make_layers', 'model_defaults', 'model_info',
    'push_to_hub', 'save_pretrained', 'stack_blocks', 'train_and_evaluate', 'unstack_blocks',
    'register_model',
]
