# GPU workload for checkpoint/restore probes (from shared/reference/gpu/app.py), with a self-check:
# a float32 tensor of GIB GiB on the GPU is incremented once per step, so after step i every
# element must equal i (kept in host memory); a fixed random int32 tensor must keep its int64
# checksum. A GPU state restored wrong, partly, or out of step with the host state fails loudly.
#
# Output, one line per step: "<i> <max> <min> <checksum>". A mismatch prints a "MISMATCH" line
# (stdout and stderr) and exits 3. Exact while i < 2**24 (float32), i.e. for about 58 days.
import os
import sys
import time

import torch

# APP_OUT: write the step lines to this file (appending) instead of stdout, so that several
# workloads in one job keep separate logs.
out = open(os.environ["APP_OUT"], "a", buffering=1) if os.environ.get("APP_OUT") else sys.stdout
gib = float(os.environ.get("GIB", "1"))
n = int(gib * 256 * 1024 * 1024)  # float32 elements
x = torch.zeros(n, device="cuda", dtype=torch.float32)
gen = torch.Generator(device="cuda")
gen.manual_seed(1234)
# Integers, so that the checksum is exact whatever order the reduction adds them in.
y = torch.randint(0, 1 << 20, (1 << 24,), device="cuda", dtype=torch.int32, generator=gen)
reference = int(y.sum(dtype=torch.int64).item())
print(f"# pid {os.getpid()} elements {n} checksum {reference}", file=out, flush=True)

i = 0
while True:
    i += 1
    x.add_(1.0)
    torch.cuda.synchronize()
    hi, lo = x.max().item(), x.min().item()
    checksum = int(y.sum(dtype=torch.int64).item())
    if hi != i or lo != i or checksum != reference:
        msg = f"MISMATCH step {i}: max {hi} min {lo} checksum {checksum} (expected {i}, {i}, {reference})"
        print(msg, file=out, flush=True)
        print(msg, file=sys.stderr, flush=True)
        os._exit(3)
    print(i, int(hi), int(lo), checksum, file=out, flush=True)
    time.sleep(0.3)
