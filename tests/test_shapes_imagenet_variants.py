"""Output shapes and finite outputs: pre-activation, ResNeXt and Wide ResNet ImageNet nets."""

import pytest

from forward_check import check_forward, models_in


@pytest.mark.parametrize('name', models_in('imagenet_variants'))
def test_forward_shape_and_finite(name):
  check_forward(name)
