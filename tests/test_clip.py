"""The CLIP family: open_clip's model, tokenizer and preprocessing through the trainer, offline.

A tiny CLIP (small ViT + the kit's tiny XLM-R-shaped text tower) is built once; images are
generated PNGs of coloured shapes with captions in two languages. open_clip is imported inside
the tests that use it, so the two-process test's spawned workers start quickly."""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from PIL import Image, ImageDraw

from hbkit.engine.checkpoint import load_checkpoint, run_status
from hbkit.engine.grad_cache import cached_backward
from hbkit.errors import ConfigError, DataError, UnknownModelError
from hbkit.models import load_model, model_class
from hbkit.models.clip import LOGIT_SCALE_MAX, CLIPConfig, CLIPModel, clip_loss, register_folder, text_text_loss
from hbkit.models.images import group_id
from hbkit.models.tiny_clip import make_tiny_clip
from hbkit.parallel import ImageRef, ParallelDataset, ParallelItem, TrainingPair
from hbkit.trainer import TrainConfig, Trainer

COLOURS = {"red": ((220, 30, 30), "rot"), "green": ((30, 200, 40), "grün"), "blue": ((30, 40, 220), "blau"),
           "yellow": ((230, 220, 30), "gelb")}
SHAPES = {"circle": "kreis", "square": "quadrat", "triangle": "dreieck"}


pytestmark = pytest.mark.usefixtures("one_thread")

def _draw(path: Path, rgb: tuple[int, int, int], shape: str) -> None:
    im = Image.new("RGB", (40, 40), (128, 128, 128))
    d = ImageDraw.Draw(im)
    box = (6, 6, 34, 34)
    if shape == "circle":
        d.ellipse(box, fill=rgb)
    elif shape == "square":
        d.rectangle(box, fill=rgb)
    else:
        d.polygon([(20, 4), (36, 36), (4, 36)], fill=rgb)
    im.save(path)




def _shapes_dataset(root: Path, draw: bool = False) -> ParallelDataset:
    """12 images (4 colours x 3 shapes) under ``root`` with one caption each in en and de."""
    items = []
    for ci, (colour, (rgb, colour_de)) in enumerate(COLOURS.items()):
        for si, (shape, shape_de) in enumerate(SHAPES.items()):
            key = f"{colour}_{shape}.png"
            if draw:
                _draw(root / key, rgb, shape)
            group = f"img{ci * 3 + si}"
            items.append(ParallelItem(group, "en", f"a {colour} {shape}", ImageRef(key)))
            items.append(ParallelItem(group, "de", f"ein {colour_de} {shape_de}", ImageRef(key)))
    return ParallelDataset(items, "shapes")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("images")
    ds = _shapes_dataset(root, draw=True)
    return {"root": root, "dataset": ds, "captions": [it.query for it in ds.items()]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, world) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("build") / "tiny-clip", world["captions"], seed=0)


def _model(tiny: Path, world: dict, **kw) -> CLIPModel:
    return CLIPModel.load(tiny, image_root=str(world["root"]), **kw)


def _pairs(world: dict, groups: list[int], langs=("en", "de")) -> list[TrainingPair]:
    """1-to-K pairs: each group with its captions in ``langs`` (adjacent)."""
    ds = world["dataset"]
    out = []
    for g in groups:
        for lang in langs:
            it = ds.item(g, lang)
            out.append(TrainingPair(it.query, it.positive, None, it.group, lang, None))
    return out


# ----------------------------------------------------------------------------- the loss


def _features(seed: int, n: int, d: int = 8) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_one_caption_per_image_equals_open_clip_clip_loss():
    from open_clip.loss import ClipLoss

    img, txt = _features(1, 6).requires_grad_(True), _features(2, 6).requires_grad_(True)
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    ours = clip_loss(img, txt, torch.arange(6) + 100, torch.arange(6) + 100, log_scale.exp())
    ours["loss"].backward()
    grads = [img.grad.clone(), txt.grad.clone(), log_scale.grad.clone()]
    img.grad = txt.grad = log_scale.grad = None
    ref = ClipLoss()(img, txt, log_scale.exp())
    ref.backward()
    assert ours["loss"].item() == pytest.approx(ref.item(), rel=1e-6)
    assert ours["loss"].item() > 1.0  # random features: far from aligned
    for got, want in zip(grads, [img.grad, txt.grad, log_scale.grad]):
        assert torch.allclose(got, want, atol=1e-7, rtol=1e-5)


