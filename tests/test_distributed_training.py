"""Two gloo processes, each with half of every global batch, train to the same weights as one process."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hbkit.datasets.demo_world import make_demo_world
from hbkit.models.bi_encoder import BiEncoder, EncoderConfig, load_encoder
from hbkit.models.tiny import make_tiny_model
from hbkit.trainer import TrainConfig, Trainer

WORLD = dict(seed=4, n_train_entities=30, n_val_entities=6, n_test_entities=6)


def _cfg(grad_cache_chunk=0):
    return TrainConfig(strategy="hybrid", batch_size=8, max_steps=4, lr=1e-3, val_every=2, val_batches=2,
                       checkpoint_every=2, log_every=1, seed=0, show_progress=False,
                       grad_cache_chunk=grad_cache_chunk)


def _train(model_dir, run_dir, grad_cache_chunk=0):
    world = make_demo_world(**WORLD)
    enc = BiEncoder(EncoderConfig(model=str(model_dir), max_query_length=32, max_passage_length=48))
    return Trainer(enc, world.train, _cfg(grad_cache_chunk), run_dir, validation=world.validation).fit()


def _worker(rank, world_size, init_file, model_dir, run_dir, grad_cache_chunk=0):
    torch.set_num_threads(1)
    os.environ["HBKIT_PROGRESS"] = "0"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        _train(model_dir, run_dir, grad_cache_chunk)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    world = make_demo_world(**WORLD)
    d = make_tiny_model("xlmr", tmp_path_factory.mktemp("dist") / "m", world.texts(), seed=0, vocab_size=300,
                        hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, mlm_steps=0)
    nodrop = d.parent / "nodrop"
    shutil.copytree(d, nodrop)
    cfg = json.loads((nodrop / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # identical forward on every rank
    (nodrop / "config.json").write_text(json.dumps(cfg))
    return nodrop


@pytest.mark.parametrize("grad_cache_chunk", [0, 3])
def test_two_processes_match_one_process(model_dir, tmp_path, grad_cache_chunk):
    """DistributedDataParallel (grad_cache_chunk=0), or cached-gradient steps whose gradients are
    averaged in buckets (3), on two gloo processes equal one process on the combined batches."""
    torch.set_num_threads(1)
    _train(model_dir, tmp_path / "single")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(model_dir), str(tmp_path / "ddp"), grad_cache_chunk),
             nprocs=2, join=True)
    a = load_encoder(tmp_path / "single" / "model").state_dict()
    b = load_encoder(tmp_path / "ddp" / "model").state_dict()
    base = load_encoder(model_dir).state_dict()
    moved = 0
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4), k
        moved += not torch.allclose(a[k], base[k])
    assert moved > 5  # training did change the weights, so the equality above is not trivial
    la = (tmp_path / "single" / "train_log.jsonl").read_text().splitlines()
    lb = (tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()
    assert len(la) == len(lb) == 6  # 4 training steps + 2 validations
    va = [json.loads(x)["val_loss"] for x in (tmp_path / "single" / "train_log.jsonl").read_text().splitlines()
          if "val_loss" in x]
    vb = [json.loads(x)["val_loss"] for x in (tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()
          if "val_loss" in x]
    assert va == pytest.approx(vb, rel=1e-5)  # validation batches are not gathered across processes
