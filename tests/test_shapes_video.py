"""Output shapes and finite outputs: the 3D video nets (r3d, mc3, r(2+1)d)."""

import pytest

from forward_check import check_forward, models_in


@pytest.mark.parametrize('name', models_in('video'))
def test_forward_shape_and_finite(name):
  check_forward(name)