def test_several_captions_per_image_spread_the_image_target_by_hand():
    """3 images with 2, 1 and 3 captions; one image row passed twice (deduplicated by group)."""
    cap_group = torch.tensor([7, 7, 8, 9, 9, 9])
    txt = _features(3, 6)
    img_once = _features(4, 3)
    scale = torch.tensor(10.0)
    got = clip_loss(img_once, txt, torch.tensor([7, 8, 9]), cap_group, scale)
    # by hand: caption c -> its image; image m -> uniform over its captions
    sims = (txt @ img_once.T * 10).double()
    t2i = np.mean([-(torch.log_softmax(sims[c], 0)[[7, 8, 9].index(int(g))]).item()
                   for c, g in enumerate(cap_group)])
    i2t = []
    for m, g in enumerate([7, 8, 9]):
        logp = torch.log_softmax(sims[:, m], 0)
        own = [c for c in range(6) if int(cap_group[c]) == g]
        i2t.append(-float(sum(logp[c] for c in own)) / len(own))
    assert got["t2i"].item() == pytest.approx(t2i, rel=1e-5)
    assert got["i2t"].item() == pytest.approx(float(np.mean(i2t)), rel=1e-5)
    assert got["loss"].item() == pytest.approx((t2i + np.mean(i2t)) / 2, rel=1e-5)
    dup = clip_loss(torch.cat([img_once, img_once[1:2]]), txt, torch.tensor([7, 8, 9, 8]), cap_group, scale)
    assert dup["loss"].item() == pytest.approx(got["loss"].item(), rel=1e-6)
    with pytest.raises(DataError, match="image is missing"):
        clip_loss(img_once[:2], txt, torch.tensor([7, 8]), cap_group, scale)


def test_text_text_term_by_hand():
    groups = torch.tensor([1, 1, 2, 2, 3])  # caption 4 has no partner
    txt = _features(5, 5)
    got = text_text_loss(txt, groups, torch.tensor(5.0))
    sims = (txt @ txt.T * 5).double()
    sims.fill_diagonal_(-math.inf)
    want = np.mean([-torch.log_softmax(sims[i], 0)[j].item() for i, j in [(0, 1), (1, 0), (2, 3), (3, 2)]])
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert text_text_loss(txt, torch.arange(5), torch.tensor(5.0)).item() == 0.0


# two gloo processes: every process's rows against the gathered batch == one process on the whole batch
#: (image groups, caption groups) per rank; "split": group 3's captions are on both ranks (its image on each)
CASES = {
    "1-to-K": ([[0, 1], [2, 3]], [[0, 0, 1, 1], [2, 2, 3, 3]]),
    "uneven": ([[0, 1, 2], [3]], [[0, 0, 1, 2, 2], [3, 3, 3]]),
    "split": ([[0, 1, 3], [2, 3]], [[0, 1, 1, 3], [2, 2, 3, 3]]),
}


def _case_loss(w, img_in, txt_in, img_groups, txt_groups, gather=True):
    """The CLIP loss plus half the text–text term (both gathered across processes)."""
    enc = lambda x: F.normalize(x @ w, dim=-1)  # noqa: E731
    t = enc(txt_in)
    scale = torch.tensor(8.0)
    return (clip_loss(enc(img_in), t, img_groups, txt_groups, scale, gather=gather)["loss"]
            + 0.5 * text_text_loss(t, txt_groups, scale, gather=gather))


