"""Experiment glue used by the notebooks: one profile → world, models, runs, results.

Layout under ``<output_dir>/<profile>/``::

    assets/<model>/                    tiny model built for the profile (tokenizer + weights)
    runs/<model>/<strategy>/seed<k>/   one training run (see hbkit.trainer) + results.csv
    notebooks/                         executed notebooks (make replicate)
    figures/                           PNG figures
    results.csv                        all runs' tidy results
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .atomic import write_csv
from .config import check_types
from .errors import ConfigError, DataError
from .profiles import get_profile

TINY_MODELS = {"tiny-xlmr": "xlmr", "tiny-labse": "bert"}


@dataclass
class RunSpec:
    """What a notebook run is asked to do (the notebook's parameters, type-checked)."""

    profile: str = "demo"
    output_dir: str = "runs"
    model: str = "tiny-xlmr"
    strategy: str = "hybrid"
    seed: int = 0
    alpha: float = 0.5
    max_steps: int = 1200
    batch_size: int = 32
    lr: float = 5e-4

    def __post_init__(self) -> None:
        check_types(self, "the notebook parameters")
        get_profile(self.profile)
        if self.model not in TINY_MODELS:
            from .errors import UnknownModelError
            raise UnknownModelError(f"Unknown model {self.model!r} for profile {self.profile!r}. "
                                    f"Choose one of: {', '.join(TINY_MODELS)}.")

    @property
    def profile_dir(self) -> Path:
        return Path(self.output_dir).expanduser().resolve() / self.profile

    @property
    def run_dir(self) -> Path:
        return run_dir(self.output_dir, self.profile, self.model, self.strategy, self.seed)


def run_dir(output_dir: str, profile: str, model: str, strategy: str, seed: int) -> Path:
    return Path(output_dir).expanduser().resolve() / profile / "runs" / model / strategy / f"seed{seed}"


@functools.lru_cache(maxsize=4)
def _world(profile: str):
    from .demo_world import make_demo_world

    return make_demo_world(**get_profile(profile)["world"])


def demo_world(profile: str = "demo"):
    """The profile's embedded demo world (deterministic; cached per process). A TOY world."""
    return _world(profile)


def prepare_model(profile: str, output_dir: str, model: str) -> Path:
    """Build (or reuse) the profile's tiny model: tokenizer trained on the world's texts,
    random init, optional brief masked-LM pre-training. Returns its local directory."""
    from .tiny_models import make_tiny_model

    if model not in TINY_MODELS:
        raise ConfigError(f"Unknown tiny model {model!r}; choose one of {', '.join(TINY_MODELS)}.")
    spec = dict(get_profile(profile)["tiny_model"])
    out = Path(output_dir).expanduser().resolve() / profile / "assets" / model
    world = demo_world(profile)
    seed = get_profile(profile)["world"]["seed"]
    return make_tiny_model(TINY_MODELS[model], out, world.texts(), seed=seed, **spec)


def train(spec: RunSpec, show_progress: bool | None = None) -> dict:
    """Train (or resume, or skip when finished) the run described by ``spec``; returns train_state."""
    from .encoder import EncoderConfig, BiEncoder
    from .trainer import TrainConfig, Trainer

    prof = get_profile(spec.profile)
    world = demo_world(spec.profile)
    model_dir = prepare_model(spec.profile, spec.output_dir, spec.model)
    t = dict(prof["train"])
    enc_cfg = EncoderConfig(model=str(model_dir), max_query_length=t.pop("max_query_length"),
                            max_passage_length=t.pop("max_passage_length"))
    t.update(strategy=spec.strategy, alpha=spec.alpha, seed=spec.seed, max_steps=spec.max_steps,
             batch_size=spec.batch_size, lr=spec.lr, show_progress=show_progress)
    cfg = TrainConfig(**t)
    encoder = BiEncoder(enc_cfg)
    trainer = Trainer(encoder, world.train, cfg, spec.run_dir, validation=world.validation,
                      extra_config={"profile": spec.profile, "model": spec.model,
                                    "world": prof["world"], "tiny_model": prof["tiny_model"]})
    return trainer.fit()


def evaluate(spec: RunSpec, show_progress: bool | None = None, force: bool = False) -> pd.DataFrame:
    """Evaluate a finished run on the profile's benchmark; results cached in ``run_dir/results.csv``."""
    from .encoder import load_encoder
    from .evaluation import evaluate_model

    out = spec.run_dir / "results.csv"
    if out.exists() and not force:
        return pd.read_csv(out, keep_default_na=False, na_values=[""])
    state_file = spec.run_dir / "train_state.json"
    if not state_file.exists() or json.loads(state_file.read_text()).get("status") != "finished":
        raise DataError(f"Run {spec.run_dir} has not finished training. Run the training notebook "
                        "(02_train) for it first, or `make replicate`, which resumes it.")
    encoder = load_encoder(spec.run_dir / "model")
    world = demo_world(spec.profile)
    df = evaluate_model(encoder, world.benchmark, show_progress=show_progress,
                        meta={"model": spec.model, "strategy": spec.strategy, "seed": spec.seed})
    write_csv(df, out)
    return df


def collect_results(output_dir: str, profile: str) -> pd.DataFrame:
    """Concatenate every evaluated run of a profile; writes ``<profile>/results.csv``."""
    root = Path(output_dir).expanduser().resolve() / profile
    files = sorted((root / "runs").glob("*/*/seed*/results.csv"))
    if not files:
        raise DataError(f"No evaluated runs under {root / 'runs'}. Run the training and evaluation notebooks "
                        "(or `make replicate PROFILE=" + profile + "`) first.")
    df = pd.concat([pd.read_csv(f, keep_default_na=False, na_values=[""]) for f in files], ignore_index=True)
    write_csv(df, root / "results.csv")
    return df
