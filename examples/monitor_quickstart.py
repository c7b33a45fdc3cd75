"""eoskit.Monitor in ten lines of a plain PyTorch loop (the README example).

    PYTHONPATH=src python examples/monitor_quickstart.py && eoskit report runs/monitor-demo
"""

import torch
from torch.nn import functional as F

from eoskit.monitor import Monitor

torch.manual_seed(0)
X, y = torch.randn(512, 20), torch.randint(0, 3, (512,))
model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.5)
with Monitor(model, F.cross_entropy, (X, y), every=10, optimizer=opt,
             out="runs/monitor-demo") as mon:
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
        if (row := mon.step()) is not None and row["step"] % 50 == 0:
            print(f"step {row['step']}: sharpness {row['sharpness']:.3f} "
                  f"(2/lr = {row['threshold']:.1f}), {row['hvps']} HVPs")
