"""Trainer: exact resume, skip when finished, NaN guard, config errors, and learning."""
from __future__ import annotations

import json

import pytest
from conftest import interrupt_at
import torch

from hbkit.datasets.demo_world import make_demo_world
from hbkit.models.bi_encoder import BiEncoder, EncoderConfig, load_encoder
from hbkit.errors import ConfigError, TrainingDivergedError
from hbkit.models.tiny import make_tiny_model
from hbkit.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def world():
    return make_demo_world(seed=3, n_train_entities=30, n_val_entities=8, n_test_entities=6)


@pytest.fixture(scope="module")
def model_dir(world, tmp_path_factory):
    return make_tiny_model("xlmr", tmp_path_factory.mktemp("tiny") / "m", world.texts(), seed=0, vocab_size=400,
                           hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, mlm_steps=0)


def _trainer(model_dir, world, run_dir, **kw):
    cfg = dict(strategy="hybrid", batch_size=8, max_steps=10, lr=1e-3, checkpoint_every=4, val_every=5,
               val_batches=2, log_every=1, seed=0, show_progress=False)
    cfg.update(kw)
    enc = BiEncoder(EncoderConfig(model=str(model_dir), max_query_length=32, max_passage_length=48))
    return Trainer(enc, world.train, TrainConfig(**cfg), run_dir, validation=world.validation)


def _weights(run_dir):
    return load_encoder(run_dir / "model").state_dict()


def test_interrupted_run_resumes_to_identical_weights(model_dir, world, tmp_path):
    full = _trainer(model_dir, world, tmp_path / "full")
    full.fit()

    part = _trainer(model_dir, world, tmp_path / "part")

    part._step_hook = interrupt_at(6)
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    assert torch.load(part.latest_path, weights_only=True)["step"] == 4
    assert not (tmp_path / "part" / "model").exists()

    # resumed with two DataLoader workers collating (dropout on: worker start-up must not move the RNG)
    resumed = _trainer(model_dir, world, tmp_path / "part", loader_workers=2)
    state = resumed.fit()
    assert state["steps"] == 10
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

    def losses(d):
        rows = [json.loads(x) for x in (d / "train_log.jsonl").read_text().splitlines()]
        return [(r["step"], r.get("loss"), r.get("val_loss")) for r in rows]

    assert losses(tmp_path / "full") == losses(tmp_path / "part")
    assert len([s for s, loss, _ in losses(tmp_path / "full") if loss is not None]) == 10


def test_finished_run_is_skipped(model_dir, world, tmp_path):
    t = _trainer(model_dir, world, tmp_path / "r", max_steps=3, val_every=0)
    t.fit()
    before = (tmp_path / "r" / "model").stat().st_mtime_ns
    state = _trainer(model_dir, world, tmp_path / "r", max_steps=3, val_every=0).fit()
    assert state["status"] == "finished" and state["steps"] == 3
    assert (tmp_path / "r" / "model").stat().st_mtime_ns == before
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["precision"] == "fp32" and cfg["train"]["strategy"] == "hybrid"


def test_nan_loss_stops_and_keeps_last_good_checkpoint(model_dir, world, tmp_path):
    t = _trainer(model_dir, world, tmp_path / "r", val_every=0)
    real_forward = t.model.loss_fn.forward
    calls = {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        out = real_forward(*args, **kw)
        return out * float("nan") if calls["n"] == 7 else out

    t.model.loss_fn.forward = flaky
    with pytest.raises(TrainingDivergedError, match=r"step 7.*step 4.*kept"):
        t.fit()
    assert torch.load(t.latest_path, weights_only=True)["step"] == 4
    assert not (tmp_path / "r" / "train_state.json").exists()


def test_training_lowers_validation_loss(model_dir, world, tmp_path):
    t = _trainer(model_dir, world, tmp_path / "r", max_steps=30, val_every=30, val_batches=3, lr=2e-3)
    before = t.validation_loss(t._validation_batches())
    t.fit()
    rows = [json.loads(x) for x in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    after = [r["val_loss"] for r in rows if "val_loss" in r][-1]
    assert after < before - 0.05


@pytest.mark.parametrize("kw, msg", [
    ({"alpha": 1.5}, "alpha must be in"),
    ({"max_steps": "10"}, "max_steps"),
    ({"batch_size": 10_000}, "batch_size"),
    ({"strategy": "mono"}, "strategy"),
    ({"languages": ["en", "xx"]}, "xx"),
    ({"precision": "fp16"}, "CUDA"),
])
def test_bad_training_config(model_dir, world, tmp_path, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        _trainer(model_dir, world, tmp_path / "r", **kw)
