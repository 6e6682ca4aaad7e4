"""Notebook parameters are type-checked; missing prerequisites give clear errors; claims are computed."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import hbkit.kit.experiment as ex
from hbkit.kit.claims import check_claims, reading, summary_table
from hbkit.errors import ConfigError, DataError, UnknownModelError
from hbkit.kit.profiles import get_profile


@pytest.mark.parametrize("kw, err, msg", [
    ({"seed": 1.5}, ConfigError, "'seed'.*must be int"),
    ({"alpha": "0.5"}, ConfigError, "'alpha'.*must be float"),
    ({"max_steps": True}, ConfigError, "'max_steps'"),
    ({"profile": "paperz"}, ConfigError, "Unknown profile 'paperz'"),
    ({"model": "gpt-2"}, UnknownModelError, "tiny-xlmr"),
])
def test_bad_notebook_parameters(kw, err, msg):
    with pytest.raises(err, match=msg):
        ex.RunSpec(**kw)


def test_run_dir_layout(tmp_path, monkeypatch):
    spec = ex.RunSpec(output_dir=str(tmp_path), strategy="X-Y", seed=3)
    run = spec.resolve()
    assert spec.run_dir == tmp_path / "demo" / "runs" / "tiny-xlmr" / "X-Y" / f"seed3-{run.run_id}"
    assert len(run.run_id) == 8 and run.train.strategy == "X-Y" and run.train.seed == 3
    # a relative output folder means the same place from the notebooks/ folder and from the repository root
    repo = ex.Path(ex.__file__).resolve().parents[2]
    monkeypatch.chdir(repo / "notebooks")
    assert ex.RunSpec(output_dir="runs").profile_dir == repo / "runs" / "demo"


def test_evaluate_before_training_and_collect_without_runs(tmp_path):
    spec = ex.RunSpec(output_dir=str(tmp_path), profile="test")
    with pytest.raises(DataError, match="has not finished training"):
        ex.evaluate(spec)
    with pytest.raises(DataError, match="No evaluated runs"):
        ex.collect_results(str(tmp_path), "test")


def test_profiles_are_plain_literals():
    prof = get_profile("demo")
    assert set(prof["strategies"]) == {"X-X", "X-Y", "hybrid"} and len(prof["seeds"]) >= 2
    prof["seeds"].append(99)
    assert 99 not in get_profile("demo")["seeds"]  # a copy


def _head(values):
    rows = []
    for (setting, metric), per in values.items():
        for strat, vals in per.items():
            for seed, v in enumerate(vals):
                rows.append(dict(model="m", strategy=strat, seed=seed, benchmark="b", setting=setting,
                                 metric=metric, value=v))
    return pd.DataFrame(rows)


def test_claims_on_the_papers_pattern_and_on_its_opposite():
    paper = _head({
        ("monolingual", "mAP"): {"X-X": [.79, .80], "X-Y": [.75, .76], "hybrid": [.80, .80]},
        ("cross-lingual", "mAP"): {"X-X": [.67, .68], "X-Y": [.70, .70], "hybrid": [.70, .71]},
        ("multilingual", "mAP"): {"X-X": [.55, .54], "X-Y": [.59, .60], "hybrid": [.59, .60]},
        ("multilingual", "rank_distance"): {"X-X": [410, 411], "X-Y": [295, 296], "hybrid": [286, 287]},
    })
    c = check_claims(paper)
    assert c.holds.all(), c[~c.holds]
    flipped = paper.copy()
    flipped.loc[flipped.strategy == "hybrid", "value"] *= 0.5
    c2 = check_claims(flipped)
    assert not c2.set_index("claim").loc["hybrid is at or near the best monolingually", "holds"]
    assert c2.set_index("claim").loc["hybrid has the smallest rank distance", "holds"]  # halved distance
    table = summary_table(paper)
    assert table.loc[("m", "b", "monolingual", "mAP"), "X-X"] == "0.795 ± 0.007 (n=2)"
    text = reading(paper, c, profile="demo")
    assert "TOY" in text and "9 of 9" in text


def test_planned_runs_cover_strategies_seeds_and_alpha_sweep():
    from hbkit.kit.replicate import planned_runs

    demo = planned_runs("demo", "runs")
    assert {(r["strategy"], r["seed"]) for r in demo} == {(s, k) for s in ("X-X", "X-Y", "hybrid") for k in (0, 1)}
    paper = planned_runs("paper", "runs")
    # models × strategies × seeds, plus α ∈ {.25, .75}: 0.5 is "hybrid", α = 0 and 1 are the X-Y and X-X runs
    assert len(paper) == 2 * 3 * 3 + 2
    labels = {ex.RunSpec(**r).label for r in paper}
    assert {"hybrid-alpha0.25", "hybrid-alpha0.75"} <= labels and not any(x in labels for x in
                                                                         ("hybrid-alpha0", "hybrid-alpha1"))
    assert all(r["batch_size"] == 100 and r["lr"] == 3e-5 for r in paper)  # the paper's hyperparameters


def test_run_identity_keys_the_run_directory():
    base = ex.RunSpec(output_dir="/tmp/x", strategy="hybrid", seed=0)
    assert ex.RunSpec(output_dir="/tmp/x", strategy="hybrid", seed=0).run_dir == base.run_dir  # stable
    for change in ({"max_steps": 7}, {"lr": 1e-4}, {"batch_size": 16}, {"alpha": 0.25}, {"seed": 1}):
        other = ex.RunSpec(**{**dataclasses.asdict(base), **change})
        assert other.run_dir != base.run_dir, change
    # α = 0 and α = 1 draw exactly the X-Y and X-X batches: they are those runs, not new ones
    for alpha, strategy in ((0.0, "X-Y"), (1.0, "X-X")):
        sweep = ex.RunSpec(output_dir="/tmp/x", strategy="hybrid", alpha=alpha)
        plain = ex.RunSpec(output_dir="/tmp/x", strategy=strategy)
        assert sweep.run_dir == plain.run_dir and sweep.label == strategy
        assert sweep.resolve().train == plain.resolve().train
    # α does not enter the identity of an X-X or X-Y run
    assert ex.RunSpec(output_dir="/tmp/x", strategy="X-Y", alpha=0.3).run_dir == \
        ex.RunSpec(output_dir="/tmp/x", strategy="X-Y").run_dir


def test_use_context_comes_from_the_profile_and_is_recorded(tmp_path, monkeypatch):
    import json

    from hbkit.kit.profiles import PROFILES

    prof = get_profile("test")
    prof["evaluation"] = {"use_context": True}
    monkeypatch.setitem(PROFILES, "ctx", prof)
    spec = ex.RunSpec(profile="ctx", output_dir=str(tmp_path), strategy="X-Y", max_steps=2, batch_size=8)
    ex.train(spec)
    with_ctx = ex.evaluate(spec)
    assert with_ctx.use_context.all()
    assert json.loads((spec.run_dir / "evaluation.json").read_text())["use_context"] is True
    # changing the profile's evaluation setting re-evaluates instead of returning stale results
    prof2 = {**prof, "evaluation": {"use_context": False}}
    monkeypatch.setitem(PROFILES, "ctx", prof2)
    spec2 = ex.RunSpec(profile="ctx", output_dir=str(tmp_path), strategy="X-Y", max_steps=2, batch_size=8)
    assert spec2.run_dir == spec.run_dir  # evaluation settings do not change the trained weights
    without = ex.evaluate(spec2)
    assert not without.use_context.any()
    a = with_ctx[(with_ctx.setting == "monolingual") & (with_ctx.metric == "mAP")].value.to_numpy()
    b = without[(without.setting == "monolingual") & (without.metric == "mAP")].value.to_numpy()
    assert len(a) == len(b) > 0 and not (abs(a - b) < 1e-9).all()  # the context did change the encoding
