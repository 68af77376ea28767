"""Output shapes and finite outputs: the paper's CIFAR nets, their plain twins, pre-activation CIFAR nets and Wide ResNets."""

import pytest

from forward_check import check_forward, models_in


@pytest.mark.parametrize('name', models_in('cifar'))
def test_forward_shape_and_finite(name):
  check_forward(name)
