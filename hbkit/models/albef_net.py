"""ALBEF's network (Li et al., NeurIPS 2021; PROTOCOL §2.3), built from well-kept parts.

- **Image encoder**: timm's ``VisionTransformer`` (patch 16, pre-LN blocks, LayerNorm eps 1e-6,
  class token, no head); its output is every token after the final norm, (n, 1 + patches, vw).
- **Text encoder**: a transformers ``BertModel`` holding the text-only layers
  ``0 .. fusion_layer-1`` (``text_encoder.bert``) and ALBEF's fusion layers
  ``fusion_layer .. num_hidden_layers-1`` (``text_encoder.fusion``): self-attention over the
  caption, cross-attention to the image tokens, feed-forward, each post-LN as in BERT.
- ``vision_proj`` / ``text_proj``: linear maps of the CLS tokens to ``embed_dim`` (L2-normalised
  features), ``itm_head``: 2-way matching head on the fused CLS (class 1 = match), ``temp``: the
  learnable ITC temperature.
- **Momentum copies** (``*_m``) of the image encoder, the text encoder and both projections; they
  follow the online weights by EMA (:meth:`ALBEFNet.momentum_update`) and get no gradients.
- **Feature queue** (``image_queue``, ``text_queue``, ``idx_queue``, ``queue_ptr``), registered
  only when ``queue_size > 0``.

Parameter names follow the original layout except inside the text encoder, where
:mod:`hbkit.models.albef_checkpoint` maps ``text_encoder.encoder.layer.i`` to ``bert`` (text
layers) or ``fusion`` (fusion layers). Shapes: B batch, L caption tokens, T image tokens,
d text width, vw vision width, e ``embed_dim``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from hbkit.errors import ConfigError, DataError

__all__ = ["ALBEFNetConfig", "ALBEFNet", "FusionLayer", "additive_mask"]


@dataclass
class ALBEFNetConfig:
    """ALBEF's architecture. Defaults: the released retrieval models (ViT-B/16 at 384 px, BERT-base
    with fusion from layer 6, 256-d features, queue 65,536). ``queue_size`` 0 builds no queue."""

    image_res: int = 384
    patch_size: int = 16
    vision_width: int = 768
    vision_depth: int = 12
    vision_heads: int = 12
    mlp_ratio: float = 4.0
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    fusion_layer: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    pad_token_id: int = 0
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    embed_dim: int = 256
    temp: float = 0.07
    momentum: float = 0.995
    queue_size: int = 65536

    def __post_init__(self) -> None:
        for name in ("image_res", "patch_size", "vision_width", "vision_depth", "vision_heads", "vocab_size",
                     "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "embed_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"ALBEF {name} must be a positive integer, got {v!r}.")
        if self.image_res % self.patch_size:
            raise ConfigError(f"image_res ({self.image_res}) must be a multiple of patch_size ({self.patch_size}).")
        if not 0 <= self.fusion_layer < self.num_hidden_layers:
            raise ConfigError(f"fusion_layer must be in [0, num_hidden_layers={self.num_hidden_layers}), got "
                              f"{self.fusion_layer}: layers from fusion_layer on attend to the image.")
        for name, width, heads in (("hidden_size", self.hidden_size, self.num_attention_heads),
                                   ("vision_width", self.vision_width, self.vision_heads)):
            if width % heads:
                raise ConfigError(f"{name} ({width}) must be a multiple of its number of heads ({heads}).")
        if not 0 < self.momentum < 1:
            raise ConfigError(f"momentum must be in (0, 1), got {self.momentum}.")
        if not self.temp > 0:
            raise ConfigError(f"temp must be > 0, got {self.temp}.")
        if self.queue_size < 0:
            raise ConfigError(f"queue_size must be >= 0 (0 = no queue), got {self.queue_size}.")

    def bert_config(self, num_hidden_layers: int | None = None):
        """The transformers ``BertConfig`` of the text layers (``num_hidden_layers`` of them)."""
        from transformers import BertConfig

        return BertConfig(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                          num_hidden_layers=self.fusion_layer if num_hidden_layers is None else num_hidden_layers,
                          num_attention_heads=self.num_attention_heads, intermediate_size=self.intermediate_size,
                          hidden_act="gelu", hidden_dropout_prob=self.hidden_dropout_prob,
                          attention_probs_dropout_prob=self.attention_probs_dropout_prob,
                          max_position_embeddings=self.max_position_embeddings,
                          type_vocab_size=self.type_vocab_size, layer_norm_eps=self.layer_norm_eps,
                          pad_token_id=self.pad_token_id)

    def to_dict(self) -> dict:
        return asdict(self)


def additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A (n, L) 0/1 key mask as the additive attention mask (n, 1, 1, L): 0 kept, -10000 masked (BERT's)."""
    if mask is None:
        return None
    return (1.0 - mask[:, None, None, :].to(dtype)) * -10000.0


