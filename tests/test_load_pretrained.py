"""The one loader (`jax_resnet.load_pretrained`, `jax_resnet.nnx.load_pretrained`,
`weights.loader.read_pretrained`) for every kind of source a user can have: a weight tag
(served by a loopback server), a .safetensors / .pth state dict, our .npz with and without a
tag, the Flax ImageNet example's checkpoint, our own tree saved with flax.training.checkpoints
or Orbax, and a trainer workdir (with its class names); with and without num_classes, Linen
and NNX. And `trainable`: frozen parameters and statistics bit-identical after training."""

import functools
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

import jax_resnet as jr
import jax_resnet.nnx as jrn
from jax_resnet import finetune, weights
from jax_resnet.weights import flax_imagenet, loader
from jax_resnet.weights.trees import flatten, unflatten

X = np.random.RandomState(0).normal(size=(2, 32, 32, 3)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _reference(name='resnet18', num_classes=10):
  """Variables of `name` with running statistics away from (0, 1), as numpy."""
  module = jr.create_model(name, num_classes=num_classes)
  variables = jax.jit(lambda k: module.init(k, X[:1], train=False))(jax.random.key(4))
  _, updates = jax.jit(lambda v: module.apply(v, X, train=True, mutable=['batch_stats']))(
      variables)
  return jax.device_get({'params': variables['params'], 'batch_stats': updates['batch_stats']})


def _assert_equal(got, want, skip_head=False):
  got, want = flatten(jax.device_get(got)), flatten(want)
  if skip_head:
    got = {k: v for k, v in got.items() if not k.startswith('params/head/')}
    want = {k: v for k, v in want.items() if not k.startswith('params/head/')}
  assert sorted(got) == sorted(want)
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _example_tree(variables):
  """Our resnet18 variables under the Flax ImageNet example's names."""
  ours = flatten(variables)
  return unflatten({theirs: ours[mine] for theirs, (mine, _) in
                    flax_imagenet.example_names('resnet18', 10).items()})


def _write_sources(root):
  """{kind: path} of every file kind, each holding _reference()."""
  from flax.training import checkpoints
  variables = _reference()
  paths = {}
  state_dict = weights.to_torchvision('resnet18', variables)
  import safetensors.numpy
  paths['safetensors'] = os.path.join(root, 'r18.safetensors')
  safetensors.numpy.save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()},
                              paths['safetensors'])
  torch = pytest.importorskip('torch')
  paths['torch'] = os.path.join(root, 'r18.pth')
  torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, paths['torch'])
  paths['npz'] = weights.save_npz(os.path.join(root, 'r18.npz'), variables)
  paths['flax_checkpoint'] = checkpoints.save_checkpoint(
      os.path.join(root, 'notebook'), variables, step=3)
  import orbax.checkpoint as ocp
  paths['orbax'] = os.path.join(root, 'orbax')
  checkpointer = ocp.PyTreeCheckpointer()
  checkpointer.save(paths['orbax'], variables)
  paths['flax_example'] = checkpoints.save_checkpoint(
      os.path.join(root, 'example'), _example_tree(variables), step=7)
  return paths


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
  return _write_sources(str(tmp_path_factory.mktemp('sources')))


# Each kind's reader is tested on its own elsewhere: two run by default, the rest in CI.
_IN_CI = ('torch', 'orbax', 'safetensors', 'flax_checkpoint')
KINDS = [pytest.param(kind, marks=pytest.mark.slow) if kind in _IN_CI
         else kind for kind in ('safetensors', 'torch', 'npz', 'flax_checkpoint', 'orbax',
                                'flax_example')]


