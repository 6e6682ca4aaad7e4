"""Batch samplers for X-X, X-Y and hybrid batch training (PROTOCOL §1.2, §2.1).

A sampler yields :class:`Batch` objects holding :class:`~hbkit.parallel.PairRef`
triples ``(group, query language, passage language)``; the dataset turns them
into texts. Rules, with the choices marked **(ours)** in the protocol:

* **Dataset per batch.** Each batch comes from one dataset; per epoch dataset
  ``d`` contributes ``size_d // batch_size`` batches (``ceil`` when
  ``drop_last=False``) in a seeded shuffled order, so dataset frequencies are
  proportional to size exactly per epoch. ``size_d`` counts the groups that
  hold at least one training language.
* **Mode per batch.** X-X with probability ``alpha``, else X-Y.
* **X-X.** One language, drawn uniformly over the dataset's training languages,
  for the whole batch: ``query_lang == passage_lang == L`` (``passage_lang`` is
  ``None`` for image–text data, whose passage is an image).
* **X-Y, text.** Per pair, ``(query_lang, passage_lang)`` uniform over the
  ordered pairs of distinct training languages the group has (the hard negative
  follows the passage language).
* **X-Y, image–text.** Per pair, the caption language is uniform over the
  group's training languages; if all pairs got the same language the whole
  batch's languages are redrawn (rejection sampling) until it holds at least two.
* **No group twice in a batch.** Groups come from a seeded per-epoch permutation
  of each dataset. A batch takes the next unused groups *eligible* for it (X-X in
  ``L``: groups having ``L``; X-Y: groups with at least two training languages);
  skipped ineligible groups stay available for later batches. When the rest of
  the permutation cannot fill the batch, the remainder is drawn at random from
  eligible groups not already in the batch (they may have been used earlier in
  the epoch). Groups with a single training language therefore only appear in
  X-X batches.
* **Seeds.** Everything in epoch ``e`` derives from ``(seed, e)`` alone: the
  epoch plan (dataset order, modes, X-X languages, group permutations) from
  ``SeedSequence([seed, e])`` and batch ``i``'s draws (pair languages, top-up
  groups) from its child ``spawn_key=(i,)``. Same seed, same batches; each
  epoch reshuffles.
* **Distributed.** Every rank computes the same global batch and keeps its
  contiguous slice ``refs[rank*B/N:(rank+1)*B/N]``; the global sequence does not
  depend on ``world_size``, so a run may resume on a different number of processes.
* **Iteration and resume.** ``for batch in sampler`` yields the rest of the
  current epoch, then the sampler moves on to the next epoch by itself;
  :meth:`HybridBatchSampler.batches` runs forever across epochs. A batch counts
  as consumed once yielded; :meth:`~HybridBatchSampler.state_dict` /
  :meth:`~HybridBatchSampler.load_state_dict` resume exactly mid-epoch by
  replaying the epoch's group consumption up to that point. Only one iterator
  per sampler is live: starting a new one (or calling ``set_epoch`` /
  ``load_state_dict``) ends the previous one.
"""
from __future__ import annotations

import numbers
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from hbkit.errors import ConfigError, DataError, UnknownLanguageError
from hbkit.languages import check_languages
from hbkit.parallel import PairRef, ParallelDataset

XX = "X-X"
XY = "X-Y"
HYBRID = "hybrid"
ONE_TO_K = "1-to-K"
STRATEGIES = (XX, XY, HYBRID, ONE_TO_K)
_ALIASES = {"x-x": XX, "xx": XX, "x_x": XX, "x-y": XY, "xy": XY, "x_y": XY, "hybrid": HYBRID,
            "1-to-k": ONE_TO_K, "1tok": ONE_TO_K, "one-to-k": ONE_TO_K}
_STATE_VERSION = 1


@dataclass(frozen=True)
class Batch:
    """One batch as seen by this process.

    Attributes:
        refs: this process's slice of the global batch (all of it when ``world_size == 1``).
        mode: ``"X-X"`` or ``"X-Y"``.
        dataset: index of the dataset every pair comes from.
        step: global batch index since the start of training (``epoch * len(sampler) + index``).
        epoch: the epoch this batch belongs to.
        language: the batch's single language for X-X, ``None`` for X-Y.
    """

    refs: tuple[PairRef, ...]
    mode: str
    dataset: int
    step: int
    epoch: int
    language: str | None = None


