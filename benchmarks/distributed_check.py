"""The must-show checks of distributed runs (benchmarks/results/distributed.md).

    PYTHONPATH=src nice -n 10 python benchmarks/distributed_check.py /tmp/dist_results

(a) the demo run (fc-tanh 784-200-200-10, 2,000 mnist-5k images, float64, 100
steps, sharpness every 5, diagnostics every 25) in one process and with
``--nproc 2``: the largest relative difference in every column of metrics.csv
and diagnostics.csv; (b) the same through ``torchrun --nproc-per-node 2``
(``TORCHRUN``, default: next to this Python); (c) rank 1 SIGKILLed mid-run:
the time until the run ends, its status and message, then ``--resume`` with
N = 1 and N = 2 compared with the uninterrupted run. Writes ``results.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from eoskit import store

DEMO = ["--dataset", "mnist-5k", "--n-train", "2000", "--model", "fc-tanh", "--width", "200",
        "--depth", "2", "--dtype", "float64", "--steps", "100", "--sharpness-every", "5",
        "--diagnose-every", "25", "--checkpoint-every", "20", "--no-progress"]


def max_rel_diffs(a: Path, b: Path, name: str) -> dict:
    """Largest |x - y| / max(|x|, |y|) per numeric column (equal rows: 0)."""
    ra, rb = store.read_rows(a / name), store.read_rows(b / name)
    if len(ra) != len(rb):
        return {"_rows": [len(ra), len(rb)]}
    out: dict = {}
    for x, y in zip(ra, rb, strict=True):
        for k in x:
            u, v = x[k], y[k]
            if k == "wall_time" or not isinstance(u, (int, float)) or isinstance(u, bool):
                if u != v and k != "wall_time":
                    out[k] = "differs"
                continue
            if u is None or v is None or (math.isnan(u) and math.isnan(v)):
                continue
            d = 0.0 if u == v else abs(u - v) / max(abs(u), abs(v))
            if out.get(k) != "differs":
                out[k] = max(out.get(k, 0.0), d)
    return out


def _run(cmd: list[str], log: Path, env=None) -> tuple[int, float]:
    t0 = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    return rc, time.monotonic() - t0


def _rank_pid(parent: int, rank: int) -> int:
    for _ in range(2000):
        for d in Path("/proc").iterdir():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                env = (d / "environ").read_bytes().split(b"\0") if ppid == parent else []
            except (OSError, ValueError, IndexError):
                continue
            if f"RANK={rank}".encode() in env:
                return int(d.name)
        time.sleep(0.05)
    raise RuntimeError(f"no rank {rank} under {parent}")


def _kill_mid_run(root: Path, eoskit: list[str]) -> dict:
    run = root / "killed"
    proc = subprocess.Popen([*eoskit, "run", *DEMO, "--out", str(run), "--nproc", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = _rank_pid(proc.pid, 1)
    while proc.poll() is None:
        if (run / "metrics.csv").exists() and len(store.read_csv(run / "metrics.csv")) >= 50:
            break
        time.sleep(0.01)
    rows_at_kill = len(store.read_csv(run / "metrics.csv"))
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=300)
    ended = time.monotonic() - t0
    summary = store.read_json(run / "summary.json")
    out = {"rows_at_kill": rows_at_kill, "ended_after_s": ended, "returncode": proc.returncode,
           "status": summary["status"], "error": summary.get("error"), "stderr": err.strip()}
    for n in (1, 2):
        copy = root / f"killed_resume_{n}"
        shutil.copytree(run, copy)
        rc, secs = _run([*eoskit, "run", "--resume", str(copy), "--nproc", str(n),
                         "--no-progress"], root / f"resume_{n}.log",
                        env={**os.environ, "OMP_NUM_THREADS": "1"})
        out[f"resume_{n}"] = {"returncode": rc, "seconds": secs,
                              "status": store.read_json(copy / "summary.json")["status"]}
    return out


def main(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    eoskit = [sys.executable, "-m", "eoskit"]
    torchrun = os.environ.get("TORCHRUN", str(Path(sys.executable).with_name("torchrun")))
    res: dict = {"command_base": " ".join(["eoskit run", *DEMO])}
    for name, cmd in (("one", [*eoskit, "run", *DEMO, "--out", str(root / "one")]),
                      ("nproc2", [*eoskit, "run", *DEMO, "--out", str(root / "nproc2"),
                                  "--nproc", "2"]),
                      ("torchrun", [torchrun, "--nproc-per-node", "2", "-m", "eoskit", "run",
                                    *DEMO, "--out", str(root / "torchrun")])):
        if not (root / name / "summary.json").exists():
            rc, secs = _run(cmd, root / f"{name}.log", env={**os.environ, "OMP_NUM_THREADS": "1"})
            res[name] = {"returncode": rc, "seconds": secs, "command": " ".join(cmd)}
            print(name, rc, f"{secs:.1f} s", flush=True)
    for name in ("nproc2", "torchrun"):
        res[f"diff_{name}"] = {f: max_rel_diffs(root / "one", root / name, f)
                               for f in ("metrics.csv", "diagnostics.csv")}
    res["kill"] = _kill_mid_run(root, eoskit)
    for n in (1, 2):
        res["kill"][f"diff_resume_{n}"] = {
            f: max_rel_diffs(root / "one", root / f"killed_resume_{n}", f)
            for f in ("metrics.csv", "diagnostics.csv")}
    (root / "results.json").write_text(json.dumps(res, indent=1, default=str))
    print(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/dist_results"))
