"""The training loop: any :class:`~hbkit.models.base.RetrievalModel` under a batch-sampling strategy.

The trainer owns only the loop: sampler, optimiser, schedule, precision, clipping,
logging, checkpoints, resume, early stopping and the NaN guard. The model turns pairs
into batches and batches into losses (see :mod:`hbkit.models.base`).

One run lives in one directory::

    run_dir/config.json            resolved configuration, with the run's identity
    run_dir/train_log.jsonl|.csv   per-step logs (losses, lr, batch mode, pairs/s) and validation loss
    run_dir/checkpoints/latest.pt  model, optimiser, scheduler, sampler, RNG states, step (atomic)
    run_dir/checkpoints/best.pt    weights with the lowest validation loss (early stopping)
    run_dir/model/                 the final model (``model.save`` format)
    run_dir/train_state.json       written last: status "finished"

A rerun of a finished run does nothing; a rerun of an interrupted run resumes from
``latest.pt`` and ends with the same weights as an uninterrupted run (CPU, same seed).
A run directory whose recorded identity differs from the current settings is refused.
Under ``torchrun`` the model is wrapped in ``DistributedDataParallel``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hbkit.engine import distributed as hdist
from hbkit.engine.atomic import atomic_dir, write_csv, write_json, write_text
from hbkit.engine.checkpoint import (FINISHED, is_finished, load_checkpoint, read_state, rng_state,
                                     save_checkpoint, set_rng_state, write_state)
from hbkit.engine.grad_cache import cached_backward
from hbkit.engine.loader import batch_loader
from hbkit.engine.precision import autocast, choose_precision, make_scaler
from hbkit.engine.progress import progress
from hbkit.config import check_types
from hbkit.errors import ConfigError, TrainingDivergedError
from hbkit.models.base import RetrievalModel
from hbkit.parallel import ParallelDataset
from hbkit.samplers import HYBRID, ONE_TO_K, make_sampler

log = logging.getLogger("hbkit.trainer")

#: TrainConfig fields that do not change a run's result (left out of its identity).
NOT_IDENTITY = ("val_every_log", "checkpoint_every", "log_every", "device", "show_progress", "loader_workers")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters (paper: AdamW, lr 3e-5, weight decay 0.01, batch 100). Validated on creation."""

    strategy: str = "hybrid"          # "X-X", "X-Y", "hybrid" or "1-to-K" (image–caption data)
    alpha: float = 0.5                # probability of an X-X batch under "hybrid"
    one_to_k: int = 0                 # K, caption languages per image under "1-to-K" (0: all training languages)
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
    grad_cache_chunk: int = 0         # >0: cached-gradient mode, this many items per forward (big batches, small GPU)
    loader_workers: int = 0           # DataLoader worker processes collating batches (0: in the training process)
    show_progress: bool | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "TrainConfig":
        check_types(self, "TrainConfig")
        if not 0.0 <= self.alpha <= 1.0 or math.isnan(self.alpha):
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}; alpha is the probability of an X-X batch.")
        for name in ("batch_size", "max_steps", "val_batches", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("val_every", "patience", "grad_cache_chunk", "loader_workers", "one_to_k"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        return self

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def identity(self) -> dict:
        """The fields that change the trained weights (alpha only under "hybrid")."""
        d = {k: v for k, v in asdict(self).items() if k not in NOT_IDENTITY}
        if str(self.strategy).strip().lower() != HYBRID:
            d.pop("alpha")
        if str(self.strategy).strip().lower() != ONE_TO_K.lower():
            d.pop("one_to_k")
        return d


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _diff(saved: Any, now: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(saved) | set(now)):
            out += _diff(saved.get(k), now.get(k), f"{prefix}{k}.")
        return out
    return [] if saved == now else [f"{prefix[:-1]}: saved {saved!r}, now {now!r}"]


class Trainer:
    """Train ``model`` on ``train`` datasets with the configured sampling strategy.

    Args:
        model: a :class:`~hbkit.models.base.RetrievalModel` (modified in place).
        train: one or more parallel training datasets.
        config: hyperparameters.
        run_dir: directory of this run (created).
        validation: optional dataset for the early-stopping validation loss.
        extra_config: more settings to record in ``config.json`` (model name, data ...).
        identity: more settings that change the result (compared on rerun, with the training ones).
    """

    def __init__(self, model: RetrievalModel, train: ParallelDataset | Sequence[ParallelDataset], config: TrainConfig,
                 run_dir: str | Path, validation: ParallelDataset | None = None,
                 extra_config: dict | None = None, identity: dict | None = None) -> None:
        if not isinstance(model, RetrievalModel):
            raise ConfigError(f"{type(model).__name__} is not an hbkit RetrievalModel: subclass "
                              "hbkit.models.base.RetrievalModel (collator, forward -> losses, save/load).")
        self.config = config.validate()
        self.model = model
        self.datasets = [train] if isinstance(train, ParallelDataset) else list(train)
        self.validation = validation
        self.run_dir = Path(run_dir)
        self.extra_config = extra_config or {}
        self.device = resolve_device(config.device)
        self.precision = choose_precision(self.device, config.precision)
        self.rank, self.world_size = hdist.rank(), hdist.world_size()
        if config.grad_cache_chunk and not model.supports_grad_cache:
            raise ConfigError(
                f"grad_cache_chunk={config.grad_cache_chunk} needs a loss computed from separable per-item "
                f"embeddings, which {type(model).__name__} does not have (e.g. a matching head that looks at "
                "image and text together). Use grad_cache_chunk=0 and a smaller batch or more GPUs.")
        model.configure_training(config)
        alpha = config.alpha if str(config.strategy).strip().lower() == HYBRID else None
        extra = {"k": config.one_to_k} if config.one_to_k and str(config.strategy).strip().lower() == \
            ONE_TO_K.lower() else {}
        # Fail early on sampler problems (bad alpha, too large batch, missing language).
        self.sampler = make_sampler(config.strategy, self.datasets, config.batch_size, alpha=alpha,
                                    languages=config.languages, seed=config.seed, rank=self.rank,
                                    world_size=self.world_size, **extra)
        self.identity = {"train": config.identity(), "model": getattr(model, "identity", lambda: {})(),
                         "data": [{"name": d.name, "groups": len(d), "items": d.num_items, "languages": d.languages}
                                  for d in self.datasets], **(identity or {})}
        self._step_hook: Callable[[int], None] | None = None  # called after each step (tests, notebooks)

    # ----------------------------------------------------------------- paths and status
    @property
    def latest_path(self) -> Path:
        return self.run_dir / "checkpoints" / "latest.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    def is_finished(self) -> bool:
        return is_finished(self.run_dir)

    def _check_identity(self) -> None:
        """Refuse a run directory made under other settings (it would misdescribe or mix the weights)."""
        path = self.run_dir / "config.json"
        if not path.exists():
            return
        saved = json.loads(path.read_text()).get("identity")
        now = json.loads(json.dumps(self.identity, default=str))
        if saved is not None and saved != now:
            diff = "; ".join(_diff(saved, now)[:6])
            raise ConfigError(
                f"{self.run_dir} holds a run trained with other settings ({diff}). Its weights and config.json "
                "describe those settings, so it is neither reused nor resumed. Use another run directory (the kit "
                "keys run directories by their settings), or delete this one to retrain.")

    # ----------------------------------------------------------------- batches
    def _validation_batches(self) -> list:
        if self.validation is None or self.config.val_every == 0:
            return []
        cfg = self.config
        langs = cfg.val_languages or [lang for lang in self.validation.languages
                                      if cfg.languages is None or lang in cfg.languages]
        val_ds = self.validation.restrict(langs) if set(langs) != set(self.validation.languages) else self.validation
        bs = min(cfg.batch_size, len(val_ds))
        strategy = cfg.val_strategy if len(langs) > 1 else "X-X"
        alpha = cfg.alpha if strategy.strip().lower() == HYBRID else None
        # A fixed validation seed: the same validation batches for every strategy and training seed.
        sampler = make_sampler(strategy, [val_ds], bs, alpha=alpha, languages=langs, seed=10_000)
        collate = self.model.collator()
        out = []
        for batch in sampler.batches():
            out.append(collate([val_ds.pair(r) for r in batch.refs]))
            if len(out) >= cfg.val_batches:
                break
        return out

    @torch.no_grad()
    def validation_loss(self, batches) -> float:
        was = self.model.training
        self.model.eval()
        try:
            # every process holds the whole validation batch: no gathering
            with autocast(self.device, self.precision):
                losses = [float(self.model(b, gather=False)["loss"]) for b in batches]
        finally:
            self.model.train(was)
        return float(np.mean(losses))

    def _forward_backward(self, net, data, scaler) -> dict[str, torch.Tensor]:
        """Losses of one batch with gradients accumulated into the parameters (plain or cached)."""
        if self.config.grad_cache_chunk:
            return cached_backward(self.model, data, self.config.grad_cache_chunk, self.device,
                                   scale=scaler.scale if scaler is not None else None,
                                   autocast=lambda: autocast(self.device, self.precision))
        with autocast(self.device, self.precision):
            losses = net(data)
        loss = losses["loss"]
        if torch.isfinite(loss):
            (scaler.scale(loss) if scaler is not None else loss).backward()
        return {k: v.detach() for k, v in losses.items()}

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

        path = self.run_dir / "train_log.jsonl"
        if path.exists() and self.rank == 0:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            write_csv(pd.DataFrame(rows), self.run_dir / "train_log.csv")

    # ----------------------------------------------------------------- checkpoints
    def _save_latest(self, step: int, optimizer, scheduler, scaler, early: dict) -> None:
        if self.rank != 0:
            return
        self.sampler.seek(step)  # the sampler position follows from the step counter alone
        save_checkpoint({
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(),
            "early_stopping": early,
        }, self.latest_path)

    def _write_config(self) -> None:
        if self.rank != 0:
            return
        write_json(self.run_dir / "config.json", {
            "identity": self.identity, "train": asdict(self.config), "model_type": type(self.model).__name__,
            "model": getattr(self.model, "describe", lambda: {})(), "precision": self.precision,
            "device": str(self.device), "world_size": self.world_size, **self.extra_config,
        })

    def _wrap(self) -> torch.nn.Module:
        """The module the loop calls: the model, or its DistributedDataParallel wrapper under torchrun."""
        if self.world_size == 1:
            return self.model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else None
        import inspect

        # buffers (queues, counters) are each process's own; the keyword was renamed in torch 2.13
        sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                else {"broadcast_buffers": False})
        return DDP(self.model, device_ids=ids, **sync)

    # ----------------------------------------------------------------- main loop
    def fit(self) -> dict:
        """Train to ``max_steps`` (or early stop), export ``model/`` and return the final state."""
        cfg = self.config
        self._check_identity()
        if self.is_finished():
            log.info("run %s already finished; skipping", self.run_dir)
            return read_state(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        log.info("precision: %s on %s", self.precision, self.device)
        seed_everything(cfg.seed + self.rank)
        self.model.to(self.device).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
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
            ckpt = load_checkpoint(self.latest_path, map_location=self.device)
            self.model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if scaler is not None and ckpt["scaler"] is not None:
                scaler.load_state_dict(ckpt["scaler"])
            self.sampler.load_state_dict(ckpt["sampler"])
            set_rng_state(ckpt["rng"])
            early = ckpt["early_stopping"]
            step = int(ckpt["step"])
            self._truncate_log(step)
            log.info("resumed %s from step %d", self.run_dir, step)
        else:
            self._truncate_log(0)
        net = self._wrap()
        val_batches = self._validation_batches()
        bar = progress(total=cfg.max_steps, initial=step, show=cfg.show_progress,
                       desc=f"train {cfg.strategy} seed {cfg.seed}")
        batches = batch_loader(self.sampler, self.datasets, self.model.collator(), start=step,
                               workers=cfg.loader_workers)
        t_last, pairs_since = time.perf_counter(), 0
        while step < cfg.max_steps and not early["stopped_early"]:
            loaded = next(batches)
            batch = loaded.batch
            optimizer.zero_grad(set_to_none=True)
            if cfg.grad_cache_chunk and self.world_size > 1:
                with net.no_sync():
                    losses = self._forward_backward(net, loaded.data, scaler)
                hdist.all_reduce_gradients(params)
            else:
                losses = self._forward_backward(net, loaded.data, scaler)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                last = load_checkpoint(self.latest_path)["step"] if self.latest_path.exists() else None
                bar.close()
                raise TrainingDivergedError(
                    f"Loss became {float(loss)} at step {step + 1} ({batch.mode} batch). Training stopped. "
                    + (f"The last good checkpoint (step {last}) is kept at {self.latest_path}; "
                       if last is not None else "No checkpoint was written yet; ")
                    + "lower the learning rate, raise the temperature, or use precision='fp32', then rerun to resume."
                )
            if scaler is not None:
                scaler.unscale_(optimizer)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            self.model.after_optimizer_step()
            step += 1
            pairs_since += cfg.batch_size
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                now = time.perf_counter()
                record = {"step": step, "loss": float(loss), "lr": scheduler.get_last_lr()[0], "mode": batch.mode,
                          **{k: float(v) for k, v in losses.items() if k != "loss"}, **self.model.log_values(),
                          "pairs_per_s": pairs_since / (now - t_last)}
                self._append_log(record)
                bar.set_postfix(loss=f"{float(loss):.3f}")
                t_last, pairs_since = now, 0
            if val_batches and (step % cfg.val_every == 0 or step == cfg.max_steps):
                val = self.validation_loss(val_batches)
                self._append_log({"step": step, "val_loss": val})
                if early["best_val"] is None or val < early["best_val"]:
                    early.update(best_val=val, best_step=step, bad_evals=0)
                    if self.rank == 0:
                        save_checkpoint(self.model.state_dict(), self.best_path)
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
            self.model.load_state_dict(load_checkpoint(self.best_path, map_location=self.device))
        state = {"status": FINISHED, "steps": step, "precision": self.precision, **early}
        if self.rank == 0:
            with atomic_dir(self.model_dir) as tmp:
                self.model.save(tmp)
            self._write_csv_log()
            write_state(self.run_dir, state)
        if self.world_size > 1:
            torch.distributed.barrier()
        return state
