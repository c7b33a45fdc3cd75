"""How a user objective's failures reach the user: :class:`ObjectiveError`, one line
naming the objective and the step, and :func:`checked_callable`, which turns whatever
a user callable does wrong into one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor


class ObjectiveError(ValueError):
    """An objective spec, a start vector, or an objective that failed while in use.

    ``objective`` names the objective and ``step`` the stage where it failed (a GD
    step, a Newton iteration, …); whoever knows either adds it on the way up with
    :meth:`where` (an outer stage after the inner one), so the message ends up on
    one line naming both.

    >>> err = ObjectiveError("it raised KeyError").where(step="Newton iteration 3")
    >>> print(err.where(objective="my.py:loss", step="the orbit at lr=1.02"))
    objective my.py:loss failed at Newton iteration 3, in the orbit at lr=1.02: it raised KeyError
    """

    def __init__(self, message: str, *, objective: str | None = None, step: str | None = None):
        super().__init__(message)
        self.message = " ".join(str(message).split())  # one line, whatever the cause said
        self.objective, self.step = objective, step

    def where(self, *, objective: str | None = None, step: str | None = None) -> ObjectiveError:
        """This error naming ``objective`` (unless it names one) and ``step`` (after its own)."""
        self.objective = self.objective or objective
        if step is not None:
            self.step = step if self.step is None else f"{self.step}, in {step}"
        return self

    def __str__(self) -> str:
        if self.objective is None and self.step is None:
            return self.message
        head = f"objective {self.objective}" if self.objective else "the objective"
        return f"{head} failed{f' at {self.step}' if self.step else ''}: {self.message}"


@contextmanager
def at_step(step: str | None, *, objective: str | None = None) -> Iterator[None]:
    """Name ``step`` (and ``objective``) in any :class:`ObjectiveError` raised inside,
    where the error does not name them already.

    >>> try:
    ...     with at_step("the outer stage"), at_step("Newton iteration 2"):
    ...         raise ObjectiveError("its gradient is not finite", objective="f")
    ... except ObjectiveError as err:
    ...     print(err)
    objective f failed at Newton iteration 2, in the outer stage: its gradient is not finite
    """
    try:
        yield
    except ObjectiveError as err:
        raise err.where(objective=objective, step=step) from None


def checked_callable(f: Callable[[Tensor], Tensor], name: str) -> Callable[[Tensor], Tensor]:
    """``f`` as a scalar function whose failures are :class:`ObjectiveError` naming ``name``.

    User code fails in its own words deep inside a solver; here it fails as
    "objective NAME failed: …": an exception it raised, a value that is not a
    scalar tensor, or a value cut off from ``x``'s autograd graph (detached,
    or not computed from ``x``), whose gradient cannot be taken. Non-finite
    values pass: a line search may probe them; the callers check finiteness
    where an iterate is accepted.

    >>> loss = checked_callable(lambda x: (x ** 2).sum().detach(), "demo")
    >>> try:
    ...     loss(torch.ones(2, dtype=torch.float64).requires_grad_(True))
    ... except ObjectiveError as err:
    ...     print(err)
    objective demo failed: its value is detached from x (no autograd graph), so it has no gradient
    """
    def scalar(z: Tensor) -> Tensor:
        try:
            val = f(z)
        except ObjectiveError as err:
            raise err.where(objective=name) from None
        except Exception as err:  # noqa: BLE001 - user code: report, do not trace
            raise ObjectiveError(f"it raised {type(err).__name__}: {err}",
                                 objective=name) from err
        if not isinstance(val, Tensor) or val.numel() != 1:
            shape = f" of shape {tuple(val.shape)}" if isinstance(val, Tensor) else ""
            raise ObjectiveError(f"it returned {type(val).__name__}{shape}, not a scalar tensor",
                                 objective=name)
        if torch.is_grad_enabled() and z.requires_grad and not val.requires_grad:
            raise ObjectiveError("its value is detached from x (no autograd graph), so it has "
                                 "no gradient", objective=name)
        return val.reshape(())

    return scalar
