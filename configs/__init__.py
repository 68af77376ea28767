"""The trainer's recipes, one file each (`get_config()` returns a ConfigDict).

Written here and packaged from here as `jax_resnet.recipes` (pyproject.toml maps this folder),
so `jax_resnet.load_config('r50')` and `jax-resnet train --config r50` find them in a wheel.
"""
