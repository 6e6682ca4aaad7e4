"""Experiment glue used by the notebooks: one profile → data, models, runs, results.

Layout under ``<output_dir>/<profile>/``::

    assets/<model>/                    tiny models built for the profile (demo, test)
    runs/<model>/<label>/seed<k>/      one training run (see hbkit.trainer) + results_<benchmark>.csv
    notebooks/                         executed notebooks (make replicate)
    figures/                           PNG figures
    results.csv                        all runs' tidy results

``label`` is the strategy ("X-X", "X-Y", "hybrid"), or "hybrid-alpha0.25" for an α-sweep run.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hbkit.engine.atomic import write_csv
from hbkit.config import check_types
from hbkit.errors import ConfigError, DataError, UnknownModelError
from hbkit.kit.profiles import get_profile

TINY_MODELS = {"tiny-xlmr": "xlmr", "tiny-labse": "bert"}


def resolve_output_dir(output_dir: str | Path) -> Path:
    """An absolute output folder. A relative one is taken from the hbkit checkout's root when hbkit
    runs from a checkout (so JupyterLab in ``notebooks/`` and ``make replicate`` share ``runs/``),
    else from the working directory (Colab, Kaggle, a pip install)."""
    path = Path(output_dir).expanduser()
    if path.is_absolute():
        return path
    checkout = Path(__file__).resolve().parents[2]
    base = checkout if (checkout / "notebooks").is_dir() and (checkout / "pyproject.toml").exists() else Path.cwd()
    return (base / path).resolve()


def run_label(strategy: str, alpha: float, default_alpha: float = 0.5) -> str:
    """The run's label: the strategy, or ``hybrid-alpha<α>`` for a hybrid run with a non-default α."""
    if strategy == "hybrid" and float(alpha) != float(default_alpha):
        return f"hybrid-alpha{float(alpha):g}"
    return strategy


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
        prof = get_profile(self.profile)
        models = set(prof["models"]) | ({prof["alpha_sweep"]["model"]} if prof.get("alpha_sweep") else set())
        if self.model not in models:
            raise UnknownModelError(f"Unknown model {self.model!r} for profile {self.profile!r}. "
                                    f"Choose one of: {', '.join(sorted(models))}.")
        if self.strategy not in ("X-X", "X-Y", "hybrid"):
            raise ConfigError(f"Unknown strategy {self.strategy!r}: choose X-X, X-Y or hybrid.")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}; it is the probability of an X-X batch.")

    @property
    def profile_dir(self) -> Path:
        return resolve_output_dir(self.output_dir) / self.profile

    @property
    def label(self) -> str:
        return run_label(self.strategy, self.alpha, get_profile(self.profile)["train"]["alpha"])

    @property
    def run_dir(self) -> Path:
        return self.profile_dir / "runs" / self.model / self.label / f"seed{self.seed}"


# ------------------------------------------------------------------ data
@functools.lru_cache(maxsize=4)
def _world(profile: str):
    from hbkit.datasets.demo_world import make_demo_world

    return make_demo_world(**get_profile(profile)["world"])


def demo_world(profile: str = "demo"):
    """The profile's embedded demo world (deterministic; cached per process). A TOY world."""
    if "world" not in get_profile(profile):
        raise ConfigError(f"Profile {profile!r} has no demo world; it trains on real data.")
    return _world(profile)


def training_data(profile: str):
    """``(train datasets, validation dataset or None)`` for a profile."""
    prof = get_profile(profile)
    train, validation = [], None
    for src in prof["data"]["train"]:
        kind = src["kind"]
        if kind == "demo":
            train.append(demo_world(profile).train)
        elif kind == "mmarco":
            from hbkit.datasets.training_data import load_mmarco

            from hbkit.datasets.sources import local_dir
            train.append(load_mmarco(src["languages"], max_groups=src.get("max_groups"),
                                     source=src.get("source") or local_dir("mmarco")))
        elif kind == "file":
            from hbkit.datasets.training_data import read_parallel_file

            train.append(read_parallel_file(os.path.expandvars(src["path"]), name=src.get("name")))
        else:
            raise ConfigError(f"Unknown training data kind {kind!r} in profile {profile!r}: use demo, mmarco or file.")
    val = prof["data"].get("validation")
    if val:
        if val["kind"] == "demo":
            validation = demo_world(profile).validation
        elif val["kind"] == "squadshifts":
            from hbkit.datasets.training_data import load_squadshifts

            validation = load_squadshifts(val.get("subset", "nyt"), max_items=val.get("max_items"),
                                          source=val.get("source"))
        else:
            raise ConfigError(f"Unknown validation kind {val['kind']!r}: use demo or squadshifts.")
    return train, validation


def model_source(profile: str, output_dir: str, model: str) -> str:
    """A loadable model path or hub id: tiny models are built; ``$HBKIT_MODELS/<name>`` wins if present."""
    if model in TINY_MODELS:
        return str(prepare_model(profile, output_dir, model))
    models_dir = os.environ.get("HBKIT_MODELS")
    if models_dir and (Path(models_dir) / model).is_dir():
        return str(Path(models_dir) / model)
    return model


