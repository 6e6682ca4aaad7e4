"""TREC-style collections from explicit files: topics, qrels, a JSONL passage corpus, dense evaluation.

Works for any collection distributed in these formats (MIRACL, Mr. TyDi, the TREC tracks
anserini and pyserini ship); :mod:`hbkit.datasets.miracl` adds MIRACL's file names, hub
copies and languages on top. Every file may be gzipped (recognised by its ``.gz`` name
or by its content), and ids are strings everywhere (``81674#0``, ``0012``): never cast
to int.

- **Topics** (:func:`read_topics`): one query per line, ``qid<TAB>text`` (anserini's
  ``.tsv`` topics), or the classic TREC SGML blocks ``<top> <num> Number: 301 <title> ...
  </top>`` (the title is the query).
- **Qrels** (:func:`read_qrels`): ``qid iteration docid relevance`` per line, whitespace
  separated; the iteration field (``Q0``) is ignored.
- **Corpus** (:func:`iter_jsonl_corpus`): ``.jsonl`` / ``.jsonl.gz`` files, one passage per
  line, with the id under ``docid`` (MIRACL, Mr. TyDi), ``id`` (pyserini) or ``_id``
  (BEIR) and the text under ``title`` and ``text`` (or pyserini's ``contents``).

**Passage text** (ours): ``title + " " + text`` (either alone when the other is empty),
the usual input of dense retrievers on these collections (e.g. mDPR in pyserini).

**Evaluation** (:func:`evaluate_trec`): the judged queries are encoded (kind "query"), the
corpus is read, encoded and searched chunk by chunk with the exact streaming searcher
(:mod:`hbkit.engine.search`; no chunk is kept), and the top-``k`` run is scored with
trec_eval's ``ndcg_cut.10`` and ``recall.100`` (:mod:`hbkit.trec_metrics`). Judged
documents missing from the corpus cannot be retrieved; they are counted and warned about.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from hbkit.datasets.lines import brief, iter_lines, is_gzip, open_binary
from hbkit.errors import ConfigError, DataError
from hbkit.languages import check_language

__all__ = ["TrecTopicsQrels", "read_topics", "read_qrels", "load_trec_topics_qrels", "passage_text",
           "iter_jsonl_corpus", "evaluate_trec", "DEFAULT_CHUNK_SIZE"]

#: Passages read, encoded and searched at a time.
DEFAULT_CHUNK_SIZE = 16_384


def _lines(path: str | os.PathLike, what: str) -> Iterator[tuple[int, str]]:
    """(line number, text) for every non-blank line of a UTF-8 file, gunzipped when it is gzip."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist. Check the path.")
    gz = is_gzip(path)
    for lineno, line in iter_lines(str(path), lambda: open_binary(path), compressed=gz, on_error=lambda exc: DataError(
            f"{path}: could not be read ({brief(exc)}). The file may be truncated or a corrupt .gz: re-download it.")):
        if line.strip():
            yield lineno, line


# --------------------------------------------------------------------------- topics and qrels

_SGML_FIELD = re.compile(r"<(num|title|desc|narr)>|</(?:num|title|desc|narr|top)>", re.I)


def _sgml_topics(path: Path, lines: Iterable[tuple[int, str]]) -> dict[str, str]:
    """Topics from TREC SGML ``<top>`` blocks: ``{num: title}``."""
    topics: dict[str, str] = {}
    first_line: dict[str, int] = {}
    block: list[str] | None = None
    start = 0
    for lineno, line in lines:
        low = line.strip().lower()
        if low.startswith("<top>"):
            if block is not None:
                raise DataError(f"{path}, line {lineno}: <top> inside the topic opened on line {start}. Close "
                                "every topic with </top>.")
            block, start = [line.strip()[5:]], lineno
            continue
        if block is None:
            raise DataError(f"{path}, line {lineno}: text outside a <top> ... </top> block: {line[:80]!r}. Fix or "
                            "remove the line.")
        if low.startswith("</top>"):
            fields: dict[str, str] = {}
            text = "\n".join(block)
            matches = list(_SGML_FIELD.finditer(text))
            for m, nxt in zip(matches, matches[1:] + [None]):
                if m.group(1):
                    body = text[m.end():nxt.start() if nxt is not None else len(text)]
                    fields.setdefault(m.group(1).lower(), " ".join(body.split()))
            num = re.sub(r"^number:\s*", "", fields.get("num", ""), flags=re.I).strip()
            title = re.sub(r"^topic:\s*", "", fields.get("title", ""), flags=re.I).strip()
            if not num or not title:
                raise DataError(f"{path}, line {start}: the topic has no {'<num>' if not num else '<title>'} (a "
                                "TREC topic needs '<num> Number: 301' and '<title> query text').")
            if num in topics:
                raise DataError(f"{path}, line {start}: query id {num!r} already appeared on line {first_line[num]}. "
                                "Each query must appear once: remove the duplicate.")
            topics[num], first_line[num] = title, start
            block = None
            continue
        block.append(line)
    if block is not None:
        raise DataError(f"{path}: the topic opened on line {start} is not closed with </top>. The file may be "
                        "truncated.")
    return topics


