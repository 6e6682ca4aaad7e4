"""mMARCO training triples in several languages (Bonifacio et al. 2021) as a :class:`~hbkit.parallel.ParallelDataset`.

:func:`load_mmarco`: Google-translated MS MARCO passage ranking ("v2"): MS MARCO's training
triples ``(query, positive passage, negative passage)`` in 14 hbkit languages
(:data:`MMARCO_LANGUAGES`; the paper used en ar zh de es ru hi). The hub dataset
``unicamp-dl/mmarco`` has the configs ``<language>`` (triples), ``collection-<language>``,
``queries-<language>`` and ``runs-<language>`` for arabic, chinese, dutch, english, french,
german, hindi, indonesian, italian, japanese, portuguese, russian, spanish and
vietnamese. These configs are produced by a loading script (``mmarco.py``) that
``datasets`` 4.0 and later refuse to run, so ``load_dataset("unicamp-dl/mmarco",
"english")`` fails on current installs. hbkit therefore streams the raw files that
script reads, with ``huggingface_hub``'s ``HfFileSystem`` (the layer ``datasets`` itself
streams ``hf://`` files with; it honours ``HF_TOKEN``, ``HF_ENDPOINT`` mirrors and
``HF_HUB_OFFLINE``), never downloading a whole file to disk:

- ``data/triples.train.ids.small.tsv``: ``qid<TAB>positive pid<TAB>negative pid``, shared
  by all languages (the translations keep MS MARCO's ids), 39.8 M lines;
- ``data/google/queries/train/<language>_queries.train.tsv``: ``qid<TAB>text``;
- ``data/google/collections/<language>_collection.tsv``: ``pid<TAB>text`` (8.8 M passages,
  about 3 GB per language).

Translations are aligned **by these ids** (group id ``mmarco:<qid>``). The first
triples are taken, then each language's queries file and collection are streamed once,
keeping only the needed rows and stopping as soon as all were found. The collection is
ordered by id while the triples are not, so this is close to one full pass over each
collection: several minutes per language. Do it once and save the result with
:func:`hbkit.datasets.files.write_parallel_file`, then train from that file.

A local ``source`` folder may hold either the same raw files (a partial clone of the hub
repository, flat or in its ``data/...`` layout, optionally gzipped; same id alignment), or
aligned joined triples per language, ``<lang>.tsv`` (``query<TAB>positive<TAB>negative``
per line, as in mMARCO's joined triples) or ``<lang>.jsonl`` (``{"query", "positive",
"negative"}``, optionally ``"id"``), where line *i* of every file is the translation of
the same triple (group id ``mmarco:<i>``, *i* counted from 0, or ``mmarco:<id>`` when the
rows carry an ``id``, which must then agree across languages). The files are read line
by line in lockstep; one ending before the others is an error (misaligned).

Choices **(ours)**: MS MARCO lists each query with many (positive, negative) pairs.
Two triples of the same query, or with the same positive passage, in one batch would
be false negatives of each other, so only the first triple of each query and of each
positive passage is kept (by ids; in the joined-text format by the first language's
query and positive text). ``max_groups`` counts the groups kept; ``seed`` *k* skips the
first *k* × ``max_groups`` of them, so different seeds give disjoint subsets (0 = the
first triples of the file).
"""
from __future__ import annotations

import json
import logging
import numbers
import os
from pathlib import Path
from typing import Iterator, Sequence

from hbkit.datasets.files import text_cell
from hbkit.datasets.lines import brief, check_count, is_gzip, iter_lines, open_binary
from hbkit.errors import ConfigError, DataError, UnknownLanguageError
from hbkit.languages import LANGUAGES, check_languages
from hbkit.parallel import ParallelDataset, ParallelItem

log = logging.getLogger(__name__)

__all__ = ["MMARCO_LANGUAGES", "PAPER_MMARCO_LANGUAGES", "MMARCO_REPO", "load_mmarco"]

#: mMARCO languages hbkit knows: ISO code -> the language name in mMARCO's file and config names.
MMARCO_LANGUAGES: dict[str, str] = {
    "ar": "arabic", "de": "german", "en": "english", "es": "spanish", "fr": "french", "hi": "hindi",
    "id": "indonesian", "it": "italian", "ja": "japanese", "nl": "dutch", "pt": "portuguese", "ru": "russian",
    "vi": "vietnamese", "zh": "chinese",
}
#: The mMARCO languages the paper trained on.
PAPER_MMARCO_LANGUAGES: tuple[str, ...] = ("en", "ar", "zh", "de", "es", "ru", "hi")
#: Hub dataset repository of mMARCO.
MMARCO_REPO = "unicamp-dl/mmarco"
_MMARCO_TRIPLES = "data/triples.train.ids.small.tsv"