def prepare_model(profile: str, output_dir: str, model: str) -> Path:
    """Build (or reuse) the profile's tiny model: tokenizer trained on the world's texts,
    random init, optional brief masked-LM pre-training. Returns its local directory."""
    from hbkit.models.tiny import make_tiny_model

    if model not in TINY_MODELS:
        raise UnknownModelError(f"Unknown tiny model {model!r}; choose one of {', '.join(TINY_MODELS)}.")
    prof = get_profile(profile)
    out = resolve_output_dir(output_dir) / profile / "assets" / model
    return make_tiny_model(TINY_MODELS[model], out, demo_world(profile).texts(), seed=prof["world"]["seed"],
                           **prof["tiny_model"])


# ------------------------------------------------------------------ train / evaluate
def train(spec: RunSpec, show_progress: bool | None = None) -> dict:
    """Train (or resume, or skip when finished) the run described by ``spec``; returns train_state.

    Under ``torchrun`` every process calls this; the process group is initialised from the environment.
    """
    from hbkit.engine import distributed as hdist
    from hbkit.models.bi_encoder import BiEncoder, EncoderConfig
    from hbkit.trainer import TrainConfig, Trainer

    state_file = spec.run_dir / "train_state.json"
    if state_file.exists() and json.loads(state_file.read_text()).get("status") == "finished":
        return json.loads(state_file.read_text())
    hdist.init_from_env()
    prof = get_profile(spec.profile)
    train_sets, validation = training_data(spec.profile)
    t = dict(prof["train"])
    enc_kw = {k: t.pop(k) for k in ("max_query_length", "max_passage_length", "pooling") if k in t}
    enc_cfg = EncoderConfig(model=model_source(spec.profile, spec.output_dir, spec.model), **enc_kw)
    t.update(strategy=spec.strategy, alpha=spec.alpha, seed=spec.seed, max_steps=spec.max_steps,
             batch_size=spec.batch_size, lr=spec.lr, show_progress=show_progress)
    cfg = TrainConfig(**t)
    trainer = Trainer(BiEncoder(enc_cfg), train_sets, cfg, spec.run_dir, validation=validation,
                      extra_config={"profile": spec.profile, "model": spec.model, "label": spec.label,
                                    "data": prof["data"], **({"world": prof["world"], "tiny_model": prof["tiny_model"]}
                                                            if "world" in prof else {})})
    return trainer.fit()


def _benchmark(profile: str, src: dict):
    kind = src["kind"]
    if kind == "demo":
        return demo_world(profile).benchmark
    if kind == "xquad-r":
        from hbkit.datasets.sources import xquad_r_dir
        from hbkit.datasets.xquad_r import load_xquad_r

        return load_xquad_r(xquad_r_dir(src.get("languages"), src.get("path")), languages=src.get("languages"))
    if kind == "mlqa-r":
        from hbkit.datasets.mlqa_r import load_mlqa_r
        from hbkit.datasets.sources import local_dir

        root = src.get("path") or local_dir("MLQA_V1")
        return load_mlqa_r(root, languages=src.get("languages"), download=root is None)
    raise ConfigError(f"Unknown benchmark kind {kind!r}: use demo, xquad-r, mlqa-r or miracl.")


def evaluate(spec: RunSpec, show_progress: bool | None = None, force: bool = False) -> pd.DataFrame:
    """Evaluate a finished run on the profile's benchmarks. Each benchmark's table is cached in
    ``run_dir/results_<benchmark>.csv`` (so an interrupted evaluation resumes); all go to ``results.csv``."""
    from hbkit.models.bi_encoder import load_encoder
    from hbkit.evaluation import evaluate_model

    out = spec.run_dir / "results.csv"
    if out.exists() and not force:
        return read_results(out)
    state_file = spec.run_dir / "train_state.json"
    if not state_file.exists() or json.loads(state_file.read_text()).get("status") != "finished":
        raise DataError(f"Run {spec.run_dir} has not finished training. Run the training notebook "
                        "(02_train) for it first, or `make replicate`, which resumes it.")
    encoder = load_encoder(spec.run_dir / "model")
    meta = {"model": spec.model, "strategy": spec.label, "seed": spec.seed}
    frames = []
    for src in get_profile(spec.profile)["data"]["benchmarks"]:
        part = spec.run_dir / f"results_{src['kind']}.csv"
        if part.exists() and not force:
            frames.append(read_results(part))
            continue
        if src["kind"] == "miracl":
            from hbkit.datasets.miracl import evaluate_miracl

            from hbkit.datasets.sources import local_dir

            root = src.get("path") or local_dir("miracl")
            df = pd.concat([evaluate_miracl(encoder, lang, src.get("corpus"), root=root, meta=meta,
                                            show_progress=show_progress) for lang in src["languages"]],
                           ignore_index=True)
        else:
            df = evaluate_model(encoder, _benchmark(spec.profile, src), show_progress=show_progress, meta=meta)
        write_csv(df, part)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    write_csv(df, out)
    return df


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a tidy results CSV (language codes such as "na" are never turned into NaN)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def collect_results(output_dir: str, profile: str) -> pd.DataFrame:
    """Concatenate every evaluated run of a profile; writes ``<profile>/results.csv``."""
    root = resolve_output_dir(output_dir) / profile
    files = sorted((root / "runs").glob("*/*/seed*/results.csv"))
    if not files:
        raise DataError(f"No evaluated runs under {root / 'runs'}. Run the training and evaluation notebooks "
                        f"(or `make replicate PROFILE={profile}`) first.")
    df = pd.concat([read_results(f) for f in files], ignore_index=True)
    write_csv(df, root / "results.csv")
    return df
