"""Official ALBEF checkpoints onto :class:`~hbkit.models.albef_net.ALBEFNet`, by an explicit key map.

Known layouts (:data:`LAYOUTS`), recognised from their keys:

- ``albef-retrieval``: salesforce/ALBEF's fine-tuned retrieval checkpoints (COCO, Flickr30K) and
  what :func:`save_state` writes: ``text_encoder.embeddings.*``, ``text_encoder.encoder.layer.i.*``,
  momentum copies, ``image_queue`` / ``text_queue`` / ``idx_queue`` / ``queue_ptr``.
- ``albef-pretrain``: the 4M / 14M pre-trained checkpoints. The text encoder is a masked-LM BERT
  (``text_encoder.bert.*`` and an unused ``text_encoder.cls.*`` head), there is no ``idx_queue``,
  and the position embedding is 16x16 patches (256 px); as ALBEF's ``Retrieval.py`` does, ``bert.``
  is removed from the names, the head is dropped and the position embedding is interpolated.
- ``lavis-retrieval``: LAVIS's ALBEF retrieval checkpoints: the retrieval layout without
  ``token_type_embeddings`` (LAVIS adds none; a zero table is equivalent).

A file may hold the state dict itself or wrap it under ``"model"`` (or ``"state_dict"``). Files
are read with ``torch.load(weights_only=True)`` (or safetensors). The map (:func:`to_hbkit`) sends

``text_encoder[_m].embeddings.X`` -> ``text_encoder[_m].bert.embeddings.X``;
``text_encoder[_m].encoder.layer.i.X`` -> ``...bert.encoder.layer.i.X`` for i < fusion_layer,
else ``...fusion.{i - fusion_layer}.X``; everything else unchanged; ``position_ids`` dropped.

Momentum copies are kept (``keep_momentum=True``) or re-copied from the online weights, and the
queues are kept only when asked and when the model has a queue of the same size; re-copied
momentum weights are also used when a checkpoint has none.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from hbkit.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["LAYOUTS", "LoadReport", "detect_layout", "to_hbkit", "to_original", "read_state", "load_into"]

LAYOUTS = {
    "albef-retrieval": "salesforce/ALBEF retrieval checkpoints (COCO / Flickr30K fine-tuned), hbkit's saved ALBEF",
    "albef-pretrain": "salesforce/ALBEF pre-trained checkpoints (4M, 14M): text_encoder.bert.*, masked-LM head",
    "lavis-retrieval": "LAVIS ALBEF retrieval checkpoints: no token_type_embeddings",
}
QUEUE_KEYS = ("image_queue", "text_queue", "idx_queue", "queue_ptr")
_TEXT = ("text_encoder.", "text_encoder_m.")
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.*)$")


@dataclass
class LoadReport:
    """What loading did: the layout, interpolations, and what was dropped or re-created."""

    layout: str
    interpolated: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    recopied_momentum: bool = False
    zero_token_types: bool = False
    queue_kept: bool = False


def read_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors``), unwrapped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"ALBEF checkpoint {path} not found. Download ALBEF_4M.pth, ALBEF.pth (14M) or a fine-tuned "
                        "retrieval checkpoint from salesforce/ALBEF, or pass a LAVIS checkpoint file.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one clear message
        raise DataError(f"ALBEF checkpoint {path} could not be read ({exc.__class__.__name__}: {str(exc)[:200]}). "
                        "It must be a torch state dict (optionally under 'model') or a safetensors file; files that "
                        "need arbitrary unpickling are refused (weights_only=True).") from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"ALBEF checkpoint {path} holds no state dict of tensors (found {type(obj).__name__}).")
    return dict(obj)


def detect_layout(state: Mapping[str, torch.Tensor]) -> str:
    """The :data:`LAYOUTS` name of an original-layout state dict; DataError listing the layouts otherwise."""
    keys = set(state)
    if "text_encoder.bert.embeddings.word_embeddings.weight" in keys:
        return "albef-pretrain"
    if "text_encoder.embeddings.word_embeddings.weight" in keys and "visual_encoder.pos_embed" in keys:
        if "text_encoder.embeddings.token_type_embeddings.weight" in keys:
            return "albef-retrieval"
        return "lavis-retrieval"
    sample = ", ".join(sorted(keys)[:8])
    raise DataError(f"Unknown ALBEF checkpoint layout ({len(keys)} keys, e.g. {sample}). Known layouts: "
                    + "; ".join(f"{k} ({v})" for k, v in LAYOUTS.items())
                    + ". Pass one of those checkpoints, or a folder written by hbkit's ALBEF save.")


def _text_key(rest: str, fusion_layer: int) -> str | None:
    if rest.startswith("embeddings."):
        return None if rest.endswith("position_ids") else "bert." + rest
    m = _LAYER.match(rest)
    if m is None:
        return rest
    i, tail = int(m.group(1)), m.group(2)
    return f"bert.encoder.layer.{i}.{tail}" if i < fusion_layer else f"fusion.{i - fusion_layer}.{tail}"


def to_hbkit(state: Mapping[str, torch.Tensor], fusion_layer: int) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """Map an original-layout state dict to hbkit's names: ``(state, layout, dropped keys)``."""
    layout = detect_layout(state)
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        name = key
        if layout == "albef-pretrain":
            if ".cls." in name and name.startswith(_TEXT):
                dropped.append(key)
                continue
            name = name.replace("text_encoder.bert.", "text_encoder.").replace("text_encoder_m.bert.",
                                                                                "text_encoder_m.")
        prefix = next((p for p in _TEXT if name.startswith(p)), None)
        if prefix is not None:
            mapped = _text_key(name[len(prefix):], fusion_layer)
            if mapped is None:
                dropped.append(key)
                continue
            name = prefix + mapped
        out[name] = value
    return out, layout, dropped


