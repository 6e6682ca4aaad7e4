"""ALBEF's caption handling and image transforms, as its checkpoints were trained.

- :func:`clean_caption`: ALBEF's ``pre_caption``: lowercase; remove ``, . ' ! ? " ( ) * # : ; ~``;
  ``-`` and ``/`` become spaces, ``<person>`` becomes ``person``; runs of whitespace collapse;
  at most ``max_words`` words.
- :class:`ALBEFTokenizer`: ``[CLS] caption`` with no trailing ``[SEP]`` (the original
  checkpoints' tokenizer) or with it (``add_sep=True``, LAVIS), at most ``max_length`` tokens,
  padded to the longest caption of the batch. Captions cut by the length limit are counted and
  logged.
- :class:`ALBEFImageTransform`: RGB, bicubic resize to ``image_res`` x ``image_res``, CLIP's
  normalisation (ALBEF's test transform); ``augment=True`` adds a random resized crop (scale
  0.5-1) and a horizontal flip (ALBEF's training transform without its RandAugment).
"""
from __future__ import annotations

import logging
import re
from typing import Any, Sequence

import torch

from hbkit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["clean_caption", "ALBEFTokenizer", "ALBEFImageTransform", "MEAN", "STD"]

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
_PUNCT = re.compile(r"([,.'!?\"()*#:;~])")
_SPACES = re.compile(r"\s{2,}")


def clean_caption(caption: str, max_words: int = 30) -> str:
    """ALBEF's caption cleaning (module docstring)."""
    text = _PUNCT.sub("", caption.lower()).replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = _SPACES.sub(" ", text).rstrip("\n").strip(" ")
    words = text.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else text


class ALBEFTokenizer:
    """Captions -> ``{"input_ids", "attention_mask"}`` (B, L) long tensors, L <= ``max_length``.

    ``tokenizer``: a Hugging Face tokenizer (its ``cls_token_id``, ``sep_token_id``,
    ``pad_token_id``). ``clean``: apply :func:`clean_caption` first. Picklable."""

    def __init__(self, tokenizer: Any, *, add_sep: bool = False, max_length: int = 30, max_words: int = 30,
                 clean: bool = True) -> None:
        if max_length < 2 + int(add_sep):
            raise ConfigError(f"max_length must leave room for [CLS]{' and [SEP]' if add_sep else ''} and one token, "
                              f"got {max_length}.")
        for name in ("cls_token_id", "pad_token_id") + (("sep_token_id",) if add_sep else ()):
            if getattr(tokenizer, name, None) is None:
                raise ConfigError(f"The tokenizer {type(tokenizer).__name__} has no {name}: ALBEF needs a BERT-style "
                                  "tokenizer ([CLS], [SEP], [PAD]).")
        self.tokenizer = tokenizer
        self.add_sep = add_sep
        self.max_length = int(max_length)
        self.max_words = int(max_words)
        self.clean = clean
        self.n_truncated = 0
        self.n_captions = 0

    def __call__(self, captions: Sequence[str]) -> dict[str, torch.Tensor]:
        if isinstance(captions, str):
            captions = [captions]
        texts = [clean_caption(c, self.max_words) if self.clean else c for c in captions]
        for i, t in enumerate(texts):
            if not t.strip():
                raise DataError(f"Caption {i} ({captions[i][:40]!r}) is empty after ALBEF's cleaning (it holds only "
                                "punctuation): drop it from the data.")
        tok = self.tokenizer
        pieces = tok(texts, add_special_tokens=False)["input_ids"]
        room = self.max_length - 1 - int(self.add_sep)
        cut = sum(len(p) > room for p in pieces)
        if cut:
            self.n_truncated += cut
            log.info("ALBEF tokenizer: %d of %d captions longer than %d tokens were truncated (%d so far).",
                     cut, len(texts), self.max_length, self.n_truncated)
        self.n_captions += len(texts)
        rows = [[tok.cls_token_id] + p[:room] + ([tok.sep_token_id] if self.add_sep else []) for p in pieces]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), int(tok.pad_token_id), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


class ALBEFImageTransform:
    """PIL image -> float tensor (3, image_res, image_res) (module docstring). Picklable."""

    def __init__(self, image_res: int, augment: bool = False) -> None:
        from torchvision import transforms as T

        bicubic = T.InterpolationMode.BICUBIC
        first = [T.RandomResizedCrop(image_res, scale=(0.5, 1.0), interpolation=bicubic), T.RandomHorizontalFlip()] \
            if augment else [T.Resize((image_res, image_res), interpolation=bicubic)]
        self.image_res = image_res
        self.augment = augment
        self.transform = T.Compose(first + [T.ToTensor(), T.Normalize(MEAN, STD)])

    def __call__(self, image: Any) -> torch.Tensor:
        return self.transform(image.convert("RGB"))
