"""Experiment glue used by the notebooks: one profile → data, models, runs, results.

Layout under ``<output_dir>/<profile>/``::

    assets/<model>/                    tiny models built for the profile (demo, test)
    runs/<model>/<label>/seed<k>/      one training run (see hbkit.trainer) + results_<benchmark>.csv
    notebooks/                         executed notebooks (make replicate)
    figures/                           PNG figures
    results.csv                        all runs' tidy results

``label`` is the strategy ("X-X", "X-Y", "hybrid", "1-to-K"), "hybrid-alpha0.25" for an α-sweep
run, "1-to-K-images" for a 1-to-K run whose batches hold as many images as the others' (K times
the captions), "zero-shot" for the evaluation of a model before fine-tuning, and "english-reference"
for a released checkpoint on the English Flickr30K/COCO test sets (:mod:`hbkit.kit.english_reference`).

Profiles with ``"family": "clip"`` train image–text models, CLIP and ALBEF (each model's family is
:func:`hbkit.kit.image_text.model_family`); their data, models and leak guard are in
:mod:`hbkit.kit.image_text`. An ALBEF run is evaluated twice: ITC only (model ``<name>-itc``) and
with its top-k re-scored by the ITM head (model ``<name>``).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hbkit.engine.atomic import write_csv
from hbkit.config import check_types
from hbkit.errors import ConfigError, DataError, UnknownModelError
from hbkit.datasets import registry
from hbkit.kit import image_text  # noqa: F401 (registers the "image-world" data kinds)
from hbkit.kit.profiles import get_profile
from hbkit.trainer import TrainConfig

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


def canonical_strategy(strategy: str, alpha: float) -> tuple[str, float]:
    """hybrid(α = 0) draws exactly the X-Y batches and hybrid(α = 1) the X-X ones: the same runs."""
    if strategy == "hybrid" and float(alpha) == 0.0:
        return "X-Y", 0.0
    if strategy == "hybrid" and float(alpha) == 1.0:
        return "X-X", 1.0
    return strategy, {"X-X": 1.0, "X-Y": 0.0}.get(strategy, float(alpha))


def run_label(strategy: str, alpha: float, default_alpha: float = 0.5) -> str:
    """The run's label: the strategy, or ``hybrid-alpha<α>`` for a hybrid run with a non-default α
    (α = 0 and α = 1 are the X-Y and X-X runs)."""
    strategy, alpha = canonical_strategy(strategy, alpha)
    if strategy == "hybrid" and float(alpha) != float(default_alpha):
        return f"hybrid-alpha{float(alpha):g}"
    return strategy


ZERO_SHOT = "zero-shot"
#: Label of a released checkpoint's English reference evaluation (:mod:`hbkit.kit.english_reference`);
#: its results stay out of :func:`collect_results`.
REFERENCE = "english-reference"


def one_to_k_label(batch_size: int, profile_batch: int, k: int) -> str:
    """``1-to-K`` at the profile's batch size (as many captions per step as the other strategies, so
    ``1/K`` as many images); ``1-to-K-images`` at K times it (as many images per step); else
    ``1-to-K-b<batch size>``."""
    if batch_size == profile_batch:
        return "1-to-K"
    if k and batch_size == profile_batch * k:
        return "1-to-K-images"
    return f"1-to-K-b{batch_size}"


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
        models = set(prof["models"]) | ({prof["alpha_sweep"]["model"]} if prof.get("alpha_sweep") else set()) \
            | set(prof.get("extra_zero_shot", ())) | set(prof.get("english_reference", {}).get("models", ()))
        if self.model not in models:
            raise UnknownModelError(f"Unknown model {self.model!r} for profile {self.profile!r}. "
                                    f"Choose one of: {', '.join(sorted(models))}.")
        allowed = ("X-X", "X-Y", "hybrid") + (("1-to-K",) if prof.get("family") == "clip" else ())
        if self.strategy not in allowed:
            extra = "" if "1-to-K" in allowed else " (1-to-K is for image–text profiles)"
            raise ConfigError(f"Unknown strategy {self.strategy!r} for profile {self.profile!r}: choose "
                              f"{', '.join(allowed)}{extra}.")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}; it is the probability of an X-X batch.")

    def resolve(self) -> "RunConfig":
        """The run's settings, resolved once from these parameters and the profile."""
        return resolve_run(self)

    @property
    def profile_dir(self) -> Path:
        return resolve_output_dir(self.output_dir) / self.profile

    @property
    def label(self) -> str:
        t = get_profile(self.profile)["train"]
        if self.strategy == "1-to-K":
            return one_to_k_label(self.batch_size, t["batch_size"], int(t.get("one_to_k", 0)))
        return run_label(self.strategy, self.alpha, t["alpha"])

    @property
    def run_dir(self) -> Path:
        return self.resolve().run_dir


