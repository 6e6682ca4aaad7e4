"""A tiny ALBEF for CPU runs and tests: a small ViT, the kit's tiny BERT as text layers, fusion layers.

:func:`make_tiny_albef` builds an hbkit ALBEF folder offline, the way the multilingual variant is
built from real checkpoints: the text layers and tokenizer come from
:func:`hbkit.models.tiny.make_tiny_model` (a WordPiece tokenizer trained on the given captions,
after ALBEF's caption cleaning, optionally masked-LM warmed up), and the image encoder, the
fusion layers, the projections and the heads are seeded random weights. The folder is what
:meth:`hbkit.models.albef.ALBEFModel.save` writes, so it loads through the same path.

It is a TOY: it learns the colours and shapes of generated images, not vision or language.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import torch

from hbkit.engine.atomic import atomic_dir
from hbkit.errors import ConfigError, DataError
from hbkit.models.albef import MODEL_FILE, NET_FILE, WEIGHTS_FILE, ALBEFConfig, ALBEFModel
from hbkit.models.albef_text import clean_caption

__all__ = ["make_tiny_albef", "TINY_ALBEF_FORMAT"]

TINY_ALBEF_FORMAT = 1


def _complete(folder: Path, request: dict) -> bool:
    if not all((folder / f).exists() for f in (MODEL_FILE, NET_FILE, WEIGHTS_FILE)):
        return False
    try:
        return json.loads((folder / MODEL_FILE).read_text(encoding="utf-8")).get("origin", {}).get("recipe") == request
    except json.JSONDecodeError:
        return False


def make_tiny_albef(out_dir: str | os.PathLike, texts: Sequence[str], *, seed: int = 0, image_res: int = 32,
                    patch_size: int = 8, vision_width: int = 32, vision_depth: int = 2, vision_heads: int = 2,
                    hidden_size: int = 32, text_layers: int = 1, fusion_layers: int = 1, num_heads: int = 2,
                    intermediate_size: int = 64, embed_dim: int = 32, vocab_size: int = 300, max_length: int = 48,
                    mlm_steps: int = 0, mlm_options: Mapping[str, float] | None = None,
                    show_progress: bool | None = None) -> Path:
    """Build (or reuse) a tiny ALBEF folder in ``out_dir``; returns it.

    Image encoder: ViT on ``image_res``-pixel images in ``patch_size`` patches, ``vision_depth``
    blocks of width ``vision_width``. Text: ``text_layers`` BERT layers then ``fusion_layers``
    fusion layers of width ``hidden_size``; captions up to ``max_length`` tokens. Features:
    ``embed_dim``. Seeded by ``seed``; a folder built from the same request is reused as is."""
    sizes = dict(image_res=image_res, patch_size=patch_size, vision_width=vision_width, vision_depth=vision_depth,
                 vision_heads=vision_heads, hidden_size=hidden_size, text_layers=text_layers,
                 fusion_layers=fusion_layers, num_heads=num_heads, intermediate_size=intermediate_size,
                 embed_dim=embed_dim, vocab_size=vocab_size, max_length=max_length)
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}.")
    texts = list(texts)
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise DataError("make_tiny_albef needs a non-empty list of non-empty captions to train its tokenizer.")
    cleaned = [c for c in (clean_caption(t, 10**6) for t in texts) if c]
    import hashlib

    digest = hashlib.sha256("\0".join(cleaned).encode("utf-8")).hexdigest()
    request = {"format": TINY_ALBEF_FORMAT, "seed": seed, **sizes, "mlm_steps": mlm_steps,
               "mlm_options": dict(mlm_options or {}), "n_texts": len(cleaned), "texts_sha256": digest}
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists():
        if _complete(out_dir, request):
            return out_dir
        if any(out_dir.iterdir()) and not (out_dir / MODEL_FILE).exists():
            raise ConfigError(f"{out_dir} exists and is not an hbkit ALBEF folder; refusing to overwrite it. "
                              "Choose an empty or new folder, or delete it.")
    from hbkit.models.tiny import make_tiny_model

    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory() as scratch:
        text_dir = Path(scratch) / "text"
        make_tiny_model("bert", text_dir, cleaned, vocab_size=vocab_size, seed=seed, mlm_steps=mlm_steps,
                        mlm_options=mlm_options, show_progress=show_progress, hidden_size=hidden_size,
                        num_layers=text_layers, num_heads=num_heads, intermediate_size=intermediate_size,
                        max_position=max_length)
        net = dict(image_res=image_res, patch_size=patch_size, vision_width=vision_width, vision_depth=vision_depth,
                   vision_heads=vision_heads, hidden_size=hidden_size, num_hidden_layers=text_layers + fusion_layers,
                   fusion_layer=text_layers, num_attention_heads=num_heads, intermediate_size=intermediate_size,
                   embed_dim=embed_dim)
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            model = ALBEFModel(ALBEFConfig(variant="multilingual", text_init=str(text_dir), net=net,
                                           max_length=max_length, max_words=max_length))
        finally:
            torch.random.set_rng_state(state)
        model.origin = {"checkpoint": "tiny-albef", "recipe": request}
        model.save(tmp)
    return out_dir
