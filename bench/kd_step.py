"""The KD training step of `mcompress_distill_bench throughput`, written as a
plain PyTorch loop: same TorchScript models, batch, loss, optimizer and
thread count, so the difference is the loop's language and nothing else.
Prints `samples_per_second N`."""
import argparse
import time

import torch
import torch.nn.functional as F

parser = argparse.ArgumentParser()
for name in ("teacher", "student"):
    parser.add_argument("--" + name, required=True)
for name, default in (("threads", 2), ("steps", 200), ("warmup", 10), ("batch", 128), ("samples", 8192)):
    parser.add_argument("--" + name, type=int, default=default)
args = parser.parse_args()

torch.set_num_threads(args.threads)
teacher = torch.jit.load(args.teacher)
student = torch.jit.load(args.student)
teacher.eval()
student.train()
generator = torch.Generator().manual_seed(0)
inputs = torch.randn(args.samples, 1, 28, 28, generator=generator)
targets = torch.randint(0, 10, (args.samples,), generator=generator)
optimizer = torch.optim.Adam(student.parameters(), lr=0.001)
temperature, alpha = 4.0, 0.9


def batches():
    while True:
        order = torch.randperm(args.samples, generator=generator)
        for start in range(0, args.samples, args.batch):
            index = order[start:start + args.batch]
            yield inputs.index_select(0, index), targets.index_select(0, index)


def step(x, y):
    with torch.no_grad():
        t = teacher(x)
    s = student(x)
    log_p_t = F.log_softmax(t / temperature, dim=1)
    log_p_s = F.log_softmax(s / temperature, dim=1)
    kd = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean() * temperature * temperature
    loss = alpha * kd + (1 - alpha) * F.cross_entropy(s, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item(), x.size(0)


data = batches()
for _ in range(args.warmup):
    step(*next(data))
samples = 0
start = time.perf_counter()
for _ in range(args.steps):
    samples += step(*next(data))[1]
elapsed = time.perf_counter() - start
print(f"samples_per_second {samples / elapsed:.1f}")