@pytest.mark.parametrize('kind', KINDS)
def test_each_file_kind_loads_with_its_model_worked_out(sources, kind):
  found = loader.read_pretrained(sources[kind])
  assert found.model == 'resnet18'
  _assert_equal(found.variables, _reference())
  assert dict(found.options) == ({'padding': 'same'} if kind == 'flax_example' else {})
  # Linen, the file's head; then a fresh 3-class head over the same body.
  module, variables = jr.load_pretrained(sources[kind])
  assert (module.num_classes, module.padding) == (
      10, 'same' if kind == 'flax_example' else 'torch')
  _assert_equal(variables, _reference())
  module, fresh = jr.load_pretrained(sources[kind], num_classes=3)
  assert fresh['params']['head']['kernel'].shape == (512, 3)
  _assert_equal(fresh, _reference(), skip_head=True)
  # NNX: the same, its head a native nnx.Linear.
  model = jrn.load_pretrained(sources[kind], rngs=nnx.Rngs(0), num_classes=3)
  assert isinstance(model.head, nnx.Linear) and model.head.out_features == 3
  _assert_equal(jrn.to_linen(model), _reference(), skip_head=True)
  kept = jrn.load_pretrained(sources[kind], rngs=nnx.Rngs(0))
  _assert_equal(jrn.to_linen(kept), _reference())


def test_logits_of_the_loaded_models_are_the_reference_ones(sources):
  variables = _reference()
  expected = jr.create_model('resnet18', num_classes=10).apply(variables, X, train=False)
  module, loaded = jr.load_pretrained(sources['safetensors'])
  np.testing.assert_array_equal(module.apply(loaded, X, train=False), expected)
  model = jrn.load_pretrained(sources['npz'], rngs=nnx.Rngs(0))
  model.eval()
  np.testing.assert_array_equal(model(X), expected)
  # The example's checkpoint is the same network with XLA's 'SAME' padding.
  module, loaded = jr.load_pretrained(sources['flax_example'])
  same = jr.create_model('resnet18', num_classes=10, padding='same')
  np.testing.assert_array_equal(module.apply(loaded, X, train=False),
                                same.apply(variables, X, train=False))


def test_a_source_that_does_not_say_its_model_asks_for_it(tmp_path):
  # resnet20 and plain20 hold the same arrays: no guess, one line asking for model=.
  path = weights.save_npz(tmp_path / 'r20.npz', _reference('resnet20'))
  with pytest.raises(loader.ModelNotKnownError) as error:
    jr.load_pretrained(path)
  assert str(error.value) == (
      f'{path} does not say which model it holds (no weight tag, and its arrays fit no single '
      "registered model); pass model='NAME' (a name from jax_resnet.list_models()).")
  module, variables = jr.load_pretrained(path, 'plain20')
  assert not module.residual
  # A tagged file says it, and a model= that contradicts it is refused.
  tagged = weights.save_npz(tmp_path / 'r18.npz', _reference('resnet18', 1000),
                            tag='resnet18.a1_in1k')
  assert loader.read_pretrained(tagged).tag.name == 'resnet18.a1_in1k'
  with pytest.raises(weights.WeightsMismatchError) as error:
    jr.load_pretrained(tagged, 'resnet34')
  assert str(error.value) == (f"{tagged} holds resnet18 weights, not resnet34; pass "
                              "model='resnet18' (or leave it out).")
  with pytest.raises(loader.UnknownSourceError) as error:
    jr.load_pretrained('resnet50.tv3_in1k')
  assert str(error.value).startswith('resnet50.tv3_in1k is neither a file or directory nor a '
                                     'weight tag. Did you mean resnet50.tv_in1k')
  # The flax checkpoint of our own tree also loads through weights.load (no longer refused as
  # "no counterpart in the Flax ImageNet example").
  from flax.training import checkpoints
  saved = checkpoints.save_checkpoint(str(tmp_path / 'ck'), _reference('resnet20'), step=1)
  _assert_equal(weights.load('resnet20', saved), _reference('resnet20'))