class _Heads(nn.Module):
    """Multi-head scaled dot-product attention of ``x`` over ``context`` (BERT's ``*.self`` block)."""

    def __init__(self, hidden: int, context_width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(context_width, hidden)
        self.value = nn.Linear(context_width, hidden)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape
        return x.view(n, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(context)), self._split(self.value(context))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + mask
        out = self.dropout(scores.softmax(dim=-1)) @ v
        n, h, length, dh = out.shape
        return out.transpose(1, 2).reshape(n, length, h * dh)


class _Residual(nn.Module):
    """``LayerNorm(dropout(dense(h)) + residual)`` (BERT's ``*.output`` block)."""

    def __init__(self, width_in: int, hidden: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class _Attention(nn.Module):
    def __init__(self, hidden: int, context_width: int, heads: int, eps: float, p_attn: float, p_hidden: float):
        super().__init__()
        self.self = _Heads(hidden, context_width, heads, p_attn)
        self.output = _Residual(hidden, hidden, eps, p_hidden)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, context, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, intermediate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class FusionLayer(nn.Module):
    """One fusion layer: self-attention, cross-attention to the image tokens, feed-forward (post-LN)."""

    def __init__(self, c: ALBEFNetConfig) -> None:
        super().__init__()
        d, eps = c.hidden_size, c.layer_norm_eps
        pa, ph = c.attention_probs_dropout_prob, c.hidden_dropout_prob
        self.attention = _Attention(d, d, c.num_attention_heads, eps, pa, ph)
        self.crossattention = _Attention(d, c.vision_width, c.num_attention_heads, eps, pa, ph)
        self.intermediate = _Intermediate(d, c.intermediate_size)
        self.output = _Residual(c.intermediate_size, d, eps, ph)

    def forward(self, x: torch.Tensor, text_mask: torch.Tensor | None, image: torch.Tensor,
                image_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, x, text_mask)
        x = self.crossattention(x, image, image_mask)
        return self.output(self.intermediate(x), x)


class ALBEFText(nn.Module):
    """The text encoder: ``bert`` (embeddings + text-only layers) and ``fusion`` (fusion layers)."""

    def __init__(self, c: ALBEFNetConfig) -> None:
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(c.bert_config(), add_pooling_layer=False)
        self.fusion = nn.ModuleList(FusionLayer(c) for _ in range(c.num_hidden_layers - c.fusion_layer))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids and 0/1 mask (B, L) -> text-layer states (B, L, d) (ALBEF's ``mode='text'``)."""
        ids = input_ids.to(self.bert.embeddings.word_embeddings.weight.device)
        return self.bert(input_ids=ids, attention_mask=attention_mask.to(ids.device),
                         token_type_ids=torch.zeros_like(ids)).last_hidden_state

    def fuse(self, text_states: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor,
             image_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fusion layers over cached text states (B, L, d) and image tokens (B, T, vw) -> (B, L, d)
        (ALBEF's ``mode='fusion'``). ``image_mask`` (B, T) defaults to all tokens."""
        mask = additive_mask(attention_mask.to(text_states.device), text_states.dtype)
        img_mask = additive_mask(image_mask, text_states.dtype) if image_mask is not None else None
        x = text_states
        for layer in self.fusion:
            x = layer(x, mask, image_embeds, img_mask)
        return x


def _vit(c: ALBEFNetConfig) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=c.image_res, patch_size=c.patch_size, embed_dim=c.vision_width,
                             depth=c.vision_depth, num_heads=c.vision_heads, mlp_ratio=c.mlp_ratio, qkv_bias=True,
                             norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0, global_pool="")


class ALBEFNet(nn.Module):
    """ALBEF's retrieval network (module docstring); computations are the original's, batched."""

    #: (online, momentum) attribute pairs the EMA runs over, in the original's order.
    MOMENTUM_PAIRS = (("visual_encoder", "visual_encoder_m"), ("vision_proj", "vision_proj_m"),
                      ("text_encoder", "text_encoder_m"), ("text_proj", "text_proj_m"))

    def __init__(self, config: ALBEFNetConfig | None = None) -> None:
        super().__init__()
        c = self.config = config if config is not None else ALBEFNetConfig()
        self.visual_encoder = _vit(c)
        self.text_encoder = ALBEFText(c)
        self.vision_proj = nn.Linear(c.vision_width, c.embed_dim)
        self.text_proj = nn.Linear(c.hidden_size, c.embed_dim)
        self.temp = nn.Parameter(torch.tensor(float(c.temp)))
        self.itm_head = nn.Linear(c.hidden_size, 2)
        self.visual_encoder_m = _vit(c)
        self.vision_proj_m = nn.Linear(c.vision_width, c.embed_dim)
        self.text_encoder_m = ALBEFText(c)
        self.text_proj_m = nn.Linear(c.hidden_size, c.embed_dim)
        self.copy_params()
        if c.queue_size:
            g = torch.Generator().manual_seed(0)
            self.register_buffer("image_queue", F.normalize(torch.randn(c.embed_dim, c.queue_size, generator=g), dim=0))
            self.register_buffer("text_queue", F.normalize(torch.randn(c.embed_dim, c.queue_size, generator=g), dim=0))
            self.register_buffer("idx_queue", torch.full((1, c.queue_size), -100, dtype=torch.long))
            self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @property
    def has_queue(self) -> bool:
        return self.config.queue_size > 0

    # -- momentum ------------------------------------------------------------------------------
    def momentum_parameters(self):
        """(online, momentum) parameter pairs, in the original's order."""
        for online, momentum in self.MOMENTUM_PAIRS:
            yield from zip(getattr(self, online).parameters(), getattr(self, momentum).parameters())

    @torch.no_grad()
    def copy_params(self) -> None:
        """Momentum weights := online weights (and no gradients for them)."""
        for p, p_m in self.momentum_parameters():
            p_m.data.copy_(p.data)
            p_m.requires_grad_(False)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """One EMA step, ``p_m = p_m * m + p * (1 - m)`` in the parameters' dtype (the original's formula)."""
        m = float(self.config.momentum)
        for p, p_m in self.momentum_parameters():
            p_m.data = p_m.data * m + p.data * (1.0 - m)

    # -- encoders --------------------------------------------------------------------------------
    def _check_pixels(self, pixels: object) -> torch.Tensor:
        c = self.config
        if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4 or pixels.shape[1] != 3 \
                or not pixels.is_floating_point():
            what = (f"a {pixels.dtype} tensor of shape {tuple(pixels.shape)}" if isinstance(pixels, torch.Tensor)
                    else type(pixels).__name__)
            raise DataError(f"ALBEF's image encoder takes preprocessed images, a float tensor (n, 3, "
                            f"{c.image_res}, {c.image_res}); it got {what}. Pass images through the model's "
                            "collator or encode_images, not token ids or file names.")
        if tuple(pixels.shape[-2:]) != (c.image_res, c.image_res):
            raise DataError(f"ALBEF expects {c.image_res}x{c.image_res} images, got {tuple(pixels.shape[-2:])}: "
                            "preprocess them with the model's transform, or build the model at that image_res "
                            "(its position embedding is interpolated on load).")
        return pixels

    def image_embeds(self, pixels: torch.Tensor, momentum: bool = False) -> torch.Tensor:
        """Preprocessed images (n, 3, H, W) -> image tokens after the final norm (n, T, vw)."""
        vit = self.visual_encoder_m if momentum else self.visual_encoder
        return vit.forward_features(self._check_pixels(pixels).to(self.temp.device))

    def image_feat(self, image_embeds: torch.Tensor, momentum: bool = False) -> torch.Tensor:
        """L2-normalised projection of the CLS token: (n, T, vw) -> (n, e)."""
        proj = self.vision_proj_m if momentum else self.vision_proj
        return F.normalize(proj(image_embeds[:, 0, :]), dim=-1)

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, momentum: bool = False) -> torch.Tensor:
        """Token ids and mask (B, L) -> text-layer states (B, L, d)."""
        return (self.text_encoder_m if momentum else self.text_encoder).encode(input_ids, attention_mask)

    def text_feat(self, text_embeds: torch.Tensor, momentum: bool = False) -> torch.Tensor:
        """L2-normalised projection of the CLS token: (B, L, d) -> (B, e)."""
        proj = self.text_proj_m if momentum else self.text_proj
        return F.normalize(proj(text_embeds[:, 0, :]), dim=-1)

    def fuse(self, text_embeds: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """Fusion layers over text states (B, L, d) and the paired image tokens (B, T, vw) -> (B, L, d)."""
        return self.text_encoder.fuse(text_embeds, attention_mask, image_embeds)

    def itm_logits(self, fused: torch.Tensor) -> torch.Tensor:
        """Matching logits of fused states (B, L, d) -> (B, 2); column 1 is "match"."""
        return self.itm_head(fused[:, 0, :])

    # -- queue -----------------------------------------------------------------------------------
    @torch.no_grad()
    def enqueue(self, image_feat_m: torch.Tensor, text_feat_m: torch.Tensor, idx: torch.Tensor) -> None:
        """Write (all processes') momentum features (n, e) and image ids (n,) at the pointer; advance it."""
        n, size = image_feat_m.shape[0], self.config.queue_size
        if size % n:
            raise ConfigError(f"queue_size ({size}) must be a multiple of the global batch size ({n}), as in the "
                              "original ALBEF: choose a batch size that divides it.")
        ptr = int(self.queue_ptr)
        self.image_queue[:, ptr:ptr + n] = image_feat_m.T
        self.text_queue[:, ptr:ptr + n] = text_feat_m.T
        self.idx_queue[:, ptr:ptr + n] = idx.view(1, -1)
        self.queue_ptr[0] = (ptr + n) % size