def _case_data(case: str):
    img_g, txt_g = CASES[case]
    g = torch.Generator().manual_seed(9)
    w = torch.randn(6, 4, generator=g)
    images = torch.randn(4, 6, generator=g)  # one input per group
    noise = torch.randn(sum(map(len, txt_g)), 6, generator=g)
    txt_flat = [x for r in txt_g for x in r]
    captions = images[txt_flat] + 0.5 * noise
    return w, images, captions, img_g, txt_g


#: DDP runs through the trainer: (strategy, grad_cache_chunk); 2 processes x 4 pairs == 1 process x 8 pairs
DDP_RUNS = [("1-to-K", 0), ("hybrid", 3)]


def _ddp_cfg(strategy: str, chunk: int) -> TrainConfig:
    return TrainConfig(strategy=strategy, batch_size=8, max_steps=3, lr=3e-3, val_every=0, checkpoint_every=3,
                       log_every=1, seed=0, show_progress=False, grad_cache_chunk=chunk)


def _ddp_train(model_dir: str, root: str, run_dir: Path, strategy: str, chunk: int) -> None:
    model = CLIPModel.load(model_dir, image_root=root)
    Trainer(model, _shapes_dataset(Path(root)), _ddp_cfg(strategy, chunk), run_dir).fit()


def _gloo_worker(rank, world, init_file, out_file, model_dir, root, run_root):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {}
        for case in CASES:
            w, images, captions, img_g, txt_g = _case_data(case)
            w = w.clone().requires_grad_(True)
            start = sum(len(r) for r in txt_g[:rank])
            mine = captions[start:start + len(txt_g[rank])]
            loss = _case_loss(w, images[img_g[rank]], mine, torch.tensor(img_g[rank]), torch.tensor(txt_g[rank]))
            loss.backward()
            grad, total = w.grad.clone(), loss.detach().clone()
            dist.all_reduce(grad)
            dist.all_reduce(total)
            results[case] = {"grad": grad / world, "loss": total / world}  # what DDP does with the gradients
        if rank == 0:
            torch.save(results, out_file)
        for strategy, chunk in DDP_RUNS:
            _ddp_train(model_dir, root, Path(run_root) / f"{strategy}-{chunk}", strategy, chunk)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def tiny_nodrop(tiny, tmp_path_factory) -> Path:
    """The tiny CLIP without dropout: every process computes the same forward."""
    out = Path(shutil.copytree(tiny, tmp_path_factory.mktemp("nodrop") / "tiny-clip"))
    cfg = json.loads((out / "text" / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (out / "text" / "config.json").write_text(json.dumps(cfg))
    return out


def test_two_processes_equal_one_process(tmp_path, tiny_nodrop, world):
    """The loss with features gathered with gradients (equal, uneven and split shares of the images),
    and DDP training through the trainer (1-to-K batches; hybrid with cached gradients), on two gloo
    processes equal one process on the whole batch."""
    out = tmp_path / "out.pt"
    mp.spawn(_gloo_worker, args=(2, str(tmp_path / "init"), str(out), str(tiny_nodrop), str(world["root"]),
                                 str(tmp_path / "ddp")), nprocs=2, join=True)
    got = torch.load(out)
    for case in CASES:
        w, images, captions, img_g, txt_g = _case_data(case)
        w.requires_grad_(True)
        flat_img = [x for r in img_g for x in r]
        flat_txt = [x for r in txt_g for x in r]
        loss = _case_loss(w, images[flat_img], captions, torch.tensor(flat_img), torch.tensor(flat_txt))
        loss.backward()
        assert got[case]["loss"].item() == pytest.approx(loss.item(), rel=1e-5), case
        assert torch.allclose(got[case]["grad"], w.grad, atol=1e-6, rtol=1e-5), case
    base = CLIPModel.load(tiny_nodrop).state_dict()
    texts, images = world["captions"][:6], [ImageRef(k) for k in ("red_circle.png", "blue_triangle.png")]
    for strategy, chunk in DDP_RUNS:
        _ddp_train(str(tiny_nodrop), str(world["root"]), tmp_path / "single" / strategy, strategy, chunk)
        one = CLIPModel.load(tmp_path / "single" / strategy / "model", image_root=str(world["root"]))
        two = CLIPModel.load(tmp_path / "ddp" / f"{strategy}-{chunk}" / "model", image_root=str(world["root"]))
        assert torch.allclose(one.encode(texts), two.encode(texts), atol=1e-5), strategy
        assert torch.allclose(one.encode_images(images), two.encode_images(images), atol=1e-5), strategy
        a, b = one.state_dict(), two.state_dict()
        moved = 0
        for k in a:
            # AdamW turns gradients that are zero up to rounding (the attention key bias) into updates of
            # up to lr: weights agree to a small fraction of one update (lr 3e-3), embeddings to 1e-5
            assert torch.allclose(a[k], b[k], atol=3e-4), (strategy, k)
            moved += not torch.allclose(a[k], base[k])
        assert moved > 10, strategy  # training changed the weights: the equality is not trivial
        logs = [(tmp_path / d / "train_log.jsonl").read_text().splitlines()
                for d in (f"single/{strategy}", f"ddp/{strategy}-{chunk}")]
        assert len(logs[0]) == len(logs[1]) == 3  # (the logged loss is process 0's share under DDP)


# ----------------------------------------------------------------------------- model, collator, errors


def test_collator_uses_open_clip_tokenizer_and_preprocessing_and_dedupes_by_group(tiny, world):
    import open_clip

    model = _model(tiny, world)
    collate = pickle.loads(pickle.dumps(model.collator()))  # DataLoader workers get a copy
    pairs = _pairs(world, [0, 5, 7])
    batch = collate(pairs)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tiny}")
    assert torch.equal(batch["text"], tokenizer([p.query for p in pairs]))
    assert batch["text"].shape == (6, 32) and int(batch["text"][0, 0]) == tokenizer.tokenizer.cls_token_id
    _, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny}", text_cfg={
        **json.loads((tiny / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"],
        "hf_model_name": str(tiny / "text"), "hf_model_pretrained": False})
    expect = torch.stack([preprocess(Image.open(world["root"] / pairs[i].positive.key)) for i in (0, 2, 4)])
    assert batch["images"].shape == (3, 3, 32, 32) and torch.equal(batch["images"], expect)
    assert batch["image_index"].tolist() == [0, 0, 1, 1, 2, 2]
    assert batch["image_groups"].tolist() == [group_id(g) for g in ("img0", "img5", "img7")]
    assert batch["text_groups"].tolist() == [group_id(p.group) for p in pairs] and batch["n_pairs"] == 6
    losses = model(batch)
    assert set(losses) == {"loss", "i2t", "t2i"} and 0.5 < losses["loss"].item() < 5


