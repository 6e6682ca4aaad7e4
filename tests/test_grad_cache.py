"""Cached-gradient mode: same loss and gradients as the plain step, dropout replayed exactly."""
from __future__ import annotations

import pytest
import torch

from hbkit.datasets.demo_world import make_demo_world
from hbkit.models.bi_encoder import BiEncoder, EncoderConfig
from hbkit.engine.grad_cache import cached_backward
from hbkit.losses import InfoNCELoss
from hbkit.models.tiny import make_tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    world = make_demo_world(seed=5, n_train_entities=20, n_val_entities=5, n_test_entities=5)
    d = make_tiny_model("bert", tmp_path_factory.mktemp("gc") / "m", world.texts(), seed=0, vocab_size=300,
                        hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, mlm_steps=0)
    items = world.train.items()[:10]
    return d, [i.query for i in items], [i.positive for i in items], [i.negative for i in items]


def _grads(enc):
    return {k: p.grad.clone() for k, p in enc.named_parameters() if p.grad is not None}


def _plain(enc, loss_fn, q, p, n, chunk=None):
    enc.zero_grad()
    def emb(texts, kind):
        if chunk is None:
            return enc.embed(texts, kind)
        return torch.cat([enc.embed(texts[i:i + chunk], kind) for i in range(0, len(texts), chunk)])
    loss = loss_fn(emb(q, "query"), emb(p, "passage"), emb(n, "passage"))
    loss.backward()
    return loss.detach(), _grads(enc)


def _cached(enc, loss_fn, q, p, n, chunk):
    enc.zero_grad()
    loss = cached_backward(enc.embed, loss_fn, [(q, "query"), (p, "passage"), (n, "passage")], chunk,
                           torch.device("cpu"))
    return loss, _grads(enc)


def test_equals_plain_full_batch_without_dropout(setup):
    d, q, p, n = setup
    enc = BiEncoder(EncoderConfig(model=str(d))).eval()  # no dropout
    loss_fn = InfoNCELoss(0.05)
    l1, g1 = _plain(enc, loss_fn, q, p, n)
    l2, g2 = _cached(enc, loss_fn, q, p, n, chunk=3)
    assert torch.allclose(l1, l2, atol=1e-6)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for k in g1:
        assert torch.allclose(g1[k], g2[k], atol=1e-6, rtol=1e-4), k


def test_dropout_masks_are_replayed(setup):
    d, q, p, n = setup
    enc = BiEncoder(EncoderConfig(model=str(d))).train()  # dropout on
    loss_fn = InfoNCELoss(0.05)
    torch.manual_seed(0)
    l1, g1 = _plain(enc, loss_fn, q, p, n, chunk=4)
    after_plain = torch.get_rng_state()
    torch.manual_seed(0)
    l2, g2 = _cached(enc, loss_fn, q, p, n, chunk=4)
    assert torch.equal(torch.get_rng_state(), after_plain)  # RNG stream continues as after a plain pass
    assert torch.allclose(l1, l2, atol=1e-6)
    for k in g1:
        assert torch.allclose(g1[k], g2[k], atol=1e-6, rtol=1e-4), k
    # and dropout really is active: another seed gives another loss
    torch.manual_seed(1)
    l3, _ = _plain(enc, loss_fn, q, p, n, chunk=4)
    assert not torch.allclose(l1, l3)
