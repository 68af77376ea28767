"""Output shapes and finite outputs: the ImageNet ResNets and their plain twins."""

import pytest

from forward_check import check_forward, models_in


# The deepest nets (and plain34, beside plain18) repeat the blocks the others check; they run
# where CI runs the slow tests.
DEEP = ('resnet101', 'resnet152', 'resnet200', 'plain34')


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in models_in('imagenet')])
def test_forward_shape_and_finite(name):
  check_forward(name)
