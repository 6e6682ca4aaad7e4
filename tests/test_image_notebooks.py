"""The image–text notebooks (06-09) as executed on the ``test-image`` profile: no warnings, no errors,
one training notebook per planned run, and the figures and answers they promise.

Reads ``$HBKIT_EXECUTED_IMAGE_NOTEBOOKS`` or ``runs/test-image/notebooks`` (``make notebook-test``
writes them, then runs this file); skips when absent or stale, and fails instead under
``HBKIT_REQUIRE_EXECUTED=1``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import load_executed

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for p in (REPO / "notebooks").glob("*.ipynb") if p.stem >= "06")


def _executed_dir() -> Path:
    env = os.environ.get("HBKIT_EXECUTED_IMAGE_NOTEBOOKS")
    return Path(env) if env else REPO / "runs" / "test-image" / "notebooks"


@pytest.fixture(scope="module")
def executed() -> dict[str, dict]:
    return load_executed(_executed_dir(), SOURCES, "image–text notebooks",
                         "`make notebook-test` (or `python -m hbkit.kit.replicate --profile test-image`)")


def _outputs_text(nb: dict) -> str:
    parts = []
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            parts.append("".join(o.get("text", "")))
            parts.append("".join(o.get("data", {}).get("text/plain", "")))
            parts.append("".join(o.get("data", {}).get("text/html", "")))
    return "\n".join(parts)


def test_every_image_notebook_ran_once_per_run(executed):
    from hbkit.kit.profiles import get_profile
    from hbkit.kit.replicate import planned_runs

    from hbkit.kit.image_text import model_family

    assert {s.stem for s in SOURCES} == {"06_image_batches", "07_train_clip", "08_evaluate_clip", "09_compare_clip",
                                         "10_train_albef", "11_compare_families"}
    for s in SOURCES:
        assert any(n.startswith(s.stem) for n in executed), f"no executed {s.stem}"
    runs = planned_runs("test-image", "runs")
    n_albef = sum(model_family(r["model"]) == "albef" for r in runs)
    assert n_albef == 4
    assert sum(n.startswith("07_train_clip") for n in executed) == len(runs) - n_albef
    assert sum(n.startswith("10_train_albef") for n in executed) == n_albef
    clips = [m for m in get_profile("test-image")["models"] if model_family(m) == "clip"]
    assert sum(n.startswith("08_evaluate_clip") for n in executed) == len(clips) == 2


def test_no_errors_warnings_or_install_output(executed):
    for name, nb in executed.items():
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert "pip install" in "".join(code[0]["source"]) and code[0]["outputs"] == [], name
        for i, c in enumerate(code):
            for o in c.get("outputs", []):
                assert o["output_type"] != "error", f"{name} cell {i}: {o.get('ename')}: {o.get('evalue')}"
                if o["output_type"] == "stream" and o["name"] == "stderr":
                    assert "warning" not in "".join(o["text"]).lower(), f"{name} cell {i}: {''.join(o['text'])[:300]}"


def test_figures_and_answers_are_there(executed):
    figures = _executed_dir().parent / "figures"
    for png in ("image_batches.png", "clip_strategies.png", "clip_text_to_image_tiny-clip.png",
                "clip_rank_distance_tiny-clip.png"):
        assert (figures / png).read_bytes()[:4] == b"\x89PNG", png
    nb06 = _outputs_text(executed["06_image_batches.ipynb"])
    assert "1-to-K" in nb06 and "tiny-clip-latin" in nb06  # the batches and the two text towers' token counts
    nb09 = _outputs_text(executed["09_compare_clip.ipynb"])
    assert "— tiny-clip" in nb09 and "— tiny-clip-latin" in nb09 and "zero-shot" in nb09
    nb07 = next(n for n in executed if n.startswith("07_train_clip") and "1-to-K-images" in n)
    assert "K = 2 captions per image" in _outputs_text(executed[nb07])
    nb10 = _outputs_text(executed[next(n for n in executed if n.startswith("10_train_albef") and "hybrid" in n)])
    assert "family: albef, feature queue: off" in nb10 and "tiny-albef-itc" in nb10 and "zero-shot" in nb10
    assert (figures / "train_parts_tiny-albef_hybrid_seed0.png").read_bytes()[:4] == b"\x89PNG"
    nb11 = _outputs_text(executed["11_compare_families.ipynb"])
    assert "agree on the best strategy" in nb11 or "they differ on" in nb11
    assert ("tiny-clip vs tiny-albef" in nb11 or "tiny-albef vs tiny-clip" in nb11) and "TR@1" in nb11
    assert "evaluates no released checkpoint on Flickr30K/COCO (no english_reference block)" in nb11  # the toy