class SamplingSource:
    """Per-dataset lookup tables for sampling (training languages, eligibility); samplers that subclass
    :class:`HybridBatchSampler` receive it in their hooks."""

    def __init__(self, index: int, dataset: ParallelDataset, langs: list[str]) -> None:
        self.index = index
        self.name = dataset.name
        self.n = len(dataset)
        self.langs = langs
        self.image = not dataset.passage_has_language
        self.dataset = dataset
        self.multi = dataset.max_items_per_language > 1  # several items per (group, language)
        keep = set(langs)
        self.group_langs: list[tuple[str, ...]] = [tuple(sorted(gl & keep)) for gl in dataset.group_languages]
        self.counts = np.fromiter((len(t) for t in self.group_langs), dtype=np.int64, count=self.n)
        self.usable = int(np.count_nonzero(self.counts))
        pos = {lang: i for i, lang in enumerate(langs)}
        # Eligibility per class: one row per X-X language, then the X-Y row.
        self.eligible = np.zeros((len(langs) + 1, self.n), dtype=bool)
        for g, t in enumerate(self.group_langs):
            for lang in t:
                self.eligible[pos[lang], g] = True
        self.eligible[len(langs)] = self.counts >= 2
        self._pools: dict[int, np.ndarray] = {}

    @property
    def xy_class(self) -> int:
        return len(self.langs)

    def pool(self, cls: int) -> np.ndarray:
        """Indices of all groups eligible for class ``cls`` (cached)."""
        if cls not in self._pools:
            self._pools[cls] = np.flatnonzero(self.eligible[cls])
        return self._pools[cls]


class _EpochPlan:
    """The batches of one epoch, planned up front and drawn lazily in order."""

    def __init__(self, sampler: "HybridBatchSampler", epoch: int) -> None:
        self.sampler = sampler
        self.epoch = epoch
        self.entropy = [sampler.seed, epoch]
        rng = np.random.default_rng(np.random.SeedSequence(self.entropy))
        srcs = sampler._sources
        order = np.repeat(np.arange(len(srcs)), sampler._batches_per_dataset)
        rng.shuffle(order)
        self.order = order
        self.is_xx = rng.random(len(order)) < sampler.alpha
        nlangs = np.array([len(s.langs) for s in srcs], dtype=np.int64)
        self.xx_lang = rng.integers(0, nlangs[order])
        self.perms = [rng.permutation(s.n) for s in srcs]
        self.used = [np.zeros(s.n, dtype=bool) for s in srcs]
        self.ptr = [np.zeros(len(s.eligible), dtype=np.int64) for s in srcs]
        self.next_index = 0

    def __len__(self) -> int:
        return len(self.order)

    def next_batch(self, build: bool = True) -> Batch | None:
        """Draw batch ``next_index`` (its groups always; its pairs only when ``build``)."""
        i = self.next_index
        d = int(self.order[i])
        src = self.sampler._sources[d]
        cls = self.sampler._batch_class(src, bool(self.is_xx[i]), int(self.xx_lang[i]))
        rng = np.random.default_rng(np.random.SeedSequence(self.entropy, spawn_key=(i,)))
        groups = self._take_groups(src, cls, rng)
        self.next_index = i + 1
        if not build:
            return None
        return self._build(i, src, cls, groups, rng)

    def _take_groups(self, src: SamplingSource, cls: int, rng: np.random.Generator) -> np.ndarray:
        bsz = self.sampler.groups_per_batch
        perm, used, elig = self.perms[src.index], self.used[src.index], src.eligible[cls]
        ptr = int(self.ptr[src.index][cls])
        need, parts, width = bsz, [], max(4 * bsz, 64)
        while need > 0 and ptr < src.n:
            chunk = perm[ptr:ptr + width]
            hits = np.flatnonzero(elig[chunk] & ~used[chunk])
            if len(hits) >= need:
                hits = hits[:need]
                ptr += int(hits[-1]) + 1
            else:
                ptr += len(chunk)
            parts.append(chunk[hits])
            need -= len(hits)
            width *= 2
        self.ptr[src.index][cls] = ptr
        groups = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        if need > 0:  # permutation exhausted for this class: top up at random
            pool = src.pool(cls)
            pool = pool[~np.isin(pool, groups)]
            groups = np.concatenate([groups, rng.choice(pool, size=need, replace=False)])
        used[groups] = True
        return groups

    def _build(self, i: int, src: SamplingSource, cls: int, groups: np.ndarray, rng: np.random.Generator) -> Batch:
        s = self.sampler
        refs, mode, batch_lang = s._pairs(src, cls, groups, rng)
        if src.multi:
            refs = self._pick_items(src, refs, rng)
        per = s.batch_size // s.world_size
        mine = tuple(refs[s.rank * per:(s.rank + 1) * per])
        return Batch(mine, mode, src.index, self.epoch * len(self) + i, self.epoch, batch_lang)

    @staticmethod
    def _xx_xy_pairs(src: SamplingSource, cls: int, groups: np.ndarray,
                     rng: np.random.Generator) -> tuple[list[PairRef], str, str | None]:
        d = src.index
        gl = src.group_langs
        if cls < src.xy_class:
            lang = src.langs[cls]
            plang = None if src.image else lang
            refs = [PairRef(d, int(g), lang, plang) for g in groups]
            mode, batch_lang = XX, lang
        else:
            ks = src.counts[groups]
            qi = rng.integers(0, ks)
            if src.image:
                while len(set(gl[g][q] for g, q in zip(groups, qi))) < 2:
                    qi = rng.integers(0, ks)  # rejection: the batch must hold >= 2 languages
                refs = [PairRef(d, int(g), gl[g][q], None) for g, q in zip(groups, qi)]
            else:
                pi = rng.integers(0, ks - 1)
                pi += pi >= qi
                refs = [PairRef(d, int(g), gl[g][q], gl[g][p]) for g, q, p in zip(groups, qi, pi)]
            mode, batch_lang = XY, None
        return refs, mode, batch_lang


    @staticmethod
    def _pick_items(src: SamplingSource, refs: list[PairRef], rng: np.random.Generator) -> list[PairRef]:
        """Draw, uniformly and after every other draw of the batch, which item of a (group, language)
        each pair uses (several captions per image and language). Datasets with one item per
        language never reach this, so their batches do not depend on it."""
        ds = src.dataset
        out = []
        for r in refs:
            qi = int(rng.integers(0, ds.count(r.group, r.query_lang)))
            pi = 0 if r.passage_lang is None else int(rng.integers(0, ds.count(r.group, r.passage_lang)))
            out.append(PairRef(r.dataset, r.group, r.query_lang, r.passage_lang, qi, pi))
        return out


