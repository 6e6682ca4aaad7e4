"""The model protocol the trainer drives.

A retrieval model (text bi-encoder, CLIP, ALBEF, ...) implements :class:`RetrievalModel`:

- :meth:`~RetrievalModel.configure_training` receives the run's training settings once
  (the loss hyperparameters it needs);
- :meth:`~RetrievalModel.collator` returns a picklable callable that turns a list of
  resolved :class:`~hbkit.parallel.TrainingPair` into a collated batch (it may run in
  ``DataLoader`` workers, so it holds no parameters: tokenizer, image transform);
- ``forward(batch)`` returns the training losses as a dict of scalar tensors; ``"loss"``
  is the total the trainer back-propagates (under DDP the wrapper calls it);
- :meth:`~RetrievalModel.after_optimizer_step` runs after every optimiser step
  (momentum encoders);
- :meth:`~RetrievalModel.save` / :meth:`~RetrievalModel.load` write and read the
  exported model; non-parameter state (queues) lives in buffers, so ``state_dict``
  checkpoints carry it;
- for evaluation, ``encode(texts, kind=...)`` and, for models with an image tower,
  ``encode_images(images)`` embed queries and candidates by modality.

Gradient caching (``grad_cache_chunk``) needs the loss to be a function of per-item
embeddings; a model that supports it sets ``supports_grad_cache = True`` and
implements :meth:`embedding_inputs`, :meth:`embed_chunk` and
:meth:`loss_from_embeddings`. A model whose loss is not separable (ALBEF's matching
head looks at image and text together) leaves it ``False`` and the trainer refuses
``grad_cache_chunk`` with a clear message.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from hbkit.parallel import TrainingPair

Collated = Any
Collator = Callable[[Sequence[TrainingPair]], Collated]


class RetrievalModel(nn.Module):
    """Base class of every model the trainer can train (see the module docstring)."""

    #: Whether :meth:`embedding_inputs` / :meth:`embed_chunk` / :meth:`loss_from_embeddings` exist.
    supports_grad_cache: bool = False
    #: Modalities the model can embed for evaluation ("text", "image").
    modalities: tuple[str, ...] = ("text",)

    def configure_training(self, config: Any) -> None:
        """Read the training settings the model's losses need (temperature, ...)."""

    def collator(self) -> Collator:
        """A picklable ``pairs -> batch`` function."""
        raise NotImplementedError

    def forward(self, batch: Collated, gather: bool = True) -> dict[str, torch.Tensor]:
        """Training losses of one batch: ``{"loss": total, <part>: value, ...}``.

        ``gather=False`` keeps the loss local to this process (validation batches every
        process holds whole)."""
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        """Called after every optimiser step (e.g. a momentum-encoder update)."""

    def log_values(self) -> dict[str, float]:
        """Scalars to add to the training log (e.g. the temperature)."""
        return {}

    @contextlib.contextmanager
    def _eval(self) -> Iterator[None]:
        """Evaluation mode without gradients for the block, then the previous mode again."""
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was)

    # -- gradient caching ---------------------------------------------------------
    def embedding_inputs(self, batch: Collated) -> list[tuple[str, int] | None]:
        """The embedding groups of ``batch`` as ``(kind, n_items)`` (``None`` for an absent group)."""
        raise NotImplementedError

    def embed_chunk(self, batch: Collated, group: int, rows: slice) -> torch.Tensor:
        """Embeddings (n, d) of ``rows`` of embedding group ``group``, with gradients."""
        raise NotImplementedError

    def loss_from_embeddings(self, batch: Collated, embeddings: Sequence[torch.Tensor | None],
                             gather: bool = True) -> dict[str, torch.Tensor]:
        """The losses of ``forward`` computed from the embedding groups."""
        raise NotImplementedError

    # -- persistence ----------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Export the trained model to ``out_dir`` (reloadable with :meth:`load`)."""
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RetrievalModel":
        """Load a model exported by :meth:`save`."""
        raise NotImplementedError
