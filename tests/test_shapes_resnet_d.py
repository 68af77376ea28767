"""Output shapes and finite outputs: ResNet-D (deep stem, average-pool shortcut) and resnet26."""

import pytest

from forward_check import check_forward, models_in

# The small nets in every environment; the deep ones where CI runs the slow tests.
FAST = ('resnet18d',)


@pytest.mark.parametrize('name', [
    n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in models_in('resnet_d')])
def test_forward_shape_and_finite(name):
  check_forward(name)
