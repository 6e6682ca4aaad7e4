"""Tiny offline encoders: a trained tokenizer, a random-initialised XLM-R or BERT/LaBSE-shaped
model, a brief masked-LM pre-training and optionally a translation-LM stage, all saved so
``AutoModel`` / ``AutoTokenizer`` load them without the hub.

They stand in for the real pre-trained encoders when there is no internet or GPU (the demo
world). They are TOYS: a few layers of width 64 learn the demo world, not language.

Translation LM (TLM, Lample & Conneau 2019, "Cross-lingual Language Model Pretraining"):
masked LM over the two translations of one item joined as one pair-encoded sequence, so the
model can predict a masked token from the other language's sentence. It gives the encoder a
starting cross-lingual alignment, as real multilingual encoders have before fine-tuning.
As in XLM the second sentence's positions restart; a token type (not a language embedding)
tells the two sentences apart.
"""
from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import torch

from hbkit.engine.atomic import atomic_dir, write_json
from hbkit.models.bi_encoder import ENCODER_CONFIG_FILE
from hbkit.errors import ConfigError, DataError, UnknownModelError

if TYPE_CHECKING:
    pass

__all__ = ["KINDS", "SPEC_FILE", "train_tokenizer", "build_tiny_model", "make_tiny_model"]

#: Accepted kinds -> canonical kind ("xlmr": Unigram + XLMRobertaModel; "bert": WordPiece + BertModel).
KINDS: dict[str, str] = {"xlmr": "xlmr", "bert": "bert", "labse": "bert"}
SPEC_FILE = "hbkit_tiny.json"
HEAD_FILE = "hbkit_mlm_head.safetensors"
_FORMAT = 2  # 2: masking by DataCollatorForLanguageModeling, WordPiece alphabet and merge counts fixed
_XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, as XLMRobertaTokenizer expects
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_ARCH_DEFAULTS = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128,
                  "max_position": 160}
_MLM_OPTIONS = ("batch_size", "lr", "mask_prob", "max_length")
EVAL_SEED_OFFSET = 7919  # the fixed evaluation batch masks with seed + this, apart from training
_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise UnknownModelError(f"Unknown tiny model kind {kind!r}. Use one of: {', '.join(KINDS)} "
                                "('labse' is the BERT-shaped model).")
    return KINDS[kind]


def check_texts(texts: Sequence[str]) -> list[str]:
    """The non-empty strings of ``texts`` (a DataError for a bare string or when none is left)."""
    if isinstance(texts, str):
        raise DataError("texts must be a list of strings, got a single string. Wrap it in a list.")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise DataError("No non-empty texts to train on. Pass e.g. make_demo_world().texts().")
    return texts


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
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
def torch_threads(n: int | None) -> Iterator[None]:
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
    """Deterministic (piece, log-prob) list for a Unigram tokenizer trained by ``UnigramTrainer``.

    Own code because determinism demands it: the trainer picks the same piece set on every
    run, but its final EM scores and their order differ between runs (by up to 0.007 nats on
    the demo texts, with RAYON_NUM_THREADS=1 too; its hash maps are randomly seeded per
    process), and the scores decide both the ids and the segmentation. So keep the trainer's
    pieces and re-estimate their scores by a few rounds of hard EM (Viterbi counts), starting
    from equal scores (fewest pieces), with ties ordered by the piece text."""
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
    """The vocabulary ``tokenizers.trainers.WordPieceTrainer`` learns from word ``counts``
    (``size`` pieces, or the whole alphabet when that is larger), ties broken by the pieces' text.

    Own code because determinism demands it: the library trainer breaks ties between equally
    frequent pairs by symbol ids assigned in hash-map order, so on the demo texts its piece
    *set* differs between runs (even with RAYON_NUM_THREADS=1 and sorted input). The
    algorithm is the library's: the alphabet is every character plus the ``prefix`` form of
    every character seen inside a word; then the most frequent adjacent pair is merged until
    ``size`` (a pair whose count dropped is re-queued with its current count). Where the
    library has no ties it gives the same set (tested).

    Returns the characters (sorted), the prefixed characters (sorted), then the merged pieces
    in merge order."""
    words = sorted(counts)
    freq = [counts[w] for w in words]
    seqs = [[w[0]] + [prefix + ch for ch in w[1:]] for w in words]
    vocab = sorted({ch for w in words for ch in w}) + sorted({sym for seq in seqs for sym in seq[1:]})
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
        current = pair_count.get(pair, 0)
        if current != -neg:  # stale entry: the count changed since it was queued
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
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

    kind "xlmr": Unigram (SentencePiece-like: whitespace split, Metaspace "▁" prefix), pieces
    from ``tokenizers.trainers.UnigramTrainer``, as ``XLMRobertaTokenizerFast`` with
    <s> <pad> </s> <unk> <mask>; "bert"/"labse": cased WordPiece (BERT normaliser without
    lowercasing or accent stripping, BERT pre-tokeniser), the ``WordPieceTrainer`` algorithm,
    as ``BertTokenizerFast`` with [PAD] [UNK] [CLS] [SEP] [MASK]. Same texts => the same
    tokenizer, byte for byte. ``AutoTokenizer.from_pretrained(out_dir)`` loads it offline.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AutoTokenizer, BertTokenizerFast, XLMRobertaTokenizerFast

    kind = _kind(kind)
    texts = check_texts(texts)
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
        # The normaliser and pre-tokeniser BertTokenizerFast(do_lower_case=False, strip_accents=False)
        # applies on load; the vocabulary is learnt by _learn_wordpiece (see there why not the trainer).
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


