"""Output shapes and finite outputs: the paper's CIFAR nets, their plain twins, pre-activation
CIFAR nets and Wide ResNets."""

import pytest

from forward_check import check_forward, models_in

# A forward of every registered model of the family: CI runs it in its newest environment
# only (pytest -m "not slow" elsewhere, where test_shapes_imagenet.py samples the families).
pytestmark = pytest.mark.slow


@pytest.mark.parametrize('name', models_in('cifar'))
def test_forward_shape_and_finite(name):
  check_forward(name)
