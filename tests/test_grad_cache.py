"""Cached-gradient mode: same losses and gradients as the plain step, dropout replayed exactly."""
from __future__ import annotations

import pytest
import torch

from hbkit.datasets.demo_world import make_demo_world
from hbkit.engine.grad_cache import cached_backward
from hbkit.models.bi_encoder import BiEncoder, EncoderConfig
from hbkit.models.tiny import make_tiny_model
from hbkit.trainer import TrainConfig


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    world = make_demo_world(seed=5, n_train_entities=20, n_val_entities=5, n_test_entities=5)
    d = make_tiny_model("bert", tmp_path_factory.mktemp("gc") / "m", world.texts(), seed=0, vocab_size=300,
                        hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, mlm_steps=0)
    pairs = [world.train.pair(r) for r in _refs(world.train)]
    # pairs 1 and 4 lose their hard negative: the rest of the batch keeps theirs
    pairs = [p if i not in (1, 4) else type(p)(p.query, p.positive, None, p.group, p.query_lang, p.passage_lang)
             for i, p in enumerate(pairs)]
    return d, pairs


def _refs(ds):
    from hbkit.parallel import PairRef

    return [PairRef(0, g, "en", "de") for g in range(10)]


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _model(d, train: bool):
    m = BiEncoder(EncoderConfig(model=str(d)))
    m.configure_training(TrainConfig(temperature=0.05))
    return m.train(train)


def _plain(model, batch, chunk=None):
    model.zero_grad()
    if chunk is None:
        losses = model(batch)
    else:  # the same chunks as the cached pass, in one graph
        embs = [torch.cat([model.embed_chunk(batch, g, slice(i, min(n, i + chunk))) for i in range(0, n, chunk)])
                for g, (_, n) in enumerate(model.embedding_inputs(batch))]
        losses = model.loss_from_embeddings(batch, embs)
    losses["loss"].backward()
    return losses["loss"].detach(), _grads(model)


def _cached(model, batch, chunk):
    model.zero_grad()
    losses = cached_backward(model, batch, chunk, torch.device("cpu"))
    return losses["loss"], _grads(model)


def _close(g1, g2, atol=1e-8):
    assert g1.keys() == g2.keys() and len(g1) > 10
    for k in g1:
        tol = 1e-4 * float(g1[k].abs().max()) + atol
        assert float((g1[k] - g2[k]).abs().max()) <= tol, k


def test_equals_plain_full_batch_without_dropout(setup):
    d, pairs = setup
    model = _model(d, train=False)  # no dropout
    batch = model.collator()(pairs)
    assert batch["neg_owner"].tolist() == [0, 2, 3, 5, 6, 7, 8, 9]
    l1, g1 = _plain(model, batch)
    l2, g2 = _cached(model, batch, chunk=3)
    assert torch.allclose(l1, l2, atol=1e-6)
    # chunks of 3 vs one pass of 18 passages: float round-off (embeddings differ by ~2e-7) amplified
    # by the 1/0.05 temperature, hence an absolute tolerance of a few 1e-6 on gradients of ~1e-4
    _close(g1, g2, atol=5e-6)
    l3, g3 = _plain(model, batch, chunk=3)  # the same chunks in one graph: equal to round-off
    _close(g3, g2)


def test_dropout_masks_are_replayed(setup):
    d, pairs = setup
    model = _model(d, train=True)  # dropout on
    batch = model.collator()(pairs)
    torch.manual_seed(0)
    l1, g1 = _plain(model, batch, chunk=4)
    after_plain = torch.get_rng_state()
    torch.manual_seed(0)
    l2, g2 = _cached(model, batch, chunk=4)
    assert torch.equal(torch.get_rng_state(), after_plain)  # RNG stream continues as after a plain pass
    assert torch.allclose(l1, l2, atol=1e-6)
    _close(g1, g2)
    # and dropout really is active: another seed gives another loss
    torch.manual_seed(1)
    l3, _ = _plain(model, batch, chunk=4)
    assert not torch.allclose(l1, l3)
