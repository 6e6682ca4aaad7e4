"""The papermill driver: one line per notebook, quiet kernels, clear failures."""
from __future__ import annotations

import json

import pytest

from hbkit.errors import HbkitError
from hbkit.kit import replicate as rep


def test_format_seconds_and_eta():
    assert [rep.format_seconds(s) for s in (4.4, 41, 99, 100, 754, 3590, 3600, 7170, 7500)] == [
        "4 s", "41 s", "99 s", "2 min", "13 min", "1 h 00 min", "1 h 00 min", "2 h 00 min", "2 h 05 min"]
    assert [rep.format_eta(s) for s in (None, 30, 250, 7500)] == ["?", "<1 min", "~4 min", "~2 h 05 min"]


def test_progress_line_estimates_from_the_mean_time_of_each_kind():
    done = {"01_batches": [10.0], "02_train": [40.0, 50.0]}
    # two 02_train at 45 s, one 03_evaluate at the mean of all three (~33 s)
    assert rep.estimate_left(done, ["02_train", "02_train", "03_evaluate"]) == pytest.approx(90 + 100 / 3)
    assert rep.estimate_left({}, ["02_train"]) is None
    assert rep.estimate_left({"01_batches": [10.0]}, ["02_train", "05_report"]) is None  # nothing to go by yet
    assert rep.progress_line(1, 9, "01_batches", 10, {"01_batches": [10.0]}, ["02_train"] * 8) == \
        "[1/9] 01_batches  10 s  (8 left)"
    line = rep.progress_line(3, 9, "02_train X-Y seed0", 41.2, done, ["02_train"] * 5 + ["03_evaluate"])
    assert line == "[3/9] 02_train X-Y seed0  41 s  (6 left, ~4 min)"
    assert rep.progress_line(9, 9, "05_report", 7, done, []) == "[9/9] 05_report  7 s  (done)"


def test_plan_lists_every_notebook_of_a_fresh_profile(tmp_path):
    jobs = rep.plan("test", tmp_path)
    labels = [j.label for j in jobs]
    assert labels[0] == "01_batches" and labels[-2:] == ["04_compare", "05_report"]
    assert labels[1:3] == ["02_train X-X seed0", "03_evaluate X-X seed0"] and len(jobs) == 15
    assert jobs[1].params["max_steps"] == 12 and jobs[1].out.name == "02_train_tiny-xlmr_X-X_seed0.ipynb"
    assert {j.kind for j in jobs} == {"01_batches", "02_train", "03_evaluate", "04_compare", "05_report"}


def test_planned_alpha_sweep_reuses_the_x_y_hybrid_and_x_x_runs():
    from hbkit.kit.experiment import RunSpec

    runs = rep.planned_runs("paper", "runs")
    keys = [(r["model"], RunSpec(**r).label, r["seed"]) for r in runs]
    assert len(keys) == len(set(keys)) == 2 * 3 * 3 + 2  # models × strategies × seeds, then α = .25 and .75
    assert keys[-2:] == [("xlm-roberta-base", "hybrid-alpha0.25", 0), ("xlm-roberta-base", "hybrid-alpha0.75", 0)]


def _notebook(path, cells):
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": meta,
                     "outputs": [], "source": src} for i, (src, meta) in enumerate(cells)],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                       "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


