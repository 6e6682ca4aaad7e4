"""The notebooks as a student opens them after ``make replicate``: no warnings, no stray outputs.

Reads the executed notebooks of the ``test`` profile (``make notebook-test`` writes them, then runs
this file): ``$HBKIT_EXECUTED_NOTEBOOKS`` or ``runs/test/notebooks``. Skips when they are absent, or
older than the notebooks in ``notebooks/`` (a stale replication).
"""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from conftest import load_executed

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "notebooks").glob("*.ipynb"))
WIDGET = "application/vnd.jupyter.widget-view+json"


def _executed_dir() -> Path:
    env = os.environ.get("HBKIT_EXECUTED_NOTEBOOKS")
    return Path(env) if env else REPO / "runs" / "test" / "notebooks"


@pytest.fixture(scope="module")
def executed() -> dict[str, dict]:
    return load_executed(_executed_dir(), SOURCES, "notebooks",
                         "`make notebook-test` (or `python -m hbkit.kit.replicate --profile test --output-dir runs`)")


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_sources_start_with_a_silent_install_cell_and_plain_parameters(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = _code_cells(nb)
    install = "".join(code[0]["source"])
    assert "pip install" in install and install.rstrip().endswith(";"), "the install cell must print nothing"
    assert len(install.strip().splitlines()) == 2  # a comment and one line
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and params[0] is code[1]
    for line in "".join(params[0]["source"]).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert line.count("=") == 1, f"papermill cannot parse {line!r}: one '=' per line, none in comments"
        name, value = line.split("#")[0].split("=")
        assert name.strip().isidentifier()
        ast.literal_eval(value.strip())  # a plain literal


def test_every_notebook_was_executed(executed):
    stems = {s.stem for s in SOURCES if s.stem < "06"}  # 06-09: the image–text half (test_image_notebooks)
    assert stems == {"01_batches", "02_train", "03_evaluate", "04_compare", "05_report"}
    for stem in stems:
        assert any(name.startswith(stem) for name in executed), f"no executed {stem}"
    from hbkit.kit.replicate import planned_runs

    # one training notebook per planned run of the test profile (models × strategies × seeds)
    assert sum(name.startswith("02_train") for name in executed) == len(planned_runs("test", "runs"))


def test_no_cell_writes_a_warning_or_an_error(executed):
    for name, nb in executed.items():
        for i, c in enumerate(nb["cells"]):
            for o in c.get("outputs", []):
                assert o["output_type"] != "error", f"{name} cell {i}: {o.get('ename')}: {o.get('evalue')}"
                if o["output_type"] == "stream" and o["name"] == "stderr":
                    text = "".join(o["text"])
                    assert "warning" not in text.lower(), f"{name} cell {i} writes to stderr: {text[:300]}"


def test_bootstrap_cell_prints_nothing_locally(executed):
    for name, nb in executed.items():
        first = _code_cells(nb)[0]
        assert "pip install" in "".join(first["source"]), f"{name}: the install cell is not first"
        assert first["outputs"] == [], f"{name}: the install cell shows {first['outputs']}"


def test_no_progress_widgets_without_state(executed):
    """Under papermill progress bars are off: a saved widget would render without its state."""
    for name, nb in executed.items():
        for i, c in enumerate(nb["cells"]):
            for o in c.get("outputs", []):
                assert WIDGET not in o.get("data", {}), f"{name} cell {i} holds a progress widget"


def test_notebooks_show_the_new_figures_and_tables(executed):
    nb01 = executed["01_batches.ipynb"]
    tables = [o for c in _code_cells(nb01) for o in c["outputs"] if "text/html" in o.get("data", {})]
    assert len(tables) >= 2 and all("passage language" in "".join(o["data"]["text/html"]) for o in tables[:2])
    figures = _executed_dir().parent / "figures"
    for png in ("batches_heatmap.png", "rank_distance_example.png", "strategy_mAP.png"):
        assert (figures / png).read_bytes()[:4] == b"\x89PNG", png
    nb04 = "".join(str(o) for c in _code_cells(executed["04_compare.ipynb"]) for o in c["outputs"])
    assert "rank distance (max − min)" in nb04 and "skipped" not in nb04
    nb02 = next(n for n in executed if n.startswith("02_train"))
    text = "".join(str(o) for c in _code_cells(executed[nb02]) for o in c["outputs"])
    assert "which notebook 03 evaluates, holds the weights of step" in text
