"""Training throughput (pairs/s): hbkit's trainer with the hybrid sampler against
sentence-transformers' MultipleNegativesRankingLoss, same tiny model, data and batch size,
measured in the same run on this machine.

    python bench/bench_train.py [--steps 60] [--batch-size 32]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HBKIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

import torch  # noqa: E402

from hbkit.datasets.demo_world import make_demo_world  # noqa: E402
from hbkit.models.bi_encoder import BiEncoder, EncoderConfig  # noqa: E402
from hbkit.samplers import make_sampler  # noqa: E402
from hbkit.models.tiny import make_tiny_model  # noqa: E402
from hbkit.trainer import TrainConfig, Trainer  # noqa: E402


def hbkit_run(model_dir: Path, world, steps: int, bs: int, work: Path) -> float:
    enc = BiEncoder(EncoderConfig(model=str(model_dir), max_query_length=48, max_passage_length=64))
    cfg = TrainConfig(strategy="hybrid", alpha=0.5, batch_size=bs, max_steps=steps, lr=3e-4, val_every=0,
                      checkpoint_every=10 * steps, log_every=10 * steps, seed=0, show_progress=False)
    trainer = Trainer(enc, world.train, cfg, work / "hbkit_run")
    t0 = time.perf_counter()
    trainer.fit()
    return steps * bs / (time.perf_counter() - t0)


def st_run(model_dir: Path, world, steps: int, bs: int, work: Path) -> float:
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments, losses, models)
    from sentence_transformers.training_args import BatchSamplers

    # The same pairs the hybrid sampler produces, in the same order.
    sampler = make_sampler("hybrid", world.train, bs, alpha=0.5, seed=0)
    rows = {"anchor": [], "positive": [], "negative": []}
    for _, batch in zip(range(steps), sampler.batches()):
        for ref in batch.refs:
            p = world.train.pair(ref)
            rows["anchor"].append("Query: " + p.query)
            rows["positive"].append("Passage: " + p.positive)
            rows["negative"].append("Passage: " + p.negative)
    data = Dataset.from_dict(rows)
    word = models.Transformer(str(model_dir), max_seq_length=64)
    model = SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean"),
                                         models.Normalize()], device="cpu")
    loss = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "st_run"), per_device_train_batch_size=bs, max_steps=steps, learning_rate=3e-4,
        warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, logging_steps=10 * steps, save_strategy="no",
        report_to=[], disable_tqdm=True, seed=0, dataloader_drop_last=True, use_cpu=True,
        batch_sampler=BatchSamplers.BATCH_SAMPLER)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)
    t0 = time.perf_counter()
    trainer.train()
    return steps * bs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="hbkit-bench-"))
    try:
        world = make_demo_world(seed=0)
        model_dir = make_tiny_model("xlmr", work / "tiny-xlmr", world.texts(), seed=0)
        ours, theirs = [], []
        for r in range(args.repeats):  # interleave to share machine noise
            shutil.rmtree(work / "hbkit_run", ignore_errors=True)
            ours.append(hbkit_run(model_dir, world, args.steps, args.batch_size, work))
            shutil.rmtree(work / "st_run", ignore_errors=True)
            theirs.append(st_run(model_dir, world, args.steps, args.batch_size, work))
        o, t = max(ours), max(theirs)
        print(f"tiny XLM-R-shaped model, batch {args.batch_size}, {args.steps} steps, {torch.get_num_threads()} threads")
        print(f"hbkit Trainer (hybrid sampler, InfoNCE + hard negatives): {o:8.1f} pairs/s  (runs: "
              + ", ".join(f"{x:.1f}" for x in ours) + ")")
        print(f"sentence-transformers MNRL (same triples, same model):  {t:8.1f} pairs/s  (runs: "
              + ", ".join(f"{x:.1f}" for x in theirs) + ")")
        print(f"ratio hbkit / sentence-transformers: {o / t:.3f}  (target >= 0.95)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
