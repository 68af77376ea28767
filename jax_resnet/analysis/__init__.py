"""Research tools that measure the theory of residual learning.

Each command of `python -m jax_resnet.analysis <command> ... --out DIR` is one module here whose
measuring function is importable for notebooks (no plotting or files involved):

    from jax_resnet import analysis
    subject = analysis.init_subject('resnet20')          # or analysis.workdir_subject(workdir)
    images, labels = analysis.eval_arrays(subject.data, 128)
    analysis.gradient_norms(subject, images, labels)     # gradflow
    analysis.jacobian_analysis(subject, images[:1])      # jacobian
    analysis.lesion_study(subject)                       # lesion (a trained subject)
    analysis.path_gradients(subject, images, labels)     # paths
    analysis.train_degradation(['plain20', 'resnet20'], 'runs/degradation')   # degradation
    analysis.ode_convergence('preact_resnet110')         # ode

Each module's `write_report(result, out)` turns a result into report.md and PNGs.
"""

from jax_resnet.analysis.common import (BlockInfo, Subject, data_spec, eval_arrays,
                                        find_blocks, init_subject, workdir_subject)
from jax_resnet.analysis.degradation import train_degradation
from jax_resnet.analysis.gradflow import gradient_norms
from jax_resnet.analysis.jacobian import jacobian_analysis, spectral_norm
from jax_resnet.analysis.lesion import lesion_study
from jax_resnet.analysis.ode import ode_convergence
from jax_resnet.analysis.paths import path_counts, path_gradients

__all__ = [
    'BlockInfo', 'Subject', 'data_spec', 'eval_arrays', 'find_blocks', 'gradient_norms',
    'init_subject', 'jacobian_analysis', 'lesion_study', 'ode_convergence', 'path_counts',
    'path_gradients', 'spectral_norm', 'train_degradation', 'workdir_subject',
]
