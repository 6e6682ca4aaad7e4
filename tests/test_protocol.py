"""The trainer drives any RetrievalModel: a second toy model with two towers and different inputs
(caption bytes vs generated pixel arrays), a momentum buffer updated after every optimiser step,
exact resume with that buffer, DataLoader workers, run identity and grad-cache refusal."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import interrupt_at
import torch
import torch.nn.functional as F
from torch import nn

from hbkit.engine.checkpoint import is_finished, load_checkpoint, run_status
from hbkit.errors import ConfigError, DataError
from hbkit.models.base import RetrievalModel
from hbkit.parallel import ImageRef, ParallelDataset, ParallelItem
from hbkit.trainer import TrainConfig, Trainer

LANGS = ["en", "de"]
N_IMAGES = 24


def _pixels(key: str) -> torch.Tensor:
    """A deterministic 'image' (3 x 4 x 4) generated from its key."""
    g = torch.Generator().manual_seed(int(key.split(".")[0]))
    return torch.rand(3, 4, 4, generator=g)


def _dataset() -> ParallelDataset:
    items = []
    for i in range(N_IMAGES):
        for lang in LANGS:
            for k in range(2):  # two captions per image and language
                items.append(ParallelItem(f"img{i}", lang, f"{lang} {i} {k} " + "x" * (i % 5), ImageRef(f"{i}.png")))
    return ParallelDataset(items, "toy-images")


@dataclass(frozen=True)
class ToyCollator:
    vocab: int = 64
    length: int = 12

    def __call__(self, pairs):
        ids = torch.zeros(len(pairs), self.length, dtype=torch.long)
        for r, p in enumerate(pairs):
            codes = [b % (self.vocab - 1) + 1 for b in p.query.encode()][: self.length]
            ids[r, : len(codes)] = torch.tensor(codes)
        return {"text": ids, "image": torch.stack([_pixels(p.positive.key) for p in pairs])}


class ToyTwoTower(RetrievalModel):
    supports_grad_cache = False
    modalities = ("text", "image")

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.text = nn.EmbeddingBag(64, 16, mode="mean", padding_idx=0)
        self.image = nn.Linear(48, 16)
        self.log_scale = nn.Parameter(torch.tensor(2.0))
        self.register_buffer("momentum", torch.zeros(16))  # non-parameter state that must be checkpointed
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def collator(self):
        return ToyCollator()

    def forward(self, batch, gather: bool = True):
        t = F.normalize(self.text(batch["text"].to(self.image.weight.device)), dim=-1)
        v = F.normalize(self.image(batch["image"].flatten(1).to(self.image.weight.device)), dim=-1)
        logits = t @ v.T * self.log_scale.exp()
        target = torch.arange(len(t))
        i2t, t2i = F.cross_entropy(logits.T, target), F.cross_entropy(logits, target)
        return {"loss": (i2t + t2i) / 2, "i2t": i2t, "t2i": t2i}

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        self.momentum.mul_(0.9).add_(0.1 * self.image.bias)
        self.updates += 1

    def save(self, out_dir):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), out / "toy.pt")
        return out

    @classmethod
    def load(cls, path):
        m = cls()
        m.load_state_dict(torch.load(Path(path) / "toy.pt", weights_only=True))
        return m


def _cfg(**kw):
    base = dict(strategy="hybrid", batch_size=8, max_steps=10, lr=5e-2, checkpoint_every=4, val_every=0,
                log_every=1, seed=0, show_progress=False)
    return TrainConfig(**{**base, **kw})


def test_trainer_drives_a_two_tower_model_and_its_hooks(tmp_path):
    ds = _dataset()
    model = ToyTwoTower()
    state = Trainer(model, ds, _cfg(max_steps=30), tmp_path / "r").fit()
    assert state["status"] == "finished" and is_finished(tmp_path / "r")
    rows = [json.loads(x) for x in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    assert {"i2t", "t2i", "loss"} <= set(rows[0])  # the model's named losses are logged
    first, last = sum(r["loss"] for r in rows[:5]) / 5, sum(r["loss"] for r in rows[-5:]) / 5
    assert last < first - 0.2
    again = ToyTwoTower.load(tmp_path / "r" / "model")
    assert int(again.updates) == 30 and float(again.momentum.abs().sum()) > 0


def test_exact_resume_with_model_buffers_and_loader_workers(tmp_path):
    ds = _dataset()
    Trainer(ToyTwoTower(), ds, _cfg(), tmp_path / "full").fit()
    part = Trainer(ToyTwoTower(), ds, _cfg(), tmp_path / "part")

    part._step_hook = interrupt_at(6)
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    assert run_status(tmp_path / "part") == "interrupted"
    ckpt = load_checkpoint(part.latest_path)  # weights_only=True: plain tensors and values only
    assert ckpt["step"] == 4 and int(ckpt["model"]["updates"]) == 4
    # resume with two DataLoader workers collating: the position comes from the step counter
    Trainer(ToyTwoTower(), ds, _cfg(loader_workers=2), tmp_path / "part").fit()
    a = ToyTwoTower.load(tmp_path / "full" / "model").state_dict()
    b = ToyTwoTower.load(tmp_path / "part" / "model").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert int(b["updates"]) == 10


def test_run_identity_is_checked_for_finished_and_interrupted_runs(tmp_path):
    ds = _dataset()
    Trainer(ToyTwoTower(), ds, _cfg(max_steps=3), tmp_path / "done").fit()
    with pytest.raises(ConfigError, match=r"other settings \(train.max_steps: saved 3, now 5\)"):
        Trainer(ToyTwoTower(), ds, _cfg(max_steps=5), tmp_path / "done").fit()
    config = json.loads((tmp_path / "done" / "config.json").read_text())
    assert config["identity"]["train"]["max_steps"] == 3  # config.json still describes the weights
    part = Trainer(ToyTwoTower(), ds, _cfg(), tmp_path / "part")
    part._step_hook = interrupt_at(5)
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    with pytest.raises(ConfigError, match=r"train.lr: saved 0.05, now 0.01"):
        Trainer(ToyTwoTower(), ds, _cfg(lr=1e-2), tmp_path / "part").fit()
    # the same settings resume and finish
    assert Trainer(ToyTwoTower(), ds, _cfg(), tmp_path / "part").fit()["steps"] == 10


def test_grad_cache_is_refused_for_a_model_without_separable_embeddings(tmp_path):
    with pytest.raises(ConfigError, match="grad_cache_chunk=4 needs a loss computed from separable"):
        Trainer(ToyTwoTower(), _dataset(), _cfg(grad_cache_chunk=4), tmp_path / "r")
    with pytest.raises(ConfigError, match="not an hbkit RetrievalModel"):
        Trainer(nn.Linear(2, 2), _dataset(), _cfg(), tmp_path / "r")


class _Payload:
    """An object whose unpickling would run code (os.system here, never executed by the test)."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_a_checkpoint_that_needs_code_is_refused_on_resume(tmp_path):
    ds = _dataset()
    part = Trainer(ToyTwoTower(), ds, _cfg(), tmp_path / "r")
    part._step_hook = interrupt_at(5)
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    ckpt = load_checkpoint(part.latest_path)
    ckpt["extra"] = _Payload()
    torch.save(ckpt, part.latest_path)  # a shared runs/ folder with a tampered checkpoint
    with pytest.raises(DataError, match=r"could not be loaded safely .*do not load files from an untrusted source"):
        Trainer(ToyTwoTower(), ds, _cfg(), tmp_path / "r").fit()
