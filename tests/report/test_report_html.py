"""report.html: self-contained (data: URIs only), and every figure renders in headless Chromium."""

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from eoskit import store
from eoskit.report import write_report
from eoskit.sweep import parse_sweep, run_sweep
from eoskit.training.config import RunConfig
from eoskit.training.loop import train

CHROMIUM = "/usr/bin/chromium"
TINY = dict(dataset="digits", n_train=32, n_test=8, width=4, depth=1, dtype="float64",
            steps=8, lr=0.5, checkpoint_every=0, eval_every=4)


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.refs, self.tables = [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "table":
            self.tables += 1
        for k in ("href", "src"):
            if k in a and tag != "img":
                self.refs.append(a[k])


def _check_self_contained(html: str) -> _Refs:
    p = _Refs()
    p.feed(html)
    assert p.imgs, "no figures"
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert p.refs == []  # no scripts, style sheets or links fetched from anywhere
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert "http://" not in text and "https://" not in text and "file:" not in text
    return p


def _render(page: Path, tmp_path: Path) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
           "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _loaded(dom: str) -> tuple[int, int]:
    m = re.search(r'id="image-check"[^>]*data-loaded="(\d+)"[^>]*data-total="(\d+)"', dom)
    assert m, "the page's image check did not run"
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    train(RunConfig(**TINY, diagnose_every=4), out, progress=False)
    return out


def test_run_report_is_self_contained_with_identities(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    html = path.read_text()
    p = _check_self_contained(html)
    assert len(p.imgs) >= 7  # loss, sharpness, κ, forcing gap + the diagnostics figures
    assert p.tables >= 4
    assert (run_dir / "plots" / "forcing_gap.png").read_bytes()[:4] == b"\x89PNG"
    summary = store.read_json(run_dir / "summary.json")
    for needle in ("Summary", "Configuration", "Identities checked", "recurrence_residual",
                   "kappa_mismatch", "bound_holds", "Hessian quadrature", "fc-tanh",
                   "forcing gap", "fitted log–log slope", "equal by construction",
                   f"{summary['final_loss']:.6g}"):
        assert needle in html, needle
    # only checks that can fail are in the identities table: not the forcing identity's
    # two sides, not the update rule restated
    table = html.split("Identities checked", 1)[1].split("<h2>", 1)[0]
    for restated in ("grad_x_residual", "loss_change_residual", "Telescoping"):
        assert restated not in table, restated


def test_run_without_diagnostics_says_nothing_was_checked(tmp_path):
    out = tmp_path / "run"
    train(RunConfig(**TINY), out, progress=False)
    html = write_report(out).read_text()
    table = html.split("Identities checked", 1)[1].split("<h2>", 1)[0]
    assert "No identity that can fail was checked in this run" in table
    assert "diagnostics.csv" in table and "<table>" not in table
    assert html.count("<img ") >= 4  # the forcing gap figure is there all the same


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    spec = parse_sweep({"run": {k: v for k, v in TINY.items() if k != "lr"},
                        "grid": {"lr": [0.3, 0.5]}})
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    run_sweep(spec, out, backend="inline")
    return out


def test_sweep_report_has_index_and_figures(sweep_dir):
    html = write_report(sweep_dir).read_text()
    p = _check_self_contained(html)
    assert len(p.imgs) == 2
    for needle in ("Runs (runs.csv)", "lr=0.3", "lr=0.5", "plateau_median_over_threshold",
                   "[grid]", "completed"):
        assert needle in html, needle


def test_report_cli_and_bad_directory(run_dir, tmp_path):
    from typer.testing import CliRunner

    from eoskit.cli import _register, app

    _register()
    r = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 0 and (tmp_path / "r.html").exists()
    r = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2
    assert r.stderr.strip() == (f"eoskit: error: {tmp_path} is neither an eoskit run directory "
                                "(config.json) nor a sweep directory (runs.csv)")
    r = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.stderr


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
@pytest.mark.parametrize("which", ["run", "sweep"])
def test_report_renders_offline_in_headless_chromium(run_dir, sweep_dir, tmp_path, which):
    # a copy far from the run directory: nothing on the page may point back at it
    page = tmp_path / "elsewhere" / "report.html"
    page.parent.mkdir()
    shutil.copy(write_report(run_dir if which == "run" else sweep_dir), page)
    n_imgs = page.read_text().count("<img ")
    loaded, total = _loaded(_render(page, tmp_path))
    assert total == n_imgs and loaded == n_imgs and n_imgs >= 2, (loaded, total, n_imgs)
