"""Real filesystems for the storage-fault tests: a tmpfs mounted at a folder, unmounted after.
Mounting needs root; elsewhere the test is skipped with the reason (the faults are tested
where the tests run as root, as in CI)."""

import contextlib
import subprocess

import pytest


def mount_or_skip(args, target):
  """`mount ARGS TARGET`, or skip the test naming why it could not mount."""
  result = subprocess.run(['mount', *args, str(target)], capture_output=True, text=True)
  if result.returncode:
    pytest.skip(f'mount {" ".join(args)} is not permitted here ({result.stderr.strip()}); '
                'real storage faults are tested where the tests run as root')


@contextlib.contextmanager
def tmpfs(target, options):
  """A tmpfs mounted at `target` (created) with `options` (e.g. 'size=1m') for the block."""
  target.mkdir(parents=True, exist_ok=True)
  mount_or_skip(['-t', 'tmpfs', '-o', options, 'tmpfs'], target)
  try:
    yield target
  finally:
    subprocess.run(['umount', '-l', str(target)], check=False)