def test_missing_and_corrupt_images_name_the_file(tiny, world, tmp_path):
    model = _model(tiny, world)
    model.image_root = str(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    bad = lambda key: [TrainingPair("a red circle", ImageRef(key), None, "g", "en", None)]  # noqa: E731
    with pytest.raises(DataError, match=r"missing\.png not found \(key 'missing\.png', image root"):
        model.collator()(bad("missing.png"))
    with pytest.raises(DataError, match=r"broken\.png .*could not be read"):
        model.collator()(bad("broken.png"))
    with pytest.raises(DataError, match="broken.png"):
        model.encode_images([ImageRef("broken.png")])
    with pytest.raises(DataError, match="text positive"):
        model.collator()([TrainingPair("q", "a passage", None, "g", "en", "en")])


def test_image_cache_gives_the_same_batches_and_rereads_replaced_files(tiny, world, tmp_path):
    from hbkit.models.images import ImageCache, preprocess_images

    plain = _model(tiny, world)
    cached = _model(tiny, world, image_cache_mb=1)
    assert plain.collator().cache is None and cached.identity() == plain.identity()
    assert _model(tiny, world, augment=True, image_cache_mb=1).collator().cache is None  # random crops: never cached
    collate = pickle.loads(pickle.dumps(cached.collator()))  # DataLoader workers get a copy
    pairs = _pairs(world, [0, 5, 7])
    want = plain.collator()(pairs)
    for _ in range(2):
        got = collate(pairs)
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in ("text", "images", "image_index"))
    assert (len(collate.cache), collate.cache.hits, collate.cache.misses) == (3, 3, 3)
    assert collate.cache.nbytes == 3 * 3 * 32 * 32 * 4
    # a replaced file is read again
    shutil.copy(world["root"] / "red_circle.png", tmp_path / "x.png")
    cache, refs = ImageCache(2**20), [ImageRef("x.png")]
    first = preprocess_images(refs, plain.preprocess_val, tmp_path, cache)
    _draw(tmp_path / "new.png", (30, 40, 220), "square")
    os.replace(tmp_path / "new.png", tmp_path / "x.png")
    again = preprocess_images(refs, plain.preprocess_val, tmp_path, cache)
    assert torch.equal(again, preprocess_images(refs, plain.preprocess_val, tmp_path)) and not torch.equal(again, first)
    # full: nothing more is kept; a missing file still names itself
    small = ImageCache(3 * 32 * 32 * 4)
    preprocess_images([ImageRef("red_circle.png"), ImageRef("blue_square.png")], plain.preprocess_val,
                      world["root"], small)
    assert len(small) == 1 and small.nbytes == small.max_bytes
    with pytest.raises(DataError, match=r"missing\.png not found"):
        preprocess_images([ImageRef("missing.png")], plain.preprocess_val, tmp_path, cache)
    with pytest.raises(ConfigError, match="image_cache_mb must be >= 0"):
        CLIPConfig(image_cache_mb=-1)


