"""Kit glue for the image–text half: the toy image world, tiny CLIPs and ALBEFs, the models, the leak guard.

:mod:`hbkit.kit.experiment` calls this for profiles whose ``family`` is ``"clip"``:

- **data**: the dataset kind ``"image-world"`` (training and benchmark) is the profile's generated
  TOY image world (:func:`hbkit.datasets.image_world.make_image_world` with the profile's
  ``image_world`` settings), its PNG files written once under ``<profile>/assets/image-world/``;
  real kinds (``multi30k``, ``xtd10``, ``xflickrco``, ``xm3600``) come from the dataset registry.
- **models**: :data:`TINY_CLIPS` are built offline by :func:`hbkit.models.tiny_clip.make_tiny_clip`
  on the world's captions; any other name is an open_clip model (``xlm-roberta-base-ViT-B-32``,
  ``hf-hub:...``, a folder), created through open_clip's factory with the profile's ``clip``
  settings (tower locking, logit scale) and ``pretrained`` tag.
- **families**: an image–text profile may hold CLIP and ALBEF models (:func:`model_family`:
  :data:`TINY_ALBEFS` and ALBEF checkpoint names such as ``albef-14m`` are ALBEF, the rest CLIP);
  each takes the profile's settings of its family (``clip`` / ``albef``). A tiny ALBEF is built by
  :func:`hbkit.models.tiny_albef.make_tiny_albef` on the same caption mixture a tiny CLIP would see.
- **text mixture** of a tiny CLIP: ``"balanced"`` trains its tokenizer and masked-LM warm-up on
  every language's captions alike; ``"latin"`` keeps every Latin-script caption but only as many
  captions of the other scripts as make them ``1 - latin_share`` of the mixture (``tiny-clip-latin``:
  1%, with a 300-piece vocabulary: about 17 tokens per Latin caption against 26-34 for the others). That is the
  stated inequality real encoders start from (English-heavy pre-training, uneven tokenisation):
  the other scripts get fewer tokenizer pieces, so longer token sequences, and less pre-training.
- **leak guard**: before training and before evaluating, every benchmark's images are compared
  with the training images (:func:`hbkit.datasets.images.check_overlap`); a benchmark source with
  ``"allow_overlap": True`` lets an overlap through, and the record goes into the results.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hbkit.datasets import registry
from hbkit.errors import ConfigError, UnknownModelError
from hbkit.kit.profiles import get_profile
from hbkit.languages import script_of

#: Tiny CLIP name -> how its text tower's tokenizer and masked-LM warm-up mixture is drawn.
TINY_CLIPS: dict[str, dict[str, Any]] = {
    "tiny-clip": {"text_mixture": "balanced"},
    "tiny-clip-latin": {"text_mixture": "latin", "latin_share": 0.99},
}
#: Tiny ALBEF name -> its text mixture (as for tiny CLIPs).
TINY_ALBEFS: dict[str, dict[str, Any]] = {
    "tiny-albef": {"text_mixture": "balanced"},
}
#: Image–text model families a profile can hold.
FAMILIES = ("clip", "albef")
#: The world's folder of PNG files under ``<profile>/assets/``.
IMAGE_DIR = "image-world"


def is_image_text(profile: str) -> bool:
    """Whether ``profile`` trains image–text models (CLIP, ALBEF)."""
    return get_profile(profile).get("family", "bi-encoder") == "clip"


def model_family(model: str) -> str:
    """``"albef"`` for tiny ALBEFs and ALBEF checkpoints (names starting with ``albef``), else ``"clip"``."""
    return "albef" if model in TINY_ALBEFS or model.lower().startswith("albef") else "clip"


@functools.lru_cache(maxsize=4)
def _world(profile: str, image_root: str):
    from hbkit.datasets.image_world import make_image_world

    return make_image_world(**get_profile(profile)["image_world"], out_dir=image_root)


def image_world(profile: str, profile_dir: str | Path):
    """The profile's TOY image world, its images written under ``profile_dir/assets/image-world``
    (deterministic; cached per process)."""
    if "image_world" not in get_profile(profile):
        raise ConfigError(f"Profile {profile!r} has no image world; it trains on real image–caption data.")
    return _world(profile, str(Path(profile_dir) / "assets" / IMAGE_DIR))


def _world_training(src: dict, *, profile: str, profile_dir: str | Path | None = None, role: str = "train",
                    **_context: Any):
    if profile_dir is None:
        raise ConfigError("The image-world data kind needs the profile folder (profile_dir=...) for its images.")
    if role == "validation":
        raise ConfigError("The image world has no validation split; drop 'validation' from the profile's data.")
    return image_world(profile, profile_dir).train


def _world_benchmark(src: dict, *, profile: str, profile_dir: str | Path | None = None, **_context: Any):
    if profile_dir is None:
        raise ConfigError("The image-world data kind needs the profile folder (profile_dir=...) for its images.")
    return image_world(profile, profile_dir).benchmark


registry.register_training("image-world", _world_training)
registry.register_benchmark("image-world", _world_benchmark)


def mixture_texts(world, recipe: dict[str, Any]) -> list[str]:
    """The captions a tiny CLIP's tokenizer and masked-LM warm-up see (training images only).

    ``recipe["text_mixture"]``: ``"balanced"`` (every caption of every language, eval-only ones
    included), or ``"latin"``: all Latin-script captions and a seeded sample of the others such
    that they are ``1 - recipe["latin_share"]`` of the mixture.
    """
    mixture = recipe.get("text_mixture", "balanced")
    texts = world.texts()
    if mixture == "balanced":
        return texts
    if mixture != "latin":
        raise ConfigError(f"Unknown text_mixture {mixture!r}: choose 'balanced' or 'latin'.")
    share = float(recipe.get("latin_share", 0.99))
    if not 0.5 <= share < 1:
        raise ConfigError(f"latin_share must be in [0.5, 1), got {share}.")
    latin: list[str] = []
    other: list[str] = []
    for lang in world.languages:
        caps = [c for per_image in world.train_set.captions[lang] for c in per_image]
        (latin if script_of(lang) == "Latin" else other).extend(caps)
    keep = min(len(other), max(1, round(len(latin) * (1 - share) / share)))
    rng = np.random.default_rng(world.seed)
    picked = [other[i] for i in sorted(rng.choice(len(other), size=keep, replace=False))]
    return list(dict.fromkeys(latin + picked))


def _build_tiny(make, recipe: dict[str, Any], profile: str, profile_dir: str | Path, model: str) -> Path:
    """``make(folder, captions, seed=..., **sizes)`` on the recipe's caption mixture, under ``assets/<model>``."""
    world = image_world(profile, profile_dir)
    sizes = {k: v for k, v in recipe.items() if k not in ("text_mixture", "latin_share")}
    return make(Path(profile_dir) / "assets" / model, mixture_texts(world, recipe),
                seed=get_profile(profile)["image_world"].get("seed", 0), **sizes)


