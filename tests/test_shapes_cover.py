"""The per-family shape tests together cover the whole registry."""

import jax_resnet as jr
from forward_check import models_in


def test_shape_test_groups_cover_every_registered_model():
  groups = [models_in(g) for g in ('imagenet', 'imagenet_variants', 'cifar', 'video',
                                    'resnet_d', 'bit')]
  covered = sorted(n for g in groups for n in g)
  assert covered == jr.list_models()
  assert len(covered) == len(set(covered)) == 54
  assert [len(g) for g in groups] == [8, 11, 18, 3, 8, 6]
