"""The ALBEF family on a tiny model, offline: caption handling, the losses' properties, training
through the trainer (momentum, exact resume, export), ITM re-scoring on cached text states, and
the errors a user can cause."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from hbkit.benchmark import Candidate, Query, RetrievalBenchmark
from hbkit.engine.checkpoint import load_checkpoint, run_status
from hbkit.errors import ConfigError, DataError, UnknownModelError
from hbkit.evaluation import rerank_top_k
from hbkit.losses import albef_hard_negatives, albef_itc_loss
from hbkit.models import load_model, model_class
from hbkit.models.albef import ALBEFConfig, ALBEFModel
from hbkit.models.albef_text import ALBEFTokenizer, clean_caption
from hbkit.models.tiny_albef import make_tiny_albef
from hbkit.parallel import ImageRef, ParallelDataset, ParallelItem, TrainingPair
from hbkit.trainer import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"red": ((220, 30, 30), "rot"), "green": ((30, 200, 40), "grün"), "blue": ((30, 40, 220), "blau"),
           "yellow": ((230, 220, 30), "gelb")}
SHAPES = {"circle": "kreis", "square": "quadrat", "triangle": "dreieck"}




pytestmark = pytest.mark.usefixtures("one_thread")

def _draw(path: Path, rgb, shape: str) -> None:
    im = Image.new("RGB", (40, 40), (128, 128, 128))
    d = ImageDraw.Draw(im)
    if shape == "circle":
        d.ellipse((6, 6, 34, 34), fill=rgb)
    elif shape == "square":
        d.rectangle((6, 6, 34, 34), fill=rgb)
    else:
        d.polygon([(20, 4), (36, 36), (4, 36)], fill=rgb)
    im.save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("images")
    items = []
    for ci, (colour, (rgb, colour_de)) in enumerate(COLOURS.items()):
        for si, (shape, shape_de) in enumerate(SHAPES.items()):
            key = f"{colour}_{shape}.png"
            _draw(root / key, rgb, shape)
            group = f"img{ci * 3 + si}"
            items.append(ParallelItem(group, "en", f"A {colour} {shape}.", ImageRef(key)))
            items.append(ParallelItem(group, "de", f"Ein {colour_de} {shape_de}!", ImageRef(key)))
    ds = ParallelDataset(items, "shapes")
    return {"root": root, "dataset": ds, "captions": [it.query for it in ds.items()]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, world) -> Path:
    return make_tiny_albef(tmp_path_factory.mktemp("build") / "tiny-albef", world["captions"], seed=0,
                           vocab_size=120)


def _model(tiny: Path, world: dict, **kw) -> ALBEFModel:
    return ALBEFModel.load(tiny, image_root=str(world["root"]), **kw)


def _pairs(world: dict, groups, lang: str = "en") -> list[TrainingPair]:
    ds = world["dataset"]
    return [TrainingPair(ds.item(g, lang).query, ds.item(g, lang).positive, None, ds.item(g, lang).group, lang, None)
            for g in groups]


# ----------------------------------------------------------------------------- captions


def test_caption_cleaning_and_tokenisation_as_albef(tiny, caplog):
    assert clean_caption("A man's dog, (running)  on-the/beach!") == "a mans dog running on the beach"
    assert clean_caption("<person> rides a bike.") == "person rides a bike"
    assert clean_caption(" ".join(f"w{i}" for i in range(40)), max_words=30).split() == [f"w{i}" for i in range(30)]
    model = ALBEFModel.load(tiny)
    hf = model.tokenizer.tokenizer
    tok = ALBEFTokenizer(hf, max_length=30)
    out = tok(["a red circle", "ein blau quadrat dreieck"])
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.dtype == torch.long and ids.shape == mask.shape
    assert (ids[:, 0] == hf.cls_token_id).all()
    assert hf.sep_token_id not in ids.tolist()[0] and hf.sep_token_id not in ids.tolist()[1]  # no [SEP]: original
    lens = mask.sum(1).tolist()
    assert lens[0] == 1 + len(hf("a red circle", add_special_tokens=False)["input_ids"])
    assert (ids[0, lens[0]:] == hf.pad_token_id).all()
    with_sep = ALBEFTokenizer(hf, add_sep=True)(["a red circle"])["input_ids"][0].tolist()
    assert with_sep[-1] == hf.sep_token_id and with_sep[:-1] == ids[0, :lens[0]].tolist()  # LAVIS keeps [SEP]
    short = ALBEFTokenizer(hf, max_length=4)
    with caplog.at_level(logging.INFO, logger="hbkit.models.albef_text"):
        cut = short(["a red circle square triangle", "a red"])
    assert cut["input_ids"].shape[1] == 4 and short.n_truncated == 1 and "1 of 2 captions" in caplog.text
    with pytest.raises(DataError, match="empty after ALBEF's cleaning"):
        tok(["?!..."])


# ----------------------------------------------------------------------------- losses


def test_itc_soft_targets_make_every_caption_of_an_image_a_positive():
    g = torch.Generator().manual_seed(0)
    img, txt = (F.normalize(torch.randn(4, 8, generator=g), dim=-1) for _ in range(2))
    idx = torch.tensor([7, 8, 7, 9])
    temp = torch.tensor(0.1)
    out = albef_itc_loss(img, txt, img, txt, idx, idx, temp)
    sim = img @ txt.T / temp
    targets = torch.tensor([[.5, 0, .5, 0], [0, 1, 0, 0], [.5, 0, .5, 0], [0, 0, 0, 1]])
    by_hand = -(F.log_softmax(sim, 1) * targets).sum(1).mean()
    assert torch.allclose(out["i2t"], by_hand, atol=1e-6)
    # with distinct ids it is plain InfoNCE; distillation mixes in the momentum softmax
    plain = albef_itc_loss(img, txt, img, txt, torch.arange(4), torch.arange(4), temp)
    assert torch.allclose(plain["i2t"], F.cross_entropy(sim, torch.arange(4)), atol=1e-6)
    d = albef_itc_loss(img, txt, img, txt, idx, idx, temp, alpha=0.4, image_feat_m=img, text_feat_m=txt)
    mixed = 0.4 * F.softmax(sim, 1) + 0.6 * targets
    assert torch.allclose(d["i2t"], -(F.log_softmax(sim, 1) * mixed).sum(1).mean(), atol=1e-6)
    with pytest.raises(DataError, match="no positive column"):
        albef_itc_loss(img, txt, img[:2], txt[:2], idx, idx[:2], temp)


def test_hard_negatives_follow_the_similarities_and_never_share_the_image():
    torch.manual_seed(0)
    idx = torch.tensor([1, 2, 1, 3, 4, 4])
    sim = torch.randn(6, 6) * 3
    counts = torch.zeros(6, 6)
    for _ in range(400):
        ni, nt = albef_hard_negatives(sim, sim.T.contiguous(), idx)
        assert not (idx[ni] == idx).any() and not (idx[nt] == idx).any()
        counts[torch.arange(6), ni] += 1
    w = F.softmax(sim.T + 1e-4, 1).masked_fill(idx.view(-1, 1) == idx.view(1, -1), 0)
    w = w / w.sum(1, keepdim=True)
    assert float((counts / 400 - w).abs().max()) < 0.1  # drawn in proportion to softmax similarity
    with pytest.raises(DataError, match="only one distinct image"):
        albef_hard_negatives(sim[:2, :2], sim[:2, :2], torch.tensor([5, 5]))


# ----------------------------------------------------------------------------- training


def _cfg(**kw) -> TrainConfig:
    base = dict(strategy="hybrid", batch_size=8, max_steps=30, lr=3e-3, warmup_ratio=0.1, checkpoint_every=10,
                val_every=0, log_every=1, seed=0, show_progress=False, hard_negatives=False)
    return TrainConfig(**{**base, **kw})


def test_training_updates_momentum_lowers_the_loss_and_the_export_reloads(tiny, world, tmp_path):
    model = _model(tiny, world)
    assert model_class("albef") is ALBEFModel
    start = {k: v.clone() for k, v in model.net.state_dict().items()}
    calls, update = [], model.net.momentum_update

    def counted() -> None:
        calls.append(int(model.train_step))
        update()

    model.net.momentum_update = counted
    trainer = Trainer(model, world["dataset"], _cfg(), tmp_path / "run")
    assert trainer.fit()["status"] == "finished"
    rows = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert {"loss", "itc", "itm", "temperature", "alpha"} <= set(rows[0])
    assert rows[0]["alpha"] < rows[-1]["alpha"] == pytest.approx(0.4)  # distillation warms up
    first, last = np.mean([r["itc"] for r in rows[:5]]), np.mean([r["itc"] for r in rows[-5:]])
    assert last < first - 0.3, (first, last)
    sd = model.net.state_dict()
    # EMA after each of the 30 steps: the momentum weights moved, and less than the online weights
    k, k_m = "vision_proj.weight", "vision_proj_m.weight"
    moved = (sd[k_m] - start[k_m]).abs().max()
    assert 0 < moved < (sd[k] - start[k]).abs().max()
    assert len(calls) == int(model.train_step) == 30  # one momentum update after each optimiser step
    del model.net.momentum_update
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["identity"]["model"]["family"] == "albef"
    again = load_model(tmp_path / "run" / "model")
    assert isinstance(again, ALBEFModel)
    texts = ["a red circle", "ein blau quadrat"]
    assert torch.allclose(again.encode(texts), model.encode(texts), atol=1e-6)
    refs = [ImageRef("green_triangle.png"), ImageRef("red_square.png")]
    emb = again.encode_images(refs, image_root=world["root"])
    assert torch.allclose(emb, model.encode_images(refs), atol=1e-6) and emb.shape == (2, 32)
    for key in sd:
        assert torch.equal(again.net.state_dict()[key], sd[key]), key  # momentum weights kept in the export


def test_exact_resume_with_the_queue(tiny, world, tmp_path):
    cfg = _cfg(max_steps=8, checkpoint_every=3)
    kw = dict(queue=True, queue_size=64)
    Trainer(_model(tiny, world, **kw), world["dataset"], cfg, tmp_path / "full").fit()
    part = Trainer(_model(tiny, world, **kw), world["dataset"], cfg, tmp_path / "part")
    part._step_hook = lambda step: (_ for _ in ()).throw(KeyboardInterrupt) if step == 5 else None
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    assert run_status(tmp_path / "part") == "interrupted" and load_checkpoint(part.latest_path)["step"] == 3
    Trainer(_model(tiny, world, **kw), world["dataset"], cfg, tmp_path / "part").fit()
    a = ALBEFModel.load(tmp_path / "full" / "model", keep_queue=True, **kw).net.state_dict()
    b = ALBEFModel.load(tmp_path / "part" / "model", keep_queue=True, **kw).net.state_dict()
    assert int(a["queue_ptr"]) == (8 * 8) % 64 and (a["idx_queue"] != -100).all()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_grad_cache_and_bad_batches_are_refused(tiny, world, tmp_path):
    with pytest.raises(ConfigError, match="grad_cache_chunk"):
        Trainer(_model(tiny, world), world["dataset"], _cfg(grad_cache_chunk=4), tmp_path / "gc")
    model = _model(tiny, world)
    with pytest.raises(DataError, match="preprocessed images"):
        model.net.image_embeds(torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(DataError, match="expects 32x32"):
        model.net.image_embeds(torch.zeros(1, 3, 40, 40))
    batch = model.collator()(_pairs(world, [0]) + _pairs(world, [0], "de"))  # one image only
    with pytest.raises(DataError, match="only one distinct image"):
        model(batch)


def test_unknown_variants_checkpoints_and_settings_fail_clearly(tiny, tmp_path):
    with pytest.raises(UnknownModelError, match="Unknown ALBEF variant 'german'.*english, multilingual"):
        ALBEFConfig(variant="german")
    with pytest.raises(ConfigError, match="needs text_init"):
        ALBEFConfig(variant="multilingual")
    with pytest.raises(UnknownModelError, match="neither a file, a folder nor a known name.*albef-4m"):
        ALBEFModel(ALBEFConfig(checkpoint=str(tmp_path / "nope.pth")))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="could not be read"):
        ALBEFModel(ALBEFConfig(checkpoint=str(tmp_path / "junk.pth")))
    with pytest.raises(ConfigError, match="Unknown ALBEF setting"):
        ALBEFModel.load(tiny, colour=True)
    with pytest.raises(ConfigError, match="Unknown ALBEF architecture"):
        ALBEFConfig(net={"width": 3})
    with pytest.raises(ConfigError, match="itm_score"):
        ALBEFConfig(itm_score="best")


# ----------------------------------------------------------------------------- retrieval


def test_itm_rescoring_on_cached_states_equals_re_encoding_and_keeps_itc_beyond_k(tiny, world):
    model = _model(tiny, world, rescore_k=4)
    ds = world["dataset"]
    groups = list(range(len(ds)))
    queries = [Query(f"q{g}", f"x{g}", "en", ds.item(g, "en").query) for g in groups[:5]]
    cands = [Candidate(f"i{g}", None, "", xids=(f"x{g}",), image=ds.image(g)) for g in groups]
    bench = RetrievalBenchmark("shapes", queries, cands)
    fn = model.rescore(bench)
    q_ids = torch.arange(5)
    c_ids = torch.tensor([[0, 3, 5, 7]] * 5)
    scores = fn(q_ids, c_ids)
    # the same pairs re-encoded through every layer (text layers then fusion), one pair at a time
    tok = model.tokenizer
    tokens, _ = model.image_tokens([ds.image(g) for g in groups])
    model.eval()
    with torch.no_grad():
        for qi in range(5):
            t = tok([queries[qi].text])
            for j, cj in enumerate(c_ids[qi].tolist()):
                h = model.net.text_embeds(t["input_ids"], t["attention_mask"])
                logit = model.net.itm_logits(model.net.fuse(h, t["attention_mask"], tokens[cj:cj + 1]))[0, 1]
                assert abs(float(logit) - float(scores[qi, j])) < 1e-5
    first = model.encode([q.text for q in queries]) @ model.encode_images([c.image for c in cands]).T
    out = rerank_top_k(first.clone(), q_ids, torch.arange(len(cands)), fn, 4)
    for i in range(5):
        top4 = torch.topk(first[i], 4).indices
        rest = [j for j in torch.argsort(first[i], descending=True).tolist() if j not in top4.tolist()]
        assert set(torch.argsort(out[i], descending=True)[:4].tolist()) == set(top4.tolist())
        assert torch.argsort(out[i], descending=True)[4:].tolist() == rest
        assert float(out[i, top4].min()) > float(out[i, rest].max())  # re-scored never below un-re-scored
    lavis = _model(tiny, world, rescore_k=4, itm_score="itm+itc")
    plus = lavis.rescore(bench)(q_ids, c_ids)
    assert torch.allclose(plus - scores, first[q_ids.view(-1, 1), c_ids], atol=1e-5)


def test_the_rescore_hook_gathers_image_tokens_per_chunk(tiny, world, monkeypatch):
    model = _model(tiny, world, rescore_k=4, rescore_batch=3)
    ds = world["dataset"]
    queries = [Query(f"q{g}", f"x{g}", "en", ds.item(g, "en").query) for g in range(5)]
    cands = [Candidate(f"i{g}", None, "", xids=(f"x{g}",), image=ds.image(g)) for g in range(len(ds))]
    bench = RetrievalBenchmark("shapes", queries, cands)
    seen = []
    fuse = model.net.fuse

    def spy(h, m, img):
        seen.append(img.shape[0])
        return fuse(h, m, img)

    monkeypatch.setattr(model.net, "fuse", spy)
    c_ids = torch.tensor([[0, 3, 5, 7]] * 5)
    scores = model.rescore(bench)(torch.arange(5), c_ids)
    assert seen == [3] * 6 + [2]  # 20 pairs in chunks of rescore_batch: never all pairs' tokens at once
    states, _, _ = model.text_states([q.text for q in queries])
    tokens, _ = model.image_tokens([c.image for c in cands])
    pairs = [states[i] for i in range(5) for _ in range(4)]
    index = c_ids.flatten()
    stacked = model.itm_scores(pairs, tokens[index])
    assert torch.allclose(model.itm_scores(pairs, tokens, image_index=index), stacked, atol=1e-6)
    assert torch.allclose(scores.flatten(), stacked, atol=1e-5)
    with pytest.raises(ConfigError, match="image_index has 3 entries for 20 captions"):
        model.itm_scores(pairs, tokens, image_index=index[:3])


def test_shipped_albef_published_table_is_the_reference():
    shipped = REPO / "hbkit" / "kit" / "reference" / "albef_published_retrieval.csv"
    ref = REPO.parent / "shared" / "reference" / "albef_published_retrieval.csv"
    import csv

    rows = list(csv.DictReader(shipped.open()))
    assert {r["metric"] for r in rows} >= {"TR@1", "IR@1"} and all(r["source"] for r in rows)
    if not ref.exists():
        pytest.skip(f"{ref} not found: the shared reference folder is not next to the repo")
    assert hashlib.sha256(shipped.read_bytes()).digest() == hashlib.sha256(ref.read_bytes()).digest()


# ----------------------------------------------------------------------------- two processes


def _albef_worker(rank, world_size, init_file, folder, batch_file, out_file):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        halves = torch.load(batch_file)["halves"]
        model = ALBEFModel.load(folder, **NODROP_QUEUE).train()
        model.configure_training(_cfg())
        torch.manual_seed(0)
        out = model(halves[rank])
        itc = out["itc"].detach().clone()
        dist.all_reduce(itc)
        if rank == 0:
            torch.save({"itc": itc / world_size, "image_queue": model.net.image_queue.clone(),
                        "idx_queue": model.net.idx_queue.clone(), "ptr": int(model.net.queue_ptr)}, out_file)
    finally:
        dist.destroy_process_group()


NODROP_QUEUE = dict(queue=True, queue_size=16, keep_queue=False,
                    net={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})


def test_two_processes_gather_itc_features_and_the_queue_like_one(tiny, world, tmp_path):
    """Under torchrun each process scores its own pairs against every process's momentum features and
    enqueues all of them: two gloo processes with 4 pairs each equal one process with the 8."""
    import torch.multiprocessing as mp

    model = ALBEFModel.load(tiny, image_root=str(world["root"]), **NODROP_QUEUE)
    pairs = _pairs(world, range(8))
    collate = model.collator()
    torch.save({"halves": [collate(pairs[:4]), collate(pairs[4:])]}, tmp_path / "batch.pt")
    mp.spawn(_albef_worker, args=(2, str(tmp_path / "init"), str(tiny), str(tmp_path / "batch.pt"),
                                  str(tmp_path / "out.pt")), nprocs=2, join=True)
    got = torch.load(tmp_path / "out.pt")
    model.train()
    model.configure_training(_cfg())
    torch.manual_seed(0)
    one = model(collate(pairs))
    assert got["itc"].item() == pytest.approx(one["itc"].item(), abs=1e-5)
    assert got["ptr"] == int(model.net.queue_ptr) == 8
    assert torch.equal(got["idx_queue"], model.net.idx_queue)
    assert torch.allclose(got["image_queue"], model.net.image_queue, atol=1e-6)
