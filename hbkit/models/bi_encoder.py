"""A shared bi-encoder over any Hugging Face encoder (PROTOCOL §1.1).

Queries and passages go through the same transformer with E5-style prefixes;
the pooled vector is L2-normalised so the dot product is the cosine similarity.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F


from hbkit.errors import ConfigError, DataError, UnknownModelError
from hbkit.engine.progress import progress
from hbkit.losses import InfoNCELoss
from hbkit.models.base import RetrievalModel
from hbkit.parallel import TrainingPair

#: Preset name -> (hub id, pooling). Any other hub id or local directory works too.
MODEL_PRESETS: dict[str, tuple[str, str]] = {
    "xlm-roberta-base": ("FacebookAI/xlm-roberta-base", "mean"),
    "xlm-roberta-large": ("FacebookAI/xlm-roberta-large", "mean"),
    "labse": ("sentence-transformers/LaBSE", "pooler"),
    "mdistilbert": ("distilbert/distilbert-base-multilingual-cased", "mean"),
}
POOLINGS = ("mean", "cls", "pooler")
ENCODER_CONFIG_FILE = "hbkit_encoder.json"


@dataclass
class EncoderConfig:
    """How texts become vectors.

    ``model`` is a preset name (see MODEL_PRESETS), a hub id or a local directory.
    ``pooling``: "mean" (XLM-R), "cls", or "pooler" ([CLS] then the model's dense+tanh
    pooler, LaBSE style); "auto" picks the preset's pooling, else "mean".
    """

    model: str = "xlm-roberta-base"
    pooling: str = "auto"
    query_prefix: str = "Query: "
    passage_prefix: str = "Passage: "
    max_query_length: int = 64
    max_passage_length: int = 256

    def resolved(self) -> "EncoderConfig":
        path, pooling = resolve_model(self.model)
        if self.pooling != "auto":
            pooling = self.pooling
        if pooling not in POOLINGS:
            raise ConfigError(f"Unknown pooling {self.pooling!r}. Use one of: auto, {', '.join(POOLINGS)}.")
        for name in ("max_query_length", "max_passage_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 4:
                raise ConfigError(f"{name} must be an integer >= 4, got {getattr(self, name)!r}.")
        return EncoderConfig(path, pooling, self.query_prefix, self.passage_prefix,
                             self.max_query_length, self.max_passage_length)


def resolve_model(name: str) -> tuple[str, str]:
    """Map a preset name, local dir or hub id to ``(path_or_id, default pooling)``."""
    if not isinstance(name, str) or not name.strip():
        raise UnknownModelError(f"Model name must be a non-empty string, got {name!r}.")
    if name in MODEL_PRESETS:
        return MODEL_PRESETS[name]
    path = Path(name).expanduser()
    if path.is_dir():
        spec = path / ENCODER_CONFIG_FILE
        pooling = "mean"
        if spec.exists():
            pooling = json.loads(spec.read_text()).get("pooling", "mean")
        return str(path), pooling
    if name.startswith((".", "/", "~")) or os.sep in name and name.count("/") > 1:
        raise UnknownModelError(
            f"Model directory {name!r} does not exist. Check the path, or use a preset "
            f"({', '.join(MODEL_PRESETS)}) or a hub id such as 'FacebookAI/xlm-roberta-base'."
        )
    return name, "mean"


def _load_pretrained(path: str):
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UnknownModelError(
            f"Could not load model {path!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            f"It is not a known preset ({', '.join(MODEL_PRESETS)}) nor a readable local directory, and the hub "
            "could not provide it (offline? misspelt id?). Download the model once with internet and pass its local "
            "directory, e.g. model='/path/to/xlm-roberta-base'."
        ) from exc
    return tokenizer, model


def _st_file(model: str, rel: str) -> Path | None:
    """A file of a sentence-transformers model folder (local dir or hub id), or None."""
    local = Path(model) / rel
    if Path(model).is_dir():
        return local if local.exists() else None
    try:  # hub id: fetch the small module files only
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model, rel))
    except Exception:  # noqa: BLE001 - absent file or offline: no sentence-transformers modules
        return None


def sentence_transformers_dense(model: str) -> dict | None:
    """The Dense module (weight, bias, activation) of a sentence-transformers pipeline
    such as LaBSE's (Transformer → CLS pooling → Dense+tanh → Normalize), or None."""
    modules_file = _st_file(model, "modules.json")
    if modules_file is None:
        return None
    dense = [m for m in json.loads(modules_file.read_text()) if m.get("type", "").endswith("Dense")]
    if not dense:
        return None
    folder = dense[0]["path"]
    cfg_file = _st_file(model, f"{folder}/config.json")
    cfg = json.loads(cfg_file.read_text()) if cfg_file else {}
    weights_file = _st_file(model, f"{folder}/model.safetensors") or _st_file(model, f"{folder}/pytorch_model.bin")
    if weights_file is None:
        raise UnknownModelError(f"{model}: modules.json names a Dense module in {folder}/ but its weights are missing. "
                                "Re-download the model folder completely.")
    if weights_file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights_file))
    else:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
    return {"weight": state["linear.weight"], "bias": state.get("linear.bias"),
            "activation": cfg.get("activation_function", "torch.nn.modules.activation.Tanh")}


