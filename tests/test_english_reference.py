"""English reference: the Karpathy-split loaders, the reference evaluation of a checkpoint as released,
and ALBEF's published numbers beside it."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import hbkit.kit.experiment as ex
from hbkit.datasets import registry
from hbkit.datasets.karpathy import read_karpathy
from hbkit.errors import ConfigError, DataError, UnknownModelError
from hbkit.evaluation import IMAGE_TO_TEXT, MONOLINGUAL, MULTILINGUAL, TEXT_TO_IMAGE, TEXT_TO_TEXT
from hbkit.kit import english_reference as er
from hbkit.kit import image_report
from hbkit.kit.profiles import PROFILES


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (4, 4), (i % 256, 0, 0)).save(folder / name)


def _albef_file(path, names, per_image=5):
    entries = [{"image": f"flickr30k-images/{n}", "caption": [f"A photo {i} caption {k}." for k in range(per_image)]}
               for i, n in enumerate(names)]
    path.write_text(json.dumps(entries))
    return path


def test_albef_json_and_karpathy_json_read_to_the_same_set(tmp_path):
    names = [f"{1000 + i}.jpg" for i in range(3)]
    _images(tmp_path / "img" / "flickr30k-images", names)
    albef = read_karpathy("flickr30k", _albef_file(tmp_path / "flickr30k_test.json", names), images=tmp_path / "img")
    karpathy = {"dataset": "flickr30k", "images": [
        {"filename": n, "split": split, "sentences": [{"raw": f"A photo {i} caption {k}."} for k in range(5)]}
        for i, n in enumerate(names) for split in ["test"]] + [
        {"filename": "999.jpg", "split": "train", "sentences": [{"raw": "not a test image"}]}]}
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "dataset_flickr30k.json").write_text(json.dumps(karpathy))
    kp = read_karpathy("flickr30k", tmp_path / "k", images=tmp_path / "img")  # a folder: the file is found in it
    assert albef.ids == kp.ids == tuple(names)
    assert albef.captions == kp.captions and len(albef.captions["en"][2]) == 5
    assert albef.captions["en"][1][3] == "A photo 1 caption 3."
    assert albef.name == kp.name == "flickr30k-test-3"  # not the whole 1K test: never set beside the paper
    bench = registry.load_benchmark({"kind": "flickr30k", "path": str(tmp_path / "flickr30k_test.json"),
                                     "images": str(tmp_path / "img")})
    assert len(bench.queries) == 3 + 15 and {q.lang for q in bench.queries} == {None, "en"}


def test_the_whole_test_split_takes_the_published_name_and_a_training_file_merges_per_image(tmp_path):
    names = [f"{10_000 + i}.jpg" for i in range(1000)]
    _images(tmp_path / "img", names)
    full = read_karpathy("flickr30k", _albef_file(tmp_path / "flickr30k_test.json", names, per_image=1),
                         images=tmp_path / "img")
    assert full.name == "flickr30k-1k" and len(full.ids) == 1000
    sub = read_karpathy("flickr30k", tmp_path / "flickr30k_test.json", images=tmp_path / "img", max_images=10)
    assert sub.name == "flickr30k-test-10" and len(sub.ids) == 10
    train = [{"image": f"x/{names[0]}", "caption": "one", "image_id": "a"},
             {"image": f"x/{names[0]}", "caption": "two", "image_id": "a"}]
    (tmp_path / "train.json").write_text(json.dumps(train))
    merged = read_karpathy("flickr30k", tmp_path / "train.json", images=tmp_path / "img")
    assert merged.captions["en"] == (("one", "two"),) and merged.name == "flickr30k-train-1"


def test_default_folders_and_karpathy_coco_json(tmp_path, monkeypatch):
    from hbkit.datasets import karpathy

    names = [f"{100 + i}.jpg" for i in range(4)]
    _images(tmp_path / "data" / "flickr30k-images", names)
    (tmp_path / "data" / "karpathy").mkdir()
    _albef_file(tmp_path / "data" / "karpathy" / "flickr30k_test.json", names)
    monkeypatch.setenv("HBKIT_DATA", str(tmp_path / "data"))
    found = read_karpathy("flickr30k")  # no path, no images: $HBKIT_DATA/karpathy and flickr30k-images
    assert found.ids == tuple(names) and found.name == "flickr30k-test-4"
    coco = [f"COCO_val2014_{i:012d}.jpg" for i in range(1, 4)]
    _images(tmp_path / "data" / "coco" / "val2014", coco)
    kp = {"images": [{"filepath": "val2014", "filename": n, "split": "test",
                      "sentences": [{"raw": f"cap {i} {k}"} for k in range(5 + i)]} for i, n in enumerate(coco)]}
    (tmp_path / "data" / "karpathy" / "dataset_coco.json").write_text(json.dumps(kp))
    monkeypatch.setitem(karpathy.KARPATHY_SETS["coco"], "images", 3)
    got = read_karpathy("coco")
    assert got.name == "coco-5k" and [len(c) for c in got.captions["en"]] == [5, 6, 7]  # 5 to 7 captions
    assert got.images[0].key.endswith("val2014/COCO_val2014_000000000001.jpg")
    val = tmp_path / "coco_karpathy_val.json"
    val.write_text(json.dumps([{"image": f"val2014/{n}", "caption": ["a"]} for n in coco]))
    assert read_karpathy("coco", val).name == "coco-val-3"  # never "the 5K test"


def test_karpathy_errors_name_the_problem(tmp_path):
    names = ["1.jpg"]
    _images(tmp_path / "img", names)
    with pytest.raises(ConfigError, match="Unknown Karpathy-split dataset 'flickr'"):
        read_karpathy("flickr", tmp_path)
    with pytest.raises(ConfigError, match="English captions only"):
        read_karpathy("flickr30k", tmp_path, languages=["de"])
    with pytest.raises(DataError, match="No flickr30k annotation file in"):
        read_karpathy("flickr30k", tmp_path / "img")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image": "1.jpg", "caption": ["ok", " "]}]))
    with pytest.raises(DataError, match="image '1.jpg' has an empty caption"):
        read_karpathy("flickr30k", bad, images=tmp_path / "img")
    bad.write_text(json.dumps({"images": [{"filename": "1.jpg", "split": "val", "sentences": []}]}))
    with pytest.raises(DataError, match=r"no image in split 'test'; the file has \['val'\]"):
        read_karpathy("flickr30k", bad, images=tmp_path / "img")
    bad.write_text("{not json")
    with pytest.raises(DataError, match="is not a readable JSON file"):
        read_karpathy("coco", bad, images=tmp_path / "img")
    bad.write_text(json.dumps([{"file": "1.jpg"}]))
    with pytest.raises(DataError, match="entry 0 lacks 'image' or 'caption'"):
        read_karpathy("coco", bad, images=tmp_path / "img")
    _albef_file(bad, ["2.jpg"])
    with pytest.raises(DataError, match="1 of its 1 images are missing"):
        read_karpathy("flickr30k", bad, images=tmp_path / "img")


# ----------------------------------------------------------------------------- the reference evaluation
@pytest.fixture()
def reference_profile(tmp_path, monkeypatch):
    """test-image with an English reference block: the tiny ALBEF on the toy's English test captions,
    written as an ALBEF retrieval file."""
    from hbkit.kit import image_text

    prof = json.loads(json.dumps(PROFILES["test-image"]))
    monkeypatch.setitem(PROFILES, "ref-test", prof)
    world = image_text.image_world("ref-test", tmp_path / "ref-test")
    entries = [{"image": os.path.relpath(ref.key, tmp_path), "caption": list(caps)} for ref, caps in
               zip(world.test_set.images, world.test_set.captions["en"])]
    ann = tmp_path / "toy_test.json"
    ann.write_text(json.dumps(entries))
    prof["english_reference"] = {"models": ["tiny-albef"], "benchmarks": [
        {"kind": "flickr30k", "path": str(ann), "images": str(tmp_path)},
        {"kind": "coco", "path": str(ann), "images": str(tmp_path), "models": ["another-model"]}]}
    return "ref-test", tmp_path, len(world.test_set.ids)


def test_reference_evaluation_of_a_model_as_released(reference_profile):
    profile, out, n_images = reference_profile
    run = er.reference_config(profile, "tiny-albef", str(out))
    assert run.label == ex.REFERENCE and [b["kind"] for b in run.data["benchmarks"]] == ["flickr30k"]
    assert run.evaluation == {"family": "albef", "cross_lingual": False, "caption_setting": False}
    assert run.run_id != ex.zero_shot_config(profile, "tiny-albef", str(out)).run_id
    df = er.evaluate_reference(profile, "tiny-albef", str(out), show_progress=False)
    assert set(df.strategy) == {ex.REFERENCE} and set(df.benchmark) == {f"flickr30k-test-{n_images}"}
    assert set(df.model) == {"tiny-albef", "tiny-albef" + ex.ITC_ONLY}
    assert set(df.setting) == {MONOLINGUAL, MULTILINGUAL}  # no cross-lingual or caption rows: English only
    assert set(df.direction) >= {TEXT_TO_IMAGE, IMAGE_TO_TEXT} and TEXT_TO_TEXT not in set(df.direction)
    key = ["model", "direction", "metric"]
    mono = df[df.setting == MONOLINGUAL].set_index(key).value.sort_index()
    pooled = df[(df.setting == MULTILINGUAL) & df.direction.isin([TEXT_TO_IMAGE, IMAGE_TO_TEXT])]
    pooled = pooled.set_index(key).value.sort_index()
    common = mono.index.intersection(pooled.index)
    assert len(common) and np.allclose(mono[common], pooled[common])  # one language: pooled = monolingual
    recorded = json.loads((run.run_dir / "evaluation.json").read_text())
    assert recorded["leak_guard"] == [{"evaluation": f"flickr30k-test-{n_images}", "checked": False,
                                       "why": ex.NO_LEAK_GUARD}]
    cached = er.evaluate_reference(profile, "tiny-albef", str(out), show_progress=False)
    pd.testing.assert_frame_equal(cached, df, check_dtype=False)
    pd.testing.assert_frame_equal(er.collect_reference(str(out), profile), cached)
    # the reference rows stay out of the strategy comparison
    zs = ex.evaluate_zero_shot(profile, "tiny-albef", str(out), show_progress=False)
    collected = ex.collect_results(str(out), profile)
    assert ex.REFERENCE not in set(collected.strategy) and len(collected) == len(zs)


def test_beside_published_skips_a_model_it_cannot_evaluate_and_says_why(reference_profile, tmp_path):
    profile, out, n_images = reference_profile
    prof = PROFILES[profile]
    # a released checkpoint whose test images are missing: refused on the data, before any download
    prof["english_reference"]["models"].append("albef-flickr30k-english")
    prof["english_reference"]["benchmarks"].append(
        {"kind": "flickr30k", "path": prof["english_reference"]["benchmarks"][0]["path"],
         "images": str(tmp_path / "empty"), "models": ["albef-flickr30k-english"]})
    (tmp_path / "empty").mkdir()
    prof.setdefault("model_settings", {})["albef-flickr30k-english"] = {"checkpoint": "albef-flickr30k"}
    table, note = er.beside_published(profile, str(out), show_progress=False)
    assert table is None
    assert "tiny-albef: its checkpoint 'tiny-albef' is not a released ALBEF checkpoint" in note
    assert f"albef-flickr30k-english: flickr30k-test-{n_images}: {n_images} of its {n_images} images are missing" \
        in note
    assert not (er.reference_config(profile, "tiny-albef", str(out)).run_dir / "results.csv").exists()
    assert er.beside_published("test-image", str(out)) == (None, "Profile 'test-image' evaluates no released "
                                                            "checkpoint on Flickr30K/COCO (no english_reference "
                                                            "block): the published table alone.")


def test_a_whole_test_split_is_set_beside_the_paper(reference_profile, monkeypatch):
    from hbkit.datasets import karpathy

    profile, out, n_images = reference_profile
    monkeypatch.setitem(karpathy.KARPATHY_SETS["flickr30k"], "images", n_images)  # the toy set as "the 1K test"
    df = er.evaluate_reference(profile, "tiny-albef", str(out), show_progress=False)
    assert set(df.benchmark) == {"flickr30k-1k"}
    table = image_report.albef_vs_published(df, {"tiny-albef": "albef-flickr30k"})
    assert len(table) == 12 and set(table.scoring) == {"ITC", "ITC+ITM"}  # TR/IR @1/5/10, both scorings
    mono = df[(df.setting == MONOLINGUAL)].set_index(["model", "direction", "metric"]).value
    row = table[(table.scoring == "ITC+ITM") & (table.metric == "TR@1")].iloc[0]
    assert row.ours == pytest.approx(100 * mono[("tiny-albef", IMAGE_TO_TEXT, "hit@1")])
    row = table[(table.scoring == "ITC") & (table.metric == "IR@5")].iloc[0]
    assert row.ours == pytest.approx(100 * mono[("tiny-albef-itc", TEXT_TO_IMAGE, "hit@5")])
    pub = image_report.albef_published()
    expected = pub[(pub.pretraining == "14M") & (pub.setting == "fine-tuned") & (pub.dataset == "Flickr30K 1K test")
                   & (pub.metric == "IR@5")].value.item()
    assert row.setting == "fine-tuned" and row.published == expected
    assert row["diff"] == pytest.approx(row.ours - expected)


def test_reference_errors(reference_profile):
    profile, out, _ = reference_profile
    with pytest.raises(UnknownModelError, match="'tiny-clip' is not among the english_reference models of "
                                                "profile 'ref-test': choose one of tiny-albef"):
        er.reference_config(profile, "tiny-clip", str(out))
    with pytest.raises(ConfigError, match="Profile 'test-image' has no english_reference block"):
        er.reference_config("test-image", "tiny-albef", str(out))
    with pytest.raises(DataError, match="No English reference evaluation of profile 'ref-test'"):
        er.collect_reference(str(out), profile)
    assert er.reference_models("test-image") == []


def test_albef_profiles_evaluate_released_checkpoints_at_their_resolution():
    assert er.reference_checkpoints("albef-full") == {"albef-flickr30k-english": "albef-flickr30k",
                                                       "albef-coco-english": "albef-coco"}
    run = er.reference_config("albef-full", "albef-flickr30k-english")
    assert [b["kind"] for b in run.data["benchmarks"]] == ["flickr30k"]  # COCO 5K is for the COCO checkpoint
    assert run.encoder["net"] == {"image_res": 384} and run.encoder["rescore_k"] == 128
    coco = er.reference_config("albef-full", "albef-coco-english")
    assert coco.data["benchmarks"] == [{"kind": "flickr30k"}, {"kind": "coco", "rescore_k": 256}]
    colab = er.reference_config("albef-colab", "albef-flickr30k-english")
    assert colab.encoder["net"] == {"image_res": 384} and colab.encoder["variant"] == "english"


# ----------------------------------------------------------------------------- beside the paper
def _rows(model, bench, values):
    rows = []
    for (direction, metric), v in values.items():
        rows.append({"model": model, "strategy": ex.REFERENCE, "seed": 0, "benchmark": bench, "direction": direction,
                     "setting": MONOLINGUAL, "query_lang": "na" if direction == IMAGE_TO_TEXT else "en",
                     "candidate_lang": "en" if direction == IMAGE_TO_TEXT else "na", "metric": metric, "value": v})
    return rows


def test_albef_vs_published_matches_checkpoint_dataset_and_setting():
    vals = {(IMAGE_TO_TEXT, "hit@1"): 0.95, (IMAGE_TO_TEXT, "hit@5"): 0.99, (TEXT_TO_IMAGE, "hit@1"): 0.85,
            (TEXT_TO_IMAGE, "mAP"): 0.5}
    df = pd.DataFrame(_rows("ft", "flickr30k-1k", vals)
                      + _rows("ft-itc", "flickr30k-1k", {(TEXT_TO_IMAGE, "hit@1"): 0.8})
                      + _rows("coco", "flickr30k-1k", {(TEXT_TO_IMAGE, "hit@10"): 0.9})
                      + _rows("pre", "coco-5k", {(IMAGE_TO_TEXT, "hit@1"): 0.5})
                      + _rows("ft", "flickr30k-test-10", {(IMAGE_TO_TEXT, "hit@1"): 1.0}))
    out = image_report.albef_vs_published(df, {"ft": "albef-flickr30k", "coco": "albef-coco", "pre": "albef-4m"})
    pub = image_report.albef_published()
    key = out.set_index(["model", "scoring", "metric"])
    ft_tr1 = key.loc[("ft", "ITC+ITM", "TR@1")]
    expected = pub[(pub.pretraining == "14M") & (pub.setting == "fine-tuned")
                   & (pub.dataset == "Flickr30K 1K test") & (pub.metric == "TR@1")].value.item()
    assert ft_tr1.ours == pytest.approx(95.0) and ft_tr1.published == expected
    assert ft_tr1["diff"] == pytest.approx(95.0 - expected) and ft_tr1.setting == "fine-tuned"
    assert key.loc[("ft", "ITC", "IR@1")].ours == pytest.approx(80.0)
    assert key.loc[("coco", "ITC+ITM", "IR@10")].setting == "zero-shot (COCO fine-tuned model)"
    assert not np.isnan(key.loc[("coco", "ITC+ITM", "IR@10")].published)
    pre = key.loc[("pre", "ITC+ITM", "TR@1")]
    assert pre.setting == "(none published)" and np.isnan(pre.published) and pre.dataset == "COCO 5K test"
    assert len(out) == 6  # mAP and the 10-image subset are left out
    ft = out[out.model == "ft"]
    assert list(zip(ft.scoring, ft.metric)) == [("ITC", "IR@1"), ("ITC+ITM", "TR@1"), ("ITC+ITM", "TR@5"),
                                                ("ITC+ITM", "IR@1")]  # TR before IR, k ascending
    with pytest.raises(ConfigError, match=r"No checkpoint named for model\(s\) \['coco'\]"):
        image_report.albef_vs_published(df, {"ft": "albef-flickr30k", "pre": "albef-4m"})
    with pytest.raises(ConfigError, match="'mine' \\(of model 'ft'\\) is not a released ALBEF checkpoint"):
        image_report.albef_vs_published(df[df.model == "ft"], {"ft": "mine"})
    none = image_report.albef_vs_published(df[df.benchmark == "flickr30k-test-10"], {"ft": "albef-flickr30k"})
    assert none.empty and "flickr30k-1k / coco-5k" in none.attrs["note"]
