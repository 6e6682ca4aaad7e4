"""Tiny offline encoders: a trained tokenizer, a random-initialised XLM-R or BERT/LaBSE-shaped
model, and a brief masked-LM pre-training, all saved so ``AutoModel`` / ``AutoTokenizer``
load them without the hub.

They stand in for the real pre-trained encoders when there is no internet or GPU (the demo
world). They are TOYS: a few layers of width 64 learn the demo world, not language.
"""
from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import math
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch

from hbkit.engine.atomic import atomic_dir, write_json
from hbkit.models.bi_encoder import ENCODER_CONFIG_FILE
from hbkit.errors import ConfigError, DataError, TrainingDivergedError, UnknownModelError
from hbkit.engine.progress import progress

__all__ = ["KINDS", "SPEC_FILE", "train_tokenizer", "build_tiny_model", "mlm_pretrain", "mlm_loss",
           "make_tiny_model"]

#: Accepted kinds -> canonical kind ("xlmr": Unigram + XLMRobertaModel; "bert": WordPiece + BertModel).
KINDS: dict[str, str] = {"xlmr": "xlmr", "bert": "bert", "labse": "bert"}
SPEC_FILE = "hbkit_tiny.json"
HEAD_FILE = "hbkit_mlm_head.safetensors"
_FORMAT = 1
_XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as XLMRobertaTokenizer expects
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_ARCH_DEFAULTS = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128,
                  "max_position": 160}
