"""SIGKILL and ``--resume`` of ``eoskit flow``, compared byte for byte with an uninterrupted run.

For each case the same ``eoskit flow`` command runs once uninterrupted and once killed
(SIGKILL) as soon as a checkpoint at or after ``--kill-after`` exists (rows after it
are on disk too, so the resume must cut them), then ``eoskit flow --resume``.
``flows.csv`` and ``gd_steps.csv`` must be byte-identical; ``summary.json`` must be
equal but for its ``cost`` (seconds). The objective is a 3-6-1 tanh net on 8 points
(31 parameters, float64), where at η = 1.2 with ``--neigs 2`` the central flow
constrains two directions.

Run: ``PYTHONPATH=src python benchmarks/flow_kill_resume.py [--out benchmarks/results/rundir.md]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NET = '''import torch

_gen = torch.Generator().manual_seed(0)
X = torch.randn(8, 3, generator=_gen, dtype=torch.float64)
Y = torch.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2]


def loss(x):
    h = torch.tanh(X @ x[:18].reshape(6, 3).T + x[18:24])
    return 0.5 * ((h @ x[24:30] + x[-1] - Y) ** 2).mean()
'''
CASES = {  # name: (flows, steps, kill once a checkpoint at this step exists)
    "GD + gradient flow": ("gradient", 300, 150),
    "GD + central flow (2 constrained)": ("central", 120, 60),
}


def _flow(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "eoskit", "flow", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _killed(args: list[str], out: Path, kill_after: int) -> int:
    """Start the run, SIGKILL it once a checkpoint ≥ ``kill_after`` exists; its step."""
    proc = _flow(args)

    def newest() -> int:
        return max((int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("ckpt-*.pt")),
                   default=-1)

    while proc.poll() is None:
        if newest() >= kill_after:
            time.sleep(0.3)  # rows after the checkpoint reach the tables too
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return newest()  # the resume starts from it
        time.sleep(0.02)
    raise RuntimeError(f"the run ended before step {kill_after} (rc {proc.returncode}): "
                       f"{proc.stderr.read()}")


def _summary(out: Path) -> dict:
    s = json.loads((out / "summary.json").read_text())
    s.pop("cost")
    return s


def run_case(work: Path, name: str, flows: str, steps: int, kill_after: int) -> dict:
    base = ["--objective", f"{work / 'net.py'}:loss", "--x0", str(work / "x0.npy"),
            "--lr", "1.2", "--neigs", "2", "--flows", flows, "--steps", str(steps),
            "--checkpoint-every", "10"]
    whole, cut = work / f"{flows}-whole", work / f"{flows}-cut"
    ref = _flow([*base, "--out", str(whole)])
    if ref.wait() != 0:
        raise RuntimeError(ref.stderr.read())
    killed_at = _killed([*base, "--out", str(cut)], cut, kill_after)
    rows_at_kill = len((cut / "flows.csv").read_text().splitlines()) - 1
    resume = _flow(["--resume", str(cut)])
    rc, err = resume.wait(), resume.stderr.read()
    same = {f: (cut / f).read_bytes() == (whole / f).read_bytes()
            for f in ("flows.csv", "gd_steps.csv")}
    rows = _csv(whole / "flows.csv")
    n_c = max((int(r["n_constrained"] or 0) for r in rows if r["flow"] == "central"),
              default=0)
    return {"case": name, "steps": steps, "checkpoint": killed_at, "rows_at_kill": rows_at_kill,
            "resume_rc": rc, "repair": "; ".join(line.removeprefix("eoskit: resume: ")
                                                 for line in err.splitlines()),
            "flows.csv": same["flows.csv"], "gd_steps.csv": same["gd_steps.csv"],
            "summary": _summary(cut) == _summary(whole), "max_constrained": n_c}


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="write the table (markdown) here")
    args = ap.parse_args()
    import numpy as np
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "net.py").write_text(NET)
        gen = torch.Generator().manual_seed(0)
        torch.randn(8, 3, generator=gen, dtype=torch.float64)  # X's draw comes first
        np.save(work / "x0.npy", (torch.randn(31, generator=gen, dtype=torch.float64)
                                  * 0.5).numpy())
        results = [run_case(work, name, *case) for name, case in CASES.items()]
    head = ("| case | steps | newest checkpoint at kill | flows.csv rows at kill | resume exit | "
            "repair note | flows.csv | gd_steps.csv | summary.json (but cost) | "
            "max n_constrained |\n|" + " --- |" * 10)
    lines = [head] + [
        f"| {r['case']} | {r['steps']} | {r['checkpoint']} | {r['rows_at_kill']} | "
        f"{r['resume_rc']} | {r['repair'] or '—'} | "
        f"{'identical' if r['flows.csv'] else 'DIFFERS'} | "
        f"{'identical' if r['gd_steps.csv'] else 'DIFFERS'} | "
        f"{'equal' if r['summary'] else 'DIFFERS'} | {r['max_constrained']} |" for r in results]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
