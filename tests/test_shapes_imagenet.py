"""Output shapes and finite outputs: the ImageNet ResNets and their plain twins."""

import pytest

from forward_check import check_forward, models_in


@pytest.mark.parametrize('name', models_in('imagenet'))
def test_forward_shape_and_finite(name):
  check_forward(name)