def _mmarco_queries(name: str) -> str:
    return f"data/google/queries/train/{name}_queries.train.tsv"


def _mmarco_collection(name: str) -> str:
    return f"data/google/collections/{name}_collection.tsv"


# --------------------------------------------------------------------------- files: hub or local

def _hub_offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001 - an old or absent huggingface_hub: let the request decide
        return False


_MMARCO_LOCAL_HINT = ("pass a local folder: load_mmarco(languages, source='/path/to/mmarco') holding either "
                      "mMARCO's files (triples.train.ids.small.tsv, <language>_queries.train.tsv, "
                      "<language>_collection.tsv, from the hub dataset's data/ folder) or aligned triples "
                      "<lang>.tsv / <lang>.jsonl.")


def _mmarco_hub_error(what: str, reason: str) -> DataError:
    return DataError(
        f"Could not stream {what} from the Hugging Face hub dataset {MMARCO_REPO!r}: {reason}. Is this machine "
        "offline (no network, or HF_HUB_OFFLINE=1 set), or is the dataset id or file path wrong (see "
        f"hbkit.datasets.mmarco's documentation)? Without the hub, {_MMARCO_LOCAL_HINT}")


def _hub_lines(path_in_repo: str) -> Iterator[tuple[int, str]]:
    label = f"hf://datasets/{MMARCO_REPO}/{path_in_repo}"

    def opener():
        from huggingface_hub import HfFileSystem

        return HfFileSystem().open(f"datasets/{MMARCO_REPO}/{path_in_repo}", "rb", block_size=0)

    return iter_lines(label, opener, on_error=lambda exc: _mmarco_hub_error(label, brief(exc)))


