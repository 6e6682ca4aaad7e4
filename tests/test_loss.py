"""InfoNCE loss: values by hand, the paper's denominator, and the all-gather gradient path."""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from hbkit.errors import ConfigError
from hbkit.losses import InfoNCELoss


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def test_batch_denominator_matches_manual_softmax():
    q, p, n = _unit(4, 8, seed=1), _unit(4, 8, seed=2), _unit(4, 8, seed=3)
    loss = InfoNCELoss(temperature=0.1)(q, p, n)
    cands = torch.cat([p, n])
    expected = 0.0
    for i in range(4):
        s = (q[i] @ cands.T) / 0.1
        expected += -(s[i] - torch.logsumexp(s, 0))
    assert loss.item() == pytest.approx(expected.item() / 4, rel=1e-5)


def test_paper_denominator_uses_own_positive_and_all_hard_negatives():
    q, p, n = _unit(3, 8, seed=4), _unit(3, 8, seed=5), _unit(3, 8, seed=6)
    loss = InfoNCELoss(temperature=0.05, denominator="paper")(q, p, n)
    expected = 0.0
    for i in range(3):
        pos = q[i] @ p[i] / 0.05
        negs = q[i] @ n.T / 0.05
        expected += -(pos - torch.logsumexp(torch.cat([pos[None], negs]), 0))
    assert loss.item() == pytest.approx(expected.item() / 3, rel=1e-5)


def test_no_hard_negatives_is_in_batch_softmax():
    q, p = _unit(5, 8, seed=7), _unit(5, 8, seed=8)
    loss = InfoNCELoss(temperature=1.0)(q, p)
    assert loss.item() == pytest.approx(F.cross_entropy(q @ p.T, torch.arange(5)).item(), rel=1e-6)


def test_perfect_alignment_gives_small_loss_and_learnable_temperature():
    q = _unit(6, 16, seed=9)
    lossfn = InfoNCELoss(temperature=0.01, learnable=True)
    assert lossfn(q, q).item() < 1e-3
    assert lossfn.temperature == pytest.approx(0.01)
    assert any(p.requires_grad for p in lossfn.parameters())


@pytest.mark.parametrize("bad", [0, -1.0, 11.0, "0.05"])
def test_bad_temperature(bad):
    with pytest.raises(ConfigError, match="temperature"):
        InfoNCELoss(temperature=bad)


def test_hard_negatives_are_per_pair():
    torch.manual_seed(1)
    q, p, n_all = _unit(3, 5), _unit(3, 5), _unit(3, 5)
    owners = [0, 2]  # pair 1 has no hard negative; the others keep theirs
    n = n_all[owners]
    scale = 1 / 0.1
    loss = InfoNCELoss(temperature=0.1)(q, p, n)
    logits = q @ torch.cat([p, n]).T * scale
    assert torch.allclose(loss, F.cross_entropy(logits, torch.arange(3)), atol=1e-6)
    # paper form: own positive + every hard negative of the batch
    paper = InfoNCELoss(temperature=0.1, denominator="paper")(q, p, n)
    expect = torch.stack([-torch.log_softmax(torch.cat([(q[i] @ p[i]).view(1), q[i] @ n.T]) * scale, 0)[0]
                          for i in range(3)]).mean()
    assert torch.allclose(paper, expect, atol=1e-6)
    # a batch with no hard negative at all: the paper form has only the own positive (loss 0), no failure
    none = InfoNCELoss(denominator="paper")(q, p, n_all[:0])
    assert float(none) == pytest.approx(0.0, abs=1e-7)
    assert float(InfoNCELoss(denominator="paper")(q, p, None)) == pytest.approx(0.0, abs=1e-7)


# ---------------------------------------------------------------- 2-process gloo run
B, D_IN, D = 6, 10, 8


def _data():
    g = torch.Generator().manual_seed(123)
    w = torch.randn(D_IN, D, generator=g)
    xq, xp, xn = (torch.randn(2 * B, D_IN, generator=g) for _ in range(3))
    return w, xq, xp, xn


#: Which pairs of the global batch have a hard negative in the uneven case (rank 0: 4 of 6, rank 1: 1 of 6).
UNEVEN = [0, 1, 3, 5, 8]


def _loss(w, xq, xp, xn, denominator):
    enc = lambda x: F.normalize(x @ w, dim=-1)  # noqa: E731
    return InfoNCELoss(temperature=0.1, denominator=denominator)(enc(xq), enc(xp), enc(xn))


def _worker(rank, world, init_file, denominator, out_file, uneven=False):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    w, xq, xp, xn = _data()
    w = w.clone().requires_grad_(True)
    sl = slice(rank * B, (rank + 1) * B)
    if uneven:
        mine = [i for i in UNEVEN if sl.start <= i < sl.stop]
        loss = _loss(w, xq[sl], xp[sl], xn[mine], denominator)
    else:
        loss = _loss(w, xq[sl], xp[sl], xn[sl], denominator)
    loss.backward()
    grad = w.grad.clone()
    dist.all_reduce(grad)
    grad /= world  # what the trainer (or DDP) does with parameter gradients
    total = loss.detach().clone()
    dist.all_reduce(total)
    if rank == 0:
        torch.save({"grad": grad, "loss": total / world}, out_file)
    dist.destroy_process_group()


@pytest.mark.parametrize("denominator, uneven", [("batch", False), ("paper", False), ("batch", True),
                                                 ("paper", True)])
def test_all_gather_gradient_equals_single_process(tmp_path, denominator, uneven):
    out = tmp_path / "out.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), denominator, str(out), uneven), nprocs=2, join=True)
    got = torch.load(out)
    w, xq, xp, xn = _data()
    w.requires_grad_(True)
    loss = _loss(w, xq, xp, xn[UNEVEN] if uneven else xn, denominator)
    loss.backward()
    assert got["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    assert torch.allclose(got["grad"], w.grad, atol=1e-6, rtol=1e-5)
    # Without the gather, the per-process loss misses the other half's negatives: values differ.
    local = _loss(w.detach(), xq[:B], xp[:B], xn[[i for i in UNEVEN if i < B]] if uneven else xn[:B], denominator)
    assert not math.isclose(local.item(), loss.item(), rel_tol=1e-3)