def tiny_clip_recipe(profile: str, model: str) -> dict[str, Any]:
    """What builds tiny CLIP ``model`` for ``profile`` (its sizes and text mixture); part of a run's identity."""
    if model not in TINY_CLIPS:
        raise UnknownModelError(f"Unknown tiny CLIP {model!r}; choose one of {', '.join(TINY_CLIPS)}.")
    prof = get_profile(profile)
    return {**prof["tiny_clip"], **TINY_CLIPS[model], "image_size": prof["image_world"].get("image_size", 32)}


def prepare_tiny_clip(profile: str, profile_dir: str | Path, model: str) -> Path:
    """Build (or reuse) tiny CLIP ``model`` under ``profile_dir/assets/<model>``; returns its folder."""
    from hbkit.models.tiny_clip import make_tiny_clip

    return _build_tiny(make_tiny_clip, tiny_clip_recipe(profile, model), profile, profile_dir, model)


def clip_source(profile: str, profile_dir: str | Path, model: str) -> str:
    """A loadable CLIP: a built tiny CLIP's folder, ``$HBKIT_MODELS/<name>`` if present, else the name."""
    from hbkit.datasets.sources import model_or_local

    if model in TINY_CLIPS:
        return str(prepare_tiny_clip(profile, profile_dir, model))
    return model_or_local(model)


