"""Torch-only ResNet-50 bf16 train/eval step timing on a GPU, channels_last and contiguous
(mean of 20 steps after 5). It showed that torch timed inside a JAX process ran 3.6x slow
(docs/benchmarks.md); `--vs torch` now runs torch in a child process, so scripts/gpu_check.sh
no longer calls this. Kept for the contiguous-layout rows of that table.

    python3 scripts/torch_r50_check.py
"""
import sys, time
import torch, torchvision
torch.backends.cudnn.benchmark = True
for fmt in (torch.channels_last, torch.contiguous_format):
  for mode in ('train', 'eval'):
    m = torchvision.models.resnet50().cuda().to(memory_format=fmt).train(mode == 'train')
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(256, 3, 224, 224, device='cuda').to(memory_format=fmt)
    y = torch.randint(0, 1000, (256,), device='cuda')
    def step():
      with torch.autocast('cuda', dtype=torch.bfloat16):
        if mode == 'eval':
          with torch.no_grad():
            return m(x)
        loss = torch.nn.functional.cross_entropy(m(x), y)
      opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    for _ in range(5): step()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(20): step()
    torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 20
    print(f'torch-only resnet50 {mode} {fmt}: {256 / dt:.0f} img/s ({1e3 * dt:.1f} ms/step)', flush=True)