def read_topics(path: str | os.PathLike) -> dict[str, str]:
    """``{qid: query text}`` from a topics file: ``qid<TAB>text`` lines or TREC SGML ``<top>`` blocks.

    The file may be gzipped. Blank lines are skipped; a malformed line, an empty id or
    text, or a repeated id raises :class:`DataError` naming the file and line.
    """
    lines = _lines(path, "topics")
    first = next(lines, None)
    if first is None:
        raise DataError(f"topics file {path} has no topics. Check that it is the right file.")
    if first[1].strip().lower().startswith("<top>"):
        return _sgml_topics(Path(path), _chain(first, lines))
    topics: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in _chain(first, lines):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            hint = " (this looks like a qrels line: pass it to read_qrels)" if len(line.split()) == 4 else ""
            raise DataError(f"{path}, line {lineno}: expected 'qid<TAB>query text', got {line[:80]!r}{hint}. "
                            "Fix or remove the line.")
        qid, text = parts[0].strip(), parts[1].strip()
        if qid in topics:
            raise DataError(f"{path}, line {lineno}: query id {qid!r} already appeared on line {first_line[qid]}. "
                            "Each query must appear once: remove the duplicate.")
        topics[qid], first_line[qid] = text, lineno
    return topics


def _chain(first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """``{qid: {docid: relevance}}`` from a TREC qrels file: ``qid iteration docid relevance`` per line.

    The file may be gzipped. Fields are whitespace separated; the iteration field is
    ignored; ids stay strings. A line without 4 fields, a non-integer relevance or a
    repeated (qid, docid) pair raises :class:`DataError` naming the file and line.
    """
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in _lines(path, "qrels"):
        parts = line.split()
        if len(parts) != 4:
            raise DataError(f"{path}, line {lineno}: expected 4 fields 'qid Q0 docid relevance', got "
                            f"{len(parts)} in {line[:80]!r}. Fix or remove the line.")
        qid, _, docid, rel = parts
        try:
            value = int(rel)
        except ValueError:
            raise DataError(f"{path}, line {lineno}: relevance {rel!r} is not an integer. "
                            "Use integer judgements (0 = not relevant, 1 = relevant).") from None
        docs = qrels.setdefault(qid, {})
        if docid in docs:
            raise DataError(f"{path}, line {lineno}: document {docid!r} is judged twice for query {qid!r}. "
                            "Keep one judgement per (query, document).")
        docs[docid] = value
    return qrels


@dataclass(frozen=True)
class TrecTopicsQrels:
    """Topics and qrels of one collection and split; ``source`` says where they were read from."""

    topics: dict[str, str]
    qrels: dict[str, dict[str, int]]
    source: str

    @property
    def query_ids(self) -> list[str]:
        """Judged query ids (those with qrels), in topics-file order."""
        return [q for q in self.topics if q in self.qrels]

    def __repr__(self) -> str:
        n_rel = sum(1 for docs in self.qrels.values() for r in docs.values() if r > 0)
        return (f"TrecTopicsQrels(queries={len(self.topics)}, judged_queries={len(self.query_ids)}, "
                f"relevant={n_rel}, source={self.source!r})")


def load_trec_topics_qrels(topics_path: str | os.PathLike, qrels_path: str | os.PathLike) -> TrecTopicsQrels:
    """Read and cross-check a topics file and its qrels (any TREC-style collection, gzipped or not).

    Every judged query must have a topic (else :class:`DataError`: the files do not
    belong together); topics without judgements are kept but not evaluated.
    """
    topics, qrels = read_topics(topics_path), read_qrels(qrels_path)
    orphans = [q for q in qrels if q not in topics]
    if orphans:
        raise DataError(f"{len(orphans)} judged queries of {qrels_path} have no topic in {topics_path} "
                        f"(e.g. {orphans[:3]}). Use the topics and qrels of the same collection, language and split.")
    return TrecTopicsQrels(topics, qrels, f"{topics_path} + {qrels_path}")


# --------------------------------------------------------------------------- corpus

def passage_text(title: Any, text: Any) -> str:
    """The text encoded for a passage: ``title + " " + text`` (either alone if the other is empty)."""
    title = title.strip() if isinstance(title, str) else ""
    text = text.strip() if isinstance(text, str) else ""
    return f"{title} {text}" if title and text else (title or text)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def corpus_files(source: Path, subfolder: str | None = None) -> list[Path]:
    """The JSONL files of a corpus: ``source`` itself, or its ``.jsonl(.gz)`` files in natural name order.

    With ``subfolder``, a folder of that name inside ``source`` is used when present.
    """
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"Corpus source {source} does not exist. Pass a .jsonl(.gz) file or a folder of them.")
    folder = source / subfolder if subfolder and (source / subfolder).is_dir() else source
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz"))),
                   key=_natural_key)
    if not files:
        raise DataError(f"No .jsonl or .jsonl.gz files in {folder}. Put the corpus shards (docs-0.jsonl.gz, ...) "
                        "there, or pass one file.")
    return files


