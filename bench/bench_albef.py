"""Tiny ALBEF on CPU: ITM re-ranking on cached text states, and training throughput.

1. **ITM re-ranking** (pairs/s): the re-scoring hook (:meth:`ALBEFModel.rescore`: fusion layers
   over text-layer states cached once per caption) against re-encoding each pair's caption through
   every layer (text layers, then fusion), in the same chunks, for the same (query, candidate)
   pairs: every text→image query of the toy image world's test split against its top ``--k``
   images by ITC. The two must give the same scores (max difference printed). Runs alternate
   ``--repeats`` times; the figure is the median ratio.
2. **Training throughput** (pairs/s, batch ``--batch-size``): hbkit's ``Trainer`` against a bare loop
   over the same model class and the same pre-collated batches (``loss = model(batch)["loss"]``,
   AdamW with the trainer's parameter groups, schedule and clipping, the momentum update after each
   step). The trainer's collator is replaced by a look-up of the pre-collated batch; the bare step
   runs inside the trainer's step hook, so both see the same load. Rates use the median step time.

    python bench/bench_albef.py [--steps 40] [--batch-size 32] [--k 16] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HBKIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from hbkit.datasets.image_world import make_image_world
from hbkit.models.albef import ALBEFModel
from hbkit.models.tiny_albef import make_tiny_albef
from hbkit.samplers import make_sampler
from hbkit.trainer import TrainConfig, Trainer

SIZES = dict(image_res=32, patch_size=8, vision_width=64, vision_depth=2, vision_heads=2, hidden_size=64,
             text_layers=2, fusion_layers=2, num_heads=2, intermediate_size=128, embed_dim=64, vocab_size=800,
             max_length=48)
LR, WEIGHT_DECAY, WARMUP_RATIO, MAX_GRAD_NORM, SEED = 1e-3, 0.1, 0.1, 1.0, 0


def rerank(model: ALBEFModel, world, k: int, repeats: int) -> None:
    bench = world.benchmark
    model.eval()
    q_text = [i for i, q in enumerate(bench.queries) if q.modality == "text"]
    c_img = [j for j, c in enumerate(bench.candidates) if c.modality == "image"]
    qe = model.encode([bench.queries[i].text for i in q_text])
    ce = model.encode_images([bench.candidates[j].image for j in c_img])
    top = torch.topk(qe @ ce.T, k, dim=1).indices
    q_ids, c_ids = torch.tensor(q_text), torch.tensor(c_img)[top]
    n_pairs = c_ids.numel()
    tokens, _ = model.image_tokens([bench.candidates[j].image for j in c_img])
    row = {j: r for r, j in enumerate(c_img)}
    texts = [bench.queries[i].text for i in q_text]
    step = model.settings.rescore_batch

    @torch.no_grad()
    def re_encode() -> torch.Tensor:
        out = torch.empty(n_pairs)
        pair_text = [t for t in texts for _ in range(k)]
        pair_img = torch.stack([tokens[row[int(j)]] for j in c_ids.flatten()])
        for a in range(0, n_pairs, step):
            tok = model.tokenizer(pair_text[a:a + step])
            h = model.net.text_embeds(tok["input_ids"], tok["attention_mask"])
            fused = model.net.fuse(h, tok["attention_mask"], pair_img[a:a + step])
            out[a:a + len(h)] = model.net.itm_logits(fused)[:, 1]
        return out.view(len(q_text), k)

    cached_t, full_t, diff = [], [], 0.0
    for _ in range(repeats):
        fn = model.rescore(bench)  # a fresh hook: its caches are built inside the timed call
        t0 = time.perf_counter()
        a = fn(q_ids, c_ids)
        t1 = time.perf_counter()
        b = re_encode()
        t2 = time.perf_counter()
        cached_t.append(t1 - t0)
        full_t.append(t2 - t1)
        diff = max(diff, float((a - b).abs().max()))
    ratio = statistics.median(f / c for f, c in zip(full_t, cached_t))
    print(f"ITM re-ranking, {len(q_text)} caption queries x top {k} images = {n_pairs} pairs:")
    print(f"  cached text states (caches built in the timed call): {n_pairs / statistics.median(cached_t):8.0f} "
          "pairs/s")
    print(f"  re-encoding each caption through all layers:          {n_pairs / statistics.median(full_t):8.0f} pairs/s")
    print(f"  speed-up {ratio:.2f}x (target >= 1.5x); max |score difference| {diff:.1e}")


def training(folder: Path, world, batch_size: int, steps: int, work: Path) -> None:
    def new() -> ALBEFModel:
        return ALBEFModel.load(folder, image_root=world.image_root)

    sampler = make_sampler("hybrid", [world.train], batch_size, alpha=0.5, seed=SEED)
    collate = new().collator()
    lookup, ordered = {}, []
    for _, b in zip(range(steps + 2), sampler.batches()):
        pairs = [world.train.pair(r) for r in b.refs]
        data = collate(pairs)
        lookup[tuple((p.group, p.query_lang, p.query) for p in pairs)] = data
        ordered.append(data)

    bare = new().train()
    cfg = TrainConfig(strategy="hybrid", alpha=0.5, batch_size=batch_size, max_steps=steps, lr=LR,
                      weight_decay=WEIGHT_DECAY, warmup_ratio=WARMUP_RATIO, max_grad_norm=MAX_GRAD_NORM, val_every=0,
                      checkpoint_every=10 * steps, log_every=10 * steps, seed=SEED, device="cpu", show_progress=False)
    bare.configure_training(cfg)
    params = [p for p in bare.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=LR)
    warm = int(WARMUP_RATIO * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    bare_rng = torch.Generator().manual_seed(SEED).get_state()
    bare_times: list[float] = []

    def bare_step(step: int) -> None:
        nonlocal bare_rng
        outer = torch.get_rng_state()
        torch.set_rng_state(bare_rng)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        bare(ordered[step - 1])["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        sched.step()
        bare.after_optimizer_step()
        bare_times.append(time.perf_counter() - t0)
        bare_rng = torch.get_rng_state()
        torch.set_rng_state(outer)

    model = new()
    model.collator = lambda: (lambda pairs: lookup[tuple((p.group, p.query_lang, p.query) for p in pairs)])
    run_dir = work / "trainer_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    trainer = Trainer(model, world.train, cfg, run_dir)
    times, since = [], [0.0]

    def hook(step: int) -> None:
        if step > 3:
            times.append(time.perf_counter() - since[0])
        bare_step(step)
        since[0] = time.perf_counter()

    trainer._step_hook = hook
    trainer.fit()
    ours = batch_size / statistics.median(times[:-1])
    ref = batch_size / statistics.median(bare_times[3:])
    print(f"training, batch {batch_size}, {steps} steps (timed after step 3, median step):")
    print(f"  hbkit trainer {ours:7.1f} pairs/s, bare loop {ref:7.1f} pairs/s: {ours / ref:.3f}x (target >= 0.95x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        world = make_image_world(seed=0, n_train_images=300, n_test_images=60, image_size=SIZES["image_res"],
                                 out_dir=work / "world")
        folder = make_tiny_albef(work / "tiny-albef", [it.query for it in world.train.items()], seed=0, **SIZES)
        print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
        rerank(ALBEFModel.load(folder, image_root=world.image_root), world, args.k, args.repeats)
        training(folder, world, args.batch_size, args.steps, work)


if __name__ == "__main__":
    main()
