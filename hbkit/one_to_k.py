"""1-to-K batches for image–text training (PROTOCOL §2.1; after Nie et al., KDD 2024).

Each image of a 1-to-K batch comes with its captions in ``K`` languages, so a batch of
``B`` pairs (captions) holds ``B / K`` images. ``K`` defaults to the number of training
languages. The loss then has several positives per image (see the CLIP model's
multi-positive InfoNCE). It is a third regime beside X-X and X-Y.

Rules **(ours)**, on top of :class:`~hbkit.samplers.HybridBatchSampler`'s (dataset per
batch, seeded per-epoch group permutations, exact resume, distributed slices):

* only image–caption datasets (a text pair has its own passage per language);
* eligible images have captions in at least ``K`` training languages; an image with more
  gets ``K`` of them drawn uniformly per batch, listed in sorted language order;
* the ``K`` pairs of one image are adjacent, and with several processes each process's
  slice holds whole images (``batch_size / world_size`` must be a multiple of ``K``);
* an epoch has ``size // (B / K)`` batches, so each image appears about once per epoch.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hbkit.errors import ConfigError
from hbkit.parallel import PairRef, ParallelDataset
from hbkit.samplers import ONE_TO_K, HybridBatchSampler, SamplingSource


class OneToKBatchSampler(HybridBatchSampler):
    """Every batch is 1-to-K: ``batch_size / k`` images, each with captions in ``k`` languages.

    Args:
        datasets, batch_size, languages, seed, rank, world_size, drop_last: as
            :class:`~hbkit.samplers.HybridBatchSampler`.
        k: languages per image (default: the number of training languages of each dataset,
            which must then be equal).
    """

    def __init__(self, datasets: Sequence[ParallelDataset] | ParallelDataset, batch_size: int, *,
                 k: int | None = None, **kw: Any) -> None:
        self._k_requested = k
        super().__init__(datasets, batch_size, 0.0, **kw)

    def _setup(self) -> None:
        for s in self._sources:
            if not s.image:
                raise ConfigError(f"1-to-K batches are for image–caption data, but dataset {s.name!r} holds text "
                                  "pairs. Use X-X, X-Y or hybrid for text, or train on image–caption data.")
        ks = {len(s.langs) for s in self._sources}
        if self._k_requested is None:
            if len(ks) > 1:
                raise ConfigError(f"The datasets have different numbers of training languages {sorted(ks)}: pass "
                                  "k= explicitly for 1-to-K batches.")
            k = ks.pop()
        else:
            k = int(self._k_requested)
        if k < 2:
            raise ConfigError(f"1-to-K needs k >= 2 caption languages per image, got k={k}; with one language "
                              "use X-X batches.")
        for s in self._sources:
            if k > len(s.langs):
                raise ConfigError(f"k={k} is more than the {len(s.langs)} training languages of dataset {s.name!r}.")
        per = self.batch_size // self.world_size
        if self.batch_size % k or per % k:
            raise ConfigError(f"batch_size {self.batch_size} (per process {per}) must be a multiple of k={k}: "
                              f"each image brings its k captions. Use e.g. batch_size={k * max(1, per // k) * self.world_size}.")
        self.k = k
        for s in self._sources:  # one more eligibility class: images with >= k training languages
            s.eligible = np.vstack([s.eligible, s.counts >= k])
            s._pools.clear()

    @property
    def groups_per_batch(self) -> int:
        return self.batch_size // self.k

    def _batch_class(self, src: SamplingSource, is_xx: bool, xx_lang: int) -> int:
        return src.xy_class + 1

    def _pairs(self, src: SamplingSource, cls: int, groups: np.ndarray, rng: np.random.Generator):
        refs = []
        for g in groups:
            langs = src.group_langs[g]
            pick = sorted(rng.choice(len(langs), size=self.k, replace=False)) if len(langs) > self.k \
                else range(len(langs))
            refs += [PairRef(src.index, int(g), langs[j], None) for j in pick]
        return refs, ONE_TO_K, None

    def _validate_sizes(self) -> None:
        for s in self._sources:
            have = int(s.eligible[-1].sum())
            if have < self.groups_per_batch:
                raise ConfigError(
                    f"Dataset {s.name!r} has {have} images with captions in at least k={self.k} training languages, "
                    f"fewer than the {self.groups_per_batch} a batch of {self.batch_size} needs. Lower batch_size "
                    "or k, or add captions.")

    def _fingerprint(self) -> dict[str, Any]:
        return {**super()._fingerprint(), "k": self.k}