_MLM_OPTIONS = ("batch_size", "lr", "mask_prob", "max_length")
_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise UnknownModelError(f"Unknown tiny model kind {kind!r}. Use one of: {', '.join(KINDS)} "
                                "('labse' is the BERT-shaped model).")
    return KINDS[kind]


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise DataError("texts must be a list of strings, got a single string. Wrap it in a list.")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise DataError("No non-empty texts to train on. Pass e.g. make_demo_world().texts().")
    return texts


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and weight-loading bars for our own loads."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (restored after). Tiny matrices gain nothing from
    threads, and on a shared CPU oversubscribed threads make them ~10x slower."""
    before = torch.get_num_threads()
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"num_threads must be a positive integer or None, got {n!r}.")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- tokenizer


def _canonical_unigram(tok, texts: list[str], iterations: int = 3) -> list[tuple[str, float]]:
    """Deterministic (piece, log-prob) list for a trained Unigram tokenizer.

    The tokenizers trainer picks a stable piece set, but its scores and order vary slightly
    between runs (hash-map order). So keep the pieces and re-estimate the scores by a few
    rounds of hard EM (Viterbi counts), starting from equal scores (fewest pieces)."""
    from tokenizers import Tokenizer, models

    pieces = sorted(p for p, _ in json.loads(tok.to_str())["model"]["vocab"] if p not in _XLMR_SPECIALS)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(text))
    words = sorted(counts)
    scores = {p: -1.0 for p in pieces}
    for _ in range(iterations):
        model = Tokenizer(models.Unigram([("<unk>", 0.0)] + [(p, scores[p]) for p in pieces], 0, False))
        used: Counter[str] = Counter()
        for word, enc in zip(words, model.encode_batch(words, add_special_tokens=False)):
            for piece in enc.tokens:
                used[piece] += counts[word]
        total = sum(used[p] for p in pieces) + 0.5 * len(pieces)
        scores = {p: math.log((used[p] + 0.5) / total) for p in pieces}
    ordered = sorted(pieces, key=lambda p: (-round(scores[p], 9), p))
    return [(s, 0.0) for s in _XLMR_SPECIALS] + [(p, scores[p]) for p in ordered]


def _learn_wordpiece(counts: Mapping[str, int], size: int, prefix: str = "##") -> list[str]:
    """A WordPiece vocabulary learnt by frequency-ranked pair merges (as the tokenizers
    library's WordPieceTrainer does) with ties broken by the pieces' text, so the result is
    identical on every run (the library's trainer breaks ties in hash-map order).

    Returns the alphabet (sorted) followed by the merged pieces in merge order."""
    words = sorted(counts)
    freq = [counts[w] for w in words]
    seqs = [[w[0]] + [prefix + ch for ch in w[1:]] for w in words]
    vocab = sorted({sym for seq in seqs for sym in seq})
    known = set(vocab)
    pair_count: dict[tuple[str, str], int] = {}
    pair_words: dict[tuple[str, str], set[int]] = {}

    def account(i: int, sign: int) -> list[tuple[str, str]]:
        seq, touched = seqs[i], []
        for pair in zip(seq, seq[1:]):
            pair_count[pair] = pair_count.get(pair, 0) + sign * freq[i]
            if sign > 0:
                pair_words.setdefault(pair, set()).add(i)
            touched.append(pair)
        return touched

    for i in range(len(seqs)):
        account(i, +1)
    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)
    merged: list[str] = []
    while heap and len(vocab) + len(merged) < size:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg or -neg <= 0:
            continue  # stale entry
        new = pair[0] + pair[1][len(prefix):]
        for i in sorted(pair_words.pop(pair, ())):
            account(i, -1)
            seq, out, j = seqs[i], [], 0
            while j < len(seq):
                if j + 1 < len(seq) and (seq[j], seq[j + 1]) == pair:
                    out.append(new)
                    j += 2
                else:
                    out.append(seq[j])
                    j += 1
            seqs[i] = out
            for p in account(i, +1):
                heapq.heappush(heap, (-pair_count[p], p))
        pair_count.pop(pair, None)
        if new not in known:
            known.add(new)
            merged.append(new)
    return vocab + merged


def train_tokenizer(texts: Sequence[str], kind: str, out_dir: str | os.PathLike, vocab_size: int = 2000):
    """Train a tokenizer on ``texts`` and save it to ``out_dir``; returns it loaded back.

    kind "xlmr": Unigram (SentencePiece-like, Metaspace) as ``XLMRobertaTokenizerFast`` with
    <s> <pad> </s> <unk> <mask>; "bert"/"labse": cased WordPiece as ``BertTokenizerFast`` with
    [PAD] [UNK] [CLS] [SEP] [MASK]. ``AutoTokenizer.from_pretrained(out_dir)`` loads it offline.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AutoTokenizer, BertTokenizerFast, XLMRobertaTokenizerFast

    kind = _kind(kind)
    texts = _check_texts(texts)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 50:
        raise ConfigError(f"vocab_size must be an integer >= 50, got {vocab_size!r}.")
    if kind == "xlmr":
        # The same pipeline XLMRobertaTokenizer rebuilds on load, so training and loading agree.
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=_XLMR_SPECIALS,
                                          unk_token="<unk>", show_progress=False)
        tok.train_from_iterator(texts, trainer)
        wrapped = XLMRobertaTokenizerFast(vocab=_canonical_unigram(tok, texts))
    else:
        normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=False, lowercase=False)
        pre = pre_tokenizers.BertPreTokenizer()
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
        pieces = _learn_wordpiece(counts, vocab_size - len(_BERT_SPECIALS))
        vocab = {piece: i for i, piece in enumerate(_BERT_SPECIALS + pieces)}
        wrapped = BertTokenizerFast(vocab=vocab, do_lower_case=False, strip_accents=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(out_dir)
    return AutoTokenizer.from_pretrained(out_dir)


# --------------------------------------------------------------------------- model


def _load_tokenizer(tokenizer_dir_or_tokenizer):
    from transformers import AutoTokenizer, PreTrainedTokenizerBase

    if isinstance(tokenizer_dir_or_tokenizer, PreTrainedTokenizerBase):
        return tokenizer_dir_or_tokenizer
    path = Path(tokenizer_dir_or_tokenizer)
    if not (path / "tokenizer.json").exists():
        raise UnknownModelError(f"No tokenizer in {str(path)!r} (tokenizer.json missing). "
                                "Train one first with train_tokenizer(texts, kind, out_dir).")
    return AutoTokenizer.from_pretrained(path)


def _check_arch(arch: Mapping[str, object]) -> dict[str, int]:
    unknown = sorted(set(arch) - set(_ARCH_DEFAULTS))
    if unknown:
        raise ConfigError(f"Unknown tiny-model option(s) {unknown}. Use: {', '.join(_ARCH_DEFAULTS)}.")
    out = {**_ARCH_DEFAULTS, **arch}
    for name, value in out.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    if out["hidden_size"] % out["num_heads"]:
        raise ConfigError(f"hidden_size ({out['hidden_size']}) must be divisible by num_heads "
                          f"({out['num_heads']}).")
    if out["max_position"] < 8:
        raise ConfigError(f"max_position must be >= 8, got {out['max_position']}.")
    return out


def _read_spec(model_dir: Path) -> dict:
    path = model_dir / SPEC_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


def build_tiny_model(kind: str, out_dir: str | os.PathLike, tokenizer_dir_or_tokenizer, *,
                     hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2,
                     intermediate_size: int = 128, max_position: int = 160, seed: int = 0) -> Path:
    """Save a seeded random-initialised ``XLMRobertaModel`` ("xlmr") or ``BertModel`` with pooler
    ("bert"/"labse") plus its tokenizer into ``out_dir``; ``max_position`` is the longest input
    in tokens. Also writes the pooling hbkit's encoder should use (mean / pooler)."""
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    kind = _kind(kind)
    arch = _check_arch({"hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads,
                        "intermediate_size": intermediate_size, "max_position": max_position})
    tok = _load_tokenizer(tokenizer_dir_or_tokenizer)
    needed = ("<s>", "</s>", "<pad>", "<mask>") if kind == "xlmr" else ("[CLS]", "[SEP]", "[PAD]", "[MASK]")
    specials = {tok.cls_token, tok.sep_token, tok.pad_token, tok.mask_token}
    if not set(needed) <= specials:
        raise ConfigError(f"The tokenizer does not fit a {kind!r} model (it needs {', '.join(needed)}). "
                          f"Train it with train_tokenizer(texts, {kind!r}, out_dir).")
    common = dict(vocab_size=len(tok), hidden_size=arch["hidden_size"], num_hidden_layers=arch["num_layers"],
                  num_attention_heads=arch["num_heads"], intermediate_size=arch["intermediate_size"],
                  pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "xlmr":
            # XLM-R numbers positions from pad_token_id + 1, hence the offset.
            config = XLMRobertaConfig(max_position_embeddings=arch["max_position"] + tok.pad_token_id + 1,
                                      type_vocab_size=1, bos_token_id=tok.cls_token_id,
                                      eos_token_id=tok.sep_token_id, **common)
            model = XLMRobertaModel(config)
        else:
            config = BertConfig(max_position_embeddings=arch["max_position"], type_vocab_size=2, **common)
            model = BertModel(config, add_pooling_layer=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    old_max, tok.model_max_length = tok.model_max_length, arch["max_position"]
    tok.save_pretrained(out_dir)
    tok.model_max_length = old_max
    with _quiet_transformers():
        model.save_pretrained(out_dir)
    write_json(out_dir / ENCODER_CONFIG_FILE, {"pooling": "mean" if kind == "xlmr" else "pooler"})
    write_json(out_dir / SPEC_FILE, {"format": _FORMAT, "kind": kind, "arch": arch, "seed": seed,
                                     "vocab_size": len(tok), "mlm": []})
    return out_dir


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
    with _quiet_transformers(), torch.random.fork_rng(devices=[]):
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


def _mask(input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, normal_ids: torch.Tensor,
          mask_prob: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: pick ``mask_prob`` of the non-special tokens; of those 80 % -> mask,
    10 % -> a random token, 10 % unchanged. Returns (inputs, labels with -100 elsewhere)."""
    probs = torch.full(input_ids.shape, mask_prob)
    probs[special] = 0.0
    picked = torch.bernoulli(probs, generator=gen).bool()
    if not picked.any():  # at least one prediction per batch
        candidates = (~special).nonzero()
        row, col = candidates[torch.randint(len(candidates), (1,), generator=gen)][0]
        picked[row, col] = True
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, generator=gen)
    inputs = input_ids.clone()
    inputs[picked & (roll < 0.8)] = mask_id
    randomise = picked & (roll >= 0.8) & (roll < 0.9)
    inputs[randomise] = normal_ids[torch.randint(len(normal_ids), (int(randomise.sum()),), generator=gen)]
    return inputs, labels


class _Batcher:
    """Tokenised texts and masked, padded batches."""

    def __init__(self, tok, texts: list[str], max_length: int, mask_prob: float) -> None:
        self.ids = tok(texts, truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
        self.pad_id, self.mask_id, self.mask_prob = tok.pad_token_id, tok.mask_token_id, mask_prob
        specials = set(tok.all_special_ids)
        self.special_ids = torch.tensor(sorted(specials))
        self.normal_ids = torch.tensor([i for i in range(len(tok)) if i not in specials])

    def batch(self, rows: Sequence[int], gen: torch.Generator) -> dict[str, torch.Tensor]:
        seqs = [self.ids[i] for i in rows]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            input_ids[r, :len(s)] = torch.tensor(s)
            attention[r, :len(s)] = 1
        special = torch.isin(input_ids, self.special_ids)
        inputs, labels = _mask(input_ids, special, self.mask_id, self.normal_ids, self.mask_prob, gen)
        return {"input_ids": inputs, "attention_mask": attention, "labels": labels}

    def fixed_batch(self, size: int, seed: int) -> dict[str, torch.Tensor]:
        """An evaluation batch spread evenly over the texts, with seeded masking."""
        step = max(1, len(self.ids) // size)
        rows = list(range(0, len(self.ids), step))[:size]
        return self.batch(rows, torch.Generator().manual_seed(seed + 7919))


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


def mlm_loss(model_dir: str | os.PathLike, texts: Sequence[str], *, batch_size: int = 32,
             mask_prob: float = 0.15, max_length: int = 64, seed: int = 0, num_threads: int | None = 1) -> float:
    """Masked-LM loss of the model in ``model_dir`` on a fixed, seeded batch of ``texts``
    (the batch :func:`mlm_pretrain` reports ``loss_before`` / ``loss_after`` on)."""
    _check_mlm_args(0, batch_size, 1.0, mask_prob, max_length)
    with _torch_threads(num_threads):
        tok, mlm = _load_mlm(Path(model_dir), seed)
        batcher = _Batcher(tok, _check_texts(texts), max_length, mask_prob)
        return _eval_loss(mlm, batcher.fixed_batch(batch_size, seed))


def mlm_pretrain(model_dir: str | os.PathLike, texts: Sequence[str], *, steps: int = 200, batch_size: int = 32,
                 lr: float = 5e-4, mask_prob: float = 0.15, max_length: int = 64, seed: int = 0,
                 show_progress: bool | None = None, num_threads: int | None = 1) -> Path:
    """Brief masked-LM pre-training of the encoder in ``model_dir`` on ``texts`` (a stand-in for
    multilingual pre-training). Saves the encoder (``AutoModel`` loads it) and the MLM head back
    into ``model_dir`` atomically, and appends the losses on a fixed batch to its spec file.
    Seeded and deterministic on CPU; AdamW with 10 % warm-up then linear decay.
    ``num_threads``: torch threads while training (None: leave as is)."""
    _check_mlm_args(steps, batch_size, lr, mask_prob, max_length)
    with _torch_threads(num_threads):
        return _mlm_pretrain(Path(model_dir), texts, steps, batch_size, lr, mask_prob, max_length, seed,
                             show_progress)


def _mlm_pretrain(model_dir: Path, texts: Sequence[str], steps: int, batch_size: int, lr: float,
                  mask_prob: float, max_length: int, seed: int, show_progress: bool | None) -> Path:
    texts = _check_texts(texts)
    start = time.perf_counter()
    tok, mlm = _load_mlm(model_dir, seed)
    batcher = _Batcher(tok, texts, max_length, mask_prob)
    fixed = batcher.fixed_batch(batch_size, seed)
    loss_before = _eval_loss(mlm, fixed)
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in mlm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    order: list[int] = []
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout
        mlm.train()
        loop_start = time.perf_counter()
        bar = progress(range(steps), show=show_progress, desc="MLM pre-training", unit="step")
        for _ in bar:
            if len(order) < batch_size:
                order += torch.randperm(len(batcher.ids), generator=gen).tolist()
            rows, order = order[:batch_size], order[batch_size:]
            loss = mlm(**batcher.batch(rows, gen)).loss
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"The MLM loss became {float(loss)} at step {len(losses)}; lower "
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
    spec = _read_spec(model_dir)
    spec.setdefault("mlm", []).append({
        "steps": steps, "batch_size": batch_size, "lr": lr, "mask_prob": mask_prob, "max_length": max_length,
        "seed": seed, "n_texts": len(texts), "loss_before": loss_before, "loss_after": loss_after,
        "first_train_loss": losses[0] if losses else None, "last_train_loss": losses[-1] if losses else None,
        "seconds": round(seconds, 3),
        "steps_per_second": round(steps / loop_seconds, 2) if steps and loop_seconds > 0 else None})
    from safetensors.torch import save_file

    with atomic_dir(model_dir) as tmp:
        for item in model_dir.iterdir():
            if item.name not in ("config.json", "model.safetensors", HEAD_FILE, SPEC_FILE):
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        with _quiet_transformers():
            mlm.base_model.save_pretrained(tmp)
        save_file(_head_state(mlm), tmp / HEAD_FILE)
        write_json(tmp / SPEC_FILE, spec)
    return model_dir


# --------------------------------------------------------------------------- convenience


def _texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _complete(model_dir: Path) -> bool:
    return all((model_dir / f).exists() for f in _MODEL_FILES + (SPEC_FILE, ENCODER_CONFIG_FILE))


def make_tiny_model(kind: str, out_dir: str | os.PathLike, texts: Sequence[str], *, vocab_size: int = 2000,
                    mlm_steps: int = 0, seed: int = 0, mlm_options: Mapping[str, float] | None = None,
                    show_progress: bool | None = None, **arch: int) -> Path:
    """Train a tokenizer, build a tiny model and optionally MLM-pre-train it, in ``out_dir``.

    ``arch``: hidden_size, num_layers, num_heads, intermediate_size, max_position.
    ``mlm_options``: batch_size, lr, mask_prob, max_length for :func:`mlm_pretrain`.
    When ``out_dir`` already holds a complete model built with the same request (kind, sizes,
    seed, steps and the same texts), it is reused as is. The folder is replaced atomically.
    """
    kind = _kind(kind)
    texts = _check_texts(texts)
    arch = _check_arch(arch)
    options = dict(mlm_options or {})
    unknown = sorted(set(options) - set(_MLM_OPTIONS))
    if unknown:
        raise ConfigError(f"Unknown mlm_options {unknown}. Use: {', '.join(_MLM_OPTIONS)}.")
    if isinstance(mlm_steps, bool) or not isinstance(mlm_steps, int) or mlm_steps < 0:
        raise ConfigError(f"mlm_steps must be an integer >= 0, got {mlm_steps!r}.")
    request = {"format": _FORMAT, "kind": kind, "vocab_size": vocab_size, "arch": arch, "seed": seed,
               "mlm_steps": mlm_steps, "mlm_options": options, "n_texts": len(texts),
               "texts_sha256": _texts_digest(texts)}
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists():
        spec = _read_spec(out_dir)
        if _complete(out_dir) and spec.get("request") == request:
            return out_dir
        if any(out_dir.iterdir()) and not (out_dir / SPEC_FILE).exists():
            raise ConfigError(f"{out_dir} exists and is not an hbkit tiny model; refusing to overwrite it. "
                              "Choose an empty or new folder, or delete it.")
    with atomic_dir(out_dir) as tmp:
        train_tokenizer(texts, kind, tmp, vocab_size=vocab_size)
        build_tiny_model(kind, tmp, tmp, seed=seed, **arch)
        if mlm_steps:
            mlm_pretrain(tmp, texts, steps=mlm_steps, seed=seed, show_progress=show_progress, **options)
        spec = _read_spec(tmp)
        spec["request"] = request
        write_json(tmp / SPEC_FILE, spec)
    return out_dir
