"""displace/undo: the displaced point is x + fl(a·v) rounded once, and every bit of x comes
back, whatever the values (signed zeros, powers of two, subnormals, ties, |δ| > |x|)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import eoskit.objective.displacement as displacement
from eoskit.objective.displacement import displace, undo

BITS = {torch.float32: torch.int32, torch.float64: torch.int64, torch.bfloat16: torch.int16,
        torch.float16: torch.int16}
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, 1e-3, -7.25, 2.0 ** -126, 2.0 ** -140, 1e30]


def _values(dtype):
    finite = st.floats(allow_nan=False, allow_infinity=False, width=32 if dtype != torch.float64
                       else 64).filter(lambda f: abs(f) < 1e4)
    return st.lists(st.one_of(st.sampled_from(SPECIAL), finite), min_size=1, max_size=300)


@pytest.mark.parametrize("dtype", list(BITS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_undo_gives_every_bit_back(dtype, data):
    xs = data.draw(_values(dtype))
    vs = data.draw(st.lists(st.one_of(st.sampled_from(SPECIAL[:9]), st.floats(-10, 10)),
                            min_size=len(xs), max_size=len(xs)))
    alpha = data.draw(st.sampled_from([1.0, -1.0, 1e-3, -3.7e-4, 0.3]))
    x = torch.tensor(xs, dtype=torch.float64).to(dtype)
    x = x[torch.isfinite(x)] if x.numel() else x
    v = torch.tensor(vs[:x.numel()], dtype=torch.float64).to(dtype)
    before = x.clone()
    record = displace([x], [v], alpha)
    assert torch.equal(x, before + v * alpha)  # one rounding of the sum
    undo([x], [v], alpha, record)
    assert torch.equal(x.view(BITS[dtype]), before.view(BITS[dtype]))


def test_the_record_is_what_the_subtraction_misses_and_at_most_a_slice(monkeypatch):
    monkeypatch.setattr(displacement, "SLICE", 8)
    # slice 1: one coordinate off (−0.0 comes back +0.0); slice 2: every coordinate off
    # (signed zeros, and sums that cross into the binade above: 2 − ulp + 1.5 ulp is 2, and
    # 2 − 1.5 ulp, a tie, rounds to the even 2 − 2 ulp): kept whole
    ulp = 2.0 ** -23
    x = torch.tensor([-0.0, 0.3, 0.7, 1.5, 2.5, 3.5, 5.5, 6.5] + [-0.0] * 4 + [2 - ulp] * 4)
    v = torch.full((16,), 1e-3)
    v[12:] = 1.5 * ulp
    before = x.clone()
    record = displace([x], [v], 1.0)
    assert [(lo, None if where is None else where.tolist()) for _, lo, where, _ in record] == [
        (0, [0]), (8, None)]
    assert torch.equal(record[1][3], before[8:])
    x.sub_(v)  # the plain subtraction: exactly the recorded coordinates differ
    assert (x.view(torch.int32) != before.view(torch.int32)).nonzero().squeeze(1).tolist() == [
        0, *range(8, 16)]
    x.add_(v)
    undo([x], [v], 1.0, record)
    assert torch.equal(x.view(torch.int32), before.view(torch.int32))


def test_several_tensors_and_bad_shapes():
    a, b = torch.randn(3, 4), torch.randn(5)
    va, vb = torch.randn(3, 4), torch.randn(5)
    ca, cb = a.clone(), b.clone()
    record = displace([a, b], [va, vb], 0.1)
    assert torch.equal(a, ca + va * 0.1) and torch.equal(b, cb + vb * 0.1)
    undo([a, b], [va, vb], 0.1, record)
    assert torch.equal(a, ca) and torch.equal(b, cb)
    with pytest.raises(ValueError, match="contiguous tensors and directions of their shapes"):
        displace([a], [vb], 0.1)
    with pytest.raises(ValueError, match="contiguous"):
        displace([a.T], [va.T], 0.1)


def test_an_interrupted_displacement_gives_back_what_it_moved(monkeypatch):
    monkeypatch.setattr(displacement, "SLICE", 4)
    x, v = torch.randn(12), torch.randn(12)
    before, calls = x.clone(), []
    step = displacement._step

    def failing(v, alpha, dtype):
        calls.append(alpha)
        if len(calls) == 3:  # the third slice, after two were written
            raise KeyboardInterrupt
        return step(v, alpha, dtype)

    monkeypatch.setattr(displacement, "_step", failing)
    with pytest.raises(KeyboardInterrupt):
        displace([x], [v], 0.5)
    assert torch.equal(x, before) and len(calls) == 5  # two slices moved, two given back
