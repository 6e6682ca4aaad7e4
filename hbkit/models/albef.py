"""ALBEF as an hbkit :class:`~hbkit.models.base.RetrievalModel` (PROTOCOL §2.3).

The network is :class:`~hbkit.models.albef_net.ALBEFNet`; weights come from an official checkpoint
(:mod:`hbkit.models.albef_checkpoint`), a folder written by :meth:`ALBEFModel.save`, or a random
initialisation. ``ALBEFConfig.checkpoint`` is a file (``ALBEF_4M.pth``, ``ALBEF.pth`` (14M),
``mscoco.pth``, ``flickr30k.pth``, a LAVIS ``.pth``), one of :data:`CHECKPOINTS` (downloaded and
cached), an hbkit ALBEF folder, or ``None``.

**Variants** (``variant``):

- ``"english"``: the checkpoint with its own tokenizer (``bert-base-uncased``): ALBEF as released,
  evaluated on multilingual sets as it is.
- ``"multilingual"``: the embeddings and text layers ``0 .. fusion_layer-1`` come from
  ``text_init``, a BERT-base-shaped multilingual checkpoint (``bert-base-multilingual-cased``,
  LaBSE; hub id or folder), with its tokenizer; the image encoder, the fusion layers, the
  projections and the heads come from the ALBEF checkpoint. The fusion layers and ``text_proj``
  were trained on the English encoder's states, so fine-tuning must align the new text states
  with the image side: ITC through ``text_proj``, ITM through the fusion layers' cross-attention.

**Training** (:meth:`ALBEFModel.forward`): ITC with image-id soft targets against the momentum
features (all processes' batch; plus the feature queue when ``queue=True``, off by default since
it mixes past batches' negatives into the batch composition under study), distilled with weight
``alpha`` (linearly warmed up over ``distill_warmup_steps``, ALBEF warms up over its first epoch),
plus ITM on one hard negative image per caption and one hard negative caption per image. The
loss is ``itc + itm``. Momentum encoders follow by EMA after every optimiser step, and the
temperature is clamped to [0.001, 0.5] as in ALBEF's pre-training.

**Retrieval**: first-stage ITC similarities (:meth:`encode`, :meth:`encode_images`), then the
engine's re-scoring hook (:meth:`rescore`) re-scores each query's top ``rescore_k`` with the ITM
head, run on cached text-layer states (the captions are not re-encoded), scoring ``itm`` (the ITM
match logit, original) or ``itm+itc`` (plus the ITC similarity, LAVIS). Candidates beyond k keep
their ITC order. ``rescore_k=0`` evaluates ITC only.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from hbkit.config import check_types
from hbkit.engine import distributed as hdist
from hbkit.errors import ConfigError, UnknownModelError
from hbkit.losses import gather_ids, albef_hard_negatives, albef_itc_loss, albef_itm_loss
from hbkit.models.albef_checkpoint import LoadReport, load_into, read_state, to_original
from hbkit.models.albef_net import ALBEFNet, ALBEFNetConfig
from hbkit.models.albef_retrieval import ALBEFRetrieval
from hbkit.models.albef_text import ALBEFImageTransform, ALBEFTokenizer
from hbkit.models.base import RetrievalModel
from hbkit.models.images import ImageCache, ImageCaptionCollator

__all__ = ["ALBEFConfig", "ALBEFModel", "CHECKPOINTS", "VARIANTS", "ITM_SCORES", "EVALUATION_ONLY"]

MODEL_FILE = "hbkit_model.json"
NET_FILE = "albef_net.json"
WEIGHTS_FILE = "albef_model.safetensors"
VARIANTS = ("english", "multilingual")
ITM_SCORES = ("itm", "itm+itc")
_BASE = "https://storage.googleapis.com/sfr-pcl-data-research/ALBEF/"
#: Released checkpoints by name (salesforce/ALBEF's README).
CHECKPOINTS = {"albef-4m": _BASE + "ALBEF_4M.pth", "albef-14m": _BASE + "ALBEF.pth",
               "albef-coco": _BASE + "mscoco.pth", "albef-flickr30k": _BASE + "flickr30k.pth"}
TEMP_RANGE = (0.001, 0.5)
#: Settings that change only how a trained model is evaluated (ITM re-scoring), not what it learns:
#: outside a run's identity (the evaluation records them).
EVALUATION_ONLY = ("rescore_k", "itm_score", "rescore_batch")


@dataclass
class ALBEFConfig:
    """Which ALBEF and how it trains (module docstring).

    ``net``: ALBEFNetConfig fields (architecture; a saved folder brings its own). ``tokenizer``:
    hub id or folder (default: the checkpoint folder's, else ``bert-base-uncased``). ``add_sep``:
    end captions with [SEP] (None: only for LAVIS checkpoints). ``max_length`` / ``max_words``:
    caption limits in tokens / words. ``keep_momentum`` / ``keep_queue``: take the checkpoint's
    momentum weights / queues (else momentum weights are re-copied from the online ones).
    """

    checkpoint: str | None = None
    variant: str = "english"
    text_init: str | None = None
    tokenizer: str | None = None
    net: dict = field(default_factory=dict)
    image_root: str | None = None
    add_sep: bool | None = None
    max_length: int = 30
    max_words: int = 30
    keep_momentum: bool = False
    keep_queue: bool = False
    queue: bool = False
    queue_size: int = 65536
    distill: bool = True
    alpha: float = 0.4
    distill_warmup_steps: int | None = None
    itm_weight: float = 1.0
    rescore_k: int = 128
    itm_score: str = "itm"
    rescore_batch: int = 128
    augment: bool = False
    image_cache_mb: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.image_root, os.PathLike):
            self.image_root = os.fspath(self.image_root)
        check_types(self, "ALBEFConfig")
        if self.variant not in VARIANTS:
            raise UnknownModelError(f"Unknown ALBEF variant {self.variant!r}. Known: {', '.join(VARIANTS)} "
                                    "('english': the checkpoint as released; 'multilingual': text layers from "
                                    "text_init).")
        if self.variant == "multilingual" and not self.text_init:
            raise ConfigError("The 'multilingual' ALBEF variant needs text_init: a BERT-base-shaped multilingual "
                              "checkpoint such as 'bert-base-multilingual-cased' or a LaBSE folder.")
        if self.itm_score not in ITM_SCORES:
            raise ConfigError(f"itm_score must be one of {ITM_SCORES}, got {self.itm_score!r}.")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha (distillation weight) must be in [0, 1], got {self.alpha}.")
        for name in ("rescore_k", "image_cache_mb", "queue_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.rescore_batch < 1 or self.max_words < 1:
            raise ConfigError("rescore_batch and max_words must be >= 1.")
        unknown = sorted(set(self.net) - {f.name for f in fields(ALBEFNetConfig)})
        if unknown:
            raise ConfigError(f"Unknown ALBEF architecture field(s) {unknown} in net. Valid: "
                              f"{sorted(f.name for f in fields(ALBEFNetConfig))}.")

    def settings(self) -> dict:
        d = asdict(self)
        for k in ("checkpoint", "tokenizer", "text_init"):
            d.pop(k)
        return d


def _resolve_checkpoint(name: str) -> Path:
    if name in CHECKPOINTS:
        from hbkit.datasets.download import default_cache_dir, download

        return Path(download(CHECKPOINTS[name], default_cache_dir() / "albef"))
    path = Path(name).expanduser()
    if not path.exists():
        raise UnknownModelError(f"ALBEF checkpoint {name!r} is neither a file, a folder nor a known name "
                                f"({', '.join(CHECKPOINTS)}).")
    return path


def _tokenizer(source: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UnknownModelError(f"Could not load the tokenizer {source!r} ({exc.__class__.__name__}). Give a hub id "
                                "(online) or a local folder with the tokenizer files.") from exc


class ALBEFModel(ALBEFRetrieval, RetrievalModel):
    """ALBEF for training and retrieval (module docstring). Features are (n, embed_dim) float32."""

    supports_grad_cache = False
    modalities = ("text", "image")

    def __init__(self, config: ALBEFConfig | None = None) -> None:
        super().__init__()
        s = self.settings = config if config is not None else ALBEFConfig()
        folder = None
        state = None
        net_cfg: dict = {}
        if s.checkpoint is not None:
            path = _resolve_checkpoint(s.checkpoint)
            if path.is_dir():
                folder = path
                spec = json.loads((path / MODEL_FILE).read_text()) if (path / MODEL_FILE).exists() else {}
                if spec.get("family") != "albef" or not (path / NET_FILE).exists():
                    raise UnknownModelError(f"{path} is not an hbkit ALBEF folder ({MODEL_FILE} with family 'albef' "
                                            f"and {NET_FILE}). Pass an official checkpoint file instead.")
                net_cfg = json.loads((path / NET_FILE).read_text())
                state = read_state(path / WEIGHTS_FILE)
                self.origin = spec.get("origin", {"checkpoint": path.name})
            else:
                state = read_state(path)
                self.origin = {"checkpoint": s.checkpoint if s.checkpoint in CHECKPOINTS else path.name}
        else:
            self.origin = {"checkpoint": None}
        net_cfg = {**net_cfg, **s.net, "queue_size": s.queue_size if s.queue else 0}
        self.text_source = s.text_init if s.variant == "multilingual" else None
        if self.text_source is not None:
            text_model = self._text_model(self.text_source)
            tc = text_model.config
            net_cfg.update(vocab_size=tc.vocab_size, max_position_embeddings=tc.max_position_embeddings,
                           type_vocab_size=tc.type_vocab_size, pad_token_id=tc.pad_token_id or 0)
        self.net = ALBEFNet(ALBEFNetConfig(**net_cfg))
        self.load_report: LoadReport | None = None
        if state is not None:
            self.load_report = load_into(self.net, state, keep_momentum=s.keep_momentum and self.text_source is None,
                                         keep_queue=s.keep_queue, text_partial=self.text_source is not None)
        if self.text_source is not None:
            self._init_text(text_model)
        tok_source = s.tokenizer or self.text_source or (str(folder) if folder else "bert-base-uncased")
        add_sep = s.add_sep if s.add_sep is not None else bool(
            self.load_report is not None and self.load_report.layout == "lavis-retrieval")
        self.add_sep = add_sep
        self.tokenizer = ALBEFTokenizer(_tokenizer(tok_source), add_sep=add_sep, max_length=s.max_length,
                                        max_words=s.max_words)
        self.tokenizer_source = tok_source
        self.image_root = s.image_root
        self.register_buffer("train_step", torch.zeros((), dtype=torch.long))
        self._warmup = 0

    # -- multilingual text init ------------------------------------------------------------------
    @staticmethod
    def _text_model(source: str):
        from transformers import AutoModel

        from hbkit.models.tiny import quiet_transformers

        try:
            with quiet_transformers():
                return AutoModel.from_pretrained(source, add_pooling_layer=False)
        except (OSError, ValueError, TypeError) as exc:
            raise UnknownModelError(f"Could not load the multilingual text encoder {source!r} "
                                    f"({exc.__class__.__name__}: {str(exc)[:160]}). Give a BERT-shaped hub id "
                                    "(online) or a local folder.") from exc

    @torch.no_grad()
    def _init_text(self, text_model) -> None:
        """Embeddings and text layers 0 .. fusion_layer-1 from ``text_model``; momentum re-copied."""
        c = self.net.config
        tc = text_model.config
        if tc.hidden_size != c.hidden_size or getattr(tc, "num_hidden_layers", 0) < c.fusion_layer:
            raise ConfigError(f"text_init {self.text_source!r} has hidden size {tc.hidden_size} and "
                              f"{tc.num_hidden_layers} layers; ALBEF's text layers need hidden size {c.hidden_size} "
                              f"and at least {c.fusion_layer} layers (a BERT-base-shaped model).")
        src = text_model.state_dict()
        dst = self.net.text_encoder.bert.state_dict()
        missing = [k for k in dst if k not in src]
        if missing:
            raise ConfigError(f"text_init {self.text_source!r} lacks {missing[:5]}: it must be a BERT-shaped model.")
        self.net.text_encoder.bert.load_state_dict({k: src[k] for k in dst})
        self.net.copy_params()

    # -- properties --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.net.config.embed_dim

    @property
    def device(self) -> torch.device:
        return self.net.temp.device

    @property
    def rescore_k(self) -> int:
        return int(self.settings.rescore_k)

    # -- training ----------------------------------------------------------------------------------
    def configure_training(self, config: Any) -> None:
        """Distillation warm-up (default: the trainer's learning-rate warm-up steps); refuses loss
        options ALBEF does not have."""
        if getattr(config, "denominator", "batch") != "batch":
            raise ConfigError(f"denominator={config.denominator!r} is the text loss's form; ALBEF trains with ITC + "
                              "ITM. Use denominator='batch'.")
        w = self.settings.distill_warmup_steps
        self._warmup = int(w) if w is not None else int(math.ceil(config.warmup_ratio * config.max_steps))

    def alpha(self) -> float:
        """This step's distillation weight: ``alpha * min(1, step / warm-up steps)`` (0 without distillation)."""
        if not self.settings.distill:
            return 0.0
        if self._warmup <= 0:
            return float(self.settings.alpha)
        return float(self.settings.alpha) * min(1.0, int(self.train_step) / self._warmup)

    def collator(self) -> ImageCaptionCollator:
        transform = ALBEFImageTransform(self.net.config.image_res, augment=self.settings.augment)
        cache = ImageCache(self.settings.image_cache_mb * 2**20) \
            if self.settings.image_cache_mb and not self.settings.augment else None
        return ImageCaptionCollator(self.tokenizer, transform, self.image_root, cache)

    def _gathered(self, *tensors: torch.Tensor, gather: bool) -> tuple[list[torch.Tensor], int]:
        if not gather or hdist.world_size() <= 1:
            return list(tensors), 0
        feats = [hdist.gather_varlen_with_grad(t.contiguous()) for t in tensors[:-1]]
        ids, offset = gather_ids(tensors[-1])
        return feats + [ids], offset

    def forward(self, batch: dict, gather: bool = True) -> dict[str, torch.Tensor]:
        """Losses of a collated batch: ``{"loss", "itc", "itm", "i2t", "t2i"}`` (module docstring)."""
        net, dev = self.net, self.device
        ids, mask = batch["text"]["input_ids"].to(dev), batch["text"]["attention_mask"].to(dev)
        index = batch["image_index"].to(dev)
        idx = batch["text_groups"].to(dev)
        image_embeds = net.image_embeds(batch["images"].to(dev))[index]
        image_feat = net.image_feat(image_embeds)
        text_embeds = net.text_embeds(ids, mask)
        text_feat = net.text_feat(text_embeds)
        with torch.no_grad():
            image_feat_m = net.image_feat(net.image_embeds(batch["images"].to(dev), momentum=True)[index], True)
            text_feat_m = net.text_feat(net.text_embeds(ids, mask, momentum=True), True)
            (img_all, txt_all, idx_all), offset = self._gathered(image_feat_m, text_feat_m, idx, gather=gather)
            batch_img, batch_txt, batch_idx = img_all, txt_all, idx_all
            if net.has_queue:
                img_all = torch.cat([img_all, net.image_queue.T.clone()])
                txt_all = torch.cat([txt_all, net.text_queue.T.clone()])
                idx_all = torch.cat([idx_all, net.idx_queue.view(-1).clone()])
        itc = albef_itc_loss(image_feat.float(), text_feat.float(), img_all.float(), txt_all.float(), idx, idx_all,
                             net.temp, self.alpha(), image_feat_m.float(), text_feat_m.float())
        if net.has_queue and self.training:
            net.enqueue(batch_img, batch_txt, batch_idx)
        b = idx.shape[0]
        fused_pos = net.fuse(text_embeds, mask, image_embeds)
        local = slice(offset, offset + b)
        neg_image, neg_text = albef_hard_negatives(itc["sim_i2t"][:, local], itc["sim_t2i"][:, local], idx)
        fused_neg = net.fuse(torch.cat([text_embeds, text_embeds[neg_text]]), torch.cat([mask, mask[neg_text]]),
                             torch.cat([image_embeds[neg_image], image_embeds]))
        logits = net.itm_logits(torch.cat([fused_pos, fused_neg]))
        itm = albef_itm_loss(logits.float(), b)
        w = float(self.settings.itm_weight)
        return {"loss": itc["itc"] + w * itm, "itc": itc["itc"], "itm": itm, "i2t": itc["i2t"], "t2i": itc["t2i"]}

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Clamp the temperature, advance the step counter, one EMA step of the momentum encoders."""
        self.net.temp.clamp_(*TEMP_RANGE)
        self.train_step += 1
        self.net.momentum_update()

    def log_values(self) -> dict[str, float]:
        return {"temperature": float(self.net.temp.detach()), "alpha": self.alpha()}

    # -- description and persistence -----------------------------------------------------------------
    def identity(self) -> dict:
        """What of the model changes a run's result: origin, variant, text init, architecture, settings."""
        s = self.settings.settings()
        for k in ("image_root", "image_cache_mb") + EVALUATION_ONLY:
            s.pop(k)
        return {"family": "albef", **self.origin, "text_init": self.text_source, "tokenizer": self.tokenizer_source,
                "add_sep": self.add_sep, "architecture": self.net.config.to_dict(), **s}

    def describe(self) -> dict:
        evaluation = {k: getattr(self.settings, k) for k in EVALUATION_ONLY}
        return {**self.identity(), **evaluation, "image_root": self.image_root, "dim": self.dim,
                "load_report": None if self.load_report is None else asdict(self.load_report)}

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write a folder :meth:`load` reads: weights in the original retrieval layout, the architecture,
        the tokenizer and the settings."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        c = self.net.config
        state = {k: v.detach().cpu().clone().contiguous() for k, v in self.net.state_dict().items()}
        save_file(to_original(state, c.fusion_layer), str(out / WEIGHTS_FILE))
        (out / NET_FILE).write_text(json.dumps({k: v for k, v in c.to_dict().items() if k != "queue_size"}, indent=2))
        self.tokenizer.tokenizer.save_pretrained(out)
        settings = {**self.settings.settings(), "add_sep": self.add_sep, "variant": "english", "net": {}}
        origin = {**self.origin, "text_init": self.text_source}
        (out / MODEL_FILE).write_text(json.dumps({"family": "albef", "settings": settings, "origin": origin},
                                                 indent=2))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, **changes: Any) -> "ALBEFModel":
        """Load a folder written by :meth:`save`; ``changes`` override its saved settings."""
        path = Path(path).expanduser().resolve()
        marker = path / MODEL_FILE
        if not marker.exists():
            raise UnknownModelError(f"{path} holds no exported hbkit ALBEF model ({MODEL_FILE} missing).")
        spec = json.loads(marker.read_text(encoding="utf-8"))
        if spec.get("family") != "albef":
            raise UnknownModelError(f"{path} holds a {spec.get('family')!r} model, not ALBEF: load it with "
                                    "hbkit.models.load_model.")
        names = {f.name for f in fields(ALBEFConfig)} - {"checkpoint", "tokenizer", "text_init"}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"Unknown ALBEF setting(s) {unknown}. Valid: {sorted(names)}.")
        settings = {k: v for k, v in spec.get("settings", {}).items() if k in names}
        return cls(ALBEFConfig(checkpoint=str(path), **{**settings, "keep_momentum": True, **changes}))