#: Profile ``train`` keys that configure the encoder rather than the trainer.
ENCODER_KEYS = ("max_query_length", "max_passage_length", "pooling")


@dataclass(frozen=True)
class RunConfig:
    """One run's settings, resolved from a :class:`RunSpec` and its profile; frozen.

    ``train`` goes to the trainer (and from it to the sampler), ``encoder`` to the model.
    ``run_id`` is a short hash of everything that changes the result; it is part of ``run_dir``,
    so a change of ``max_steps`` or ``lr`` makes a new run instead of reusing or resuming an old one.
    """

    profile: str
    model: str
    label: str
    seed: int
    train: TrainConfig
    encoder: dict
    data: dict
    evaluation: dict
    assets: dict
    profile_dir: Path
    run_id: str

    @property
    def run_dir(self) -> Path:
        return self.profile_dir / "runs" / self.model / self.label / f"seed{self.seed}-{self.run_id}"

    def identity(self) -> dict:
        """What the run id hashes: model and its build recipe, encoder, training settings, data."""
        from hbkit.models.albef import EVALUATION_ONLY

        encoder = {k: v for k, v in self.encoder.items() if k not in EVALUATION_ONLY}  # e.g. ITM's rescore_k
        return {"model": self.model, "assets": self.assets, "encoder": encoder,
                "train": self.train.identity(), "data": self.data["train"],
                "validation": self.data.get("validation")}

    def to_dict(self) -> dict:
        return {"profile": self.profile, "model": self.model, "label": self.label, "seed": self.seed,
                "run_id": self.run_id, "train": dataclasses.asdict(self.train), "encoder": self.encoder,
                "data": self.data, "evaluation": self.evaluation, "assets": self.assets}


