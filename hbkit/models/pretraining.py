"""Masked-LM and translation-LM pre-training of the tiny models (see :mod:`hbkit.models.tiny`).

Translation LM (TLM, Lample & Conneau 2019, "Cross-lingual Language Model Pretraining"):
masked LM over the two translations of one item joined as one pair-encoded sequence, so the
model can predict a masked token from the other language's sentence. As in XLM the second
sentence's positions restart; a token type (not a language embedding) tells the two apart.
"""
from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, Union

import torch

from hbkit.engine.atomic import atomic_dir, write_json
from hbkit.engine.progress import progress
from hbkit.errors import ConfigError, DataError, TrainingDivergedError, UnknownModelError
from hbkit.models.tiny import (HEAD_FILE, SPEC_FILE, EVAL_SEED_OFFSET, check_texts, quiet_transformers,
                               read_spec, torch_threads)

if TYPE_CHECKING:
    from hbkit.benchmark import RetrievalBenchmark
    from hbkit.parallel import ParallelDataset

__all__ = ["mlm_pretrain", "mlm_loss", "translation_pairs", "tlm_pretrain", "tlm_loss", "tlm_context_losses"]

# --------------------------------------------------------------------------- masked LM


def _load_mlm(model_dir: Path, seed: int):
    """(tokenizer, masked-LM model whose base is the saved encoder with its pooler).

    The MLM head comes from the head file when a previous pre-training saved one, else it is
    initialised from ``seed``."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

    if not (model_dir / "config.json").exists():
        raise UnknownModelError(f"No model in {str(model_dir)!r} (config.json missing). "
                                "Build one first with build_tiny_model(...) or make_tiny_model(...).")
    with quiet_transformers(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tok = AutoTokenizer.from_pretrained(model_dir)
        mlm = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(model_dir))
        base = AutoModel.from_pretrained(model_dir)
    setattr(mlm, mlm.base_model_prefix, base)
    mlm.tie_weights()
    if (model_dir / HEAD_FILE).exists():
        result = mlm.load_state_dict(load_file(model_dir / HEAD_FILE), strict=False)
        if result.unexpected_keys:
            raise DataError(f"{model_dir / HEAD_FILE} does not match the model (unexpected "
                            f"{result.unexpected_keys[:3]}). Delete the file to start a fresh MLM head.")
    return tok, mlm


def _head_state(mlm) -> dict[str, torch.Tensor]:
    """The MLM head's own tensors (no base weights, no tied or duplicate tensors)."""
    prefix = mlm.base_model_prefix + "."
    base_ptrs = {p.data_ptr() for p in mlm.base_model.parameters()}
    seen: set[int] = set()
    out = {}
    for key, value in mlm.state_dict().items():
        ptr = value.data_ptr()
        if key.startswith(prefix) or ptr in base_ptrs or ptr in seen:
            continue
        seen.add(ptr)
        out[key] = value.detach().clone().contiguous()
    return out


class _Masker:
    """BERT masking by ``transformers.DataCollatorForLanguageModeling`` (``mask_prob`` of the
    non-special tokens; of those 80 % -> mask, 10 % -> a random token, 10 % unchanged), padded,
    on a private seeded random stream.

    The collator draws from torch's global RNG. Its ``seed=`` option is missing from older
    transformers releases that hbkit supports and refuses to run outside the main process, so
    each call runs on the global RNG forked and set to this masker's own state (saved after the
    call): the masks depend on ``seed`` and the call order only, not on other torch draws."""

    def __init__(self, tok, mask_prob: float, seed: int) -> None:
        from transformers import DataCollatorForLanguageModeling

        self.collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=mask_prob,
                                                        return_tensors="pt")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.state = torch.get_rng_state()

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Examples (``input_ids``, ``attention_mask``, ``special_tokens_mask``[, ``token_type_ids``,
        ``position_ids``]) -> padded (batch, width) tensors with ``labels`` (-100 where not masked)."""
        positions = [ex.get("position_ids") for ex in examples]
        examples = [{k: v for k, v in ex.items() if k != "position_ids"} for ex in examples]
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.state)
            while True:
                batch = dict(self.collator(examples))
                if (batch["labels"] != -100).any():  # an empty draw would make the loss NaN
                    break
            self.state = torch.get_rng_state()
        if any(pos is not None for pos in positions):
            batch["position_ids"] = _pad_positions(positions, batch["input_ids"].shape[1])
        return batch


def _pad_positions(positions: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    """(batch, width) position ids; padding repeats a row's first position (padding is not attended)."""
    return torch.tensor([list(pos) + [pos[0]] * (width - len(pos)) for pos in positions])


