"""Training throughput of a tiny CLIP (pairs/s): hbkit's trainer against a bare open_clip loop, and
whether PNG decoding keeps up with the model step.

1. **Model step**: hbkit's ``Trainer`` (hybrid sampler) and a bare loop (the same open_clip model
   object, ``open_clip.loss.ClipLoss``, ``torch.optim.AdamW`` with the trainer's parameter groups,
   schedule, clipping and logit-scale clamp) over the same batches, collated once up front. The
   trainer runs its own sampler and loader; only its collator is replaced by a look-up of the
   pre-collated batch, so neither side decodes or tokenizes while timed. The two loops alternate
   step by step in one process (the bare loop's step runs in the trainer's step hook, on its own
   RNG state), so both see the same machine load; both end with the same weights.
2. **Decoding**: the collator's work on one batch (tokenize, PNG decode, preprocess), and the
   trainer collating real PNG files in ``DataLoader`` workers (``--workers``) or in the training
   process, against the same trainer over pre-collated batches (runs interleaved).
3. **Demo runs** (the ``demo-image`` profile: batch 32, 300 steps): time per step and per run,
   collating PNGs each step, with the collator's image cache, and pre-collated.

A run is timed over the steps after ``--warmup`` and before its last step (which writes a
checkpoint): set-up, worker start-up and the final save are not counted. A rate is the batch size
over the median step time (robust to other processes' bursts on a shared machine); "whole" rates
divide all timed pairs by all timed seconds. Figures are medians over ``--repeats``.

    python bench/bench_clip_train.py [--steps 60] [--batch-size 64] [--repeats 5] [--threads 0]
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HBKIT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

import torch

from hbkit.datasets.image_world import ImageWorld, make_image_world
from hbkit.models.clip import LOGIT_SCALE_MAX, CLIPConfig, CLIPModel
from hbkit.models.images import preprocess_images
from hbkit.models.tiny_clip import make_tiny_clip
from hbkit.parallel import TrainingPair
from hbkit.samplers import make_sampler
from hbkit.trainer import TrainConfig, Trainer

#: The demo-image profile's tiny CLIP (hbkit/kit/profiles.py), without its masked-LM warm-up.
SIZES = {"image_size": 32, "patch_size": 8, "vision_width": 64, "vision_layers": 2, "vision_head_width": 16,
         "embed_dim": 64, "context_length": 32, "vocab_size": 800, "text_hidden_size": 64, "text_layers": 2,
         "text_heads": 2, "text_intermediate_size": 128}
#: The demo-image profile's optimiser settings.
LR, WEIGHT_DECAY, WARMUP_RATIO, MAX_GRAD_NORM, ALPHA, SEED = 1e-3, 0.1, 0.1, 1.0, 0.5, 0


@dataclass(frozen=True)
class Rate:
    """Throughput of one run from its timed step durations (seconds)."""

    batch_size: int
    durations: Sequence[float]

    @property
    def typical(self) -> float:
        """Pairs/s from the median step time."""
        return self.batch_size / statistics.median(self.durations)

    @property
    def whole(self) -> float:
        """Pairs/s over all timed steps, pauses included."""
        return len(self.durations) * self.batch_size / sum(self.durations)


def _key(pairs: Sequence[TrainingPair]) -> tuple:
    return tuple((p.group, p.query_lang, p.query) for p in pairs)


class Precollated:
    """A collator that returns batches collated before the run (a dict look-up, no data work)."""

    def __init__(self) -> None:
        self.batches: dict[tuple, dict] = {}

    def __call__(self, pairs: Sequence[TrainingPair]) -> dict:
        try:
            return self.batches[_key(pairs)]
        except KeyError:
            raise RuntimeError("The trainer asked for a batch that was not pre-collated: collate more batches "
                               "than the run has steps.") from None


def precollate(model: CLIPModel, world: ImageWorld, batch_size: int, n: int) -> tuple[Precollated, list[dict], dict]:
    """The first ``n`` batches of the trainer's sampler, collated once with the model's collator.

    Returns the look-up collator, the batches in order, and median per-batch times in ms of the
    whole collator, of image decoding + preprocessing alone and of tokenizing alone."""
    sampler = make_sampler("hybrid", [world.train], batch_size, alpha=ALPHA, seed=SEED)
    collate = model.collator()
    lookup, ordered = Precollated(), []
    times: dict[str, list[float]] = {"collate": [], "images": [], "text": []}
    for _, b in zip(range(n), sampler.batches()):
        pairs = [world.train.pair(r) for r in b.refs]
        t0 = time.perf_counter()
        data = collate(pairs)
        t1 = time.perf_counter()
        preprocess_images([p.positive for p in pairs], model.preprocess_val, model.image_root)
        t2 = time.perf_counter()
        model.tokenizer([p.query for p in pairs])
        t3 = time.perf_counter()
        for name, dt in (("collate", t1 - t0), ("images", t2 - t1), ("text", t3 - t2)):
            times[name].append(dt)
        lookup.batches[_key(pairs)] = data
        ordered.append(data)
    return lookup, ordered, {name: 1e3 * statistics.median(v) for name, v in times.items()}


def _window(steps: int, warmup: int) -> range:
    """The timed steps: after the warm-up, before the last (checkpointing) step."""
    if steps - 1 - warmup < 2:
        raise SystemExit(f"--steps ({steps}) must exceed --warmup ({warmup}) + 2.")
    return range(warmup + 1, steps)


def new_model(folder: Path, world: ImageWorld, **settings: Any) -> CLIPModel:
    return CLIPModel(CLIPConfig(model=str(folder), pretrained=None, image_root=world.image_root, **settings))


def trainer_run(folder: Path, world: ImageWorld, batch_size: int, steps: int, warmup: int, work: Path,
                collate: Callable | None = None, workers: int = 0, checkpoint_every: int = 0,
                paired: Callable[[int], None] | None = None, **settings: Any) -> tuple[Rate, CLIPModel]:
    """hbkit's trainer: its step times and the trained model.

    ``collate`` replaces the model's collator; ``paired(step)`` runs after each step, outside the
    timed spans; ``settings`` go to :class:`CLIPConfig`."""
    model = new_model(folder, world, **settings)
    if collate is not None:
        model.collator = lambda: collate  # the trainer collates through model.collator()
    cfg = TrainConfig(strategy="hybrid", alpha=ALPHA, batch_size=batch_size, max_steps=steps, lr=LR,
                      weight_decay=WEIGHT_DECAY, warmup_ratio=WARMUP_RATIO, max_grad_norm=MAX_GRAD_NORM,
                      val_every=0, checkpoint_every=checkpoint_every or 10 * steps, log_every=10 * steps,
                      seed=SEED, device="cpu", loader_workers=workers, show_progress=False)
    run_dir = work / "trainer_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    trainer = Trainer(model, world.train, cfg, run_dir)
    timed, durations = _window(steps, warmup), []
    since = [0.0]

    def hook(step: int) -> None:
        if step in timed:
            durations.append(time.perf_counter() - since[0])
        if paired is not None:
            paired(step)
        since[0] = time.perf_counter()

    trainer._step_hook = hook
    trainer.fit()
    return Rate(batch_size, durations), model


class BareLoop:
    """A bare open_clip training loop over pre-collated ``batches``, one step at a time: the same
    model (created by the same factory), the trainer's optimiser groups, schedule, clipping and
    logit-scale clamp, nothing else. It draws dropout masks from its own RNG state, so it can run
    interleaved with the trainer and still give the weights of a run on its own."""

    def __init__(self, folder: Path, world: ImageWorld, batches: Sequence[dict], steps: int) -> None:
        import open_clip

        self.model = new_model(folder, world)
        self.clip = self.model.clip.train()
        self.batches = batches
        self.params = [p for p in self.clip.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for p in self.params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
             {"params": [p for p in self.params if p.ndim < 2], "weight_decay": 0.0}], lr=LR)
        warm = int(WARMUP_RATIO * steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
        self.loss = open_clip.loss.ClipLoss()
        self.rng = torch.Generator().manual_seed(SEED).get_state()  # as the trainer seeds torch before training

    def step(self, step: int) -> float:
        """Train on batch ``step - 1``; returns the seconds it took."""
        outer = torch.get_rng_state()
        torch.set_rng_state(self.rng)
        b = self.batches[step - 1]
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        image_features, text_features, scale = self.clip(b["images"], b["text"])[:3]
        self.loss(image_features, text_features, scale).backward()
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
        seconds = time.perf_counter() - t0
        self.rng = torch.get_rng_state()
        torch.set_rng_state(outer)
        return seconds


def paired_run(folder: Path, world: ImageWorld, lookup: Precollated, batches: Sequence[dict], steps: int,
               warmup: int, work: Path) -> tuple[Rate, Rate, float]:
    """Trainer and bare loop alternating step by step: their step times and the largest weight difference."""
    bare, timed, bare_durations = BareLoop(folder, world, batches, steps), _window(steps, warmup), []

    def bare_step(step: int) -> None:
        seconds = bare.step(step)
        if step in timed:
            bare_durations.append(seconds)

    rate, model = trainer_run(folder, world, len(batches[0]["text"]), steps, warmup, work, collate=lookup,
                              paired=bare_step)
    theirs = bare.clip.state_dict()
    diff = max(float((v.float() - theirs[k].float()).abs().max()) for k, v in model.clip.state_dict().items())
    return rate, Rate(rate.batch_size, bare_durations), diff


def _median(rates: Sequence[Rate], whole: bool = False) -> float:
    return statistics.median(r.whole if whole else r.typical for r in rates)


def _line(name: str, rates: Sequence[Rate], width: int) -> str:
    runs = ", ".join(f"{r.typical:.0f}" for r in rates)
    return f"   {name:{width}s} {_median(rates):6.0f} pairs/s  (whole {_median(rates, True):5.0f}; runs: {runs})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--demo-batch-size", type=int, default=32)
    ap.add_argument("--demo-steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: one per CPU core)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    bs, steps, warmup = args.batch_size, args.steps, args.warmup
    work = Path(tempfile.mkdtemp(prefix="hbkit-bench-clip-"))
    try:
        world = make_image_world(seed=0, n_train_images=600, n_test_images=120, image_size=SIZES["image_size"],
                                 out_dir=work / "images")
        folder = make_tiny_clip(work / "tiny-clip", world.texts(), seed=0, show_progress=False, **SIZES)
        lookup, batches, ms = precollate(new_model(folder, world), world, bs, steps)
        print(f"tiny CLIP {SIZES}; {torch.get_num_threads()} torch threads, {os.cpu_count()} CPU cores")
        print(f"toy image world: {len(world.train_set.ids)} training PNGs ({SIZES['image_size']} px), "
              f"{world.train.num_items} captions; hybrid batches of {bs}, {steps} steps per run "
              f"({len(_window(steps, warmup))} timed); medians of {args.repeats} repeats")

        # 1. model step only: trainer and bare loop, step by step, over the same pre-collated batches
        paired_run(folder, world, lookup, batches, steps, warmup, work)  # warm-up
        ours, bare, ratios, diff = [], [], [], 0.0
        for _ in range(args.repeats):
            o, b, d = paired_run(folder, world, lookup, batches, steps, warmup, work)
            ours.append(o)
            bare.append(b)
            ratios.append(statistics.median(x / y for x, y in zip(b.durations, o.durations)))
            diff = max(diff, d)
        print("\n1. model step only (both over the same pre-collated batches, alternating step by step)")
        print(_line("hbkit Trainer (its sampler and loader; collation looked up)", ours, 60))
        print(_line("bare loop (the same open_clip model, ClipLoss, AdamW)", bare, 60))
        print(f"   ratio trainer / bare loop: {_median(ours) / _median(bare):.3f} (per-step pairs "
              f"{statistics.median(ratios):.3f}, whole {_median(ours, True) / _median(bare, True):.3f}; "
              "target >= 0.95)")
        print(f"   the same run: largest weight difference after {steps} steps {diff:.1e}"
              + (" (identical weights)" if diff == 0 else ""))

        # 2. decoding: the collator alone; the trainer collating in workers / in process vs pre-collated
        pre, workers, inproc = [], [], []
        for _ in range(args.repeats):
            pre.append(trainer_run(folder, world, bs, steps, warmup, work, collate=lookup)[0])
            workers.append(trainer_run(folder, world, bs, steps, warmup, work, workers=args.workers)[0])
            inproc.append(trainer_run(folder, world, bs, steps, warmup, work)[0])
        p = _median(pre)
        step_ms = 1e3 * bs / p
        print(f"\n2. decoding: {bs} PNGs per batch through open_clip's evaluation transform")
        print(f"   collator per batch {ms['collate']:.1f} ms (decode + preprocess {ms['images']:.1f} ms, tokenize "
              f"{ms['text']:.1f} ms); trainer step per batch {step_ms:.1f} ms: collating a batch takes "
              f"{ms['collate'] / step_ms:.2f} steps")
        print(_line("trainer, pre-collated batches", pre, 46))
        print(_line(f"trainer, collating in {args.workers} DataLoader workers", workers, 46)
              + f"  ratio {_median(workers) / p:.3f}")
        print(_line("trainer, collating in the training process", inproc, 46) + f"  ratio {_median(inproc) / p:.3f}")
        keeps = _median(workers) / p >= 0.95
        print(f"   decoding in {args.workers} workers {'keeps' if keeps else 'does not keep'} up here (the workers "
              f"share {os.cpu_count()} cores with {torch.get_num_threads()} torch threads); with cores to spare, "
              f"{math.ceil(ms['collate'] / step_ms)} worker(s) would")

        # 3. the demo's runs: time per step and per whole run (set-up, checkpoints every 100 steps, final save)
        dbs, dsteps = args.demo_batch_size, args.demo_steps
        d_lookup = precollate(new_model(folder, world), world, dbs, dsteps)[0]
        variants: dict[str, tuple[dict, list[Rate], list[float]]] = {
            "pre-collated (model step only)": ({"collate": d_lookup}, [], []),
            "collating PNGs each step (default)": ({}, [], []),
            "collating, image_cache_mb=64": ({"image_cache_mb": 64}, [], []),
        }
        for _ in range(args.repeats):
            for kw, rates, walls in variants.values():
                t0 = time.perf_counter()
                rates.append(trainer_run(folder, world, dbs, dsteps, warmup, work, checkpoint_every=100, **kw)[0])
                walls.append(time.perf_counter() - t0)
        print(f"\n3. demo runs: batch {dbs}, {dsteps} steps, loader_workers=0")
        for name, (_, rates, walls) in variants.items():
            wall = statistics.median(walls)
            print(f"   {name:36s} {1e3 * dbs / _median(rates):5.1f} ms per step, {wall:5.1f} s per run "
                  f"(16 runs: {16 * wall / 60:4.1f} min)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
