"""The image–text kit glue: CLIP profiles, runs, the toy image world, tiny CLIPs, leak guard, zero-shot rows."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import hbkit.kit.experiment as ex
from hbkit.datasets import registry
from hbkit.errors import ConfigError, DataError
from hbkit.kit import image_text
from hbkit.kit.profiles import PROFILES
from hbkit.kit.replicate import plan, planned_runs
from hbkit.languages import script_of

PROFILE = "test-image"


def _spec(out, **kw) -> ex.RunSpec:
    t = PROFILES[PROFILE]["train"]
    base = dict(profile=PROFILE, output_dir=str(out), model="tiny-clip", strategy="X-Y", seed=0,
                alpha=t["alpha"], max_steps=t["max_steps"], batch_size=t["batch_size"], lr=t["lr"])
    return ex.RunSpec(**{**base, **kw})


def test_runs_of_the_demo_profile_and_their_labels(tmp_path):
    runs = planned_runs("demo-image", str(tmp_path))
    # 2 CLIPs and 1 ALBEF x 4 strategies x 2 seeds, then 1-to-K at K x the batch for tiny-clip, 1 seed
    assert len(runs) == 3 * 4 * 2 + 1
    labels = {(r["model"], ex.RunSpec(**r).label) for r in runs}
    assert ("tiny-clip", "1-to-K-images") in labels and ("tiny-clip-latin", "1-to-K-images") not in labels
    eq = [r for r in runs if ex.RunSpec(**r).label == "1-to-K-images"]
    assert {r["batch_size"] for r in eq} == {32 * 2}
    assert ex.one_to_k_label(32, 32, 2) == "1-to-K" and ex.one_to_k_label(48, 32, 2) == "1-to-K-b48"


def test_run_config_records_the_clip_settings_and_the_tiny_model_recipe(tmp_path):
    run = _spec(tmp_path, strategy="1-to-K").resolve()
    assert run.evaluation["family"] == "clip" and run.train.strategy == "1-to-K" and run.train.one_to_k == 2
    assert run.assets["tiny_clip"]["text_mixture"] == "balanced"
    latin = _spec(tmp_path, strategy="1-to-K", model="tiny-clip-latin").resolve()
    assert latin.assets["tiny_clip"]["text_mixture"] == "latin" and latin.run_id != run.run_id
    assert "one_to_k" not in _spec(tmp_path).resolve().train.identity()  # K only matters under 1-to-K
    assert run.run_dir.parent.name == "1-to-K" and run.run_dir.parts[-3] == "tiny-clip"


def test_strategy_and_model_errors_name_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"choose X-X, X-Y, hybrid \(1-to-K is for image–text profiles\)"):
        ex.RunSpec(profile="test", output_dir=str(tmp_path), model="tiny-xlmr", strategy="1-to-K")
    with pytest.raises(ConfigError, match="choose X-X, X-Y, hybrid, 1-to-K"):
        _spec(tmp_path, strategy="one-to-k")
    with pytest.raises(Exception, match="tiny-albef, tiny-clip, tiny-clip-latin"):
        _spec(tmp_path, model="tiny-xlmr")


def test_latin_mixture_keeps_latin_captions_and_one_percent_of_the_others(tmp_path):
    world = image_text.image_world(PROFILE, tmp_path / PROFILE)
    assert image_text.mixture_texts(world, {"text_mixture": "balanced"}) == world.texts()
    texts = image_text.mixture_texts(world, {"text_mixture": "latin", "latin_share": 0.9})
    latin_caps = {c for lang in world.languages if script_of(lang) == "Latin"
                  for per in world.train_set.captions[lang] for c in per}
    other = [t for t in texts if t not in latin_caps]
    assert latin_caps <= set(texts)
    assert len(other) == pytest.approx(len(latin_caps) * 0.1 / 0.9, abs=1)
    assert texts == image_text.mixture_texts(world, {"text_mixture": "latin", "latin_share": 0.9})  # seeded
    with pytest.raises(ConfigError, match="choose 'balanced' or 'latin'"):
        image_text.mixture_texts(world, {"text_mixture": "cyrillic"})
    with pytest.raises(ConfigError, match=r"latin_share must be in \[0.5, 1\)"):
        image_text.mixture_texts(world, {"text_mixture": "latin", "latin_share": 1.0})


def test_demo_text_towers_start_unequal_only_when_skewed(tmp_path):
    mix = image_text.text_mixture_summary("demo-image", tmp_path / "demo-image")
    tokens = mix.pivot_table(index="language", columns="model", values="tokens_per_caption")
    latin = [lang for lang in tokens.index if script_of(lang) == "Latin"]
    other = [lang for lang in tokens.index if lang not in latin]
    gap = tokens.loc[other].mean() / tokens.loc[latin].mean()
    assert gap["tiny-clip-latin"] > 1.4  # the stated inequality: other scripts ~1.5-2x the tokens
    assert gap["tiny-clip"] < gap["tiny-clip-latin"] - 0.2


def test_image_text_plan_runs_06_to_11(tmp_path):
    jobs = plan(PROFILE, tmp_path)
    kinds = [j.kind for j in jobs]
    assert kinds[0] == "06_image_batches" and kinds[-2:] == ["09_compare_clip", "11_compare_families"]
    runs = planned_runs(PROFILE, str(tmp_path))
    albef = [r for r in runs if r["model"] == "tiny-albef"]
    assert len(albef) == 4 and kinds.count("10_train_albef") == 4
    assert kinds.count("07_train_clip") == len(runs) - 4
    assert kinds.count("08_evaluate_clip") == 2  # the CLIP models
    assert image_text.model_family("albef-14m") == image_text.model_family("tiny-albef") == "albef"
    assert image_text.model_family("xlm-roberta-base-ViT-B-32") == "clip"
    # a profile with CLIPs only plans no family comparison
    assert "11_compare_families" not in [j.kind for j in plan("clip-colab", tmp_path)]


# ----------------------------------------------------------------------------- training and evaluation
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    spec = _spec(out, strategy="1-to-K")
    state = ex.train(spec, show_progress=False)
    return out, spec, state


def test_a_1_to_k_clip_run_trains_and_evaluates_in_every_setting(trained):
    out, spec, state = trained
    assert state["status"] == "finished" and state["steps"] == PROFILES[PROFILE]["train"]["max_steps"]
    log = pd.read_csv(spec.run_dir / "train_log.csv")
    assert set(log["mode"]) == {"1-to-K"}
    df = ex.evaluate(spec, show_progress=False)
    assert set(df.strategy) == {"1-to-K"} and set(df.model) == {"tiny-clip"}
    got = set(zip(df.direction, df.setting))
    assert {("text→image", "monolingual"), ("image→text", "monolingual"), ("text→text", "cross-lingual"),
            ("image→text", "multilingual"), ("caption→caption", "multilingual")} <= got
    mono = df[(df.direction == "text→image") & (df.metric == "hit@10")]
    assert set(mono.query_lang) == set(image_text.image_world(PROFILE, spec.profile_dir).languages)
    assert ((df.value >= 0) | df.metric.str.contains("rank|MRV")).all()
    assert not df.allow_overlap.any()
    recorded = json.loads((spec.run_dir / "evaluation.json").read_text())
    assert recorded["leak_guard"][0]["overlap"] == 0 and recorded["settings"]["family"] == "clip"
    again = ex.evaluate(spec, show_progress=False)  # cached
    pd.testing.assert_frame_equal(df, again)


def test_zero_shot_row_is_the_untrained_model_on_the_same_benchmarks(trained):
    out, spec, _ = trained
    zs = ex.evaluate_zero_shot(PROFILE, "tiny-clip", str(out), show_progress=False)
    assert set(zs.strategy) == {"zero-shot"}
    run = ex.zero_shot_config(PROFILE, "tiny-clip", str(out))
    assert run.run_dir.parent.name == "zero-shot" and (run.run_dir / "results.csv").exists()
    tuned = ex.evaluate(spec, show_progress=False)
    key = ["direction", "setting", "query_lang", "candidate_lang", "metric"]
    both = zs.merge(tuned, on=key, suffixes=("_zs", "_ft"))
    assert len(both) == len(zs)  # the same rows
    assert not np.allclose(both.value_zs, both.value_ft)  # fine-tuning changed the model
    collected = ex.collect_results(str(out), PROFILE)
    assert {"zero-shot", "1-to-K"} <= set(collected.strategy)


def test_leak_guard_refuses_training_images_in_a_benchmark(tmp_path, monkeypatch):
    def train_images_as_benchmark(src, *, profile, profile_dir=None, **_):
        return image_text.image_world(profile, profile_dir).train_set.to_benchmark()

    monkeypatch.setitem(registry.BENCHMARKS, "image-world-train", train_images_as_benchmark)
    prof = json.loads(json.dumps(PROFILES[PROFILE]))
    prof["data"] = {"train": [{"kind": "image-world"}], "benchmarks": [{"kind": "image-world-train"}]}
    monkeypatch.setitem(PROFILES, "leaky", prof)
    spec = ex.RunSpec(profile="leaky", output_dir=str(tmp_path), model="tiny-clip", strategy="X-Y",
                      max_steps=2, batch_size=8, lr=1e-3)
    n = len(image_text.image_world("leaky", spec.profile_dir).train_set.ids)
    with pytest.raises(DataError, match=rf"{n} of the {n} images of the evaluation set .* allow_overlap=True"):
        ex.train(spec, show_progress=False)
    assert not spec.run_dir.exists()  # refused before anything was written
    prof["data"]["benchmarks"] = [{"kind": "image-world-train", "allow_overlap": True}]
    monkeypatch.setitem(PROFILES, "leaky", prof)
    spec = ex.RunSpec(profile="leaky", output_dir=str(tmp_path), model="tiny-clip", strategy="X-Y",
                      max_steps=2, batch_size=8, lr=1e-3)
    ex.train(spec, show_progress=False)
    df = ex.evaluate(spec, show_progress=False)
    assert df.allow_overlap.all()
    record = json.loads((spec.run_dir / "evaluation.json").read_text())["leak_guard"][0]
    assert record["overlap"] == n and record["allowed"] is True


# ----------------------------------------------------------------------------- ALBEF runs
def test_an_albef_run_trains_and_is_evaluated_with_itc_and_with_itm(tmp_path):
    spec = _spec(tmp_path, model="tiny-albef", strategy="hybrid")
    run = spec.resolve()
    assert run.evaluation["family"] == "albef" and "tiny_albef" in run.assets and run.encoder["rescore_k"] == 4
    assert run.assets["tiny_albef"]["itc_warmup"]["languages"] == ["en"]  # aligned in English before fine-tuning
    aligned = image_text.prepare_tiny_albef(PROFILE, spec.profile_dir, "tiny-albef")
    base = image_text.prepare_tiny_albef(PROFILE, spec.profile_dir, "tiny-albef", aligned=False)
    assert aligned.parent.name.startswith("tiny-albef-warmup-") and base.name == "tiny-albef"
    warm = json.loads((aligned.parent / "config.json").read_text())
    assert warm["train"]["languages"] == ["en"] and warm["train"]["max_steps"] == 6
    assert warm["identity"]["model"]["itm_weight"] == 0.0 and warm["identity"]["model"]["distill"] is False
    assert json.loads((aligned / "albef_net.json").read_text())["momentum"] == 0.995  # ALBEF's again
    clip_run = _spec(tmp_path, strategy="hybrid").resolve()
    assert clip_run.evaluation == {"family": "clip", **PROFILES[PROFILE]["evaluation"]}  # CLIP runs unchanged
    state = ex.train(spec, show_progress=False)
    assert state["status"] == "finished"
    log = pd.read_csv(spec.run_dir / "train_log.csv")
    assert {"itc", "itm", "alpha"} <= set(log.columns)
    df = ex.evaluate(spec, show_progress=False)
    assert set(df.model) == {"tiny-albef", "tiny-albef" + ex.ITC_ONLY}
    key = ["direction", "setting", "query_lang", "candidate_lang", "metric"]
    itc = df[df.model.str.endswith(ex.ITC_ONLY)].set_index(key).value
    itm = df[~df.model.str.endswith(ex.ITC_ONLY)].set_index(key).value
    assert set(itc.index) == set(itm.index)  # the same rows for both scorings
    mono = [k for k in itc.index if k[1] == "monolingual" and k[4] in ("mAP", "hit@1", "hit@5")]
    assert any(abs(itc[k] - itm[k]) > 1e-9 for k in mono), "ITM re-scoring changed no ranking"
    hit5 = [k for k in mono if k[4] == "hit@5"]  # k = 4 re-scored: the top 5 holds the same candidates
    assert all(itc[k] == pytest.approx(itm[k]) for k in hit5)
    bias = [k for k in itc.index if k[4] == "MRV"]
    assert bias and all(itc[k] == pytest.approx(itm[k]) for k in bias)  # bias measures: first-stage scores
    recorded = json.loads((spec.run_dir / "evaluation.json").read_text())["settings"]
    assert recorded["family"] == "albef" and recorded["scorings"] == ["tiny-albef-itc", "tiny-albef"]
    assert recorded["itm"] == {"rescore_k": 4, "itm_score": "itm"}
    zs = ex.evaluate_zero_shot(PROFILE, "tiny-albef", str(tmp_path), show_progress=False)
    assert set(zs.strategy) == {"zero-shot"} and set(zs.model) == set(df.model)


def test_albef_profiles_name_checkpoints_variants_and_overlaps():
    from hbkit.kit.profiles import get_profile

    for name in ("albef-colab", "albef-full"):
        prof = get_profile(name)
        settings = prof["model_settings"]
        assert settings["albef-4m-multilingual"]["variant"] == "multilingual"
        assert settings["albef-4m-english"]["variant"] == "english"
        assert all(image_text.model_family(m) == "albef" for m in prof["models"] + prof["extra_zero_shot"])
        spec = ex.RunSpec(profile=name, output_dir="runs", model=prof["models"][0], strategy="hybrid", seed=0,
                          max_steps=prof["train"]["max_steps"], batch_size=prof["train"]["batch_size"],
                          lr=prof["train"]["lr"])
        run = spec.resolve()
        assert run.encoder["text_init"] == "bert-base-multilingual-cased" and run.encoder["checkpoint"] == "albef-4m"
    full = get_profile("albef-full")
    assert full["model_settings"]["albef-4m-multilingual-queue"]["queue"] is True
    assert "not zero-shot" in full["description"]
    assert get_profile("albef-colab")["albef"]["net"]["image_res"] == 256


def test_itm_evaluation_settings_stay_out_of_the_run_identity(tmp_path, monkeypatch):
    prof = json.loads(json.dumps(PROFILES[PROFILE]))
    prof["albef"] = {"rescore_k": 9, "itm_score": "itm+itc", "rescore_batch": 7}
    monkeypatch.setitem(PROFILES, "rescored", prof)
    base = _spec(tmp_path, model="tiny-albef", strategy="hybrid").resolve()
    other = _spec(tmp_path, model="tiny-albef", strategy="hybrid", profile="rescored").resolve()
    assert other.encoder["rescore_k"] == 9 and base.encoder["rescore_k"] == 4
    assert base.run_id == other.run_id  # re-scoring more candidates retrains nothing
    prof["albef"]["distill"] = False
    assert _spec(tmp_path, model="tiny-albef", strategy="hybrid", profile="rescored").resolve().run_id != base.run_id
    model = image_text.build_albef(PROFILE, base.profile_dir, "tiny-albef", base.encoder)
    rescored = image_text.build_albef(PROFILE, base.profile_dir, "tiny-albef", other.encoder)
    assert model.identity() == rescored.identity() and rescored.rescore_k == 9
