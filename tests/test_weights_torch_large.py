"""Weights against torchvision for the large models (skipped without torch): logits and stage
features within 1e-4 relative in float32, exact round trip. Split from test_weights_torch.py to
keep each file under a minute on a small CPU."""

import pytest

pytest.importorskip('torch')
pytest.importorskip('torchvision')

from weights_torch_check import check_model  # noqa: E402  skipped without torch

pytestmark = pytest.mark.slow  # where CI runs the slow tests; the smaller models run by default

LARGE = ('resnet101', 'resnet152', 'wide_resnet50_2', 'wide_resnet101_2', 'resnext101_32x8d',
         'resnext101_64x4d')


@pytest.mark.parametrize('name', LARGE)
def test_logits_and_stages_match_torchvision(name):
  errors = check_model(name)
  print(name, {k: f'{v:.2e}' for k, v in errors.items()})