def test_a_tag_served_by_the_loopback_server_loads_in_linen_and_nnx(tmp_path, monkeypatch):
  from test_pretrained import TIMM_PATH, _safetensors, serve
  from weights_server import WeightsServer
  timm = pytest.importorskip('timm')
  from jax_resnet.weights import download
  for name in ('HF_HUB_OFFLINE', download.OFFLINE_ENV, 'HF_HUB_CACHE', 'HF_TOKEN'):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf'))
  monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / 'cache'))
  monkeypatch.setenv('NO_PROXY', '127.0.0.1')
  reference = timm.create_model('resnet18d', num_classes=10).eval()
  with WeightsServer() as server:
    serve(monkeypatch, server)
    server.files[TIMM_PATH] = _safetensors(reference)
    found = loader.read_pretrained('resnet18d.ra2_in1k')
    model = jrn.load_pretrained('resnet18d.ra2_in1k', rngs=nnx.Rngs(1), num_classes=4)
  assert (found.model, found.kind, found.tag.crop) == ('resnet18d', 'tag', 288)
  assert model.head.out_features == 4
  _assert_equal(jrn.to_linen(model), found.variables, skip_head=True)
  module, variables = jr.load_pretrained('resnet18d.ra2_in1k')  # the cache: server stopped
  _assert_equal(variables, found.variables)


@pytest.mark.slow
def test_trainer_workdir_trains_only_what_is_trainable_and_loads_with_its_class_names(
    tmp_path):
  """init_from an .npz, trainable='stage3,head' with freeze_batch_norm=False: the frozen
  parameters and BatchNorm statistics are bit-identical after the steps, the trainable ones
  moved; the workdir then loads with its model options and class names."""
  from test_training import _config
  start = _reference('resnet20')
  path = weights.save_npz(tmp_path / 'start.npz', start)
  config = _config(init_from=path, trainable='stage3,head', num_train_steps=3,
                   learning_rate=0.5, weight_decay=1e-2, eval_every_steps=0,
                   checkpoint_every_steps=3, image_size=32)
  config.model_options.freeze_batch_norm = False
  workdir = str(tmp_path / 'run')
  jr.train_and_evaluate(config, workdir)
  names = [f'digit {i}' for i in range(10)]
  with open(os.path.join(workdir, loader.CLASS_NAMES_FILE), 'w') as f:
    json.dump(names, f)
  found = loader.read_pretrained(workdir)
  assert (found.model, found.kind, found.class_names) == ('resnet20', 'workdir', tuple(names))
  before, after = flatten(start), flatten(found.variables)
  frozen = [n for n in before if not n.split('/', 1)[1].startswith(('stage3', 'head'))]
  trained = [n for n in before if n not in frozen]
  assert len(frozen) == 65 and len(trained) == 32  # stage3: 18 params, 12 statistics; head 2
  for name in frozen:
    np.testing.assert_array_equal(after[name], before[name], err_msg=name)
  assert all(np.max(np.abs(after[n] - before[n])) > 0 for n in trained)
  model = jrn.load_pretrained(workdir, rngs=nnx.Rngs(0))
  assert model.head.out_features == 10


def test_trainable_labels_optimizer_and_nnx_filter_follow_one_rule():
  params = _reference('resnet20')['params']
  labels = flatten({'params': finetune.labels(params, ['stage3', 'head'])})
  assert {n for n, label in labels.items() if label == 'trainable'} == {
      n for n in labels if n.startswith(('params/stage3', 'params/head'))}
  assert set(jax.tree.leaves(finetune.labels(params, 'all'))) == {'trainable'}
  with pytest.raises(finetune.TrainableError) as error:
    finetune.labels(params, 'stage4')
  assert str(error.value) == (
      "trainable prefix 'stage4' matches no parameter; the model's modules are bn_init, "
      'conv_init, head, stage1_block1, stage1_block2, stage1_block3, stage2_block1, '
      'stage2_block2, stage2_block3, stage3_block1, stage3_block2, stage3_block3.')
  model = jrn.from_linen('resnet20', _reference('resnet20'))
  chosen = nnx.state(model, finetune.nnx_filter('stage3,head'))
  paths = {finetune.path_of(p) for p, _ in jax.tree_util.tree_flatten_with_path(
      chosen, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]}
  assert len(paths) == 20 and all(p.startswith(('params/stage3', 'head/')) for p in paths)