def _check_int(name: str, value: Any, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}; {hint}")
    return int(value)


class HybridBatchSampler:
    """Hybrid batch sampler: each batch is X-X with probability ``alpha``, else X-Y.

    Args:
        datasets: one or more :class:`ParallelDataset` (a single one is accepted too).
        batch_size: global batch size (pairs per batch over all processes).
        alpha: probability of an X-X (monolingual) batch; 1 gives X-X, 0 gives X-Y.
        languages: training languages; each dataset uses those it has. Default:
            every language of each dataset.
        seed: non-negative integer seeding every draw.
        rank / world_size: this process and the number of processes.
        drop_last: per dataset, ``floor`` (True) or ``ceil`` (False) of
            ``size / batch_size`` batches per epoch; batches are always full.

    See the module docstring for the sampling rules.
    """

    def __init__(self, datasets: Sequence[ParallelDataset] | ParallelDataset, batch_size: int, alpha: float, *,
                 languages: Sequence[str] | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True) -> None:
        if isinstance(datasets, ParallelDataset):
            datasets = [datasets]
        datasets = list(datasets)
        if not datasets:
            raise ConfigError("No datasets given: pass at least one ParallelDataset.")
        for i, ds in enumerate(datasets):
            if not isinstance(ds, ParallelDataset):
                raise ConfigError(f"datasets[{i}] is a {type(ds).__name__}, not a ParallelDataset; "
                                  "build it with hbkit.parallel.ParallelDataset.")
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}; alpha is the probability of a "
                              "monolingual (X-X) batch (0.5 in the paper).")
        self.alpha = float(alpha)
        self.batch_size = _check_int("batch_size", batch_size, 1, "it is the number of pairs per global batch.")
        self.seed = _check_int("seed", seed, 0, "use a non-negative integer.")
        self.world_size = _check_int("world_size", world_size, 1, "it is the number of training processes.")
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= rank < self.world_size:
            raise ConfigError(f"rank must be an integer in [0, world_size) = [0, {self.world_size}), got {rank!r}.")
        self.rank = int(rank)
        if self.batch_size % self.world_size:
            raise ConfigError(f"batch_size {self.batch_size} is not divisible by world_size {self.world_size}; "
                              "every process needs an equal slice: choose a multiple of world_size.")
        self.drop_last = bool(drop_last)
        self.datasets = datasets
        self._sources = [SamplingSource(i, ds, langs) for i, (ds, langs) in
                         enumerate(zip(datasets, self._training_languages(datasets, languages)))]
        self._setup()
        self._validate_sizes()
        b = self.groups_per_batch
        self._batches_per_dataset = [s.usable // b if self.drop_last else -(-s.usable // b) for s in self._sources]
        self.epoch = 0
        self.batches_done_in_epoch = 0
        self._plan: _EpochPlan | None = None
        self._token = 0

    # -- hooks for other batch regimes (see hbkit.one_to_k) ----------------------------
    def _setup(self) -> None:
        """Called once the per-dataset sources exist (subclasses add eligibility rows here)."""

    @property
    def groups_per_batch(self) -> int:
        """Distinct groups per global batch (``batch_size`` here; fewer when a group brings several pairs)."""
        return self.batch_size

    def _batch_class(self, src: SamplingSource, is_xx: bool, xx_lang: int) -> int:
        """The eligibility class of a batch: its X-X language, or the X-Y class."""
        return xx_lang if is_xx else src.xy_class

    def _pairs(self, src: SamplingSource, cls: int, groups: np.ndarray,
               rng: np.random.Generator) -> tuple[list[PairRef], str, str | None]:
        """The batch's pairs, its mode and its single language (None unless X-X)."""
        return _EpochPlan._xx_xy_pairs(src, cls, groups, rng)

    @staticmethod
    def _training_languages(datasets: list[ParallelDataset], languages: Sequence[str] | None) -> list[list[str]]:
        if languages is None:
            return [list(ds.languages) for ds in datasets]
        if isinstance(languages, str):
            raise ConfigError(f"languages must be a list of codes, got the string {languages!r}; "
                              f"write languages=[{languages!r}].")
        langs = check_languages(languages, where="the sampler's training languages")
        names = ", ".join(repr(ds.name) for ds in datasets)
        for lang in langs:
            if not any(lang in ds.languages for ds in datasets):
                have = sorted(set().union(*(ds.languages for ds in datasets)))
                raise UnknownLanguageError(
                    f"Training language {lang!r} has no examples in dataset(s) {names} (they have {have}). "
                    "Drop it from languages or add data in that language.")
        out = []
        for ds in datasets:
            mine = sorted(lang for lang in langs if lang in ds.languages)
            if not mine:
                raise DataError(f"Dataset {ds.name!r} has none of the training languages {langs} "
                                f"(it has {ds.languages}). Remove the dataset or change languages.")
            out.append(mine)
        return out

    def _validate_sizes(self) -> None:
        b = self.batch_size
        for s in self._sources:
            if s.usable < b:
                raise ConfigError(
                    f"batch_size {b} is larger than dataset {s.name!r}, which has {s.usable} groups in the "
                    f"training languages; lower batch_size to at most {s.usable} or add data.")
            if self.alpha > 0:
                for c, lang in enumerate(s.langs):
                    have = int(s.eligible[c].sum())
                    if have < b:
                        raise ConfigError(
                            f"Dataset {s.name!r} has only {have} groups in language {lang!r}, fewer than "
                            f"batch_size {b}: an X-X batch in {lang!r} would repeat a group. Lower batch_size "
                            f"to at most {have}, drop {lang!r} from languages, or add data.")
            if self.alpha < 1:
                if len(s.langs) < 2:
                    raise ConfigError(
                        f"X-Y batches need at least 2 training languages, but dataset {s.name!r} has "
                        f"{s.langs}. Use alpha=1 (X-X only), add languages, or remove the dataset.")
                if s.image and b < 2:
                    raise ConfigError(
                        f"An image–text X-Y batch must hold at least two caption languages, impossible with "
                        f"batch_size {b} (dataset {s.name!r}); use batch_size >= 2 or alpha=1.")
                have = int(s.eligible[s.xy_class].sum())
                if have < b:
                    raise ConfigError(
                        f"Dataset {s.name!r} has only {have} groups with at least 2 training languages, fewer "
                        f"than batch_size {b} needed for an X-Y batch. Lower batch_size to at most {have}, "
                        "use alpha=1 (X-X only), or add translations.")

    # -- information ---------------------------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        return int(sum(self._batches_per_dataset))

    @property
    def training_languages(self) -> list[list[str]]:
        """The training languages used for each dataset."""
        return [list(s.langs) for s in self._sources]

    @property
    def batches_per_dataset(self) -> list[int]:
        """How many batches each dataset contributes per epoch."""
        return list(self._batches_per_dataset)

    @property
    def step(self) -> int:
        """Global index of the next batch."""
        return self.epoch * len(self) + self.batches_done_in_epoch

    def __repr__(self) -> str:
        names = [s.name for s in self._sources]
        return (f"HybridBatchSampler(datasets={names}, batch_size={self.batch_size}, alpha={self.alpha}, "
                f"seed={self.seed}, rank={self.rank}, world_size={self.world_size}, epoch={self.epoch}, "
                f"batches_done_in_epoch={self.batches_done_in_epoch}/{len(self)})")

    # -- iteration -------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Move to the start of ``epoch``; a no-op if the sampler is already in that epoch
        (so calling it after :meth:`load_state_dict` keeps the resumed position)."""
        epoch = _check_int("epoch", epoch, 0, "epochs are counted from 0.")
        if epoch != self.epoch:
            self.epoch, self.batches_done_in_epoch = epoch, 0
            self._token += 1

    def __iter__(self) -> Iterator[Batch]:
        """Yield the remaining batches of the current epoch, then advance to the next epoch."""
        self._token += 1
        return self._epoch_iter(self._token)

    def batches(self) -> Iterator[Batch]:
        """Yield batches forever, epoch after epoch (for step-based training)."""
        while True:
            yield from self

    def _epoch_iter(self, token: int) -> Iterator[Batch]:
        plan = self._plan
        if plan is None or plan.epoch != self.epoch or plan.next_index > self.batches_done_in_epoch:
            plan = self._plan = _EpochPlan(self, self.epoch)
        while plan.next_index < self.batches_done_in_epoch:
            plan.next_batch(build=False)  # replay group consumption without building pairs
        while plan.next_index < len(plan):
            batch = plan.next_batch()
            if plan.next_index == len(plan):
                self.epoch, self.batches_done_in_epoch = self.epoch + 1, 0
            else:
                self.batches_done_in_epoch = plan.next_index
            yield batch
            if token != self._token:
                return

    def seek(self, step: int) -> None:
        """Move to global batch ``step`` (the next batch yielded is batch ``step``).

        Every epoch has the same number of batches, so the position follows from the step
        counter alone: a trainer resumes from its optimiser step count, whatever a
        prefetching loader had already pulled."""
        step = _check_int("step", step, 0, "steps are counted from 0.")
        self.epoch, self.batches_done_in_epoch = divmod(step, len(self))
        self._token += 1

    # -- resume ----------------------------------------------------------------------
    def _fingerprint(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "alpha": self.alpha,
            "drop_last": self.drop_last,
            "datasets": [{"name": s.name, "groups": s.n, "languages": list(s.langs)} for s in self._sources],
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable resume state (batches yielded so far count as consumed)."""
        return {"version": _STATE_VERSION, "seed": self.seed, "epoch": self.epoch,
                "batches_done_in_epoch": self.batches_done_in_epoch, "batches_per_epoch": len(self),
                **self._fingerprint()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the seed and position are restored; the configuration
        (batch size, alpha, drop_last, datasets, languages) must match this sampler's."""
        keys = ("version", "seed", "epoch", "batches_done_in_epoch", "batch_size", "alpha", "drop_last", "datasets")
        if not isinstance(state, dict) or any(k not in state for k in keys):
            raise ConfigError("Not a sampler state: pass the dict returned by HybridBatchSampler.state_dict() "
                              f"(keys {list(keys)}).")
        if state["version"] != _STATE_VERSION:
            raise ConfigError(f"Sampler state version {state['version']!r} is not supported "
                              f"(expected {_STATE_VERSION}); resume with the hbkit version that saved it.")
        mine = self._fingerprint()
        diff = [k for k in mine if state[k] != mine[k]]
        if diff:
            detail = "; ".join(f"{k}: saved {state[k]!r}, now {mine[k]!r}" for k in diff)
            raise ConfigError(f"Cannot resume: the sampler configuration changed ({detail}). "
                              "Build the sampler with the same datasets and settings as the saved run.")
        seed = _check_int("state['seed']", state["seed"], 0, "the state is corrupt.")
        epoch = _check_int("state['epoch']", state["epoch"], 0, "the state is corrupt.")
        done = _check_int("state['batches_done_in_epoch']", state["batches_done_in_epoch"], 0,
                          "the state is corrupt.")
        if done >= len(self):
            raise ConfigError(f"state['batches_done_in_epoch'] = {done} but an epoch has {len(self)} batches; "
                              "the state is corrupt or from another configuration.")
        self.seed, self.epoch, self.batches_done_in_epoch = seed, epoch, done
        self._plan = None
        self._token += 1


def XXBatchSampler(datasets: Sequence[ParallelDataset] | ParallelDataset, batch_size: int,
                   **kw: Any) -> HybridBatchSampler:
    """Monolingual (X-X) batches only: :class:`HybridBatchSampler` with ``alpha=1``."""
    return HybridBatchSampler(datasets, batch_size, 1.0, **kw)


def XYBatchSampler(datasets: Sequence[ParallelDataset] | ParallelDataset, batch_size: int,
                   **kw: Any) -> HybridBatchSampler:
    """Cross-lingual (X-Y) batches only: :class:`HybridBatchSampler` with ``alpha=0``."""
    return HybridBatchSampler(datasets, batch_size, 0.0, **kw)


def make_sampler(strategy: str, datasets: Sequence[ParallelDataset] | ParallelDataset, batch_size: int,
                 alpha: float | None = None, **kw: Any) -> HybridBatchSampler:
    """Build the sampler for ``strategy`` ("X-X", "X-Y", "hybrid" or "1-to-K"; also "xx", "xy", any case).

    ``alpha`` applies to "hybrid" (default 0.5); X-X and X-Y fix it to 1 and 0.
    """
    key = strategy.strip().lower() if isinstance(strategy, str) else None
    name = _ALIASES.get(key) if key is not None else None
    if name is None:
        raise ConfigError(f"Unknown batch sampling strategy {strategy!r}; choose one of {', '.join(STRATEGIES)} "
                          "(aliases: xx, xy).")
    if name == HYBRID:
        return HybridBatchSampler(datasets, batch_size, 0.5 if alpha is None else alpha, **kw)
    if name == ONE_TO_K:
        from hbkit.one_to_k import OneToKBatchSampler

        if alpha is not None:
            raise ConfigError("Strategy 1-to-K has no alpha (every batch is 1-to-K); drop alpha.")
        return OneToKBatchSampler(datasets, batch_size, **kw)
    fixed = 1.0 if name == XX else 0.0
    if alpha is not None and alpha != fixed:
        raise ConfigError(f"Strategy {name} fixes alpha to {fixed:g}, got alpha={alpha!r}; "
                          "drop alpha or use strategy 'hybrid'.")
    return HybridBatchSampler(datasets, batch_size, fixed, **kw)


def batch_language_histogram(batch: Batch | Iterable[PairRef]) -> dict[str, dict[str, int]]:
    """Counts of query and passage languages in a batch (or any iterable of refs).

    Returns ``{"query": {lang: n}, "passage": {lang: n}}`` with languages sorted;
    ``passage`` is empty for image–text pairs (the passage has no language).
    """
    refs = batch.refs if isinstance(batch, Batch) else tuple(batch)
    q = Counter(r.query_lang for r in refs)
    p = Counter(r.passage_lang for r in refs if r.passage_lang is not None)
    return {"query": dict(sorted(q.items())), "passage": dict(sorted(p.items()))}


def batch_statistics(batches: Iterable[Batch], n: int | None = None) -> dict[str, int]:
    """Counts over the first ``n`` batches (all when None): batches, X-X batches, pairs whose query and
    passage languages are equal, and the most repeated groups within one batch (always 0)."""
    stats = {"batches": 0, "X-X batches": 0, "pairs with query lang == passage lang": 0,
             "max groups repeated in a batch": 0}
    for i, b in enumerate(batches):
        if n is not None and i >= n:
            break
        stats["batches"] += 1
        stats["X-X batches"] += b.mode == XX
        stats["pairs with query lang == passage lang"] += sum(r.query_lang == r.passage_lang for r in b.refs)
        stats["max groups repeated in a batch"] = max(stats["max groups repeated in a batch"],
                                                      len(b.refs) - len({r.group for r in b.refs}))
    return stats