def jsonl_rows(files: list[Path]) -> Iterator[tuple[str, Any, Any, Any]]:
    """(where, docid, title, text) per passage; ``where`` is 'file, line N' for messages."""
    for path in files:
        for lineno, line in _lines(path, "corpus"):
            where = f"{path}, line {lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg}). Each line must be one passage "
                                '{"docid": ..., "title": ..., "text": ...}; re-download or fix the file.') from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object per line, got {type(row).__name__}.")
            docid = next((row[k] for k in ("docid", "id", "_id") if k in row), None)
            text = row["text"] if "text" in row else row.get("contents", "")
            yield where, docid, row.get("title", ""), text


def passage_chunks(rows: Iterable[tuple[str, Any, Any, Any]], chunk_size: int,
                   label: str) -> Iterator[tuple[list[str], list[str]]]:
    """Chunks ``(docids, texts)`` of at most ``chunk_size`` passages; empty passages are skipped (warning)."""
    ids: list[str] = []
    texts: list[str] = []
    empty = 0
    for where, docid, title, text in rows:
        if not isinstance(docid, str) or not docid.strip():
            raise DataError(f"{where}: passage without a string 'docid' (got {docid!r}). "
                            "Each passage needs a docid such as '81674#0'.")
        passage = passage_text(title, text)
        if not passage:
            empty += 1
            continue
        ids.append(docid)
        texts.append(passage)
        if len(ids) == chunk_size:
            yield ids, texts
            ids, texts = [], []
    if ids:
        yield ids, texts
    if empty:
        warnings.warn(f"Skipped {empty} {label} passages with empty title and text (nothing to encode).",
                      stacklevel=2)


def check_chunk_size(chunk_size: Any) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be an integer >= 1, got {chunk_size!r}.")
    return chunk_size


def iter_jsonl_corpus(source: str | os.PathLike, chunk_size: int = DEFAULT_CHUNK_SIZE
                      ) -> Iterator[tuple[list[str], list[str]]]:
    """Stream a local JSONL corpus (file or folder, see the module doc) as chunks ``(docids, texts)``.

    The source is checked when called, before the first chunk is read.
    """
    chunk_size = check_chunk_size(chunk_size)
    files = corpus_files(Path(source).expanduser())
    return passage_chunks(jsonl_rows(files), chunk_size, f"corpus {source}")


# --------------------------------------------------------------------------- evaluation