def test_unknown_model_names_and_tags_fail_clearly_offline(monkeypatch, tmp_path):
    import open_clip

    with pytest.raises(UnknownModelError, match=r"Did you mean: .*xlm-roberta-base-ViT-B-32"):
        CLIPModel(CLIPConfig(model="xlm-roberta-base-ViT-B-31"))
    with pytest.raises(UnknownModelError, match=r"Unknown pretrained tag 'laion2b' .*Valid tags: laion5b_s13b_b90k"):
        CLIPModel(CLIPConfig(pretrained="laion2b"))
    with pytest.raises(UnknownModelError, match="Valid tags: frozen_laion5b_s13b_b90k"):
        CLIPModel(CLIPConfig(model="xlm-roberta-large-ViT-H-14", pretrained="laion5b_s13b_b90k"))
    assert open_clip.list_pretrained_tags_by_model("xlm-roberta-large-ViT-H-14") == ["frozen_laion5b_s13b_b90k"]

    def no_hub(*args, **kwargs):
        raise OSError("We couldn't connect to the Hugging Face hub (offline)")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", no_hub)  # never download in a test
    with pytest.raises(UnknownModelError, match=r"Could not create open_clip model xlm-roberta-base-ViT-B-32 "
                                                r"\(pretrained 'laion5b_s13b_b90k'\).*run once with internet"):
        CLIPModel(CLIPConfig())
    with pytest.raises(UnknownModelError, match="Could not read the open_clip config of 'hf-hub:nobody/none'"):
        CLIPModel(CLIPConfig(model="hf-hub:nobody/none"))
    with pytest.raises(UnknownModelError, match="does not exist"):
        CLIPModel(CLIPConfig(model=str(tmp_path / "nowhere")))
    with pytest.raises(UnknownModelError, match="open_clip_config.json missing"):
        CLIPModel(CLIPConfig(model=str(tmp_path)))
    with pytest.raises(ConfigError, match="logit_scale must be one of"):
        CLIPConfig(logit_scale="fixed")


