"""open_clip's CLIP models as an hbkit :class:`~hbkit.models.base.RetrievalModel` (PROTOCOL §2.3).

The model, its tokenizer and its image preprocessing all come from open_clip's own factory
(``create_model_and_transforms``, ``get_tokenizer``), so a model is always paired with the
tokenizer it was trained with (a mismatched tokenizer is the usual cause of near-zero
multilingual scores). ``CLIPConfig.model`` is

- an open_clip model name: the default multilingual ``xlm-roberta-base-ViT-B-32`` (pretrained
  tag ``laion5b_s13b_b90k``), ``xlm-roberta-large-ViT-H-14`` (``frozen_laion5b_s13b_b90k``,
  its image tower was kept frozen in training: ``lock_image=True`` continues that), or any
  other name of ``open_clip.list_models()`` with one of its tags;
- ``hf-hub:<org>/<repo>`` (config and weights from the hub);
- ``local-dir:<folder>`` or a folder path: an open_clip folder (``open_clip_config.json`` and
  weights), such as one written by :meth:`CLIPModel.save` or
  :func:`hbkit.models.tiny_clip.make_tiny_clip`.

**Loss** (:func:`clip_loss`): open_clip's ``ClipLoss`` (symmetric InfoNCE, image→text and
text→image averaged) with a learnable logit scale, clamped to [0, ln 100] after every optimiser
step as open_clip's training script does. When a batch holds several captions of one image
(1-to-K batches: each image with its captions in K languages), images are deduplicated by group
and the loss has several positives: each caption's target is its image, each image's target is
spread uniformly (1/K) over its captions. With one caption per image it equals ``ClipLoss``
exactly. Under ``torchrun`` features are all-gathered with gradients and each process computes
the rows of its own captions and images against the global batch (``local_loss`` with
``gather_with_grad``); with DDP's gradient averaging this is the gradient of the global mean.

**Saved folder** (:meth:`CLIPModel.save`): ``open_clip_config.json`` (model and preprocessing
config; an HF text tower is named by the relative folder ``text``), ``open_clip_model.safetensors``
(all weights), ``text/`` (the text tower's HF config), the tokenizer files, and
``hbkit_model.json`` (``{"family": "clip", ...}`` and the settings). It reloads offline and
after being moved: the relative text folder is resolved against the folder at load time, and the
model is created by open_clip's factory from ``local-dir:<folder>`` with that text config.
:func:`register_folder` also names a folder for open_clip's own API (``add_model_config``).

The optional text–text term (:func:`text_text_loss`, ``t2t_weight``, off by default) uses the
other captions of a caption's image present in the batch, i.e. 1-to-K batches; X-X and X-Y batches
hold one caption per image, so there it adds nothing.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from hbkit.config import check_types
from hbkit.engine.progress import progress
from hbkit.errors import ConfigError, DataError, UnknownModelError
from hbkit.losses import clip_loss, text_text_loss
from hbkit.models.base import RetrievalModel
from hbkit.models.clip_factory import (CONFIG_FILE, DEFAULT_MODEL, PRESETS, check_tokenizer, create_clip,  # noqa: F401
                                       register_folder,
                                       resolve_source)
from hbkit.models.images import ImageCache, ImageCaptionCollator, ImageLike, image_batches

WEIGHTS_FILE = "open_clip_model.safetensors"
TEXT_DIR = "text"
MODEL_FILE = "hbkit_model.json"
#: Upper clamp of the log logit scale (open_clip's training script: scale <= 100).
LOGIT_SCALE_MAX = math.log(100.0)
LOGIT_SCALE_MODES = ("model", "train")


@dataclass
class CLIPConfig:
    """Which CLIP model and how it trains.

    ``model``: an open_clip name, ``hf-hub:...``, ``local-dir:...`` or a folder (module docstring).
    ``pretrained``: the tag (or a weights file) for an open_clip name; ``"auto"`` takes the preset's
    tag (or the model's only tag); ``None`` initialises randomly. Folders and hub ids bring their
    own weights. ``image_root``: the folder relative image keys are resolved against.
    ``lock_image`` / ``lock_image_unlocked_groups`` / ``lock_image_freeze_bn_stats``:
    open_clip's ``lock_image_tower`` (LiT); ``lock_text`` / ``lock_text_unlocked_layers`` /
    ``lock_text_freeze_layer_norm``: ``lock_text_tower`` (the last ``unlocked_layers`` stay
    trainable). ``logit_scale``: ``"model"`` keeps the model's learnable logit scale (CLIP
    fine-tuning; TrainConfig's temperature is not used), ``"train"`` sets it to
    1 / TrainConfig.temperature, learnable iff TrainConfig.learnable_temperature.
    ``t2t_weight``: weight of the optional text–text term (0 = off, see :func:`text_text_loss`).
    ``augment``: train on open_clip's training transform (random resized crop) instead of the
    evaluation transform; it draws from torch's RNG, so exact resume then needs
    ``loader_workers=0``. ``context_length``: overrides the tokenizer's length.
    ``image_cache_mb``: keep up to this many MiB of preprocessed training images in the collator
    (per process: each ``DataLoader`` worker has its own), so an image seen again is not decoded
    again (:class:`~hbkit.models.images.ImageCache`; 0 = off). It changes no result: it applies only
    with the deterministic evaluation transform, never with ``augment``; it is not part of the
    model's identity.
    """

    model: str = DEFAULT_MODEL
    pretrained: str | None = "auto"
    image_root: str | None = None
    lock_image: bool = False
    lock_image_unlocked_groups: int = 0
    lock_image_freeze_bn_stats: bool = False
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0
    lock_text_freeze_layer_norm: bool = True
    logit_scale: str = "model"
    t2t_weight: float = 0.0
    augment: bool = False
    context_length: int | None = None
    image_cache_mb: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.image_root, os.PathLike):
            self.image_root = os.fspath(self.image_root)
        check_types(self, "CLIPConfig")
        if not isinstance(self.model, str) or not self.model.strip():
            raise UnknownModelError(f"CLIPConfig.model must be a non-empty string, got {self.model!r}.")
        if self.logit_scale not in LOGIT_SCALE_MODES:
            raise ConfigError(f"logit_scale must be one of {LOGIT_SCALE_MODES}, got {self.logit_scale!r}.")
        if not 0 <= self.t2t_weight < math.inf:
            raise ConfigError(f"t2t_weight must be >= 0, got {self.t2t_weight!r} (0 turns the text–text term off).")
        for name in ("lock_image_unlocked_groups", "lock_text_unlocked_layers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.image_cache_mb < 0:
            raise ConfigError(f"image_cache_mb must be >= 0, got {self.image_cache_mb} (0 turns the cache off).")
        if self.context_length is not None and self.context_length < 4:
            raise ConfigError(f"context_length must be >= 4 tokens or None, got {self.context_length}.")

    def settings(self) -> dict:
        """Everything but the model source (what a saved folder records)."""
        d = asdict(self)
        d.pop("model")
        d.pop("pretrained")
        return d


# ----------------------------------------------------------------------------- the model


class CLIPModel(RetrievalModel):
    """An open_clip CLIP model: image tower + text tower into one space of ``dim`` dimensions.

    Trains with :func:`clip_loss` (plus ``t2t_weight`` x :func:`text_text_loss`), embeds captions
    with :meth:`encode` and images with :meth:`encode_images` (L2-normalised float32, (n, dim)).
    """

    supports_grad_cache = True
    modalities = ("text", "image")

    def __init__(self, config: CLIPConfig | None = None, *, _seed: int | None = None) -> None:
        super().__init__()
        self.settings = config if config is not None else CLIPConfig()
        self.source = resolve_source(self.settings.model, self.settings.pretrained)
        self.clip, self.preprocess_train, self.preprocess_val, self.tokenizer = create_clip(
            self.source, self.settings, _seed)
        check_tokenizer(self.tokenizer, self.clip)
        self.image_root: str | None = self.settings.image_root
        self.origin = self._read_origin()
        self._lock()

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_config(cls, config: CLIPConfig | None = None, **changes: Any) -> "CLIPModel":
        """A model from a config (fields in ``changes`` replace the config's)."""
        base = asdict(config) if config is not None else {}
        return cls(CLIPConfig(**{**base, **changes}))

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_MODEL, pretrained: str | None = "auto", **kw: Any) -> "CLIPModel":
        return cls(CLIPConfig(model=model, pretrained=pretrained, **kw))

    def _read_origin(self) -> dict:
        """Where the weights came from: a folder's recorded origin, else the open_clip name and tag."""
        if self.source.folder is not None:
            marker = self.source.folder / MODEL_FILE
            if marker.exists():
                origin = json.loads(marker.read_text(encoding="utf-8")).get("origin")
                if origin:
                    return origin
            return {"model": self.source.folder.name, "pretrained": None}
        return {"model": self.source.name, "pretrained": self.source.pretrained}

    def _lock(self) -> None:
        s = self.settings
        if s.lock_image:
            self.clip.lock_image_tower(unlocked_groups=s.lock_image_unlocked_groups,
                                       freeze_bn_stats=s.lock_image_freeze_bn_stats)
        if s.lock_text:
            with contextlib.redirect_stdout(io.StringIO()):  # open_clip prints what it unlocks
                self.clip.lock_text_tower(unlocked_layers=s.lock_text_unlocked_layers,
                                          freeze_layer_norm=s.lock_text_freeze_layer_norm)

    # -- properties --------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.source.model_cfg["embed_dim"])

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    @property
    def t2t_weight(self) -> float:
        return float(self.settings.t2t_weight)

    # -- embeddings ----------------------------------------------------------------------
    def embed_text_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (n, context_length) -> L2-normalised float32 embeddings (n, dim), with gradients."""
        return F.normalize(self.clip.encode_text(tokens.to(self.device)).float(), dim=-1)

    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed images (n, 3, H, W) -> L2-normalised float32 embeddings (n, dim), with gradients."""
        return F.normalize(self.clip.encode_image(pixels.to(self.device)).float(), dim=-1)

    # -- the training protocol ---------------------------------------------------------------
    def configure_training(self, config: Any) -> None:
        """Logit scale from the settings (``logit_scale="model"`` or ``"train"``); refuses loss options
        CLIP does not have (the paper's text denominator, a sigmoid-loss model)."""
        if getattr(self.clip, "logit_bias", None) is not None:
            raise ConfigError("This open_clip model has a logit bias (SigLIP): it was trained with a sigmoid loss, "
                              "which hbkit does not implement. Train a softmax CLIP model (e.g. "
                              f"{DEFAULT_MODEL!r}), or use this one for evaluation only.")
        if getattr(config, "denominator", "batch") != "batch":
            raise ConfigError(f"denominator={config.denominator!r} is the text loss's form with hard negatives; "
                              "CLIP trains with ClipLoss's symmetric in-batch form. Use denominator='batch'.")
        scale = self.clip.logit_scale
        if self.settings.logit_scale == "train":
            with torch.no_grad():
                scale.fill_(math.log(1.0 / float(config.temperature)))
            scale.requires_grad_(bool(config.learnable_temperature))
        else:
            scale.requires_grad_(True)

    def collator(self) -> ImageCaptionCollator:
        """Tokenizes captions with the model's open_clip tokenizer and preprocesses images with its
        transform (training transform when ``augment``), resolving keys against ``image_root``;
        with ``image_cache_mb`` (and no ``augment``) the collator keeps preprocessed images."""
        if self.settings.augment:
            return ImageCaptionCollator(self.tokenizer, self.preprocess_train, self.image_root)
        cache = ImageCache(self.settings.image_cache_mb * 2**20) if self.settings.image_cache_mb else None
        return ImageCaptionCollator(self.tokenizer, self.preprocess_val, self.image_root, cache)

    def forward(self, batch: dict, gather: bool = True) -> dict[str, torch.Tensor]:
        """Losses of a collated batch: ``{"loss", "i2t", "t2i"}`` (+ ``"t2t"`` when ``t2t_weight`` > 0)."""
        t = self.embed_text_tokens(batch["text"])
        v = self.embed_pixels(batch["images"])
        return self.loss_from_embeddings(batch, [t, v], gather=gather)

    def embedding_inputs(self, batch: dict) -> list[tuple[str, int]]:
        return [("text", int(batch["text"].shape[0])), ("image", int(batch["images"].shape[0]))]

    def embed_chunk(self, batch: dict, group: int, rows: slice) -> torch.Tensor:
        if group == 0:
            return self.embed_text_tokens(batch["text"][rows])
        return self.embed_pixels(batch["images"][rows])

    def loss_from_embeddings(self, batch: dict, embeddings: Sequence[torch.Tensor | None],
                             gather: bool = True) -> dict[str, torch.Tensor]:
        t, v = (e.float() for e in embeddings)
        text_groups = batch["text_groups"].to(self.device)
        # similarities in float32 even under mixed precision: at logit scale 100, bf16 rounding of the
        # logits (~0.4) would swamp the differences the loss is about
        with torch.autocast(self.device.type, enabled=False):
            scale = self.clip.logit_scale.float().exp()
            losses = clip_loss(v, t, batch["image_groups"].to(self.device), text_groups, scale, gather=gather)
            if self.t2t_weight > 0:
                t2t = text_text_loss(t, text_groups, scale, gather=gather)
                losses["t2t"] = t2t
                losses["loss"] = losses["loss"] + self.t2t_weight * t2t
        return losses

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Clamp the log logit scale to [0, ln 100] (open_clip's training script)."""
        self.clip.logit_scale.clamp_(0, LOGIT_SCALE_MAX)

    def log_values(self) -> dict[str, float]:
        scale = float(self.clip.logit_scale.detach().exp())
        return {"logit_scale": scale, "temperature": 1.0 / scale}

    # -- evaluation ------------------------------------------------------------------------------
    @staticmethod
    def _check_batch_size(batch_size: int) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")

    def encode(self, texts: Sequence[str], kind: str = "passage", batch_size: int = 64,
               show_progress: bool | None = None, contexts: Sequence[str] | None = None) -> torch.Tensor:
        """Embed captions for evaluation: float32 CPU (n, dim), L2-normalised, in input order.

        ``kind`` ("query" / "passage") is accepted for the evaluation API; CLIP has no prefixes, so
        both embed the same way."""
        if kind not in ("query", "passage"):
            raise ConfigError(f"kind must be 'query' or 'passage', got {kind!r}.")
        if contexts is not None:
            raise ConfigError("CLIP embeds a caption alone; it takes no contexts. Evaluate with use_context=False.")
        self._check_batch_size(batch_size)
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise DataError(f"Empty caption at position {i}: every text must contain characters.")
        out = torch.empty(len(texts), self.dim)
        with self._eval():
            for start in progress(range(0, len(texts), batch_size), show=show_progress, desc=f"encode {kind} texts",
                                  leave=False):
                chunk = list(texts[start:start + batch_size])
                out[start:start + len(chunk)] = self.embed_text_tokens(self.tokenizer(chunk)).cpu()
        return out

    def encode_images(self, images: Sequence[ImageLike], batch_size: int = 64, show_progress: bool | None = None,
                      image_root: str | os.PathLike | None = None) -> torch.Tensor:
        """Embed images (ImageRef or paths; relative keys under ``image_root``, default the model's
        ``image_root``) with the evaluation transform: float32 CPU (n, dim), L2-normalised."""
        self._check_batch_size(batch_size)
        root = image_root if image_root is not None else self.image_root
        out = torch.empty(len(images), self.dim)
        with self._eval():
            start = 0
            batches = image_batches(list(images), self.preprocess_val, root, batch_size)
            for pixels in progress(batches, show=show_progress, desc="encode images", leave=False,
                                   total=math.ceil(len(images) / batch_size)):
                out[start:start + len(pixels)] = self.embed_pixels(pixels).cpu()
                start += len(pixels)
        return out

    # -- description and persistence -----------------------------------------------------------------
    def identity(self) -> dict:
        """What of the model changes a run's result: origin (name, tag, build recipe) and training settings."""
        s = self.settings.settings()
        s.pop("image_root")
        s.pop("image_cache_mb")
        return {"family": "clip", **self.origin, **s}

    def describe(self) -> dict:
        return {**self.identity(), "image_root": self.image_root, "dim": self.dim,
                "tokenizer": type(self.tokenizer).__name__, "open_clip_name": self.source.name}

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write a self-contained folder (module docstring) that :meth:`load` reads offline, wherever it moves."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model_cfg = copy.deepcopy(self.source.model_cfg)
        text_cfg = model_cfg["text_cfg"]
        text_cfg.pop("hf_model_pretrained", None)
        if self.settings.context_length is not None:
            text_cfg["context_length"] = self.settings.context_length
        text = getattr(self.clip, "text", None)
        if "hf_model_name" in text_cfg:
            text.config.save_pretrained(out / TEXT_DIR)
            text_cfg["hf_model_name"] = TEXT_DIR
        hf_tok = getattr(self.tokenizer, "tokenizer", None)
        if hf_tok is not None:
            hf_tok.save_pretrained(out)
            text_cfg["hf_tokenizer_name"] = TEXT_DIR  # local-dir: open_clip reads the tokenizer from the folder
        elif type(self.tokenizer).__name__ != "SimpleTokenizer":
            raise ConfigError(f"Saving a model with a {type(self.tokenizer).__name__} is not supported: the folder "
                              "could not restore its tokenizer. Use a model with a Hugging Face or CLIP BPE tokenizer.")
        preprocess = {k: list(v) if isinstance(v, tuple) else v for k, v in self.clip.visual.preprocess_cfg.items()}
        (out / CONFIG_FILE).write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}, indent=2))
        state = {k: v.detach().cpu().clone().contiguous() for k, v in self.clip.state_dict().items()}
        save_file(state, str(out / WEIGHTS_FILE))
        (out / MODEL_FILE).write_text(json.dumps({"family": "clip", "settings": self.settings.settings(),
                                                  "origin": self.origin}, indent=2))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, **changes: Any) -> "CLIPModel":
        """Load a folder written by :meth:`save` (or :func:`~hbkit.models.tiny_clip.make_tiny_clip`);
        ``changes`` override saved settings (e.g. ``image_root``)."""
        path = Path(path).expanduser().resolve()
        marker = path / MODEL_FILE
        if not marker.exists():
            raise UnknownModelError(f"{path} holds no exported hbkit CLIP model ({MODEL_FILE} missing). Point at a "
                                    "folder written by CLIPModel.save, or pass an open_clip folder as "
                                    "CLIPConfig(model='local-dir:...').")
        spec = json.loads(marker.read_text(encoding="utf-8"))
        if spec.get("family") != "clip":
            raise UnknownModelError(f"{path} holds a {spec.get('family')!r} model, not a CLIP model: load it with "
                                    "hbkit.models.load_model.")
        names = {f.name for f in fields(CLIPConfig)} - {"model", "pretrained"}
        settings = {k: v for k, v in spec.get("settings", {}).items() if k in names}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"Unknown CLIP setting(s) {unknown}. Valid: {sorted(names)}.")
        return cls(CLIPConfig(model=str(path), pretrained=None, **{**settings, **changes}))