def dense_evaluate(encoder, judged: TrecTopicsQrels, chunks: Iterable[tuple[list[str], list[str]]],
                   base: Mapping[str, Any], *, k: int, batch_size: int, show_progress: bool | None,
                   collection: str, corpus_label: str, full_corpus_hint: str, return_run: bool):
    """Encode, search and score (the shared body of :func:`evaluate_trec` and MIRACL's evaluation).

    ``collection`` names the judged documents in the missing-documents warning ("MIRACL sw"),
    ``corpus_label`` the corpus in messages and the progress bar.
    """
    import pandas as pd

    from hbkit.engine.progress import progress, progress_enabled
    from hbkit.engine.search import StreamingTopK
    from hbkit.evaluation import COLUMNS
    from hbkit.trec_metrics import trec_evaluate

    show = progress_enabled(show_progress)
    qids = judged.query_ids
    if not qids:
        raise DataError(f"No judged query of {judged.source} has a topic: nothing to evaluate.")
    q_emb = encoder.encode([judged.topics[q] for q in qids], kind="query", batch_size=batch_size, show_progress=show)
    searcher = StreamingTopK(q_emb, k)
    need = {d for docs in judged.qrels.values() for d in docs}
    relevant = {d for docs in judged.qrels.values() for d, r in docs.items() if r > 0}
    seen: set[str] = set()
    bar = progress(total=None, show=show, desc=corpus_label, unit="passage")
    try:
        for ids, texts in chunks:
            emb = encoder.encode(texts, kind="passage", batch_size=batch_size, show_progress=False)
            searcher.add(emb, ids)
            seen.update(need.intersection(ids))
            bar.update(len(ids))
    finally:
        bar.close()
    if searcher.n_docs == 0:
        raise DataError(f"The {corpus_label} holds no passage: check the corpus source.")
    missing_judged, missing_relevant = len(need - seen), len(relevant - seen)
    if missing_judged:
        what = f"{collection} " if collection else ""
        warnings.warn(f"{missing_judged} of {len(need)} judged {what}documents ({missing_relevant} of {len(relevant)} "
                      f"relevant) are not in the corpus ({searcher.n_docs} passages): they can never be "
                      "retrieved, so the scores are not comparable with published ones. "
                      f"{full_corpus_hint}", stacklevel=3)
    run = searcher.to_run(qids)
    scores = trec_evaluate(run, judged.qrels, ndcg_ks=(10,), recall_ks=(100,))
    df = pd.DataFrame([{**base, "metric": name, "value": s.mean, "n_queries": s.n_queries}
                       for name, s in scores.items()], columns=COLUMNS)
    df = df.astype({"seed": "int64", "n_queries": "int64", "value": "float64"})
    df.attrs.update(n_passages=searcher.n_docs, missing_judged_docs=missing_judged,
                    missing_relevant_docs=missing_relevant)
    return (df, run) if return_run else df


def check_evaluation_args(encoder, k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 100:
        raise ConfigError(f"k must be an integer >= 100 (Recall@100 needs the top 100), got {k!r}.")
    if not hasattr(encoder, "encode"):
        raise ConfigError(f"{type(encoder).__name__} has no encode(texts, kind=...) method: pass an hbkit encoder.")


def evaluate_trec(encoder, lang: str, topics: str | os.PathLike | TrecTopicsQrels, qrels: str | os.PathLike | None,
                  corpus: str | os.PathLike, *, benchmark: str, k: int = 100, batch_size: int = 64,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, meta: Mapping[str, Any] | None = None,
                  show_progress: bool | None = None, return_run: bool = False):
    """nDCG@10 and Recall@100 of ``encoder`` on a TREC-style collection from explicit files (monolingual).

    Args:
        encoder: has ``encode(texts, kind="query"|"passage", batch_size=..., show_progress=...)``
            returning L2-normalised float embeddings (n, d).
        lang: the language of queries and passages (labels the result rows).
        topics, qrels: the topics and qrels files (gzipped or not); or ``topics`` a
            :class:`TrecTopicsQrels` from :func:`load_trec_topics_qrels` and ``qrels=None``.
        corpus: a ``.jsonl(.gz)`` file or a folder of them (:func:`iter_jsonl_corpus`).
        benchmark: the ``benchmark`` column of the rows, e.g. ``"mrtydi-test"``.
        k: retrieval depth (>= 100 so that Recall@100 is exact).

    Returns the tidy table of :func:`hbkit.datasets.miracl.evaluate_miracl` (metrics
    ``nDCG@10`` and ``R@100`` averaged over the judged queries, ``df.attrs`` with
    ``n_passages``, ``missing_judged_docs``, ``missing_relevant_docs``), and the run
    ``{qid: {docid: score}}`` with ``return_run``.
    """
    from hbkit.evaluation import row_keys

    check_evaluation_args(encoder, k)
    lang = check_language(lang, where="evaluate_trec")
    if not isinstance(benchmark, str) or not benchmark.strip():
        raise ConfigError(f"benchmark must be a non-empty name such as 'mrtydi-test', got {benchmark!r}.")
    base = {**row_keys(meta, benchmark), "setting": "monolingual", "query_lang": lang, "candidate_lang": lang}
    if isinstance(topics, TrecTopicsQrels):
        if qrels is not None:
            raise ConfigError("evaluate_trec got a TrecTopicsQrels and a qrels file: pass qrels=None (the "
                              "judgements are in the TrecTopicsQrels) or two file paths.")
        judged = topics
    else:
        if qrels is None:
            raise ConfigError("evaluate_trec needs the qrels file beside the topics file (or a TrecTopicsQrels).")
        judged = load_trec_topics_qrels(topics, qrels)
    chunks = iter_jsonl_corpus(corpus, chunk_size)  # checks the source before the slow encoding
    return dense_evaluate(encoder, judged, chunks, base, k=k, batch_size=batch_size, show_progress=show_progress,
                          collection=benchmark, corpus_label=f"corpus {corpus}", return_run=return_run,
                          full_corpus_hint="Use the collection's full corpus for comparable numbers.")