def image_root(profile: str, profile_dir: str | Path) -> str | None:
    """The folder relative image keys resolve against (the toy world's images), or None."""
    if "image_world" in get_profile(profile):
        return str(image_world(profile, profile_dir).image_root)
    return None


def build_clip(profile: str, profile_dir: str | Path, model: str, settings: dict[str, Any]):
    """The CLIPModel of ``model`` with the profile's ``clip`` settings (before any fine-tuning)."""
    from hbkit.models.clip import CLIPConfig, CLIPModel

    settings = dict(settings)
    pretrained = settings.pop("pretrained", "auto")
    source = clip_source(profile, profile_dir, model)
    if Path(source).is_dir():
        pretrained = None  # a folder brings its own weights
    return CLIPModel(CLIPConfig(model=source, pretrained=pretrained, image_root=image_root(profile, profile_dir),
                                **settings))


def tiny_albef_recipe(profile: str, model: str) -> dict[str, Any]:
    """What builds tiny ALBEF ``model`` for ``profile`` (sizes and text mixture); part of a run's identity."""
    if model not in TINY_ALBEFS:
        raise UnknownModelError(f"Unknown tiny ALBEF {model!r}; choose one of {', '.join(TINY_ALBEFS)}.")
    prof = get_profile(profile)
    if "tiny_albef" not in prof:
        raise ConfigError(f"Profile {profile!r} sets no tiny_albef sizes; add a 'tiny_albef' entry or choose "
                          "another model.")
    return {**prof["tiny_albef"], **TINY_ALBEFS[model], "image_res": prof["image_world"].get("image_size", 32)}