def to_original(state: Mapping[str, torch.Tensor], fusion_layer: int) -> dict[str, torch.Tensor]:
    """hbkit's names back to the ``albef-retrieval`` layout (the inverse of :func:`to_hbkit` on it)."""
    out = {}
    for key, value in state.items():
        name = key
        for prefix in _TEXT:
            if key.startswith(prefix):
                rest = key[len(prefix):]
                if rest.startswith("bert."):
                    rest = rest[len("bert."):]
                elif rest.startswith("fusion."):
                    j, tail = rest[len("fusion."):].split(".", 1)
                    rest = f"encoder.layer.{int(j) + fusion_layer}.{tail}"
                name = prefix + rest
        out[name] = value
    return out


def interpolate_pos_embed(pos_embed: torch.Tensor, n_patches: int) -> torch.Tensor:
    """Resize a ViT position embedding (1, 1 + g*g, w) to ``n_patches`` (a square) patch positions,
    bicubic over the grid (as ALBEF's ``interpolate_pos_embed``, via timm's resampler)."""
    from timm.layers import resample_abs_pos_embed

    old = int(round((pos_embed.shape[1] - 1) ** 0.5))
    new = int(round(n_patches ** 0.5))
    if old * old + 1 != pos_embed.shape[1] or new * new != n_patches:
        raise DataError(f"Cannot interpolate a position embedding of {pos_embed.shape[1]} tokens to {n_patches} "
                        "patches: both grids must be square with one class token.")
    return resample_abs_pos_embed(pos_embed.float(), (new, new), (old, old), num_prefix_tokens=1,
                                  interpolation="bicubic", antialias=False).to(pos_embed.dtype)


def load_into(net: torch.nn.Module, state: Mapping[str, torch.Tensor], *, keep_momentum: bool = False,
              keep_queue: bool = False, text_partial: bool = False) -> LoadReport:
    """Load an original-layout state dict into ``net`` (an ALBEFNet) strictly, by the key map.

    Position embeddings of another resolution are interpolated (and logged); missing
    ``token_type_embeddings`` (LAVIS) become zeros; momentum weights are kept or re-copied.
    ``text_partial``: the text embeddings (and momentum weights) are not taken from the checkpoint
    (another text encoder replaces them: the multilingual variant).
    Raises DataError listing missing and unexpected keys and the known layouts."""
    c = net.config
    mapped, layout, dropped = to_hbkit(state, c.fusion_layer)
    if text_partial:
        keep_momentum = False
        for k in [k for k in mapped if k.startswith("text_encoder.bert.embeddings.")]:
            dropped.append(k)
            del mapped[k]
    report = LoadReport(layout=layout, dropped=dropped)
    expected = net.state_dict()
    n_patches = (c.image_res // c.patch_size) ** 2
    for key in ("visual_encoder.pos_embed", "visual_encoder_m.pos_embed"):
        pe = mapped.get(key)
        if pe is not None and pe.shape[1] != n_patches + 1:
            mapped[key] = interpolate_pos_embed(pe, n_patches)
            report.interpolated.append(f"{key}: {pe.shape[1] - 1} -> {n_patches} patches")
    if report.interpolated:
        log.warning("ALBEF checkpoint at another resolution: position embeddings interpolated (%s) for image_res %d.",
                    "; ".join(report.interpolated), c.image_res)
    for prefix in ("text_encoder.", "text_encoder_m."):
        key = prefix + "bert.embeddings.token_type_embeddings.weight"
        if not text_partial and key not in mapped and any(k.startswith(prefix) for k in mapped) and key in expected:
            mapped[key] = torch.zeros_like(expected[key])
            report.zero_token_types = True
    has_momentum = any(k.endswith("_m") or "_m." in k for k in mapped)
    if not keep_momentum or not has_momentum:
        for k in [k for k in mapped if k.split(".")[0].endswith("_m")]:
            report.dropped.append(k)
            del mapped[k]
    queue_ok = keep_queue and getattr(net, "has_queue", False) and all(k in mapped for k in QUEUE_KEYS) \
        and mapped["image_queue"].shape == expected["image_queue"].shape
    for k in QUEUE_KEYS:
        if k in mapped and not queue_ok:
            report.dropped.append(k)
            del mapped[k]
    report.queue_kept = bool(queue_ok)
    momentum_keys = {k for k in expected if k.split(".")[0].endswith("_m")}
    momentum_loaded = any(k in momentum_keys for k in mapped)
    optional = set(QUEUE_KEYS) | (set() if momentum_loaded else momentum_keys)
    if text_partial:
        optional |= {k for k in expected if k.startswith("text_encoder.bert.embeddings.")}
    missing = sorted(set(expected) - set(mapped) - optional)
    unexpected = sorted(set(mapped) - set(expected))
    wrong = sorted(k for k in set(mapped) & set(expected) if mapped[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        def few(ks):
            return ", ".join(ks[:12]) + (f" (+{len(ks) - 12} more)" if len(ks) > 12 else "")
        raise DataError(
            f"The ALBEF checkpoint ({layout} layout) does not fit this model: missing keys [{few(missing)}]; "
            f"unexpected keys [{few(unexpected)}]; shape mismatches [{few(wrong)}]. Build the model with the "
            "checkpoint's architecture (ALBEFNetConfig: sizes, fusion_layer, embed_dim), or pass a checkpoint of a "
            "known layout: " + "; ".join(f"{k} ({v})" for k, v in LAYOUTS.items()) + ".")
    result = net.load_state_dict(mapped, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    if not momentum_loaded:
        net.copy_params()
        report.recopied_momentum = True
    return report
