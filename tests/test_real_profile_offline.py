"""The real-data profile glue end to end, offline: mMARCO-format triples, a SQuAD-format validation file,
XQuAD-R, MLQA-R and MIRACL from the real files, a tiny model standing in for a checkpoint under
HBKIT_MODELS, two strategies, results beside the paper's numbers."""
from __future__ import annotations

import json

import pytest

import hbkit.kit.experiment as ex
from hbkit.datasets.demo_world import make_demo_world
from hbkit.datasets.miracl import load_miracl_dev
from hbkit.kit.profiles import PROFILES
from hbkit.kit.report import compare_with_paper
from hbkit.models.tiny import make_tiny_model


def _squad_file(path, world):
    paras = []
    for i, q in enumerate(world.benchmark.queries[:30]):
        if q.lang != "en":
            continue
        cand = next(c for c in world.benchmark.candidates if q.xid in c.xids and c.lang == "en")
        ctx = cand.context
        start = ctx.index(cand.text)
        paras.append({"context": ctx, "qas": [{"id": f"q{i}", "question": q.text,
                                                "answers": [{"text": cand.text[:5], "answer_start": start}]}]})
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paras}]}))
    return path


@pytest.fixture
def offline_profile(tmp_path, shared_data, monkeypatch):
    world = make_demo_world(seed=2, n_train_entities=40, n_val_entities=8, n_test_entities=10)
    models = tmp_path / "models"
    make_tiny_model("bert", models / "labse", world.texts(), seed=0, vocab_size=400, hidden_size=32, num_layers=1,
                    num_heads=2, intermediate_size=64)
    monkeypatch.setenv("HBKIT_MODELS", str(models))
    mm = tmp_path / "mmarco"
    mm.mkdir()
    for lang in ("en", "de", "ru"):
        rows = [world.train.item(g, lang) for g in range(len(world.train))]
        (mm / f"{lang}.tsv").write_text("".join(f"{r.query}\t{r.positive}\t{r.negative}\n" for r in rows))
    miracl = load_miracl_dev("yo", root=shared_data / "miracl")
    judged = sorted({d for docs in miracl.qrels.values() for d in docs})
    corpus = tmp_path / "yo.jsonl"
    corpus.write_text("".join(json.dumps({"docid": d, "title": f"t{i}", "text": world.texts()[i % 500]}) + "\n"
                              for i, d in enumerate(judged + [f"extra#{k}" for k in range(50)])))
    PROFILE = {
        "description": "offline stand-in for a real profile",
        "models": ["labse"], "strategies": ["X-X", "hybrid"], "seeds": [0],
        "data": {
            "train": [{"kind": "mmarco", "languages": ["en", "de", "ru"], "source": str(mm)}],
            "validation": {"kind": "squadshifts", "source": str(_squad_file(tmp_path / "nyt.json", world))},
            "benchmarks": [{"kind": "xquad-r", "path": str(shared_data / "xquad-r"), "languages": ["de", "en"]},
                           {"kind": "mlqa-r", "path": str(shared_data / "mlqa"), "languages": ["ar"]},
                           {"kind": "miracl", "languages": ["yo"], "path": str(shared_data / "miracl"),
                            "corpus": str(corpus)}],
        },
        "train": {"alpha": 0.5, "batch_size": 8, "max_steps": 3, "lr": 1e-3, "val_every": 3, "val_batches": 1,
                  "checkpoint_every": 3, "max_query_length": 32, "max_passage_length": 48},
    }
    monkeypatch.setitem(PROFILES, "offline", PROFILE)
    return tmp_path


def test_real_profile_pipeline_offline(offline_profile):
    out = str(offline_profile / "runs")
    for strategy in ("X-X", "hybrid"):
        spec = ex.RunSpec(profile="offline", output_dir=out, model="labse", strategy=strategy, seed=0,
                          max_steps=3, batch_size=8, lr=1e-3)
        state = ex.train(spec)
        assert state["status"] == "finished" and state["steps"] == 3
        cfg = json.loads((spec.run_dir / "config.json").read_text())
        assert cfg["identity"]["data"][0]["languages"] == ["de", "en", "ru"] and cfg["model"]["pooling"] == "pooler"
        assert cfg["run"]["train"]["strategy"] == strategy and cfg["run"]["run_id"] in spec.run_dir.name
        ex.evaluate(spec)
    results = ex.collect_results(out, "offline")
    assert set(results.benchmark) == {"xquad-r", "mlqa-r", "miracl-dev"}
    xq = results[(results.benchmark == "xquad-r") & (results.metric == "mAP")]
    assert set(xq.setting) == {"monolingual", "cross-lingual", "multilingual"}
    assert ((xq.value > 0) & (xq.value <= 1)).all()
    assert set(results[results.benchmark == "miracl-dev"].metric) == {"nDCG@10", "R@100"}
    assert (results[results.benchmark == "xquad-r"].n_queries.max()) == 1190
    cmp = compare_with_paper(results)
    # LaBSE tables: XQuAD-R, MLQA-R, XQuAD-R bias, MIRACL (MLQA-R bias needs two languages; only ar is offline)
    assert {"T5", "T6", "T7", "T13"} <= set(cmp.table) and "T8" not in set(cmp.table)
    row = cmp[(cmp.table == "T5") & (cmp.setting == "monolingual") & (cmp.metric == "map") &
              (cmp.strategy == "x-x") & (cmp.query_language == "de")]
    ours = results[(results.benchmark == "xquad-r") & (results.setting == "monolingual") & (results.metric == "mAP")
                   & (results.strategy == "X-X") & (results.query_lang == "de")].value.item()
    assert row.ours.item() == pytest.approx(ours) and row["diff"].item() == pytest.approx(ours - row.paper.item())