def _rows(enc, n: int) -> list[dict[str, list[int]]]:
    """A batch encoding of ``n`` sequences -> one dict per sequence."""
    return [{k: enc[k][i] for k in enc.keys()} for i in range(n)]


def _evenly(n: int, size: int) -> list[int]:
    """Up to ``size`` indices spread evenly over ``range(n)``."""
    return list(range(0, n, max(1, n // size)))[:size]


class _TextExamples:
    """MLM examples: tokenised texts (at most ``max_length`` tokens, specials included)."""

    def __init__(self, tok, texts: list[str], max_length: int) -> None:
        enc = tok(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
        self.examples = _rows(enc, len(texts))

    def __len__(self) -> int:
        return len(self.examples)

    def get(self, rows: Sequence[int], gen: torch.Generator) -> list[dict[str, list[int]]]:
        return [self.examples[i] for i in rows]


def _position_offset(config) -> int:
    """Position id of a sequence's first token: XLM-R numbers positions from pad_token_id + 1."""
    return config.pad_token_id + 1 if config.model_type == "xlm-roberta" else 0


def _pair_positions(sequence_ids: Sequence[int | None], offset: int) -> list[int]:
    """Position ids with the second sentence's numbering reset, as in XLM's TLM: its first
    token gets the position of the first sentence's first token after the start token."""
    second = next((j for j, sid in enumerate(sequence_ids) if sid == 1), None)
    return [offset + (j if second is None or j < second else j - second + 1) for j in range(len(sequence_ids))]


def _two_token_types(base, seed: int) -> None:
    """Give ``base`` (an encoder with one token type, as XLM-R) a second, seeded row
    (normal, initializer_range), which TLM puts on the second sentence; the rest is unchanged."""
    emb, config = base.embeddings, base.config
    if config.type_vocab_size >= 2:
        return
    old = emb.token_type_embeddings.weight.data
    extra = torch.randn((1, old.shape[1]), generator=torch.Generator().manual_seed(seed)) * config.initializer_range
    emb.token_type_embeddings = torch.nn.Embedding(2, old.shape[1])
    emb.token_type_embeddings.weight.data = torch.cat([old, extra.to(old.dtype)])
    config.type_vocab_size = 2


def _pair_types(sequence_ids: Sequence[int | None]) -> list[int]:
    """Token type ids: 1 from the second sentence's first token on, else 0 (BERT's segments).
    With positions reset they tell the two sentences apart, as XLM's language embeddings do."""
    second = next((j for j, sid in enumerate(sequence_ids) if sid == 1), len(sequence_ids))
    return [int(j >= second) for j in range(len(sequence_ids))]


class _PairExamples:
    """TLM examples: for each row (one item), two of its translations drawn at random, in
    random order, pair-encoded as one sequence (at most ``max_length`` tokens, the longer one
    truncated first), with the second sentence's positions reset (:func:`_pair_positions`)
    and, when the model has two token types, its tokens typed 1 (:func:`_pair_types`)."""

    def __init__(self, tok, items: list[list[str]], max_length: int, config) -> None:
        self.tok, self.items, self.max_length = tok, items, max_length
        self.offset, self.typed = _position_offset(config), config.type_vocab_size >= 2

    def __len__(self) -> int:
        return len(self.items)

    def get(self, rows: Sequence[int], gen: torch.Generator) -> list[dict[str, list[int]]]:
        first, second = [], []
        for i in rows:
            a, b = torch.randperm(len(self.items[i]), generator=gen)[:2].tolist()
            first.append(self.items[i][a])
            second.append(self.items[i][b])
        enc = self.tok(first, second, truncation=True, max_length=self.max_length, return_special_tokens_mask=True)
        out = _rows(enc, len(rows))
        for r, example in enumerate(out):
            example["position_ids"] = _pair_positions(enc.sequence_ids(r), self.offset)
            if self.typed:
                example["token_type_ids"] = _pair_types(enc.sequence_ids(r))
        return out


def _fixed_batch(examples: _TextExamples | _PairExamples, masker_args: tuple, size: int,
                 seed: int) -> dict[str, torch.Tensor]:
    """An evaluation batch spread evenly over the examples, with seeded choices and masking."""
    gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    return _Masker(*masker_args, seed + EVAL_SEED_OFFSET)(examples.get(_evenly(len(examples), size), gen))


def _check_mlm_args(steps: int, batch_size: int, lr: float, mask_prob: float, max_length: int) -> None:
    for name, value, lo in (("steps", steps, 0), ("batch_size", batch_size, 1), ("max_length", max_length, 4)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}.")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a positive number, got {lr!r}.")
    if not (isinstance(mask_prob, (int, float)) and 0 < mask_prob < 1):
        raise ConfigError(f"mask_prob must be between 0 and 1 (exclusive), got {mask_prob!r}.")


@torch.no_grad()
def _eval_loss(mlm, batch: dict[str, torch.Tensor]) -> float:
    was_training = mlm.training
    mlm.eval()
    loss = float(mlm(**batch).loss)
    mlm.train(was_training)
    return loss


def _max_length(tok, max_length: int) -> int:
    """``max_length`` capped at the model's longest input (tokens)."""
    return min(max_length, tok.model_max_length)


def mlm_loss(model_dir: str | os.PathLike, texts: Sequence[str], *, batch_size: int = 32,
             mask_prob: float = 0.15, max_length: int = 64, seed: int = 0, num_threads: int | None = 1) -> float:
    """Masked-LM loss (nats per masked token) of the model in ``model_dir`` on a fixed, seeded
    batch of ``texts`` (the batch :func:`mlm_pretrain` reports ``loss_before`` / ``loss_after`` on)."""
    _check_mlm_args(0, batch_size, 1.0, mask_prob, max_length)
    with torch_threads(num_threads):
        tok, mlm = _load_mlm(Path(model_dir), seed)
        examples = _TextExamples(tok, check_texts(texts), _max_length(tok, max_length))
        return _eval_loss(mlm, _fixed_batch(examples, (tok, mask_prob), batch_size, seed))


def mlm_pretrain(model_dir: str | os.PathLike, texts: Sequence[str], *, steps: int = 200, batch_size: int = 32,
                 lr: float = 5e-4, mask_prob: float = 0.15, max_length: int = 64, seed: int = 0,
                 show_progress: bool | None = None, num_threads: int | None = 1) -> Path:
    """Brief masked-LM pre-training of the encoder in ``model_dir`` on ``texts`` (a stand-in for
    multilingual pre-training). Saves the encoder (``AutoModel`` loads it) and the MLM head back
    into ``model_dir`` atomically, and appends the losses on a fixed batch to its spec file
    (``"mlm"`` list). Seeded and deterministic on CPU; AdamW with 10 % warm-up then linear decay.
    ``max_length``: tokens per text (capped at the model's); ``num_threads``: torch threads while
    training (None: leave as is)."""
    _check_mlm_args(steps, batch_size, lr, mask_prob, max_length)
    texts = check_texts(texts)
    with torch_threads(num_threads):
        return _pretrain(Path(model_dir), "mlm",
                         lambda tok, config: _TextExamples(tok, texts, _max_length(tok, max_length)),
                         steps, batch_size, lr, mask_prob, seed, show_progress,
                         {"max_length": max_length, "n_texts": len(texts)})


def _pretrain(model_dir: Path, objective: str, make_examples: Callable[..., "_TextExamples | _PairExamples"],
              steps: int, batch_size: int, lr: float, mask_prob: float, seed: int, show_progress: bool | None,
              record: dict) -> Path:
    """The masked-LM loop shared by MLM (``objective="mlm"``) and TLM (``"tlm"``);
    ``make_examples(tokenizer, encoder config)`` gives the examples."""
    start = time.perf_counter()
    tok, mlm = _load_mlm(model_dir, seed)
    if objective == "tlm":
        _two_token_types(mlm.base_model, seed)
    examples = make_examples(tok, mlm.base_model.config)
    fixed = _fixed_batch(examples, (tok, mask_prob), batch_size, seed)
    loss_before = _eval_loss(mlm, fixed)
    gen = torch.Generator().manual_seed(seed)  # example order and (TLM) the two translations drawn
    masker = _Masker(tok, mask_prob, seed)
    params = [p for p in mlm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    order: list[int] = []
    losses: list[float] = []
    name = objective.upper()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout
        mlm.train()
        loop_start = time.perf_counter()
        bar = progress(range(steps), show=show_progress, desc=f"{name} pre-training", unit="step")
        for _ in bar:
            if len(order) < batch_size:
                order += torch.randperm(len(examples), generator=gen).tolist()
            rows, order = order[:batch_size], order[batch_size:]
            loss = mlm(**masker(examples.get(rows, gen))).loss
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"The {name} loss became {float(loss)} at step {len(losses)}; lower "
                                            f"lr (now {lr}). {model_dir} was left unchanged.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        bar.close()
        loop_seconds = time.perf_counter() - loop_start
    mlm.eval()
    loss_after = _eval_loss(mlm, fixed)
    seconds = time.perf_counter() - start
    spec = read_spec(model_dir)
    spec.setdefault(objective, []).append({
        "steps": steps, "batch_size": batch_size, "lr": lr, "mask_prob": mask_prob, **record,
        "seed": seed, "loss_before": loss_before, "loss_after": loss_after,
        "first_train_loss": losses[0] if losses else None, "last_train_loss": losses[-1] if losses else None,
        "seconds": round(seconds, 3),
        "steps_per_second": round(steps / loop_seconds, 2) if steps and loop_seconds > 0 else None})
    from safetensors.torch import save_file

    with atomic_dir(model_dir) as tmp:
        for item in model_dir.iterdir():
            if item.name not in ("config.json", "model.safetensors", HEAD_FILE, SPEC_FILE):
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        with quiet_transformers():
            mlm.base_model.save_pretrained(tmp)
        save_file(_head_state(mlm), tmp / HEAD_FILE)
        write_json(tmp / SPEC_FILE, spec)
    return model_dir


# --------------------------------------------------------------------------- translation LM


def translation_pairs(data: Union["ParallelDataset", "RetrievalBenchmark"],
                      languages: Sequence[str] | None = None) -> list[list[str]]:
    """Translation sets for TLM: each inner list holds one text in each of its languages.

    From a ``ParallelDataset`` (e.g. ``make_demo_world().train``): per group, the queries of
    item ``k`` in each language form one list and, for text data, their positives another
    (the k-th items of the languages are taken to be translations of one another). From a
    ``RetrievalBenchmark``: the queries sharing an ``xid``, and the candidates sharing their
    ``xids``. Texts within a list are ordered by language code; lists with fewer than two
    languages are left out. ``languages``: keep only these (default: all)."""
    from hbkit.benchmark import RetrievalBenchmark
    from hbkit.parallel import TEXT, ParallelDataset

    keep = None if languages is None else set(languages)
    out: list[list[str]] = []
    if isinstance(data, ParallelDataset):
        for gi in range(len(data)):
            langs = sorted(lang for lang in data.group_languages[gi] if keep is None or lang in keep)
            for k in range(max((data.count(gi, lang) for lang in langs), default=0)):
                items = [data.item(gi, lang, k) for lang in langs if data.count(gi, lang) > k]
                out.append([it.query for it in items])
                if data.modality == TEXT:
                    out.append([it.positive for it in items])
    elif isinstance(data, RetrievalBenchmark):
        sets: dict[tuple[str, object], dict[str, str]] = {}
        for q in data.queries:
            if q.lang is not None and q.text and (keep is None or q.lang in keep):
                sets.setdefault(("q", q.xid), {}).setdefault(q.lang, q.text)
        for c in data.candidates:
            if c.lang is not None and c.text and c.xids and (keep is None or c.lang in keep):
                sets.setdefault(("c", c.xids), {}).setdefault(c.lang, c.text)
        out = [[texts[lang] for lang in sorted(texts)] for texts in sets.values()]
    else:
        raise DataError(f"translation_pairs takes a ParallelDataset or a RetrievalBenchmark, got "
                        f"{type(data).__name__}.")
    return [texts for texts in out if len(texts) >= 2]


def check_parallel(parallel_texts: Sequence[Sequence[str]]) -> list[list[str]]:
    """Translation sets with at least two non-empty texts each (others dropped)."""
    if isinstance(parallel_texts, str) or not isinstance(parallel_texts, Sequence):
        raise DataError("parallel_texts must be a list of lists of translations, e.g. "
                        "translation_pairs(make_demo_world().train).")
    out = []
    for texts in parallel_texts:
        if isinstance(texts, str):
            raise DataError("parallel_texts must be a list of lists of translations; an item is a single string. "
                            "Build them with translation_pairs(dataset).")
        texts = [t for t in texts if isinstance(t, str) and t.strip()]
        if len(texts) >= 2:
            out.append(texts)
    if not out:
        raise DataError("parallel_texts has no item with two or more translations. "
                        "Build them with translation_pairs(dataset).")
    return out


def tlm_loss(model_dir: str | os.PathLike, parallel_texts: Sequence[Sequence[str]], *, batch_size: int = 32,
             mask_prob: float = 0.15, max_length: int = 128, seed: int = 0, num_threads: int | None = 1) -> float:
    """Masked-LM loss (nats per masked token) on a fixed, seeded batch of translation pairs,
    both sentences masked (the batch :func:`tlm_pretrain` reports its losses on)."""
    _check_mlm_args(0, batch_size, 1.0, mask_prob, max_length)
    with torch_threads(num_threads):
        tok, mlm = _load_mlm(Path(model_dir), seed)
        examples = _PairExamples(tok, check_parallel(parallel_texts), _max_length(tok, max_length),
                                 mlm.base_model.config)
        return _eval_loss(mlm, _fixed_batch(examples, (tok, mask_prob), batch_size, seed))


def tlm_pretrain(model_dir: str | os.PathLike, parallel_texts: Sequence[Sequence[str]], *, steps: int = 200,
                 batch_size: int = 32, lr: float = 5e-4, mask_prob: float = 0.15, max_length: int = 128,
                 seed: int = 0, show_progress: bool | None = None, num_threads: int | None = 1) -> Path:
    """Translation-LM pre-training (XLM's TLM) of the encoder in ``model_dir``: each example is
    two translations of one item from ``parallel_texts`` (drawn at random, random order),
    pair-encoded as one sequence (``tok(text_a, text_b)``, at most ``max_length`` tokens) and
    masked as in BERT over both sentences. As in XLM the second sentence's positions restart;
    it is told apart by token type 1 (XLM uses language embeddings), so a one-type ("xlmr")
    encoder gets a second, seeded token-type row. Continues from the MLM head a previous
    :func:`mlm_pretrain` saved. Saves like :func:`mlm_pretrain` and appends its record to the
    spec file's ``"tlm"`` list. Seeded and deterministic on CPU."""
    _check_mlm_args(steps, batch_size, lr, mask_prob, max_length)
    items = check_parallel(parallel_texts)
    with torch_threads(num_threads):
        return _pretrain(Path(model_dir), "tlm",
                         lambda tok, config: _PairExamples(tok, items, _max_length(tok, max_length), config),
                         steps, batch_size, lr, mask_prob, seed, show_progress,
                         {"max_length": max_length, "n_items": len(items),
                          "n_texts": sum(len(texts) for texts in items)})


@torch.no_grad()
def tlm_context_losses(model_dir: str | os.PathLike, parallel_texts: Sequence[Sequence[str]], *,
                       n_pairs: int = 64, mask_prob: float = 0.15, seed: int = 0,
                       num_threads: int | None = 1) -> dict[str, float]:
    """How much the model uses the other language: masked-LM loss (nats per masked token) on the
    same masked tokens of a target sentence ``b``, given as first segment

    - ``"translation"``: ``a``, a translation of ``b`` (another language of the same item);
    - ``"unrelated"``: the text at ``a``'s position in the item half the list away (``a``'s
      language when the items list their languages alike, as :func:`translation_pairs` does);
    - ``"none"``: nothing, ``b`` alone.

    Pairs: up to ``n_pairs`` items spread evenly over ``parallel_texts``, two translations drawn
    per item (seeded); ``mask_prob`` of ``b``'s tokens (at least one) are replaced by the mask
    token, never ``a``'s. Pairs longer than the model's input are left out. Also returns
    ``"n_pairs"`` and ``"n_masked"``."""
    items = check_parallel(parallel_texts)
    if len(items) < 2:
        raise DataError("tlm_context_losses needs at least two items (one serves as unrelated context).")
    if not 0 < mask_prob < 1:
        raise ConfigError(f"mask_prob must be between 0 and 1 (exclusive), got {mask_prob!r}.")
    with torch_threads(num_threads):
        tok, mlm = _load_mlm(Path(model_dir), seed)
        mlm.eval()
        gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
        limit = tok.model_max_length
        inputs: dict[str, list[dict[str, list[int]]]] = {"translation": [], "unrelated": [], "none": []}
        labels: dict[str, list[list[int]]] = {key: [] for key in inputs}
        positions: dict[str, list[list[int]]] = {key: [] for key in inputs}
        config = mlm.base_model.config
        offset, typed = _position_offset(config), config.type_vocab_size >= 2
        for i in _evenly(len(items), n_pairs):
            a, b = torch.randperm(len(items[i]), generator=gen)[:2].tolist()
            other = items[(i + len(items) // 2) % len(items)]
            encs = {"translation": tok(items[i][a], items[i][b]),
                    "unrelated": tok(other[a % len(other)], items[i][b]), "none": tok(items[i][b])}
            spans = {}
            for key, enc in encs.items():
                target = 0 if key == "none" else 1
                spans[key] = [j for j, sid in enumerate(enc.sequence_ids()) if sid == target]
            b_ids = [encs["none"]["input_ids"][j] for j in spans["none"]]
            picked = torch.rand(len(b_ids), generator=gen) < mask_prob
            if not picked.any():
                picked[torch.randint(len(b_ids), (1,), generator=gen)] = True
            if any(len(enc["input_ids"]) > limit for enc in encs.values()) or any(
                    [encs[key]["input_ids"][j] for j in spans[key]] != b_ids for key in encs):
                continue  # too long, or b tokenised differently in a pair
            for key, enc in encs.items():
                ids, lab = list(enc["input_ids"]), [-100] * len(enc["input_ids"])
                for j, masked in zip(spans[key], picked.tolist()):
                    if masked:
                        lab[j], ids[j] = ids[j], tok.mask_token_id
                example = {**{k: list(v) for k, v in enc.items()}, "input_ids": ids}
                if typed:
                    example["token_type_ids"] = _pair_types(enc.sequence_ids())
                inputs[key].append(example)
                labels[key].append(lab)
                positions[key].append(_pair_positions(enc.sequence_ids(), offset))
        if not labels["none"]:
            raise DataError("No translation pair fits the model's input length; pass shorter texts.")
        out: dict[str, float] = {}
        for key in inputs:
            batch = dict(tok.pad(inputs[key], return_tensors="pt"))
            width = batch["input_ids"].shape[1]
            batch["labels"] = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels[key]])
            batch["position_ids"] = _pad_positions(positions[key], width)
            out[key] = float(mlm(**batch).loss)
        out["n_pairs"] = len(labels["none"])
        out["n_masked"] = int(sum(sum(x != -100 for x in lab) for lab in labels["none"]))
        return out


