"""The embedded default: a CIFAR-style ResNet-20 on scikit-learn's handwritten digits.

Command:   pip install -e . && python train.py
Data:      none to download: the 1,797 8x8 digits that ship inside scikit-learn, upsampled to
           16x16, split 1,437 train / 360 test with a fixed seed.
Expected:  test top-1 >= 0.97 in under 3 minutes on a 2-core CPU, compilation included
           (measured: see docs/training.md).

Every key the trainer reads is defined here with a one-line comment; recipes import this file
and override. The config is locked: a misspelt key (`--config.learning_rat=...`) is an error.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  # Model
  c.model = 'resnet20'                # a name from jax_resnet.list_models()
  c.num_classes = 10                  # head size; must match the dataset's classes
  c.shortcut = ''                     # '' keeps the model's default; else 'A' | 'B' | 'C'
  c.zero_init_residual = False        # zero the last BN/conv of each residual branch
  c.drop_path_rate = 0.0              # stochastic depth rate of the last block (linear rule)
  c.dropout_rate = 0.0                # Wide ResNet dropout between convolutions
  c.dtype = 'float32'                 # compute dtype: 'float32' | 'bfloat16' (params stay fp32)
  #                                     | 'float64' (params too; checks at round-off)
  c.scan_blocks = False               # nn.scan over identical blocks: compile time flat in depth
  c.init_from = ''                    # fine-tune: weights file (.safetensors/.pth/.npz) or workdir
  c.init_reinit_head = False          # fine-tune: fresh head (num_classes differs from the file)
  c.freeze_batch_norm = False         # BN uses its running statistics in training too
  c.conv1x1 = 'auto'                  # 'conv' | 'dot' (1x1 convs as matrix products, same
                                      # weights) | 'auto': dot on CPU, where resnet50's
                                      # forward+backward measured 1.8x faster; conv elsewhere
  c.stem_conv = 'auto'                # ImageNet 7x7/2 stem: 'conv' | 'pad_channels' |
                                      # 'space_to_depth' (same weights) | 'auto': per backend

  # Data
  c.dataset = 'digits'                # 'digits' (embedded) | 'cifar10' | 'cifar100' |
  #                                     'imagenet2012' | 'synthetic'
  c.data_dir = ''                     # TFDS data directory ('' = TFDS default)
  c.image_size = 16                   # train/eval resolution fed to the model
  c.train_split = 'train'             # split trained on
  c.eval_split = 'test'               # split evaluated on
  c.holdout_size = 0                  # >0: hold out this many train examples as the eval set
  c.augment = 'none'                  # 'none' | 'pad_crop_flip' (CIFAR) | 'inception' (ImageNet)
  c.crop_padding = 4                  # pixels of zero padding before the random crop
  c.normalize = 'per_pixel_mean'      # 'per_pixel_mean' (He et al. 2015) | 'mean_std' | 'none'
  c.num_workers = 0                   # grain worker processes for decoding/augmentation
  c.prefetch_batches = 2              # batches prefetched to the devices
  c.device_data = False               # small datasets: keep the train set on the devices and
  #                                     shuffle/crop/flip inside the jitted step
  c.steps_per_dispatch = 1            # device_data: train steps per host dispatch (lax.scan)

  # Optimisation
  c.batch_size = 128                  # global batch over all devices and hosts
  c.eval_batch_size = 512             # global eval batch (the last one is padded and masked)
  c.num_epochs = 30.0                 # training length in epochs, used when num_train_steps < 0
  c.num_train_steps = -1              # training length in steps (overrides num_epochs if >= 0)
  c.optimizer = 'sgd'                 # 'sgd' | 'adamw' | 'lars'
  c.momentum = 0.9                    # SGD/LARS momentum (AdamW b1)
  c.nesterov = False                  # Nesterov momentum for SGD
  c.learning_rate = 0.1               # peak learning rate (times batch_size/lr_batch_base if set)
  c.lr_batch_base = 0                 # >0: scale learning_rate by batch_size / lr_batch_base
  c.lr_schedule = 'cosine'            # 'constant' | 'step' | 'cosine'
  c.lr_boundaries = (0.5, 0.75)       # 'step': decay points, as fractions of training if < 1
  #                                     else as step numbers
  c.lr_decay_factor = 0.1             # 'step': multiply the lr by this at each boundary
  c.warmup_epochs = 1.0               # linear warmup from 0 to the peak lr
  c.warmup_lr = 0.0                   # >0: hold this lr until train error < warmup_until_error
  c.warmup_until_error = 0.8          # He et al. 2015 ResNet-110 warmup threshold
  c.weight_decay = 1e-4               # weight decay coefficient
  c.weight_decay_mode = 'l2'          # 'l2' (added to the loss gradient) | 'decoupled' (AdamW)
  c.decay_bn_and_bias = True          # False: no weight decay on BN parameters and biases
  c.label_smoothing = 0.0             # label smoothing of the cross-entropy
  c.ema_decay = 0.0                   # >0: keep an exponential moving average of the weights
  c.skip_nonfinite_updates = False    # True: skip steps whose loss/gradients are not finite
  #                                     (counted in metrics); False: stop with an error

  # Parallelism
  c.parallelism = 'pmap'              # 'pmap' | 'shard_map' (jit over a 1-D device mesh)
  c.sync_batch_norm = True            # BN statistics over the global batch (cross-replica)

  # Run
  c.seed = 0                          # seeds init, data order and dropout
  c.log_every_steps = 20              # train metrics, progress bar and TensorBoard interval
  c.eval_every_steps = 0              # 0: evaluate once per epoch
  c.eval_max_batches = 0              # >0: evaluate only this many batches (benchmarks)
  c.checkpoint_every_steps = 200      # checkpoint interval (and always at the end)
  c.keep_checkpoints = 3              # checkpoints kept in the workdir
  c.progress_bar = True               # tqdm bar on process 0
  return c