def test_tower_locking_and_logit_scale_settings(tiny, world):
    model = _model(tiny, world, lock_image=True, lock_text=True)
    assert not any(p.requires_grad for p in model.clip.visual.parameters())
    assert not any(p.requires_grad for p in model.clip.text.transformer.parameters())
    assert all(p.requires_grad for p in model.clip.text.proj.parameters()) and model.clip.logit_scale.requires_grad
    partly = _model(tiny, world, lock_text=True, lock_text_unlocked_layers=1)
    text = partly.clip.text.transformer
    assert not any(p.requires_grad for p in text.embeddings.parameters())
    assert all(p.requires_grad for p in text.encoder.layer[-1].parameters())
    assert all(p.requires_grad for p in partly.clip.visual.parameters())
    fixed = _model(tiny, world, logit_scale="train")
    fixed.configure_training(TrainConfig(temperature=0.05, learnable_temperature=False))
    assert fixed.clip.logit_scale.item() == pytest.approx(math.log(20)) and not fixed.clip.logit_scale.requires_grad
    assert fixed.log_values()["temperature"] == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="denominator='paper'"):
        model.configure_training(TrainConfig(denominator="paper"))
    assert "RandomResizedCrop" in repr(_model(tiny, world, augment=True).collator().transform)
    assert "RandomResizedCrop" not in repr(model.collator().transform)
    with pytest.raises(ConfigError, match="no contexts"):
        model.encode(["a red circle"], contexts=["a paragraph"])


def test_grad_cache_equals_the_plain_step(tiny, world):
    model = _model(tiny, world, t2t_weight=0.3).eval()  # dropout off
    batch = model.collator()(_pairs(world, [1, 2, 6, 9, 11]))
    losses = model(batch)
    assert losses["loss"].item() == pytest.approx(
        (losses["i2t"].item() + losses["t2i"].item()) / 2 + 0.3 * losses["t2t"].item(), rel=1e-6)
    losses["loss"].backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    cached = cached_backward(model, batch, chunk_size=3, device=torch.device("cpu"))
    assert cached["loss"].item() == pytest.approx(losses["loss"].item(), rel=1e-6)
    assert set(plain) == {n for n, p in model.named_parameters() if p.grad is not None}
    assert len(plain) > 20
    for n, p in model.named_parameters():
        if n in plain:
            assert torch.allclose(p.grad, plain[n], atol=1e-6, rtol=1e-4), n