def config_hash(obj: dict) -> str:
    """A short (8 hex digits) SHA-256 of ``obj`` as sorted JSON: the id of a run's settings."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def resolve_run(spec: RunSpec) -> RunConfig:
    """Notebook parameters + profile -> one frozen :class:`RunConfig`."""
    prof = get_profile(spec.profile)
    t = dict(prof["train"])
    encoder = {k: t.pop(k) for k in ENCODER_KEYS if k in t}
    strategy, alpha = canonical_strategy(spec.strategy, spec.alpha)
    train = TrainConfig(**{**t, "strategy": strategy, "alpha": alpha, "seed": spec.seed,
                           "max_steps": spec.max_steps, "batch_size": spec.batch_size, "lr": spec.lr})
    if prof.get("family") == "clip":
        from hbkit.kit.image_text import (TINY_ALBEFS, TINY_CLIPS, model_family, tiny_albef_recipe,
                                          tiny_clip_recipe)

        family = model_family(spec.model)
        encoder = {**prof.get(family, {}), **prof.get("model_settings", {}).get(spec.model, {})}
        assets = ({"image_world": prof["image_world"]} if "image_world" in prof else {})
        if spec.model in TINY_CLIPS:
            assets["tiny_clip"] = tiny_clip_recipe(spec.profile, spec.model)
        elif spec.model in TINY_ALBEFS:
            assets["tiny_albef"] = tiny_albef_recipe(spec.profile, spec.model)
        evaluation = {"family": family, **prof.get("evaluation", {})}
    else:
        assets = {k: prof[k] for k in ("world", "tiny_model") if k in prof and spec.model in TINY_MODELS}
        evaluation = {"use_context": bool(prof.get("evaluation", {}).get("use_context", False))}
    cfg = RunConfig(profile=spec.profile, model=spec.model, label=spec.label, seed=spec.seed, train=train,
                    encoder=encoder, data=prof["data"], evaluation=evaluation, assets=assets,
                    profile_dir=spec.profile_dir, run_id="")
    return dataclasses.replace(cfg, run_id=config_hash(cfg.identity()))


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


def _demo_training(src: dict, *, profile: str, role: str = "train", **_context):
    world = demo_world(profile)
    return world.validation if role == "validation" else world.train


def _demo_benchmark(src: dict, *, profile: str, **_context):
    return demo_world(profile).benchmark


registry.register_training("demo", _demo_training)
registry.register_benchmark("demo", _demo_benchmark)


def training_data(profile: str, profile_dir: str | Path | None = None):
    """``(train datasets, validation dataset or None)`` for a profile (kinds from the dataset registry);
    ``profile_dir`` is where generated data (the toy image world's images) lives."""
    data = get_profile(profile)["data"]
    ctx = {"profile": profile, "profile_dir": profile_dir}
    train = [registry.load_training(src, role="train", **ctx) for src in data["train"]]
    val = data.get("validation")
    validation = registry.load_training(val, role="validation", **ctx) if val else None
    return train, validation


def model_source(profile: str, output_dir: str, model: str) -> str:
    """A loadable model path or hub id: tiny models are built; ``$HBKIT_MODELS/<name>`` wins if present."""
    from hbkit.datasets.sources import model_or_local

    if model in TINY_MODELS:
        return str(prepare_model(profile, output_dir, model))
    return model_or_local(model)


def prepare_model(profile: str, output_dir: str, model: str) -> Path:
    """Build (or reuse) the profile's tiny model: tokenizer trained on the world's texts,
    random init, optional brief masked-LM pre-training, then optional translation-LM pre-training
    on the world's translation pairs (``tiny_model.tlm_steps``). Returns its local directory."""
    from hbkit.models.tiny import make_tiny_model, translation_pairs

    if model not in TINY_MODELS:
        raise UnknownModelError(f"Unknown tiny model {model!r}; choose one of {', '.join(TINY_MODELS)}.")
    prof = get_profile(profile)
    out = resolve_output_dir(output_dir) / profile / "assets" / model
    world = demo_world(profile)
    return make_tiny_model(TINY_MODELS[model], out, world.texts(), seed=prof["world"]["seed"],
                           parallel_texts=translation_pairs(world.train), **prof["tiny_model"])


# ------------------------------------------------------------------ train / evaluate
def train(spec: RunSpec | RunConfig, show_progress: bool | None = None) -> dict:
    """Train (or resume, or skip when finished) the run described by ``spec``; returns train_state.

    Under ``torchrun`` every process calls this; the process group is initialised from the environment.
    """
    from hbkit.engine import distributed as hdist
    from hbkit.engine.checkpoint import is_finished, read_state
    from hbkit.models.bi_encoder import BiEncoder, EncoderConfig
    from hbkit.trainer import Trainer

    run = spec.resolve() if isinstance(spec, RunSpec) else spec
    if is_finished(run.run_dir):
        return read_state(run.run_dir)
    hdist.init_from_env()
    train_sets, validation = training_data(run.profile, run.profile_dir)
    if run.evaluation.get("family") in IMAGE_TEXT_FAMILIES:
        from hbkit.kit.image_text import build_model, check_leaks

        check_leaks(train_sets, [(src, _benchmark(run, src)) for src in run.data["benchmarks"]])  # fail early
        model = build_model(run.profile, run.profile_dir, run.model, run.encoder)
    else:
        model = BiEncoder(EncoderConfig(model=model_source(run.profile, str(run.profile_dir.parent), run.model),
                                        **run.encoder))
    cfg = run.train if show_progress is None else run.train.replace(show_progress=show_progress)
    trainer = Trainer(model, train_sets, cfg, run.run_dir, validation=validation,
                      extra_config={"run": run.to_dict()}, identity={"run_id": run.run_id})
    return trainer.fit()


def _benchmark(run: "RunConfig", src: dict):
    return registry.load_benchmark(src, profile=run.profile, profile_dir=run.profile_dir)


def evaluate(spec: RunSpec | RunConfig, show_progress: bool | None = None, force: bool = False) -> pd.DataFrame:
    """Evaluate a finished run on the profile's benchmarks. Each benchmark's table is cached in
    ``run_dir/results_<benchmark>.csv`` (so an interrupted evaluation resumes); all go to ``results.csv``."""
    from hbkit.models import load_model
    from hbkit.evaluation import evaluate_model

    from hbkit.engine.atomic import write_json
    from hbkit.engine.checkpoint import is_finished

    run = spec.resolve() if isinstance(spec, RunSpec) else spec
    if run.evaluation.get("family") in IMAGE_TEXT_FAMILIES:
        return evaluate_image_text_run(run, run.run_dir, show_progress, force)
    out = run.run_dir / "results.csv"
    settings = {"use_context": run.evaluation["use_context"], "run_id": run.run_id,
                "benchmarks": run.data["benchmarks"]}
    recorded = run.run_dir / "evaluation.json"
    if recorded.exists() and json.loads(recorded.read_text()) != json.loads(json.dumps(settings)):
        force = True  # the evaluation settings changed: cached results describe other settings
    if out.exists() and not force:
        return read_results(out)
    if not is_finished(run.run_dir):
        raise DataError(f"Run {run.run_dir} has not finished training. Run the training notebook "
                        "(02_train) for it first, or `make replicate`, which resumes it.")
    encoder = load_model(run.run_dir / "model")
    meta = {"model": run.model, "strategy": run.label, "seed": run.seed}
    use_context = run.evaluation["use_context"]
    write_json(recorded, settings)
    frames = []
    for src in run.data["benchmarks"]:
        part = run.run_dir / f"results_{src['kind']}.csv"
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
            df = evaluate_model(encoder, _benchmark(run, src), show_progress=show_progress, meta=meta,
                                use_context=use_context)
        df["use_context"] = use_context  # LAReQA's candidate = sentence + paragraph, when True
        write_csv(df, part)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    write_csv(df, out)
    return df


#: Image–text evaluation options a profile's ``evaluation`` may set, and a benchmark source override
#: (see hbkit.image_text_eval); ``caption_query_sample``: caption→caption on a seeded sample of that
#: many caption queries (all when None).
IMAGE_TEXT_OPTIONS = ("cross_lingual", "caption_setting", "k", "caption_query_sample", "rescore_k")
#: Families whose runs are evaluated by :func:`hbkit.image_text_eval.evaluate_image_text`.
IMAGE_TEXT_FAMILIES = ("clip", "albef")
#: Why a released checkpoint's English reference evaluation runs without the profile's leak guard.
NO_LEAK_GUARD = ("no training in this run: a released checkpoint evaluated as released, on a test split its own "
                 "fine-tuning split shares no image with")
#: Suffix of the model name of an ALBEF run's ITC-only rows (the first stage, without ITM re-scoring).
ITC_ONLY = "-itc"


def _scorings(run: "RunConfig") -> list[tuple[str, dict]]:
    """(model name of the rows, evaluator arguments) of each scoring of a run: CLIP one, ALBEF two
    (ITC only, then ITC + ITM re-scoring through the model's hook)."""
    if run.evaluation.get("family") == "albef":
        return [(run.model + ITC_ONLY, {"rescore": None}), (run.model, {})]
    return [(run.model, {})]


def _image_text_options(run: "RunConfig", src: dict, bench) -> dict:
    """The evaluator's keyword arguments for one benchmark: the profile's options, then the source's."""
    import numpy as np

    opts = {k: v for k, v in {**run.evaluation, **src}.items() if k in IMAGE_TEXT_OPTIONS}
    sample = opts.pop("caption_query_sample", None)
    if sample is not None:
        texts = np.flatnonzero([c.modality == "text" for c in bench.candidates])
        if int(sample) < len(texts):
            rng = np.random.default_rng(0)
            opts["caption_queries"] = np.sort(rng.choice(texts, size=int(sample), replace=False))
    return opts


def evaluate_image_text_run(run: "RunConfig", out_dir: Path, show_progress: bool | None, force: bool,
                            zero_shot=None, leak_guard: bool = True) -> pd.DataFrame:
    """Evaluate an image–text model (the run's fine-tuned one, or ``zero_shot()``'s model as created) on
    the profile's image–text benchmarks in all settings; per-benchmark tables are cached as for text runs.
    ``leak_guard=False`` (a released checkpoint's English reference evaluation, which the profile's
    training data never touched) records that the guard does not apply instead of running it."""
    from hbkit.engine.atomic import write_json
    from hbkit.engine.checkpoint import is_finished
    from hbkit.image_text_eval import evaluate_image_text
    from hbkit.kit.image_text import check_leaks, image_root
    from hbkit.models import load_model
    from hbkit.models.albef import EVALUATION_ONLY

    options = {k: v for k, v in run.evaluation.items() if k in IMAGE_TEXT_OPTIONS}
    family = run.evaluation.get("family", "clip")
    settings = {"family": family, "run_id": run.run_id, "benchmarks": run.data["benchmarks"], "options": options}
    if family == "albef":  # the ITM re-scoring: which scorings, how many candidates, which score
        settings["scorings"] = [name for name, _ in _scorings(run)]
        from hbkit.models.albef import ALBEFConfig

        settings["itm"] = {"rescore_k": run.encoder.get("rescore_k", ALBEFConfig.rescore_k),
                           "itm_score": run.encoder.get("itm_score", ALBEFConfig.itm_score)}
    out = out_dir / "results.csv"
    recorded = out_dir / "evaluation.json"
    if recorded.exists() and json.loads(recorded.read_text()).get("settings") != json.loads(json.dumps(settings)):
        force = True  # other evaluation settings: the cached tables describe something else
    if out.exists() and not force:
        return read_results(out)
    if zero_shot is None and not is_finished(out_dir):
        notebook = "10_train_albef" if family == "albef" else "07_train_clip"
        raise DataError(f"Run {out_dir} has not finished training. Run the training notebook "
                        f"({notebook}) for it first, or `make replicate`, which resumes it.")
    # the benchmarks first: missing data fails before a model is built (or a checkpoint downloaded)
    benches = [(src, _benchmark(run, src)) for src in run.data["benchmarks"]]
    model = None
    if zero_shot is None:
        model = load_model(out_dir / "model")
        model.image_root = image_root(run.profile, run.profile_dir)
        for k in set(EVALUATION_ONLY) & set(run.encoder):  # today's evaluation settings, not the saved ones
            setattr(model.settings, k, run.encoder[k])
    train_sets = training_data(run.profile, run.profile_dir)[0] if leak_guard else []
    strategy = run.label  # "zero-shot" / "english-reference" for a model evaluated as created
    frames, leaks = [], []
    out_dir.mkdir(parents=True, exist_ok=True)
    for src, bench in benches:
        # a zero-shot model saw none of the training set, but its row must describe the same benchmarks
        record = check_leaks(train_sets, [(src, bench)])
        leaks += record if leak_guard else [{"evaluation": bench.name, "checked": False, "why": NO_LEAK_GUARD}]
        part = out_dir / f"results_{bench.name}.csv"
        if part.exists() and not force:
            frames.append(read_results(part))
            continue
        if model is None:
            model = zero_shot()  # built once, when a benchmark needs it
        opts = _image_text_options(run, src, bench)
        df = pd.concat([evaluate_image_text(model, bench, meta={"model": name, "strategy": strategy, "seed": run.seed},
                                            show_progress=show_progress, **{**opts, **extra})
                        for name, extra in _scorings(run)], ignore_index=True)
        df["allow_overlap"] = any(r.get("allowed", False) for r in record)
        write_csv(df, part)
        frames.append(df)
    write_json(recorded, {"settings": settings, "leak_guard": leaks})
    df = pd.concat(frames, ignore_index=True)
    write_csv(df, out)
    return df


def zero_shot_config(profile: str, model: str, output_dir: str = "runs") -> "RunConfig":
    """The zero-shot "run" of ``model``: the model as created, before any fine-tuning, evaluated on the
    profile's benchmarks. Its folder is ``runs/<model>/zero-shot/seed0-<id>`` (id: model, build
    recipe, CLIP settings and benchmarks)."""
    prof = get_profile(profile)
    spec = RunSpec(profile=profile, output_dir=output_dir, model=model, strategy="X-X", seed=0,
                   max_steps=prof["train"]["max_steps"], batch_size=prof["train"]["batch_size"],
                   lr=prof["train"]["lr"])
    run = dataclasses.replace(spec.resolve(), label=ZERO_SHOT)
    ident = {"model": run.model, "assets": run.assets, "encoder": run.encoder, "benchmarks": run.data["benchmarks"]}
    return dataclasses.replace(run, run_id=config_hash(ident))


def evaluate_zero_shot(profile: str, model: str, output_dir: str = "runs", show_progress: bool | None = None,
                       force: bool = False) -> pd.DataFrame:
    """Evaluate ``model`` before fine-tuning (the zero-shot row, strategy ``"zero-shot"``); cached."""
    from hbkit.kit.image_text import build_model

    run = zero_shot_config(profile, model, output_dir)
    if run.evaluation.get("family") not in IMAGE_TEXT_FAMILIES:
        raise ConfigError(f"Profile {profile!r} trains text encoders; the zero-shot row is for image–text profiles.")
    return evaluate_image_text_run(run, run.run_dir, show_progress, force,
                                   zero_shot=lambda: build_model(run.profile, run.profile_dir, run.model, run.encoder))


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a tidy results CSV (language codes such as "na" are never turned into NaN)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def collect_results(output_dir: str, profile: str) -> pd.DataFrame:
    """Concatenate every evaluated run of a profile; writes ``<profile>/results.csv``."""
    root = resolve_output_dir(output_dir) / profile
    files = sorted(f for f in (root / "runs").glob("*/*/seed*/results.csv") if f.parent.parent.name != REFERENCE)
    if not files:
        raise DataError(f"No evaluated runs under {root / 'runs'}. Run the training and evaluation notebooks "
                        f"(or `make replicate PROFILE={profile}`) first.")
    df = pd.concat([read_results(f) for f in files], ignore_index=True)
    write_csv(df, root / "results.csv")
    return df
