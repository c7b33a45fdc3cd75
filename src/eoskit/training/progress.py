"""The training progress bar: step, loss and the latest measured sharpness.

Example:
    >>> with progress_bar(total=3, start=0, enabled=False) as update:
    ...     update(1, 0.5, None)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Update = Callable[[int, float, "float | None"], None]  # (step, loss, sharpness or None)


@contextmanager
def progress_bar(total: int, start: int, enabled: bool, label: str = "train"
                 ) -> Iterator[Update]:
    """A rich progress bar from ``start`` to ``total`` steps; a no-op when not ``enabled``.

    The sharpness shown is the last one measured (steps between measurements
    pass ``None``).
    """
    if not enabled:
        yield lambda *a: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    last = {"sharp": None}
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  transient=False, console=Console(stderr=True)) as prog:
        # on stderr: stdout carries the results (--json)
        task = prog.add_task("train", total=total, completed=start, info="")

        def update(step, loss, sharp):
            if sharp is not None:
                last["sharp"] = sharp
            sh = "—" if last["sharp"] is None else f"{last['sharp']:.4g}"
            prog.update(task, completed=step, info=f"loss {loss:.4g}  sharpness {sh}")

        yield update