def test_bf16_autocast_keeps_the_similarities_in_float32(tiny, world):
    model = _model(tiny, world).eval()
    with torch.no_grad():
        model.clip.logit_scale.fill_(LOGIT_SCALE_MAX)  # scale 100: where bf16 logits would be coarse
    batch = model.collator()(_pairs(world, [0, 3, 4, 8]))
    with torch.no_grad():
        full = model(batch)["loss"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(batch)["loss"]
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(full.item(), rel=0.05)  # only the towers ran in bf16


# ----------------------------------------------------------------------------- through the trainer


def _cfg(**kw) -> TrainConfig:
    base = dict(strategy="hybrid", batch_size=8, max_steps=30, lr=3e-3, warmup_ratio=0.1, checkpoint_every=10,
                val_every=0, log_every=1, seed=0, show_progress=False, hard_negatives=False)
    return TrainConfig(**{**base, **kw})


def _recall_at_1(model: CLIPModel, world: dict) -> float:
    ds = world["dataset"]
    captions = [ds.item(g, "en").query for g in range(len(ds))]
    images = [ds.image(g) for g in range(len(ds))]
    sims = model.encode(captions, kind="query") @ model.encode_images(images).T
    return float((sims.argmax(1) == torch.arange(len(ds))).float().mean())


def test_training_lowers_the_loss_clamps_the_scale_and_reloads_after_moving(tiny, world, tmp_path):
    model = _model(tiny, world)
    with torch.no_grad():
        model.clip.logit_scale.fill_(5.0)  # above ln 100: the first step clamps it
    before = _recall_at_1(model, world)
    trainer = Trainer(model, world["dataset"], _cfg(), tmp_path / "run")
    scales = []
    trainer._step_hook = lambda step: scales.append(model.clip.logit_scale.item())
    assert trainer.fit()["status"] == "finished"
    rows = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert {"loss", "i2t", "t2i", "logit_scale", "temperature"} <= set(rows[0])
    first, last = np.mean([r["loss"] for r in rows[:5]]), np.mean([r["loss"] for r in rows[-5:]])
    assert last < first - 0.5, (first, last)
    assert scales[0] == pytest.approx(LOGIT_SCALE_MAX) and max(scales) <= LOGIT_SCALE_MAX + 1e-6
    after = _recall_at_1(model, world)
    assert after > before and after >= 0.25, (before, after)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["identity"]["model"]["family"] == "clip" and config["identity"]["model"]["recipe"]["seed"] == 0
    # the exported model reloads offline after its folder moves, with the same embeddings
    moved = shutil.move(str(tmp_path / "run" / "model"), str(tmp_path / "elsewhere"))
    again = load_model(moved)
    assert isinstance(again, CLIPModel) and model_class("clip") is CLIPModel
    assert json.loads((Path(moved) / "hbkit_model.json").read_text())["family"] == "clip"
    texts = ["a red circle", "ein blau quadrat"]
    assert torch.allclose(again.encode(texts), model.encode(texts), atol=1e-6)
    refs = [ImageRef(str(world["root"] / "green_triangle.png")), ImageRef("red_square.png")]
    assert torch.allclose(again.encode_images(refs, image_root=world["root"]), model.encode_images(refs), atol=1e-6)
    emb = again.encode(texts)
    assert emb.dtype == torch.float32 and emb.shape == (2, 32)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_exact_resume(tiny, world, tmp_path):
    cfg = _cfg(max_steps=8, checkpoint_every=3)
    Trainer(_model(tiny, world), world["dataset"], cfg, tmp_path / "full").fit()
    part = Trainer(_model(tiny, world), world["dataset"], cfg, tmp_path / "part")
    part._step_hook = lambda step: (_ for _ in ()).throw(KeyboardInterrupt) if step == 5 else None
    with pytest.raises(KeyboardInterrupt):
        part.fit()
    assert run_status(tmp_path / "part") == "interrupted" and load_checkpoint(part.latest_path)["step"] == 3
    Trainer(_model(tiny, world), world["dataset"], cfg, tmp_path / "part").fit()
    a = CLIPModel.load(tmp_path / "full" / "model").state_dict()
    b = CLIPModel.load(tmp_path / "part" / "model").state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_the_tiny_build_is_reused_and_moves(tiny, world, tmp_path):
    stamp = (tiny / "open_clip_model.safetensors").stat().st_mtime_ns
    assert make_tiny_clip(tiny, world["captions"], seed=0) == tiny
    assert (tiny / "open_clip_model.safetensors").stat().st_mtime_ns == stamp  # same request: not rebuilt
    copy = Path(shutil.copytree(tiny, tmp_path / "copied"))
    a = _model(tiny, world)
    b = CLIPModel.from_config(CLIPConfig(model=f"local-dir:{copy}", image_root=str(world["root"])))
    assert torch.equal(a.encode(["a red circle"]), b.encode(["a red circle"]))
    assert torch.equal(a.encode_images([ImageRef("red_circle.png")]), b.encode_images([ImageRef("red_circle.png")]))
    # registered with open_clip by name, plain open_clip calls embed as CLIPModel does
    import open_clip

    name = register_folder(copy)
    assert name in open_clip.list_models() and name.startswith("hbkit-copied-")
    weights = str(copy / "open_clip_model.safetensors")
    clip, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights)
    clip.eval()
    tokens = open_clip.get_tokenizer(name)(["a red circle"])
    with torch.no_grad():
        text = clip.encode_text(tokens, normalize=True)
        image = clip.encode_image(preprocess(Image.open(world["root"] / "red_circle.png"))[None], normalize=True)
    assert torch.allclose(text, a.encode(["a red circle"]), atol=1e-6)
    assert torch.allclose(image, a.encode_images([ImageRef("red_circle.png")]), atol=1e-6)
    other = make_tiny_clip(tmp_path / "seed1", world["captions"], seed=1)
    c = CLIPModel.load(other)
    assert not torch.equal(a.clip.visual.conv1.weight, c.clip.visual.conv1.weight)