class _MmarcoFiles:
    """Where the id-aligned mMARCO files come from: the hub or a local folder."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def _local(self, rel: str) -> Path:
        assert self.folder is not None
        base = rel.rsplit("/", 1)[-1]
        for cand in (self.folder / rel, self.folder / base):
            for p in (cand, cand.with_name(cand.name + ".gz")):
                if p.is_file():
                    return p
        raise DataError(f"mMARCO file {base} not found in {self.folder} (nor under {self.folder / rel}). Add it "
                        f"(from the hub dataset {MMARCO_REPO}, {rel}) or drop the language.")

    def label(self, rel: str) -> str:
        return f"hf://datasets/{MMARCO_REPO}/{rel}" if self.folder is None else str(self._local(rel))

    def lines(self, rel: str) -> Iterator[tuple[int, str]]:
        if self.folder is None:
            return _hub_lines(rel)
        path = self._local(rel)
        return _local_lines(path)

    def has_triples(self) -> bool:
        try:
            self._local(_MMARCO_TRIPLES)
        except DataError:
            return False
        return True


def _local_lines(path: Path) -> Iterator[tuple[int, str]]:
    return iter_lines(str(path), lambda: open_binary(path), compressed=is_gzip(path))


def _tsv_fields(line: str, n: int, where: str, what: str) -> list[str]:
    parts = line.split("\t")
    if len(parts) != n:
        raise DataError(f"{where}: expected {n} tab-separated fields ({what}), found {len(parts)}. The file is not in "
                        "mMARCO's format or is damaged.")
    return parts


def _select_triples(files: _MmarcoFiles, max_groups: int | None, offset: int) -> list[tuple[str, str, str]]:
    """The first triples (qid, pos, neg), one per query and per positive passage, after ``offset`` kept ones."""
    label = files.label(_MMARCO_TRIPLES)
    seen_q: set[str] = set()
    seen_p: set[str] = set()
    chosen: list[tuple[str, str, str]] = []
    taken = skipped = 0
    for lineno, line in files.lines(_MMARCO_TRIPLES):
        if not line.strip():
            continue
        fields = _tsv_fields(line, 3, f"{label}, line {lineno}", "qid, positive pid, negative pid")
        q, p, n = (f.strip() for f in fields)
        if q in seen_q or p in seen_p:
            skipped += 1
            continue
        seen_q.add(q)
        seen_p.add(p)
        taken += 1
        if taken <= offset:
            continue
        chosen.append((q, p, n))
        if max_groups is not None and len(chosen) == max_groups:
            break
    if skipped:
        log.info("mMARCO: skipped %d triples repeating an earlier query or positive passage.", skipped)
    if not chosen:
        raise DataError(f"{label} yielded no triples (after skipping {offset} groups for the seed). Check the file, "
                        "or use a smaller seed or max_groups.")
    return chosen


def _lookup(files: _MmarcoFiles, rel: str, needed: set[str]) -> dict[str, str]:
    """id -> text for the ``needed`` ids of an ``id<TAB>text`` file; stops once all are found."""
    label = files.label(rel)
    found: dict[str, str] = {}
    for lineno, line in files.lines(rel):
        if not line.strip():
            continue
        key, sep, text = line.partition("\t")
        if not sep:
            raise DataError(f"{label}, line {lineno}: expected 'id<TAB>text'. The file is not in mMARCO's format or "
                            "is damaged.")
        key = key.strip()
        if key in needed and key not in found:
            found[key] = text
            if len(found) == len(needed):
                break
    missing = needed - found.keys()
    if missing:
        raise DataError(f"{label} lacks {len(missing)} of the {len(needed)} needed ids (e.g. {sorted(missing)[:3]}): "
                        "it does not belong with the triples file (mMARCO's ids are shared by all languages), or it "
                        "is truncated. Use the files of one mMARCO release.")
    return found


def _mmarco_by_ids(files: _MmarcoFiles, langs: list[str], max_groups: int | None, offset: int) -> list[ParallelItem]:
    triples = _select_triples(files, max_groups, offset)
    need_q = {q for q, _, _ in triples}
    need_p = {p for _, p, _ in triples} | {n for _, _, n in triples}
    texts: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for lang in langs:
        name = MMARCO_LANGUAGES[lang]
        texts[lang] = (_lookup(files, _mmarco_queries(name), need_q), _lookup(files, _mmarco_collection(name), need_p))
    items: list[ParallelItem] = []
    dropped = 0
    for q, p, n in triples:
        row = []
        for lang in langs:
            queries, passages = texts[lang]
            row.append(ParallelItem(f"mmarco:{q}", lang, queries[q], passages[p], passages[n]))
        if any(not (it.query.strip() and it.positive.strip() and it.negative.strip()) for it in row):
            dropped += 1
            continue
        items.extend(row)
    if dropped:
        log.warning("mMARCO: dropped %d triples with an empty text in some language.", dropped)
    return items


def _row_file(folder: Path, lang: str) -> Path | None:
    hits = [folder / f"{lang}{ext}" for ext in (".tsv", ".tsv.gz", ".jsonl", ".jsonl.gz")
            if (folder / f"{lang}{ext}").is_file()]
    if len(hits) > 1:
        raise DataError(f"{folder} holds several triples files for {lang!r}: {[h.name for h in hits]}. Keep one.")
    return hits[0] if hits else None


def _row_triples(path: Path) -> Iterator[tuple[str, str | None, str, str, str]]:
    """(where, id or None, query, positive, negative) per line of a joined triples file."""
    jsonl = ".jsonl" in path.name.lower()
    for lineno, line in _local_lines(path):
        where = f"{path}, line {lineno}"
        if jsonl:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg}). Each line must be one object "
                                '{"query": ..., "positive": ..., "negative": ...}.') from None
            if not isinstance(row, dict) or any(k not in row for k in ("query", "positive", "negative")):
                raise DataError(f"{where}: expected an object with the keys query, positive and negative.")
            rid = row.get("id")
            q, p, n = row.get("query"), row.get("positive"), row.get("negative")
            rid = None if rid is None else str(rid)
        else:
            q, p, n = _tsv_fields(line, 3, where, "query, positive, negative")
            rid = None
        q = text_cell(q, where, "query", "")
        p = text_cell(p, where, "positive", "")
        yield where, rid, q, p, text_cell(n, where, "negative", "")


def _mmarco_by_rows(paths: dict[str, Path], langs: list[str], max_groups: int | None,
                    offset: int) -> list[ParallelItem]:
    streams = {lang: _row_triples(paths[lang]) for lang in langs}
    seen_q: set[str] = set()
    seen_p: set[str] = set()
    items: list[ParallelItem] = []
    kept = taken = skipped = 0
    index = -1
    while max_groups is None or kept < max_groups:
        rows = {lang: next(stream, None) for lang, stream in streams.items()}
        ended = [lang for lang, r in rows.items() if r is None]
        if ended:
            if len(ended) == len(rows):
                break
            longer = next(lang for lang in langs if rows[lang] is not None)
            raise DataError(f"{paths[ended[0]]} ends after {index + 1} triples but {paths[longer]} has more: the "
                            "files are not aligned (line i of every file must be the translation of the same "
                            "triple). Cut all files from the same lines.")
        index += 1
        ids = {lang: r[1] for lang, r in rows.items()}
        if len(set(ids.values())) > 1:
            raise DataError(f"Misaligned mMARCO files at line {index + 1}: the rows carry different ids "
                            f"{ids}. Line i of every file must be the translation of the same triple.")
        first = rows[langs[0]]
        if first[2] in seen_q or first[3] in seen_p:
            skipped += 1
            continue
        seen_q.add(first[2])
        seen_p.add(first[3])
        taken += 1
        if taken <= offset:
            continue
        rid = ids[langs[0]]
        group = f"mmarco:{rid if rid is not None else index}"
        items.extend(ParallelItem(group, lang, r[2], r[3], r[4]) for lang, r in rows.items())
        kept += 1
    for stream in streams.values():
        stream.close()  # release the files now, not at garbage collection
    if skipped:
        log.info("mMARCO: skipped %d rows repeating an earlier query or positive.", skipped)
    return items


# --------------------------------------------------------------------------- loader

def load_mmarco(languages: Sequence[str] = PAPER_MMARCO_LANGUAGES, *, max_groups: int | None = None,
                source: str | os.PathLike | None = None, seed: int = 0) -> ParallelDataset:
    """mMARCO training triples in several languages as a :class:`ParallelDataset` named ``"mmarco"``.

    Args:
        languages: ISO codes from :data:`MMARCO_LANGUAGES` (default: the paper's seven).
        max_groups: how many triples (groups) to take; required with ``source=None``.
        source: None to stream from the hub dataset ``unicamp-dl/mmarco``; or a folder with
            mMARCO's id files or with aligned ``<lang>.tsv`` / ``<lang>.jsonl`` triples (module doc).
        seed: take the ``seed``-th block of ``max_groups`` groups (0: the first); different
            seeds give disjoint subsets.

    Every group has all ``languages``; each item has a hard negative.

    Raises:
        UnknownLanguageError: a language mMARCO does not have (or, for a folder of
            ``<lang>`` files, that has no file there).
        DataError: the hub cannot be reached (offline?), a file is missing, malformed or
            misaligned with the others.
    """
    if isinstance(languages, str):
        languages = [languages]
    langs = check_languages(languages, allowed=MMARCO_LANGUAGES, where="mMARCO")
    max_groups = check_count("max_groups", max_groups)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}.")
    if seed and max_groups is None:
        raise ConfigError("seed selects a block of max_groups groups: pass max_groups too, or seed=0.")
    offset = int(seed) * (max_groups or 0)

    if source is None:
        if max_groups is None:
            raise ConfigError("load_mmarco from the hub needs max_groups (e.g. 100_000): mMARCO has 39.8 M training "
                              "triples per language. Or pass source= a local folder.")
        if _hub_offline():
            raise DataError(f"Cannot stream mMARCO from the Hugging Face hub dataset {MMARCO_REPO!r}: offline mode "
                            "is on (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set), so the hub is not contacted. "
                            f"Unset it on a machine with internet, or {_MMARCO_LOCAL_HINT}")
        items = _mmarco_by_ids(_MmarcoFiles(None), langs, max_groups, offset)
    else:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataError(f"mMARCO source folder not found: {folder}. Pass a folder holding aligned <lang>.tsv / "
                            "<lang>.jsonl triples or mMARCO's files, or source=None to stream from the hub.")
        row_files = {lang: _row_file(folder, lang) for lang in langs}
        files = _MmarcoFiles(folder)
        if any(p is not None for p in row_files.values()):
            missing = [lang for lang, p in row_files.items() if p is None]
            if missing:
                available = sorted(c for c in LANGUAGES if _row_file(folder, c) is not None)
                raise UnknownLanguageError(f"No triples file for {missing} in {folder} (expected <lang>.tsv or "
                                           f"<lang>.jsonl). Languages with a file there: {available}. Add the "
                                           "files or drop those languages.")
            items = _mmarco_by_rows({lang: p for lang, p in row_files.items() if p is not None}, langs, max_groups,
                                    offset)
        elif files.has_triples():
            items = _mmarco_by_ids(files, langs, max_groups, offset)
        else:
            raise DataError(f"{folder} holds no mMARCO data: expected aligned triples files <lang>.tsv or "
                            f"<lang>.jsonl for {langs}, or mMARCO's files (triples.train.ids.small.tsv with "
                            "<language>_queries.train.tsv and <language>_collection.tsv).")
    if not items:
        raise DataError(f"No mMARCO triples were read from {source or MMARCO_REPO} (seed {seed} skips "
                        f"{offset} groups). Check the files, or use a smaller seed.")
    return ParallelDataset(items, name="mmarco")