@dataclass(frozen=True)
class TextPairCollator:
    """Tokenizes a batch of text pairs: queries; positives followed by the hard negatives
    of the pairs that have one (``neg_owner`` = the index of the pair each negative belongs to).

    Picklable, so it can run in ``DataLoader`` workers."""

    tokenizer: object
    query_prefix: str
    passage_prefix: str
    max_query_length: int
    max_passage_length: int
    hard_negatives: bool = True

    def _tok(self, texts: list[str], kind: str) -> dict:
        BiEncoder._check_texts(texts, kind)
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        max_len = self.max_query_length if kind == "query" else self.max_passage_length
        return dict(self.tokenizer([prefix + t for t in texts], padding=True, truncation=True, max_length=max_len,
                                   return_tensors="pt"))

    def __call__(self, pairs: Sequence[TrainingPair]) -> dict:
        for p in pairs:
            if not isinstance(p.positive, str):
                raise DataError(f"The text bi-encoder got an image positive ({p.positive!r}) for group {p.group!r}: "
                                "train image–caption data with an image–text model (e.g. CLIP).")
        owners = [i for i, p in enumerate(pairs) if self.hard_negatives and p.negative is not None]
        passages = [p.positive for p in pairs] + [pairs[i].negative for i in owners]
        return {"query": self._tok([p.query for p in pairs], "query"), "passage": self._tok(passages, "passage"),
                "n_pairs": len(pairs), "neg_owner": torch.tensor(owners, dtype=torch.long)}


