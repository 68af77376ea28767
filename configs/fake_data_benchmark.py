"""Training throughput of ResNet-50 on synthetic ImageNet-shaped data (no dataset needed).

Command:   python train.py --config configs/fake_data_benchmark.py --workdir runs/fake
           (on an accelerator; on a 2-core CPU use --config.batch_size=16 --config.image_size=64)
Data:      synthetic images generated in the pipeline.
Expected:  summary.json's train_images_per_second is the number to compare; accuracy is
           meaningless. Evaluation is limited to one batch.
"""

from jax_resnet.config import load_config


def get_config():
  c = load_config('r50.py', relative_to=__file__)
  c.dataset = 'synthetic'
  c.augment = 'none'
  c.normalize = 'none'
  c.num_workers = 0
  c.batch_size = 256
  c.eval_batch_size = 256
  c.num_train_steps = 200
  c.warmup_epochs = 0.0
  c.log_every_steps = 50
  c.eval_every_steps = 1_000_000
  c.eval_max_batches = 1
  c.checkpoint_every_steps = 1_000_000
  return c
