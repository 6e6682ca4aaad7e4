"""Full-size ALBEF on a GPU: one training step (batch 32, 384 px, bf16) and ITM re-ranking pairs/s.

The model has ALBEF's retrieval architecture (ViT-B/16 at ``--image-res``, 6 BERT-base text layers,
6 fusion layers, 256-d projections, momentum copies), randomly initialised, with a tokenizer
trained on the toy image world's captions (a smaller vocabulary than bert-base-uncased's 30,522:
the embedding table is a negligible share of the step). Throughput does not depend on the weights.

1. **Training step**: hbkit's ``Trainer`` (AdamW, clipping, the momentum update after each step,
   ``--precision``, default bf16) on pre-collated batches of ``--batch-size`` captions and their
   images, so the figure is the model step, not image decoding. Median step time after 3 warm-up
   steps; peak GPU memory.
2. **ITM re-ranking**: the fusion layers and ITM head over ``--pairs`` (caption, image) pairs from
   cached text-layer states and a bank of image tokens (:meth:`ALBEFModel.itm_scores`, chunks of
   ``rescore_batch``), under the same autocast.

    python bench/bench_albef_gpu.py                       # on a GPU
    python bench/bench_albef_gpu.py --small --device cpu  # a minute-long check of the script on CPU
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HBKIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from hbkit.datasets.image_world import make_image_world
from hbkit.engine.precision import autocast
from hbkit.models.albef import ALBEFModel
from hbkit.models.tiny_albef import make_tiny_albef
from hbkit.samplers import make_sampler
from hbkit.trainer import TrainConfig, Trainer

FULL = dict(patch_size=16, vision_width=768, vision_depth=12, vision_heads=12, hidden_size=768, text_layers=6,
            fusion_layers=6, num_heads=12, intermediate_size=3072, embed_dim=256, vocab_size=4000, max_length=30)
SMALL = dict(patch_size=8, vision_width=64, vision_depth=2, vision_heads=2, hidden_size=64, text_layers=2,
             fusion_layers=2, num_heads=2, intermediate_size=128, embed_dim=64, vocab_size=800, max_length=30)


def training(model: ALBEFModel, world, args, work: Path) -> str:
    sampler = make_sampler("hybrid", [world.train], args.batch_size, alpha=0.5, seed=0)
    collate = model.collator()
    lookup = {}
    for _, b in zip(range(args.steps + 1), sampler.batches()):
        pairs = [world.train.pair(r) for r in b.refs]
        lookup[tuple((p.group, p.query_lang, p.query) for p in pairs)] = collate(pairs)
    model.collator = lambda: (lambda pairs: lookup[tuple((p.group, p.query_lang, p.query) for p in pairs)])
    cfg = TrainConfig(strategy="hybrid", alpha=0.5, batch_size=args.batch_size, max_steps=args.steps, lr=1e-5,
                      weight_decay=0.02, warmup_ratio=0.1, val_every=0, checkpoint_every=10 * args.steps,
                      log_every=10 * args.steps, seed=0, device=args.device, precision=args.precision,
                      show_progress=False)
    trainer = Trainer(model, world.train, cfg, work / "run")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times, since = [], [0.0]

    def hook(step: int) -> None:
        sync()
        now = time.perf_counter()
        if step > 3:
            times.append(now - since[0])
        since[0] = now

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer._step_hook = hook
    trainer.fit()
    step = statistics.median(times)
    print(f"training step, batch {args.batch_size}, {model.net.config.image_res} px, {trainer.precision}, "
          f"{args.steps} steps (median after 3): {step * 1000:.0f} ms = {args.batch_size / step:.1f} pairs/s")
    if args.device.startswith("cuda"):
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return trainer.precision


@torch.no_grad()
def rerank(model: ALBEFModel, world, args, precision: str) -> None:
    bench = world.benchmark
    texts = [q.text for q in bench.queries if q.modality == "text"][:256]
    images = [c.image for c in bench.candidates if c.modality == "image"][:64]
    model.eval()
    states, _, _ = model.text_states(texts)
    tokens, _ = model.image_tokens(images)
    g = torch.Generator().manual_seed(0)
    pairs = [states[int(i)] for i in torch.randint(len(states), (args.pairs,), generator=g)]
    index = torch.randint(len(images), (args.pairs,), generator=g)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    runs = []
    with autocast(torch.device(args.device), precision):  # the precision the trainer chose
        for _ in range(3):
            sync()
            t0 = time.perf_counter()
            model.itm_scores(pairs, tokens, image_index=index)
            sync()
            runs.append(time.perf_counter() - t0)
    print(f"ITM re-ranking, {args.pairs} pairs in chunks of {model.settings.rescore_batch}, {precision} "
          f"(median of 3): {args.pairs / statistics.median(runs):.0f} pairs/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-res", type=int, default=384)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--pairs", type=int, default=8192)
    ap.add_argument("--precision", default="bf16", help="bf16, fp16, fp32 or auto")
    ap.add_argument("--small", action="store_true", help="tiny widths and 32 px: checks the script on CPU")
    args = ap.parse_args()
    if args.steps < 5:
        ap.error(f"--steps must be at least 5 (3 warm-up steps, then timed ones), got {args.steps}")
    sizes = dict(SMALL, image_res=32) if args.small else dict(FULL, image_res=args.image_res)
    if args.small:
        args.pairs = min(args.pairs, 512)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        world = make_image_world(seed=0, n_train_images=200, n_test_images=64, image_size=32, out_dir=work / "world")
        folder = make_tiny_albef(work / "albef", [it.query for it in world.train.items()], seed=0, **sizes)
        model = ALBEFModel.load(folder, image_root=world.image_root)
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"ALBEF {sizes['image_res']} px, patch {sizes['patch_size']}, {n / 1e6:.1f} M trainable parameters")
        precision = training(model, world, args, work)
        rerank(model, world, args, precision)


if __name__ == "__main__":
    main()
