"""``python -m hbkit.kit.figures`` writes the README's PNGs from a finished replication.

Uses the ``test`` profile output that ``make notebook-test`` leaves (``$HBKIT_EXECUTED_NOTEBOOKS``'s
profile folder, or ``runs/test``); skips when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import skip_or_fail as _skip_or_fail

from hbkit.errors import DataError
from hbkit.kit import figures

REPO = Path(__file__).resolve().parents[1]


def _test_output() -> Path:
    env = os.environ.get("HBKIT_EXECUTED_NOTEBOOKS")
    root = Path(env).parent if env else REPO / "runs" / "test"
    from hbkit.kit.inspection import run_spec

    specs = [run_spec("test", str(root.parent), "tiny-xlmr", s, 0) for s in ("X-X", "X-Y")]
    if not all((spec.run_dir / "model").is_dir() for spec in specs):
        _skip_or_fail(f"no trained X-X and X-Y runs of the test profile under {root} (absent, or from an older "
                    "run layout): `make notebook-test` makes them")
    return root


def test_figures_from_the_test_profile_output(tmp_path):
    root = _test_output()
    done = figures.make_figures("test", str(root.parent), tmp_path / "docs")
    assert set(done) == {"headline", "batches_heatmap", "rank_distance", "hybrid_training", "alpha_sweep"}
    assert done["alpha_sweep"] == "profile 'test' has no α sweep"
    for name in ("headline", "batches_heatmap", "rank_distance", "hybrid_training"):
        png = done[name]
        assert png == tmp_path / "docs" / f"{name}.png"
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 150_000, (name, len(data))


def test_main_reports_what_it_wrote_and_skipped(tmp_path, capsys):
    root = _test_output()
    assert figures.main(["--profile", "test", "--output-dir", str(root.parent), "--to", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"[hbkit] headline: {tmp_path / 'headline.png'}" in out
    assert "[hbkit] alpha_sweep: skipped (profile 'test' has no α sweep)" in out


def test_without_runs_the_error_says_what_to_run(tmp_path, capsys):
    with pytest.raises(DataError, match=r"make replicate PROFILE=demo"):
        figures.make_figures("demo", str(tmp_path), tmp_path / "docs")
    assert figures.main(["--output-dir", str(tmp_path), "--to", str(tmp_path / "docs")]) == 2
    assert "No evaluated runs under" in capsys.readouterr().err
    assert not (tmp_path / "docs").exists()
