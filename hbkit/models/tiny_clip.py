"""A tiny CLIP for CPU runs and tests: a small ViT and the kit's tiny XLM-R-shaped text tower.

:func:`make_tiny_clip` builds an open_clip model folder offline: the text tower and its
tokenizer come from :func:`hbkit.models.tiny.make_tiny_model` (a Unigram tokenizer trained on
the given captions), the image tower is open_clip's own ``VisionTransformer`` at toy size, and
the model is created by open_clip's factory from the folder (``local-dir:``), exactly as a real
multilingual model is, so training, tokenisation and preprocessing take the same path. The
folder is the format :meth:`hbkit.models.clip.CLIPModel.save` writes and loads anywhere it moves::

    out_dir/open_clip_config.json        model_cfg (text tower: the relative folder "text") + preprocess_cfg
    out_dir/open_clip_model.safetensors  initial weights (seeded)
    out_dir/tokenizer.json, ...          the tokenizer open_clip reads for this folder
    out_dir/text/                        the text tower's HF config (and its tiny-model spec)
    out_dir/hbkit_model.json             {"family": "clip", "origin": {... build recipe ...}}

It is a TOY: it learns the colours and shapes of generated images, not vision or language.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Mapping, Sequence

from hbkit.engine.atomic import atomic_dir, write_json
from hbkit.errors import ConfigError, DataError
from hbkit.models.clip import CONFIG_FILE, MODEL_FILE, TEXT_DIR, WEIGHTS_FILE, CLIPConfig, CLIPModel

__all__ = ["make_tiny_clip", "TINY_CLIP_FORMAT"]

TINY_CLIP_FORMAT = 1
#: open_clip's default (OpenAI) normalisation; bicubic resize of the shortest side, centre crop.
_PREPROCESS = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
               "interpolation": "bicubic", "resize_mode": "shortest"}
_TEXT_FILES_DROPPED = ("model.safetensors", "hbkit_mlm_head.safetensors")  # the weights live in the full checkpoint


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    return value


def _digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _complete(folder: Path, request: dict) -> bool:
    marker = folder / MODEL_FILE
    if not all((folder / f).exists() for f in (CONFIG_FILE, WEIGHTS_FILE, MODEL_FILE, TEXT_DIR)):
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("origin", {}).get("recipe") == request
    except json.JSONDecodeError:
        return False


def make_tiny_clip(out_dir: str | os.PathLike, texts: Sequence[str], *, seed: int = 0, image_size: int = 32,
                   patch_size: int = 8, vision_width: int = 32, vision_layers: int = 2, vision_head_width: int = 16,
                   embed_dim: int = 32, context_length: int = 32, vocab_size: int = 300,
                   text_hidden_size: int = 32, text_layers: int = 1, text_heads: int = 2,
                   text_intermediate_size: int = 64, mlm_steps: int = 0,
                   mlm_options: Mapping[str, float] | None = None, show_progress: bool | None = None) -> Path:
    """Build (or reuse) a tiny open_clip model folder in ``out_dir``; returns it.

    ``texts``: captions the tokenizer is trained on (and, with ``mlm_steps``, the text tower
    masked-LM warmed up on). Image tower: ViT with ``image_size``-pixel inputs cut into
    ``patch_size`` patches, ``vision_layers`` blocks of width ``vision_width`` (heads of
    ``vision_head_width``). Text tower: XLM-R-shaped, mean-pooled, MLP-projected as open_clip's
    xlm-roberta models; captions are padded/truncated to ``context_length`` tokens. Both project
    to ``embed_dim``. Weights are seeded by ``seed``. A folder built with the same request is
    reused as is; the folder is replaced atomically.
    """
    from hbkit.models.tiny import make_tiny_model

    sizes = {name: _positive(name, value) for name, value in dict(
        image_size=image_size, patch_size=patch_size, vision_width=vision_width, vision_layers=vision_layers,
        vision_head_width=vision_head_width, embed_dim=embed_dim, context_length=context_length,
        vocab_size=vocab_size, text_hidden_size=text_hidden_size, text_layers=text_layers, text_heads=text_heads,
        text_intermediate_size=text_intermediate_size).items()}
    if image_size % patch_size:
        raise ConfigError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size}).")
    if vision_width % vision_head_width:
        raise ConfigError(f"vision_width ({vision_width}) must be a multiple of vision_head_width "
                          f"({vision_head_width}).")
    if context_length < 4:
        raise ConfigError(f"context_length must be >= 4 tokens, got {context_length}.")
    texts = [t for t in texts]
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise DataError("make_tiny_clip needs a non-empty list of non-empty caption texts to train its tokenizer.")
    request = {"format": TINY_CLIP_FORMAT, "seed": seed, **sizes, "mlm_steps": mlm_steps,
               "mlm_options": dict(mlm_options or {}), "n_texts": len(texts), "texts_sha256": _digest(texts)}
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists():
        if _complete(out_dir, request):
            return out_dir
        if any(out_dir.iterdir()) and not (out_dir / MODEL_FILE).exists():
            raise ConfigError(f"{out_dir} exists and is not an hbkit CLIP folder; refusing to overwrite it. "
                              "Choose an empty or new folder, or delete it.")
    with atomic_dir(out_dir) as tmp:
        text_dir = tmp / TEXT_DIR
        make_tiny_model("xlmr", text_dir, texts, vocab_size=vocab_size, seed=seed, mlm_steps=mlm_steps,
                        mlm_options=mlm_options, show_progress=show_progress, hidden_size=text_hidden_size,
                        num_layers=text_layers, num_heads=text_heads, intermediate_size=text_intermediate_size,
                        max_position=context_length)
        for f in text_dir.iterdir():  # open_clip reads a local-dir model's tokenizer from the folder itself
            if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
                shutil.copy2(f, tmp / f.name)
        model_cfg = {
            "embed_dim": embed_dim,
            "vision_cfg": {"image_size": image_size, "patch_size": patch_size, "width": vision_width,
                           "layers": vision_layers, "head_width": vision_head_width},
            "text_cfg": {"hf_model_name": TEXT_DIR, "hf_tokenizer_name": TEXT_DIR, "hf_pooler_type": "mean_pooler",
                         "hf_proj_type": "mlp", "context_length": context_length},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": _PREPROCESS}, indent=2))
        write_json(tmp / MODEL_FILE, {"family": "clip", "settings": {},
                                      "origin": {"model": "tiny-clip", "pretrained": None, "recipe": request}})
        # first creation: no checkpoint yet, so open_clip loads the tiny text weights and seeds the ViT
        model = CLIPModel(CLIPConfig(model=str(tmp), pretrained=None), _seed=seed)
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().clone().contiguous() for k, v in model.clip.state_dict().items()},
                  str(tmp / WEIGHTS_FILE))
        for name in _TEXT_FILES_DROPPED:
            (text_dir / name).unlink(missing_ok=True)
    return out_dir