def read_spec(model_dir: Path) -> dict:
    """The tiny model's build record (``SPEC_FILE``) in ``model_dir``; {} when absent."""
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
    in tokens. Also writes the pooling hbkit's encoder should use (mean / pooler). Token types:
    1 for "xlmr" (as XLM-R; :func:`tlm_pretrain` adds a second), 2 for "bert"."""
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
    with quiet_transformers():
        model.save_pretrained(out_dir)
    write_json(out_dir / ENCODER_CONFIG_FILE, {"pooling": "mean" if kind == "xlmr" else "pooler"})
    write_json(out_dir / SPEC_FILE, {"format": _FORMAT, "kind": kind, "arch": arch, "seed": seed,
                                     "vocab_size": len(tok), "mlm": []})
    return out_dir



_PRETRAINING = ("mlm_pretrain", "mlm_loss", "translation_pairs", "tlm_pretrain", "tlm_loss", "tlm_context_losses",
                "check_parallel")


def __getattr__(name: str):
    """The pre-training functions live in :mod:`hbkit.models.pretraining` (importable from here too)."""
    if name in _PRETRAINING:
        from hbkit.models import pretraining

        return getattr(pretraining, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# --------------------------------------------------------------------------- convenience


def _digest(texts: Sequence[str] | Sequence[Sequence[str]]) -> str:
    """SHA-256 of texts (or of lists of texts), order-sensitive."""
    h = hashlib.sha256()
    for t in texts:
        if isinstance(t, str):
            h.update(t.encode("utf-8"))
        else:
            h.update(b"\1")
            for u in t:
                h.update(u.encode("utf-8"))
                h.update(b"\0")
        h.update(b"\0")
    return h.hexdigest()


def _complete(model_dir: Path) -> bool:
    return all((model_dir / f).exists() for f in _MODEL_FILES + (SPEC_FILE, ENCODER_CONFIG_FILE))


def _check_options(options: Mapping[str, float] | None, what: str) -> dict:
    options = dict(options or {})
    unknown = sorted(set(options) - set(_MLM_OPTIONS))
    if unknown:
        raise ConfigError(f"Unknown {what} {unknown}. Use: {', '.join(_MLM_OPTIONS)}.")
    return options


def _check_steps(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}.")
    return value


def make_tiny_model(kind: str, out_dir: str | os.PathLike, texts: Sequence[str], *, vocab_size: int = 2000,
                    mlm_steps: int = 0, seed: int = 0, mlm_options: Mapping[str, float] | None = None,
                    tlm_steps: int = 0, parallel_texts: Sequence[Sequence[str]] | None = None,
                    tlm_options: Mapping[str, float] | None = None,
                    show_progress: bool | None = None, **arch: int) -> Path:
    """Train a tokenizer on ``texts``, build a tiny model, optionally MLM-pre-train it on
    ``texts`` (``mlm_steps``), then optionally TLM-pre-train it on ``parallel_texts``
    (``tlm_steps``; lists of translations, e.g. ``translation_pairs(world.train)``), in ``out_dir``.

    ``arch``: hidden_size, num_layers, num_heads, intermediate_size, max_position.
    ``mlm_options`` / ``tlm_options``: batch_size, lr, mask_prob, max_length for
    :func:`mlm_pretrain` / :func:`tlm_pretrain`. ``parallel_texts`` is ignored when
    ``tlm_steps`` is 0 (the build is then the same as without it).
    When ``out_dir`` already holds a complete model built with the same request (kind, sizes,
    seed, steps and the same texts), it is reused as is. The folder is replaced atomically.
    """
    from hbkit.models.pretraining import check_parallel, mlm_pretrain, tlm_pretrain

    kind = _kind(kind)
    texts = check_texts(texts)
    arch = _check_arch(arch)
    options = _check_options(mlm_options, "mlm_options")
    mlm_steps = _check_steps(mlm_steps, "mlm_steps")
    tlm_steps = _check_steps(tlm_steps, "tlm_steps")
    request = {"format": _FORMAT, "kind": kind, "vocab_size": vocab_size, "arch": arch, "seed": seed,
               "mlm_steps": mlm_steps, "mlm_options": options, "n_texts": len(texts),
               "texts_sha256": _digest(texts)}
    items: list[list[str]] = []
    if tlm_steps:
        if parallel_texts is None:
            raise ConfigError("tlm_steps > 0 needs parallel_texts: lists of translations, e.g. "
                              "translation_pairs(make_demo_world().train).")
        items = check_parallel(parallel_texts)
        request.update(tlm_steps=tlm_steps, tlm_options=_check_options(tlm_options, "tlm_options"),
                       n_parallel=len(items), parallel_sha256=_digest(items))
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists():
        spec = read_spec(out_dir)
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
        if tlm_steps:
            tlm_pretrain(tmp, items, steps=tlm_steps, seed=seed, show_progress=show_progress,
                         **request["tlm_options"])
        spec = read_spec(tmp)
        spec["request"] = request
        write_json(tmp / SPEC_FILE, spec)
    return out_dir
