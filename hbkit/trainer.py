"""Contrastive fine-tuning of a BiEncoder under a batch-sampling strategy.

One run lives in one directory::

    run_dir/config.json            resolved configuration
    run_dir/train_log.jsonl|.csv   per-step logs (loss, lr, batch mode, pairs/s) and validation loss
    run_dir/checkpoints/latest.pt  model, optimiser, scheduler, sampler, RNG states, step (atomic)
    run_dir/checkpoints/best.pt    weights with the lowest validation loss (early stopping)
    run_dir/model/                 the final encoder (save_pretrained format)
    run_dir/train_state.json       written last: status "finished"

A rerun of a finished run does nothing; a rerun of an interrupted run resumes
from ``latest.pt`` and ends with the same weights as an uninterrupted run (CPU,
same seed).
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from hbkit.engine import distributed as hdist
from hbkit.engine.atomic import atomic_dir, torch_save, write_json, write_text
from hbkit.config import check_types
from hbkit.models.bi_encoder import BiEncoder
from hbkit.engine.grad_cache import cached_backward
from hbkit.errors import ConfigError, TrainingDivergedError
from hbkit.losses import InfoNCELoss
from hbkit.parallel import ParallelDataset
from hbkit.engine.precision import autocast, choose_precision, make_scaler
from hbkit.engine.progress import progress
from hbkit.samplers import make_sampler

log = logging.getLogger("hbkit.trainer")


@dataclass
class TrainConfig:
    """Training hyperparameters (paper: AdamW, lr 3e-5, weight decay 0.01, batch 100)."""

    strategy: str = "hybrid"          # "X-X", "X-Y" or "hybrid"
    alpha: float = 0.5                # probability of an X-X batch under "hybrid"
    batch_size: int = 32              # global batch (pairs)
    max_steps: int = 300
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1         # linear warm-up over this fraction of max_steps, then linear decay
    max_grad_norm: float = 1.0        # 0 disables clipping
    temperature: float = 0.05
    learnable_temperature: bool = False
    denominator: str = "batch"        # "batch" (positives + hard negatives) or "paper"
    hard_negatives: bool = True
    languages: list[str] | None = None  # training languages (None: all of the data's)
    val_every: int = 50               # steps between validation-loss evaluations (0: never)
    val_batches: int = 8
    val_strategy: str = "X-X"         # paper: English SQuADShifts, i.e. monolingual validation batches
    val_languages: list[str] | None = None
    patience: int = 0                 # stop after this many validations without improvement (0: off)
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    precision: str = "auto"           # "auto", "bf16", "fp16", "fp32"
    device: str = "auto"              # "auto", "cpu", "cuda", "cuda:1", ...
    use_context: bool = False         # encode passages with their context (not used by the demo)
    grad_cache_chunk: int = 0         # >0: cached-gradient mode, this many texts per forward (big batches, small GPU)
    show_progress: bool | None = None

    def validate(self) -> "TrainConfig":
        check_types(self, "TrainConfig")
        if not 0.0 <= self.alpha <= 1.0 or math.isnan(self.alpha):
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}; alpha is the probability of an X-X batch.")
        for name in ("batch_size", "max_steps", "val_batches", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("val_every", "patience", "grad_cache_chunk"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        return self


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"Unknown device {name!r}: use 'auto', 'cpu' or 'cuda'.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but no CUDA GPU is visible; use device='auto' or 'cpu'.")
    return device


def linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Fine-tune ``encoder`` on ``train`` datasets with the configured sampling strategy.

    Args:
        encoder: the bi-encoder to train (modified in place).
        train: one or more parallel training datasets.
        config: hyperparameters.
        run_dir: directory of this run (created).
        validation: optional dataset for the early-stopping validation loss.
        extra_config: more settings to record in ``config.json`` (model, data ...).
    """

    def __init__(self, encoder: BiEncoder, train: ParallelDataset | Sequence[ParallelDataset], config: TrainConfig,
                 run_dir: str | Path, validation: ParallelDataset | None = None,
                 extra_config: dict | None = None) -> None:
        self.config = config.validate()
        self.encoder = encoder
        self.datasets = [train] if isinstance(train, ParallelDataset) else list(train)
        self.validation = validation
        self.run_dir = Path(run_dir)
        self.extra_config = extra_config or {}
        self.device = resolve_device(config.device)
        self.precision = choose_precision(self.device, config.precision)
        self.rank, self.world_size = hdist.rank(), hdist.world_size()
        self.loss_fn = InfoNCELoss(config.temperature, config.learnable_temperature, config.denominator)
        # Fail early on sampler problems (bad alpha, too large batch, missing language).
        alpha = config.alpha if str(config.strategy).strip().lower() == "hybrid" else None
        self.sampler = make_sampler(config.strategy, self.datasets, config.batch_size, alpha=alpha,
                                    languages=config.languages, seed=config.seed, rank=self.rank,
                                    world_size=self.world_size)
        self._step_hook: Callable[[int], None] | None = None  # called after each step (tests, notebooks)

    # ----------------------------------------------------------------- paths
    @property
    def latest_path(self) -> Path:
        return self.run_dir / "checkpoints" / "latest.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    @property
    def state_path(self) -> Path:
        return self.run_dir / "train_state.json"

    def is_finished(self) -> bool:
        if not self.state_path.exists():
            return False
        return json.loads(self.state_path.read_text()).get("status") == "finished"

    # ----------------------------------------------------------------- batches
    def _texts(self, batch_refs, dataset_index: int):
        ds = self.datasets[dataset_index]
        pairs = [ds.pair(r) for r in batch_refs]
        queries = [p.query for p in pairs]
        positives = [p.positive for p in pairs]
        negatives = None
        if self.config.hard_negatives:
            if any(p.negative is None for p in pairs):
                negatives = None
            else:
                negatives = [p.negative for p in pairs]
        return queries, positives, negatives

    def _embed(self, texts, kind) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self.encoder.embed(texts, kind)

    def _loss(self, queries, positives, negatives, gather: bool = True) -> torch.Tensor:
        q = self._embed(queries, "query")
        if negatives is None:
            return self.loss_fn(q, self._embed(positives, "passage"), None, gather=gather)
        # positives and hard negatives in one forward pass (fewer, larger matrix products)
        pn = self._embed(list(positives) + list(negatives), "passage")
        return self.loss_fn(q, pn[: len(positives)], pn[len(positives):], gather=gather)

    def _forward_backward(self, queries, positives, negatives, scaler) -> torch.Tensor:
        """Loss of one batch with gradients accumulated into the parameters (plain or cached)."""
        if self.config.grad_cache_chunk:
            inputs = [(queries, "query"), (positives, "passage"),
                      (negatives, "passage") if negatives is not None else None]
            return cached_backward(self._embed, lambda q, p, n: self.loss_fn(q, p, n), inputs,
                                   self.config.grad_cache_chunk, self.device,
                                   scale=scaler.scale if scaler is not None else None)
        loss = self._loss(queries, positives, negatives)
        if torch.isfinite(loss):
            (scaler.scale(loss) if scaler is not None else loss).backward()
        return loss

    def _validation_batches(self):
        if self.validation is None or self.config.val_every == 0:
            return []
        cfg = self.config
        langs = cfg.val_languages or [lang for lang in self.validation.languages
                                      if cfg.languages is None or lang in cfg.languages]
        val_ds = self.validation.restrict(langs) if set(langs) != set(self.validation.languages) else self.validation
        bs = min(cfg.batch_size, len(val_ds))
        strategy = cfg.val_strategy if len(langs) > 1 else "X-X"
        alpha = cfg.alpha if strategy.strip().lower() == "hybrid" else None
        # A fixed validation seed: the same validation batches for every strategy and training seed.
        sampler = make_sampler(strategy, [val_ds], bs, alpha=alpha, languages=langs, seed=10_000)
        out = []
        for batch in sampler.batches():
            pairs = [val_ds.pair(r) for r in batch.refs]
            negs = [p.negative for p in pairs] if cfg.hard_negatives and all(p.negative for p in pairs) else None
            out.append(([p.query for p in pairs], [p.positive for p in pairs], negs))
            if len(out) >= cfg.val_batches:
                break
        return out

    @torch.no_grad()
    def validation_loss(self, batches) -> float:
        was = self.encoder.training
        self.encoder.eval()
        try:
            # every process holds the whole validation batch: no gathering
            losses = [float(self._loss(*b, gather=False)) for b in batches]
        finally:
            self.encoder.train(was)
        return float(np.mean(losses))

    # ----------------------------------------------------------------- logs
    def _append_log(self, record: dict) -> None:
        if self.rank != 0:
            return
        with open(self.run_dir / "train_log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def _truncate_log(self, step: int) -> None:
        path = self.run_dir / "train_log.jsonl"
        if not path.exists() or self.rank != 0:
            return
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        write_text(path, "".join(line + "\n" for line in keep))

    def _write_csv_log(self) -> None:
        import pandas as pd
        from hbkit.engine.atomic import write_csv

        path = self.run_dir / "train_log.jsonl"
        if path.exists() and self.rank == 0:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            write_csv(pd.DataFrame(rows), self.run_dir / "train_log.csv")

    # ----------------------------------------------------------------- checkpoints
    def _save_latest(self, step: int, optimizer, scheduler, scaler, early: dict) -> None:
        if self.rank != 0:
            return
        torch_save({
            "step": step,
            "model": self.encoder.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "sampler": self.sampler.state_dict(),
            "rng": _rng_state(),
            "early_stopping": early,
        }, self.latest_path)

    # ----------------------------------------------------------------- main loop
    def fit(self) -> dict:
        """Train to ``max_steps`` (or early stop), export ``model/`` and return the final state."""
        cfg = self.config
        if self.is_finished():
            log.info("run %s already finished; skipping", self.run_dir)
            return json.loads(self.state_path.read_text())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            write_json(self.run_dir / "config.json", {
                "train": asdict(cfg), "encoder": asdict(self.encoder.config), "precision": self.precision,
                "device": str(self.device), "world_size": self.world_size,
                "datasets": [{"name": d.name, "groups": len(d), "languages": d.languages} for d in self.datasets],
                **self.extra_config,
            })
        log.info("precision: %s on %s", self.precision, self.device)
        seed_everything(cfg.seed + self.rank)
        self.encoder.to(self.device).train()
        self.loss_fn.to(self.device)
        params = [p for p in self.encoder.parameters() if p.requires_grad] + list(self.loss_fn.parameters())
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        warmup = int(cfg.warmup_ratio * cfg.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(warmup, cfg.max_steps))
        scaler = make_scaler(self.device, self.precision)
        early = {"best_val": None, "best_step": None, "bad_evals": 0, "stopped_early": False}
        step = 0
        if self.latest_path.exists():
            ckpt = torch.load(self.latest_path, map_location=self.device, weights_only=False)
            self.encoder.load_state_dict(ckpt["model"])
            self.loss_fn.load_state_dict(ckpt["loss"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if scaler is not None and ckpt["scaler"] is not None:
                scaler.load_state_dict(ckpt["scaler"])
            self.sampler.load_state_dict(ckpt["sampler"])
            _set_rng_state(ckpt["rng"])
            early = ckpt["early_stopping"]
            step = int(ckpt["step"])
            self._truncate_log(step)
            log.info("resumed %s from step %d", self.run_dir, step)
        else:
            self._truncate_log(0)
        val_batches = self._validation_batches()
        bar = progress(total=cfg.max_steps, initial=step, show=cfg.show_progress,
                       desc=f"train {cfg.strategy} seed {cfg.seed}")
        batches = self.sampler.batches()
        t_last, pairs_since = time.perf_counter(), 0
        while step < cfg.max_steps and not early["stopped_early"]:
            batch = next(batches)
            queries, positives, negatives = self._texts(batch.refs, batch.dataset)
            optimizer.zero_grad(set_to_none=True)
            loss = self._forward_backward(queries, positives, negatives, scaler)
            if not torch.isfinite(loss):
                last = torch.load(self.latest_path, weights_only=False)["step"] if self.latest_path.exists() else None
                bar.close()
                raise TrainingDivergedError(
                    f"Loss became {float(loss.detach())} at step {step + 1} ({batch.mode} batch). Training stopped. "
                    + (f"The last good checkpoint (step {last}) is kept at {self.latest_path}; "
                       if last is not None else "No checkpoint was written yet; ")
                    + "lower the learning rate, raise the temperature, or use precision='fp32', then rerun to resume."
                )
            if scaler is not None:
                scaler.unscale_(optimizer)
            if self.world_size > 1:
                for p in params:
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad)
                        p.grad /= self.world_size
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            step += 1
            pairs_since += cfg.batch_size
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                now = time.perf_counter()
                record = {"step": step, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0], "mode": batch.mode,
                          "temperature": self.loss_fn.temperature, "pairs_per_s": pairs_since / (now - t_last)}
                self._append_log(record)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
                t_last, pairs_since = now, 0
            if val_batches and (step % cfg.val_every == 0 or step == cfg.max_steps):
                val = self.validation_loss(val_batches)
                self._append_log({"step": step, "val_loss": val})
                if early["best_val"] is None or val < early["best_val"]:
                    early.update(best_val=val, best_step=step, bad_evals=0)
                    if self.rank == 0:
                        torch_save(self.encoder.state_dict(), self.best_path)
                else:
                    early["bad_evals"] += 1
                    if cfg.patience and early["bad_evals"] >= cfg.patience:
                        early["stopped_early"] = True
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or early["stopped_early"]:
                self._save_latest(step, optimizer, scheduler, scaler, early)
            if self._step_hook is not None:
                self._step_hook(step)
        bar.close()
        return self._finish(step, early)

    def _finish(self, step: int, early: dict) -> dict:
        if self.best_path.exists():
            self.encoder.load_state_dict(torch.load(self.best_path, map_location=self.device, weights_only=False))
        state = {"status": "finished", "steps": step, "precision": self.precision, **early}
        if self.rank == 0:
            with atomic_dir(self.model_dir) as tmp:
                self.encoder.save_pretrained(tmp)
            self._write_csv_log()
            write_json(self.state_path, state)
        return state