def prepare_tiny_albef(profile: str, profile_dir: str | Path, model: str, aligned: bool = True) -> Path:
    """Build (or reuse) tiny ALBEF ``model`` under ``profile_dir/assets/<model>``; returns its folder.

    With an ``itc_warmup`` entry in the profile's ``tiny_albef`` settings, the built model is then
    pre-trained ("aligned before it fuses") with ITC alone on the training images' captions in the
    warm-up ``languages`` (English: ALBEF's own pre-training is English), ``steps`` steps of batch
    ``batch_size`` at ``lr`` with momentum ``momentum``, through the trainer (resumable); the
    exported model (``assets/<model>-warmup-<id>/model``, momentum set back to ALBEF's) is the
    starting point every strategy fine-tunes from (``aligned=False``: the built model before it, e.g.
    for its tokenizer). From scratch, ALBEF's recipe does not learn in
    the toy's budget: the momentum model stays near its random start and the ITM term holds ITC
    back (README)."""
    from hbkit.models.tiny_albef import make_tiny_albef

    recipe = tiny_albef_recipe(profile, model)
    warm = recipe.pop("itc_warmup", None)
    base = _build_tiny(make_tiny_albef, recipe, profile, profile_dir, model)
    if not warm or not aligned:
        return base
    import hashlib
    import json

    from hbkit.engine.checkpoint import is_finished
    from hbkit.models.albef import ALBEFModel
    from hbkit.trainer import TrainConfig, Trainer

    warm = {"steps": 600, "languages": ["en"], "momentum": 0.5, "lr": 1e-3, "batch_size": 32, **warm}
    tag = hashlib.sha256(json.dumps({"recipe": recipe, "warmup": warm}, sort_keys=True).encode()).hexdigest()[:8]
    run_dir = Path(profile_dir) / "assets" / f"{model}-warmup-{tag}"
    final = run_dir / "aligned"
    if (final / "hbkit_model.json").exists():
        return final
    world = image_world(profile, profile_dir)
    if not is_finished(run_dir):
        albef = ALBEFModel.load(base, image_root=str(world.image_root), itm_weight=0.0, distill=False,
                                net={"momentum": float(warm["momentum"])})
        cfg = TrainConfig(strategy="X-X", batch_size=int(warm["batch_size"]), max_steps=int(warm["steps"]),
                          lr=float(warm["lr"]), weight_decay=0.1, warmup_ratio=0.1, val_every=0,
                          checkpoint_every=max(1, int(warm["steps"]) // 3), log_every=50, seed=0,
                          languages=list(warm["languages"]), show_progress=False)
        Trainer(albef, world.train, cfg, run_dir).fit()
    momentum = json.loads((base / "albef_net.json").read_text())["momentum"]
    aligned = ALBEFModel.load(run_dir / "model", net={"momentum": momentum}, itm_weight=1.0, distill=True)
    from hbkit.engine.atomic import atomic_dir

    with atomic_dir(final) as tmp:
        aligned.save(tmp)
    return final


def build_albef(profile: str, profile_dir: str | Path, model: str, settings: dict[str, Any]):
    """The ALBEFModel of ``model`` (a tiny ALBEF, ``$HBKIT_MODELS/<name>``, an ALBEF checkpoint name or
    file) with the profile's ``albef`` settings, before any fine-tuning."""
    from hbkit.datasets.sources import model_or_local
    from hbkit.models.albef import ALBEFConfig, ALBEFModel

    settings = dict(settings)
    checkpoint = settings.pop("checkpoint", None)
    if model in TINY_ALBEFS:
        source = str(prepare_tiny_albef(profile, profile_dir, model))
    else:  # a profile's model_settings may name the checkpoint ("albef-4m") of a model ("albef-4m-english")
        source = model_or_local(checkpoint or model)
        if checkpoint is not None and Path(model_or_local(model)).is_dir():
            source = model_or_local(model)
    text_init = settings.pop("text_init", None)
    if text_init is not None:
        text_init = model_or_local(text_init)
    return ALBEFModel(ALBEFConfig(checkpoint=source, text_init=text_init, image_root=image_root(profile, profile_dir),
                                  **settings))


def build_model(profile: str, profile_dir: str | Path, model: str, settings: dict[str, Any]):
    """The image–text model ``model`` of its family (:func:`model_family`), before any fine-tuning."""
    if model_family(model) == "albef":
        return build_albef(profile, profile_dir, model, settings)
    return build_clip(profile, profile_dir, model, settings)


def check_leaks(train_sets: Sequence[Any], benchmarks: Sequence[tuple[dict, Any]]) -> list[dict]:
    """The leak guard over every (benchmark source, benchmark) against all training sets.

    Raises DataError (naming the count, both datasets and the override) on an overlap unless the
    benchmark source says ``"allow_overlap": True``; returns the records to store with the results.
    """
    from hbkit.datasets.images import check_overlap

    records = []
    for src, bench in benchmarks:
        for ds in train_sets:
            records.append(check_overlap(ds, bench, allow_overlap=bool(src.get("allow_overlap", False))))
    return records


def text_mixture_summary(profile: str, profile_dir: str | Path, models: Sequence[str] | None = None):
    """Mean tokens per caption by model and language on the world's test captions: the stated
    inequality of the tiny models' text towers (a DataFrame: model, language, script, tokens).
    A tiny ALBEF's captions are counted after ALBEF's caption cleaning, as it reads them."""
    import pandas as pd
    from transformers import AutoTokenizer

    from hbkit.models.albef_text import clean_caption

    prof = get_profile(profile)
    world = image_world(profile, profile_dir)
    rows = []
    tiny = [m for m in prof["models"] if m in TINY_CLIPS or m in TINY_ALBEFS]
    for model in models or tiny:
        albef = model in TINY_ALBEFS
        folder = (prepare_tiny_albef(profile, profile_dir, model, aligned=False) if albef
                  else prepare_tiny_clip(profile, profile_dir, model))
        tok = AutoTokenizer.from_pretrained(str(folder if albef else folder / "text"))
        for lang in world.languages:
            caps = [c for per_image in world.test_set.captions[lang] for c in per_image]
            if albef:
                caps = [clean_caption(c, 10**6) or c for c in caps]
            n = [len(tok.backend_tokenizer.encode(c, add_special_tokens=False).ids) for c in caps]
            rows.append({"model": model, "language": lang, "script": script_of(lang),
                         "tokens_per_caption": float(np.mean(n)), "words_per_caption": float(
                             np.mean([len(c.split()) for c in caps]))})
    return pd.DataFrame(rows)
