"""User model + data set + loss from ``.py`` files, trained by ``eoskit run``, checked by hand.

Usage (about a minute on one core)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/user_components.py runs/user-check

It trains ``examples/user/model.py:ResidualNet`` (LayerNorm residual blocks) on
``examples/user/data.py:teacher`` with ``examples/user/loss.py:log_cosh`` and
prints, as markdown: the step-0 sharpness against a dense Hessian built by double
backward on a plain closure; 20 losses against a hand-written PyTorch GD loop; a
SIGKILL mid-run and ``--resume`` against an uninterrupted run; and the exit code of
``--resume`` and ``report`` after the model file changed.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.func import functional_call

from eoskit import store

USER = Path(__file__).resolve().parent.parent / "examples" / "user"
EOSKIT = [sys.executable, "-m", "eoskit"]


def _module(folder: Path, name: str):
    spec = importlib.util.spec_from_file_location(f"check_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(folder: Path, n_train: int, width: int, depth: int, steps: int, lr: float) -> list:
    return ["--model", f"{folder}/model.py:ResidualNet", "--dataset", f"{folder}/data.py:teacher",
            "--loss", f"{folder}/loss.py:log_cosh", "--n-train", str(n_train), "--n-test", "0",
            "--width", str(width), "--depth", str(depth), "--seed", "3", "--data-seed", "5",
            "--lr", str(lr), "--steps", str(steps), "--dtype", "float64",
            "--sharpness-every", "2", "--eig-tol", "1e-7", "--checkpoint-every", "10"]


def _dense_top(loss_of, x: torch.Tensor) -> float:
    """Top eigenvalue of the Hessian by reverse-over-reverse columns (not torch.func.hessian:
    its forward-over-reverse is wrong through native layer_norm in torch 2.13)."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_of(x), x, create_graph=True)
    cols = [torch.autograd.grad(g[i], x, retain_graph=True)[0] for i in range(len(x))]
    return float(torch.linalg.eigvalsh(torch.stack(cols, 1))[-1])


def check_against_plain_pytorch(out: Path, n_train=40, width=8, steps=20, lr=0.2) -> list[str]:
    subprocess.run(EOSKIT + ["run", *_args(USER, n_train, width, 1, steps, lr), "--out",
                             str(out)], check=True, capture_output=True)
    data = _module(USER, "data").teacher(n_train=n_train, n_test=0, seed=5)
    torch.manual_seed(3)
    model = _module(USER, "model").ResidualNet((6,), 2, width=width, depth=1).double()
    loss_fn = _module(USER, "loss").log_cosh
    x, y = data["x_train"].double(), data["y_train"].double()
    names, shapes = zip(*[(n, p.shape) for n, p in model.named_parameters()], strict=True)
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(flat):
        parts = torch.split(flat, [math.prod(s) for s in shapes])
        params = {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}
        return loss_fn(functional_call(model, params, (x,)), y)

    dense = _dense_top(loss_of, flat0)
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        losses.append(float(loss.detach()))
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p -= lr * g
    rows = store.read_csv(out / "metrics.csv")
    sharp = float(rows[0]["sharpness"])
    worst = max(abs(float(r["loss"]) - ref) / ref for r, ref in zip(rows, losses, strict=True))
    return [f"| step-0 sharpness (d = {len(flat0)}) | eoskit {sharp!r} | dense {dense!r} | "
            f"rel. diff {abs(sharp - dense) / dense:.1e} |",
            f"| {steps} GD losses vs plain PyTorch | | | max rel. diff {worst:.1e} |"]


def _rows(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in store.read_csv(path)]


def check_kill_and_resume(out: Path, kill_at=57, steps=120) -> list[str]:
    args = _args(USER, 200, 16, 2, steps, 0.5)
    subprocess.run(EOSKIT + ["run", *args, "--out", str(out / "ref")], check=True,
                   capture_output=True)
    proc = subprocess.Popen(EOSKIT + ["run", *args, "--out", str(out / "killed")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "killed" / "metrics.csv"
    while proc.poll() is None:
        if metrics.exists() and len(store.read_csv(metrics)) >= kill_at:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    seen = len(store.read_csv(metrics))
    r = subprocess.run(EOSKIT + ["run", "--resume", str(out / "killed")], capture_output=True)
    same = _rows(out / "ref" / "metrics.csv") == _rows(metrics)
    return [f"| SIGKILL at row {seen} of {steps} (rc {proc.returncode}), `--resume` | rc "
            f"{r.returncode} | | rows identical to the uninterrupted run: {same} |"]


def check_changed_file(out: Path) -> list[str]:
    copy = out / "files"
    shutil.copytree(USER, copy)
    run = out / "run"
    subprocess.run(EOSKIT + ["run", *_args(copy, 40, 8, 1, 6, 0.2), "--out", str(run)],
                   check=True, capture_output=True)
    store.write_json(run / "summary.json", {"status": "running", "steps": 0})  # as if killed
    with open(copy / "model.py", "a") as f:
        f.write("\n# edited after the run started\n")
    lines = []
    for cmd in (["run", "--resume", str(run)], ["report", str(run)]):
        r = subprocess.run(EOSKIT + cmd, capture_output=True, text=True)
        lines.append(f"| model file edited, then `eoskit {cmd[0]}{' --resume' * (cmd[0] == 'run')}`"
                     f" | exit {r.returncode} | | {r.stderr.strip()[:90]}… |")
    return lines


def main(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    lines = ["| check | result | reference | verdict |", "|---|---|---|---|"]
    lines += check_against_plain_pytorch(out / "plain")
    lines += check_kill_and_resume(out / "kill")
    lines += check_changed_file(out / "changed")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/user-check"))