def test_kernels_run_quietly_and_a_failure_names_the_cell_and_files(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("HBKIT_PROGRESS", raising=False)
    src = _notebook(tmp_path / "quiet.ipynb", [
        ("x = 1", {"tags": ["parameters"]}),
        ("import os\nprint('progress', os.environ.get('HBKIT_PROGRESS'), x)", {}),
        ("def f():\n    raise ValueError('boom ' + str(x))\nf()", {}),
    ])
    out = tmp_path / "out" / "quiet.ipynb"
    with pytest.raises(HbkitError) as err:
        rep.execute(str(src), out, {"x": 7}, tmp_path, label="quiet test")
    msg = str(err.value)
    assert msg.startswith("quiet test failed in cell In [4]:")  # the injected parameters are In [2]
    assert "ValueError: boom 7" in msg and "\x1b[" not in msg
    failed = out.with_name("quiet.FAILED.ipynb")
    assert f"outputs up to the error: {failed}" in msg and "finished runs are skipped" in msg
    nb = json.loads(failed.read_text())
    printed = next(c for c in nb["cells"] if "print('progress'" in "".join(c["source"]))
    assert printed["outputs"][0]["text"] == ["progress 0 7\n"]  # progress bars are off in the kernel
    assert not out.exists()
    captured = capfd.readouterr()
    for noise in ("without encryption", "KeyboardInterrupt"):
        assert noise not in captured.out + captured.err
    assert not list(out.parent.glob(".*kernel.log"))
    fixed = _notebook(tmp_path / "quiet.ipynb", [("x = 1", {"tags": ["parameters"]}), ("print(x)", {})])
    rep.execute(str(fixed), out, {"x": 7}, tmp_path)
    assert sorted(p.name for p in out.parent.iterdir()) == ["quiet.ipynb"]  # the failure's files are gone


def test_a_successful_notebook_leaves_only_itself(tmp_path, capfd):
    src = _notebook(tmp_path / "ok.ipynb", [("y = 0", {"tags": ["parameters"]}), ("print(y + 1)", {})])
    out = tmp_path / "out" / "ok.ipynb"
    seconds = rep.execute(str(src), out, {"y": 1}, tmp_path)
    assert seconds > 0 and sorted(p.name for p in out.parent.iterdir()) == ["ok.ipynb"]
    nb = json.loads(out.read_text())
    assert nb["cells"][-1]["outputs"][0]["text"] == ["2\n"]
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_stages_and_groups_let_independent_notebooks_run_side_by_side(tmp_path):
    jobs = rep.plan("test", tmp_path)
    stages = [j.stage for j in jobs]
    assert stages == sorted(stages)  # the plan lists stages in order
    by_group: dict[str, list[str]] = {}
    for j in jobs:
        by_group.setdefault(j.group or j.label, []).append(j.kind)
    runs = [g for g, kinds in by_group.items() if "02_train" in kinds]
    assert len(runs) == 6 and all(by_group[g] == ["02_train", "03_evaluate"] for g in runs)  # train, then evaluate
    assert by_group["report"] == ["04_compare", "05_report"]
    assert {j.stage for j in jobs if j.kind == "02_train"} == {1} and jobs[0].kind == "01_batches"
    image = rep.plan("test-image", tmp_path)
    runs = [j for j in image if j.kind in ("07_train_clip", "10_train_albef")]
    assert len({j.group for j in runs}) == len(runs) and {j.stage for j in runs} == {1}
    assert rep.default_jobs("demo") == rep.default_jobs("demo-image") == 2
    assert rep.default_jobs("clip-colab") == rep.default_jobs("paper") == 1  # one GPU: one kernel at a time
    with pytest.raises(HbkitError, match="jobs must be >= 1"):
        rep.replicate("test", str(tmp_path), jobs=0)


def test_a_failure_side_by_side_cancels_the_groups_not_started_and_names_the_notebook(tmp_path, monkeypatch, capfd):
    nb_dir = tmp_path / "test" / "notebooks"
    # group 0 fails at once; the others start a kernel each (and fail in it), so some are still queued
    jobs = [rep.Job("missing.ipynb", nb_dir / "missing.ipynb", {}, "missing", stage=1, group="0")]
    jobs += [rep.Job("01_batches.ipynb", nb_dir / f"01_batches_{i}.ipynb", {"profile": "no-such-profile"},
                     f"01_batches {i}", stage=1, group=str(i)) for i in range(1, 7)]
    monkeypatch.setattr(rep, "plan", lambda profile, out_root: jobs)
    monkeypatch.setattr(rep, "prepare_assets", lambda profile, out_root: None)
    with pytest.raises(HbkitError, match=r"Notebook .*missing\.ipynb is missing: run from a full checkout"):
        rep.replicate("test", str(tmp_path), jobs=2)
    out = capfd.readouterr().out
    assert "7 notebooks to run, 2 at a time" in out and "missing  FAILED" in out
    assert out.count("FAILED") < 7  # the groups not yet started were cancelled, not run