class BiEncoder(RetrievalModel):
    """One transformer shared by queries and passages; returns L2-normalised vectors (n, hidden).

    As a :class:`~hbkit.models.base.RetrievalModel` it trains with InfoNCE
    (:class:`~hbkit.losses.InfoNCELoss`) over in-batch positives and per-pair hard negatives."""

    supports_grad_cache = True
    modalities = ("text",)

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config.resolved()
        self.tokenizer, self.model = _load_pretrained(self.config.model)
        self.loss_fn = InfoNCELoss()
        self.hard_negatives = True
        if self.config.pooling == "pooler":
            if getattr(self.model, "pooler", None) is None:
                raise ConfigError(
                    f"pooling='pooler' needs a model with a pooler layer, but {self.config.model!r} has none. "
                    "Use pooling='cls' or 'mean'."
                )
            self._use_sentence_transformers_dense()

    def _use_sentence_transformers_dense(self) -> None:
        """LaBSE as published by sentence-transformers applies its own Dense+tanh after [CLS]:
        when the model folder has one, it replaces the transformer's pooler weights."""
        dense = sentence_transformers_dense(self.config.model)
        if dense is None:
            return
        if not dense["activation"].endswith("Tanh"):
            raise ConfigError(f"{self.config.model}: its Dense module uses {dense['activation']}, not tanh; "
                              "pooling='pooler' reproduces only the [CLS] → dense → tanh pipeline. Use pooling='cls'.")
        layer = self.model.pooler.dense
        if tuple(dense["weight"].shape) != tuple(layer.weight.shape):
            raise ConfigError(f"{self.config.model}: Dense weight {tuple(dense['weight'].shape)} does not fit the "
                              f"pooler {tuple(layer.weight.shape)}.")
        with torch.no_grad():
            layer.weight.copy_(dense["weight"])
            if dense["bias"] is not None:
                layer.bias.copy_(dense["bias"])

    @classmethod
    def from_pretrained(cls, model: str, **kw) -> "BiEncoder":
        return cls(EncoderConfig(model=model, **kw))

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @staticmethod
    def _check_texts(texts: Sequence[str], kind: str) -> None:
        if kind not in ("query", "passage"):
            raise ConfigError(f"kind must be 'query' or 'passage', got {kind!r}.")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise DataError(f"Empty {kind} text at position {i}: every text must contain characters. "
                                "Remove empty rows from the data.")

    def tokenize(self, texts: Sequence[str], kind: str, contexts: Sequence[str] | None = None) -> dict:
        """Prefix and tokenize; ``kind`` is "query" or "passage"."""
        self._check_texts(texts, kind)
        prefix = self.config.query_prefix if kind == "query" else self.config.passage_prefix
        max_len = self.config.max_query_length if kind == "query" else self.config.max_passage_length
        texts = [prefix + t for t in texts]
        if contexts is not None:
            return self.tokenizer(texts, list(contexts), padding=True, truncation="only_second",
                                  max_length=max_len, return_tensors="pt")
        return self.tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")

    def pool(self, outputs, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = outputs.last_hidden_state  # (n, seq, hidden)
        if self.config.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.config.pooling == "cls":
            return hidden[:, 0]
        return self.model.pooler(hidden)  # dense + tanh over [CLS]

    def embed_tokens(self, batch: dict) -> torch.Tensor:
        """Embed a tokenized batch: (n, hidden) L2-normalised."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        outputs = self.model(**batch)
        return F.normalize(self.pool(outputs, batch["attention_mask"]).float(), dim=-1)

    def embed(self, texts: Sequence[str], kind: str, contexts: Sequence[str] | None = None) -> torch.Tensor:
        """Embed texts with gradients (training): (n, hidden)."""
        return self.embed_tokens(self.tokenize(texts, kind, contexts))

    # -- the training protocol --------------------------------------------------------
    def configure_training(self, config) -> None:
        """InfoNCE settings from a TrainConfig: temperature (fixed or learnable), denominator, hard negatives."""
        self.loss_fn = InfoNCELoss(config.temperature, config.learnable_temperature, config.denominator)
        self.loss_fn.to(next(self.model.parameters()).device)
        self.hard_negatives = bool(config.hard_negatives)
        pooler = getattr(self.model, "pooler", None)
        if pooler is not None and self.config.pooling != "pooler":
            # computed by the transformer but not part of the embedding: not trained (and DDP needs every
            # trainable parameter to take part in the loss)
            pooler.requires_grad_(False)

    def collator(self) -> TextPairCollator:
        c = self.config
        return TextPairCollator(self.tokenizer, c.query_prefix, c.passage_prefix, c.max_query_length,
                                c.max_passage_length, self.hard_negatives)

    def forward(self, batch: dict, gather: bool = True) -> dict[str, torch.Tensor]:
        """InfoNCE loss of a collated batch; positives and hard negatives share one forward pass."""
        q = self.embed_tokens(batch["query"])
        pn = self.embed_tokens(batch["passage"])
        return self.loss_from_embeddings(batch, [q, pn], gather=gather)

    def embedding_inputs(self, batch: dict) -> list[tuple[str, int]]:
        return [("query", int(batch["query"]["input_ids"].shape[0])),
                ("passage", int(batch["passage"]["input_ids"].shape[0]))]

    def embed_chunk(self, batch: dict, group: int, rows: slice) -> torch.Tensor:
        tokens = batch["query" if group == 0 else "passage"]
        return self.embed_tokens({k: v[rows] for k, v in tokens.items()})

    def loss_from_embeddings(self, batch: dict, embeddings, gather: bool = True) -> dict[str, torch.Tensor]:
        q, pn = embeddings
        b = int(batch["n_pairs"])
        loss = self.loss_fn(q, pn[:b], pn[b:], gather=gather)
        return {"loss": loss}

    def log_values(self) -> dict[str, float]:
        return {"temperature": self.loss_fn.temperature}

    def describe(self) -> dict:
        """The resolved encoder settings (recorded in a run's config.json)."""
        return {"family": "bi-encoder", **asdict(self.config)}

    def identity(self) -> dict:
        """What of the model changes a run's result (the model by its folder or hub name, not its full path)."""
        d = asdict(self.config)
        d["model"] = Path(d["model"]).name if Path(d["model"]).is_dir() else d["model"]
        return d

    def save(self, out_dir: str | os.PathLike) -> Path:
        out = self.save_pretrained(out_dir)
        (out / "hbkit_model.json").write_text(json.dumps({"family": "bi-encoder"}))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BiEncoder":
        return load_encoder(path)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], kind: str = "passage", batch_size: int = 64,
               show_progress: bool | None = None, contexts: Sequence[str] | None = None) -> torch.Tensor:
        """Embed texts for evaluation (no gradients, eval mode): float32 CPU tensor (n, hidden).

        Texts are sorted by length for less padding; the output is in input order.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        self._check_texts(texts, kind)
        was_training = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.dim)
        try:
            for start in progress(range(0, len(texts), batch_size), show=show_progress,
                                  desc=f"encode {kind}s", leave=False):
                idx = order[start:start + batch_size]
                ctx = [contexts[i] for i in idx] if contexts is not None else None
                out[idx] = self.embed([texts[i] for i in idx], kind, ctx).cpu()
        finally:
            self.train(was_training)
        return out

    def save_pretrained(self, out_dir: str | os.PathLike) -> Path:
        """Save model, tokenizer and the encoder config (pooling, prefixes, lengths)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        spec = asdict(self.config)
        spec["source_model"] = spec.pop("model")
        (out_dir / ENCODER_CONFIG_FILE).write_text(json.dumps(spec, indent=2))
        return out_dir


def load_encoder(path: str | os.PathLike) -> BiEncoder:
    """Load a BiEncoder saved by :meth:`BiEncoder.save_pretrained` (pooling and prefixes restored)."""
    path = Path(path)
    spec_file = path / ENCODER_CONFIG_FILE
    if not spec_file.exists():
        raise UnknownModelError(f"{path} holds no saved hbkit encoder ({ENCODER_CONFIG_FILE} missing). "
                                "Point at a run's model/ directory, or train the run first.")
    spec = json.loads(spec_file.read_text())
    spec.pop("source_model", None)
    return BiEncoder(EncoderConfig(model=str(path), **spec))
