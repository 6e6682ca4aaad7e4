"""ALBEF's evaluation side (a mixin of :class:`~hbkit.models.albef.ALBEFModel`): ITC features of
captions and images, cached text-layer states and image tokens, and ITM re-scoring for the
engine's hook (:meth:`ALBEFRetrieval.rescore`).

Re-scoring runs only the fusion layers, on text-layer states computed once per caption and image
tokens computed once per image (kept on CPU in float32: at full size about 1.8 MB per image and
up to 92 KB per caption), in chunks of ``rescore_batch`` pairs.
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import torch

from hbkit.engine.progress import progress
from hbkit.errors import ConfigError, DataError
from hbkit.models.albef_text import ALBEFImageTransform
from hbkit.models.images import ImageLike, image_batches

__all__ = ["ALBEFRetrieval"]


class ALBEFRetrieval:
    """Evaluation methods of ALBEF; needs ``net``, ``tokenizer``, ``settings``, ``image_root``, ``dim``, ``device``."""

    # -- evaluation --------------------------------------------------------------------------------
    def _texts(self, texts: Sequence[str]) -> None:
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise DataError(f"Empty caption at position {i}: every text must contain characters.")

    def text_states(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool | None = None
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Text-layer states of captions, unpadded per caption: (states [(L_i, d)], masks [(L_i,)],
        normalised features (n, e)), all on CPU."""
        self._texts(texts)
        states, masks, feats = [], [], torch.empty(len(texts), self.dim)
        with self._eval():
            for start in progress(range(0, len(texts), batch_size), show=show_progress, desc="encode captions",
                                  leave=False):
                tok = self.tokenizer(list(texts[start:start + batch_size]))
                h = self.net.text_embeds(tok["input_ids"], tok["attention_mask"])
                feats[start:start + len(h)] = self.net.text_feat(h).float().cpu()
                lengths = tok["attention_mask"].sum(1).tolist()
                for row, n in zip(h.cpu(), lengths):
                    states.append(row[:n].clone())
                    masks.append(torch.ones(n, dtype=torch.long))
        return states, masks, feats

    def encode(self, texts: Sequence[str], kind: str = "passage", batch_size: int = 64,
               show_progress: bool | None = None, contexts: Sequence[str] | None = None) -> torch.Tensor:
        """ITC features of captions: float32 CPU (n, embed_dim), L2-normalised (``kind`` has no effect)."""
        if kind not in ("query", "passage"):
            raise ConfigError(f"kind must be 'query' or 'passage', got {kind!r}.")
        if contexts is not None:
            raise ConfigError("ALBEF embeds a caption alone; it takes no contexts. Evaluate with use_context=False.")
        return self.text_states(texts, batch_size, show_progress)[2]

    def image_tokens(self, images: Sequence[ImageLike], batch_size: int = 64, show_progress: bool | None = None,
                     image_root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tokens (n, T, vw) and normalised ITC features (n, e) of images, on CPU."""
        root = image_root if image_root is not None else self.image_root
        transform = ALBEFImageTransform(self.net.config.image_res)
        c = self.net.config
        tokens = torch.empty(len(images), (c.image_res // c.patch_size) ** 2 + 1, c.vision_width)
        feats = torch.empty(len(images), self.dim)
        start = 0
        with self._eval():
            for pixels in progress(image_batches(list(images), transform, root, batch_size), show=show_progress,
                                   desc="encode images", leave=False, total=math.ceil(len(images) / batch_size)):
                e = self.net.image_embeds(pixels)
                tokens[start:start + len(e)] = e.float().cpu()
                feats[start:start + len(e)] = self.net.image_feat(e).float().cpu()
                start += len(e)
        return tokens, feats

    def encode_images(self, images: Sequence[ImageLike], batch_size: int = 64, show_progress: bool | None = None,
                      image_root: str | os.PathLike | None = None) -> torch.Tensor:
        """ITC features of images: float32 CPU (n, embed_dim), L2-normalised."""
        return self.image_tokens(images, batch_size, show_progress, image_root)[1]

    @torch.no_grad()
    def itm_scores(self, states: Sequence[torch.Tensor], image_tokens: torch.Tensor,
                   itc: torch.Tensor | None = None, image_index: torch.Tensor | None = None) -> torch.Tensor:
        """Match scores of pairs (caption states[i], image i): float32 (n,), the ITM match logit, plus
        ``itc`` (n,) under ``itm_score='itm+itc'``. Image i is ``image_tokens[i]``, or
        ``image_tokens[image_index[i]]`` when ``image_index`` (n,) is given (a bank of each image's
        tokens once, gathered per chunk: the pairs' tokens are never stacked at once). Fusion runs in
        ``rescore_batch`` chunks."""
        if image_index is not None:
            if len(image_index) != len(states):
                raise ConfigError(f"image_index has {len(image_index)} entries for {len(states)} captions: one per "
                                  "pair.")
            image_index = image_index.to(image_tokens.device)  # a bank on the GPU is indexed there
        out = torch.empty(len(states))
        dev, step = self.device, self.settings.rescore_batch
        with self._eval():
            for a in range(0, len(states), step):
                chunk = states[a:a + step]
                width = max(s.shape[0] for s in chunk)
                h = torch.zeros(len(chunk), width, chunk[0].shape[1])
                m = torch.zeros(len(chunk), width, dtype=torch.long)
                for i, s in enumerate(chunk):
                    h[i, :len(s)] = s
                    m[i, :len(s)] = 1
                img = image_tokens[a:a + step] if image_index is None else image_tokens[image_index[a:a + step]]
                fused = self.net.fuse(h.to(dev), m.to(dev), img.to(dev))
                out[a:a + len(chunk)] = self.net.itm_logits(fused)[:, 1].float().cpu()
        if self.settings.itm_score == "itm+itc":
            if itc is None:
                raise ConfigError("itm_score='itm+itc' needs the pairs' ITC similarities.")
            out = out + itc.float()
        return out

    def _token_bank(self, tokens: torch.Tensor) -> torch.Tensor:
        """The image-token bank where the fusion runs: on the GPU when it takes under half its free
        memory (no copy per chunk), else on the CPU (each chunk's rows gathered and copied)."""
        dev = self.device
        if dev.type == "cuda":
            free, _ = torch.cuda.mem_get_info(dev)
            if tokens.numel() * tokens.element_size() < free // 2:
                return tokens.to(dev)
        return tokens

    def rescore(self, bench) -> Any:
        """The engine's re-scoring hook: ``fn(query indices (b,), candidate indices (b, k)) -> ITM
        scores (b, k)`` for image–caption pairs of ``bench``; None when ``rescore_k`` is 0.

        Text states and image tokens are computed once per item, on first use, and kept: image tokens
        in one bank (ViT-B/16 at 384 px: about 1.8 MB per image, 9 GB for COCO 5K) on the GPU when it
        fits, else on the CPU; each fusion chunk gathers its pairs' rows from it."""
        if not self.rescore_k:
            return None
        items = {"q": bench.queries, "c": bench.candidates}
        text_keys = sorted({(s, i) for s, xs in items.items() for i, x in enumerate(xs) if x.modality == "text"})
        image_keys: dict = {}
        for s, xs in items.items():
            for i, x in enumerate(xs):
                if x.modality == "image":
                    image_keys.setdefault(x.image, []).append((s, i))
        cache: dict = {}

        def build() -> None:
            texts = [items[s][i].text for s, i in text_keys]
            states, _, tfeat = self.text_states(texts, show_progress=False)
            cache["text"] = {key: (st, f) for key, st, f in zip(text_keys, states, tfeat)}
            refs = list(image_keys)
            tokens, ifeat = self.image_tokens(refs, show_progress=False)
            cache["tokens"] = self._token_bank(tokens)  # (n_images, T, vw): each image's tokens once
            cache["image"] = {key: (r, ifeat[r]) for r, ref in enumerate(refs) for key in image_keys[ref]}

        def fn(query_ids: torch.Tensor, cand_ids: torch.Tensor) -> torch.Tensor:
            if not cache:
                build()
            b, k = cand_ids.shape
            states, rows, itc = [], [], []
            plus_itc = self.settings.itm_score == "itm+itc"
            for qi, cands in zip(query_ids.tolist(), cand_ids.tolist()):
                for cj in cands:
                    q, c = ("q", qi), ("c", cj)
                    if q in cache["text"] and c in cache["image"]:
                        (st, tf), (row, imf) = cache["text"][q], cache["image"][c]
                    elif q in cache["image"] and c in cache["text"]:
                        (st, tf), (row, imf) = cache["text"][c], cache["image"][q]
                    else:
                        raise DataError("ITM re-scores image–caption pairs only; a caption→caption or "
                                        "image→image pair was given. Re-score the image–text settings.")
                    states.append(st)
                    rows.append(row)
                    if plus_itc:
                        itc.append(float(tf @ imf))
            return self.itm_scores(states, cache["tokens"], torch.tensor(itc) if plus_itc else None,
                                   image_index=torch.tensor(rows, dtype=torch.long)).view(b, k)

        return fn

