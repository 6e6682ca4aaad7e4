"""Real training and validation data: your own parallel files, mMARCO, SQuADShifts.

Everything here returns a :class:`~hbkit.parallel.ParallelDataset` (groups link
translations; PROTOCOL §1.2).

**Bring your own parallel corpus** (:func:`read_parallel_file`, :func:`write_parallel_file`).
One file, one row per group × language, with the columns

=========  ==========================================================================
group      id linking the translations of one item (any string; compared as text)
lang       ISO 639-1 code of the row (``en``, ``de``, ... see :data:`hbkit.languages.LANGUAGES`)
query      the question / query text
positive   the passage that answers it, in the same language
negative   optional: a hard negative passage in the same language (empty cell = none)
=========  ==========================================================================

Other columns are ignored. The format follows the extension: ``.csv``, ``.tsv`` (CSV
quoting: a cell holding a tab, newline or double quote is quoted), ``.jsonl`` / ``.json``
(JSON Lines: one object per line with those keys), ``.parquet``; the text formats may
be gzipped (``.csv.gz``, ``.tsv.gz``, ``.jsonl.gz``). Errors name the file and the row
(CSV/TSV/Parquet: data rows counted from 1, the header excluded; JSONL: the line).
A group may lack some languages; the samplers only pair languages a group has.

**mMARCO** (:func:`load_mmarco`; Bonifacio et al. 2021, Google-translated MS MARCO
passage ranking, "v2"): MS MARCO's training triples ``(query, positive passage, negative
passage)`` in 13 hbkit languages (:data:`MMARCO_LANGUAGES`; the paper used en ar zh de es
ru hi). The hub dataset ``unicamp-dl/mmarco`` has the configs ``<language>`` (triples),
``collection-<language>``, ``queries-<language>`` and ``runs-<language>`` for arabic,
chinese, dutch, english, french, german, hindi, indonesian, italian, japanese,
portuguese, russian, spanish and vietnamese (Dutch has no hbkit code and is not
offered). These configs are produced by a loading script (``mmarco.py``) that
``datasets`` 4.0 and later refuse to run, so ``load_dataset("unicamp-dl/mmarco",
"english")`` fails on current installs. hbkit therefore streams the raw files that
script reads, with ``huggingface_hub``'s ``HfFileSystem`` (the layer ``datasets`` itself
streams ``hf://`` files with), never downloading a whole file to disk:

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
:func:`write_parallel_file`, then train from that file.

A local ``source`` folder may hold either the same raw files (a partial clone of the hub
repository, flat or in its ``data/...`` layout; same id alignment), or aligned joined
triples per language, ``<lang>.tsv`` (``query<TAB>positive<TAB>negative`` per line, as in
mMARCO's joined triples) or ``<lang>.jsonl`` (``{"query", "positive", "negative"}``,
optionally ``"id"``), where line *i* of every file is the translation of the same triple
(group id ``mmarco:<i>``, *i* counted from 0, or ``mmarco:<id>`` when the rows carry an
``id``, which must then agree across languages). The files are read line by line in
lockstep; one ending before the others is an error (misaligned).

Choices **(ours)**: MS MARCO lists each query with many (positive, negative) pairs.
Two triples of the same query, or with the same positive passage, in one batch would
be false negatives of each other, so only the first triple of each query and of each
positive passage is kept (by ids; in the joined-text format by the first language's
query and positive text). ``max_groups`` counts the groups kept; ``seed`` *k* skips the
first *k* × ``max_groups`` of them, so different seeds give disjoint subsets (0 = the
first triples of the file).

**SQuADShifts** (:func:`load_squadshifts`; Miller et al. 2020), English, for the
early-stopping validation loss (PROTOCOL §1.3): the subsets ``new_wiki``, ``nyt``,
``reddit`` and ``amazon`` exist only as a test set. The hub dataset ``squadshifts``
(now ``ludwigschmidt/squadshifts``) is also built by a loading script that current
``datasets`` refuse to run, so with ``source=None`` hbkit downloads the official SQuAD
format JSON files (:data:`SQUADSHIFTS_URL`, cached by :mod:`hbkit.datasets.download`); ``source``
may be such a file or a folder holding it. Per question **(ours)**:

- query = the question; positive = the context sentence where the first answer starts
  (sentences by :func:`hbkit.datasets.mlqa_r.split_sentences`, as in XQuAD-R/MLQA-R);
- hard negative = the nearest other sentence of the same paragraph (next, then previous,
  then further out) that differs from the positive and does not contain an answer text;
  when the paragraph has none, the first such sentence of the nearest other paragraph of
  the same article; when there is none either, the question is skipped (the trainer
  drops the hard negatives of a whole batch when one pair lacks one);
- one question per positive sentence (the first in file order): two questions with the
  same positive in one validation batch would be false negatives;
- ``max_items`` picks evenly spaced questions over the file, so a small validation set
  still spans many articles.
"""
from __future__ import annotations

import gzip
import json
import logging
import numbers
import os
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from hbkit.engine.atomic import atomic_path
from hbkit.datasets.squad_json import read_squad_json
from hbkit.errors import ConfigError, DataError, UnknownLanguageError
from hbkit.languages import LANGUAGES, check_language, check_languages
from hbkit.parallel import ParallelDataset, ParallelItem

log = logging.getLogger(__name__)

__all__ = ["REQUIRED_COLUMNS", "COLUMNS", "read_parallel_file", "write_parallel_file", "MMARCO_LANGUAGES",
           "PAPER_MMARCO_LANGUAGES", "MMARCO_REPO", "load_mmarco", "SQUADSHIFTS_SUBSETS", "SQUADSHIFTS_URL",
           "SQUADSHIFTS_FILES", "load_squadshifts", "mix_summary"]

#: Columns every parallel file must have, and all columns written by :func:`write_parallel_file`.
REQUIRED_COLUMNS: tuple[str, ...] = ("group", "lang", "query", "positive")
COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + ("negative",)
_HEADER = "group,lang,query,positive[,negative]"
_FORMATS = ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".json", "jsonl"), (".parquet", "parquet"))
_SUPPORTED = ".csv, .tsv, .jsonl, .json (JSON Lines), .parquet; .gz for the text formats"
_CHUNK = 1 << 20  # bytes read at a time when streaming lines

#: mMARCO languages hbkit knows: ISO code -> the language name in mMARCO's file and config names.
MMARCO_LANGUAGES: dict[str, str] = {
    "ar": "arabic", "de": "german", "en": "english", "es": "spanish", "fr": "french", "hi": "hindi",
    "id": "indonesian", "it": "italian", "ja": "japanese", "pt": "portuguese", "ru": "russian",
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


#: The SQuADShifts subsets and their official files under :data:`SQUADSHIFTS_URL`.
SQUADSHIFTS_SUBSETS: tuple[str, ...] = ("new_wiki", "nyt", "reddit", "amazon")
SQUADSHIFTS_URL = "https://raw.githubusercontent.com/modestyachts/squadshifts-website/master/datasets/"
SQUADSHIFTS_FILES: dict[str, str] = {"new_wiki": "new_wiki_v1.0.json", "nyt": "nyt_v1.0.json",
                                     "reddit": "reddit_v1.0.json", "amazon": "amazon_reviews_v1.0.json"}


# --------------------------------------------------------------------------- helpers

def _brief(exc: BaseException) -> str:
    """'ErrorClass: first line of the message' (no trailing period)."""
    text = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _check_count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer or None (no limit), got {value!r}.")
    return int(value)


def _file_format(path: Path) -> tuple[str, bool]:
    """(format, gzipped) from the file name."""
    name = path.name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    for suffix, fmt in _FORMATS:
        if name.endswith(suffix):
            if gz and fmt == "parquet":
                raise DataError(f"{path}: Parquet files are compressed internally; use a plain .parquet name "
                                "(no .gz).")
            return fmt, gz
    raise DataError(f"{path}: unsupported file type. Use one of {_SUPPORTED} (the format follows the extension).")


def _iter_lines(label: str, opener: Callable[[], Any],
                on_error: Callable[[BaseException], DataError] | None = None) -> Iterator[tuple[int, str]]:
    """Stream ``(line number, text)`` from a binary file opened by ``opener``.

    Lines end at ``\\n`` only (a trailing ``\\r`` is dropped), so text holding other line
    separators stays on its line. Reading is chunked: only what is consumed is read.
    ``on_error`` turns an I/O failure (open or read) into a DataError.
    """
    def fail(exc: BaseException) -> DataError:
        if on_error is not None:
            return on_error(exc)
        return DataError(f"{label} could not be read ({_brief(exc)}). Check the file (a truncated download or a "
                         "corrupt .gz?) and download or write it again.")

    try:
        fh = opener()
    except Exception as exc:  # noqa: BLE001 - local or remote I/O of any kind
        raise fail(exc) from exc
    with fh:
        buf = b""
        lineno = 0
        while True:
            try:
                block = fh.read(_CHUNK)
            except Exception as exc:  # noqa: BLE001
                raise fail(exc) from exc
            if not block:
                break
            parts = (buf + block).split(b"\n")
            buf = parts.pop()
            for raw in parts:
                lineno += 1
                yield lineno, _decode(raw, label, lineno)
        if buf:
            yield lineno + 1, _decode(buf, label, lineno + 1)


def _decode(raw: bytes, label: str, lineno: int) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{label}, line {lineno}: not UTF-8 text ({exc.reason} at byte {exc.start}). Save the file "
                        "as UTF-8.") from None
    return text[1:] if lineno == 1 and text.startswith("\ufeff") else text


def _local_opener(path: Path) -> Callable[[], Any]:
    if path.name.lower().endswith(".gz"):
        return lambda: gzip.open(path, "rb")
    return lambda: open(path, "rb")


# --------------------------------------------------------------------------- bring your own file

def _read_table_rows(path: Path, fmt: str, gz: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` for CSV/TSV/Parquet; checks the columns first."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path} could not be read as Parquet ({_brief(exc)}). The file may be truncated or not "
                            "Parquet; write it again (e.g. pandas DataFrame.to_parquet).") from exc
        columns = [str(c) for c in table.column_names]
        _check_columns(path, columns)
        data = {c: table.column(c).to_pylist() for c in COLUMNS if c in columns}
        nrows = table.num_rows
    else:
        import pandas as pd

        try:
            with warnings.catch_warnings():  # more cells than header names: an error, not a silent loss
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(path, sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False,
                                    na_filter=False, index_col=False, encoding="utf-8-sig",
                                    compression="gzip" if gz else None)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path} is empty. It needs the header {_HEADER} and one row per group × language."
                            ) from None
        except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError, EOFError, zlib.error, OSError,
                ValueError) as exc:
            row = _long_row(path, "," if fmt == "csv" else "\t", gz) if isinstance(
                exc, (pd.errors.ParserError, pd.errors.ParserWarning)) else None
            if row is not None:
                raise DataError(f"{path}, row {row}: more cells than the header has columns. Quote cells that hold a "
                                f"{'comma' if fmt == 'csv' else 'tab'}, or fix the header ({_HEADER}).") from None
            raise DataError(f"{path} could not be read as {fmt.upper()}{' (gzip)' if gz else ''} ({_brief(exc)}). "
                            "Check the delimiter (comma for .csv, tab for .tsv), the quoting of cells that hold "
                            "delimiters or newlines, and that the file is complete UTF-8 text.") from exc
        frame.columns = [str(c).strip() for c in frame.columns]
        columns = list(frame.columns)
        _check_columns(path, columns)
        data = {c: frame[c].tolist() for c in COLUMNS if c in columns}
        nrows = len(frame)
    for i in range(nrows):
        yield f"{path}, row {i + 1}", {c: v[i] for c, v in data.items()}


def _long_row(path: Path, sep: str, gz: bool) -> int | None:
    """The first data row (1-based) with more cells than the header, or None."""
    import csv

    try:
        with (gzip.open(path, "rt", encoding="utf-8-sig", newline="") if gz
              else open(path, encoding="utf-8-sig", newline="")) as fh:
            rows = csv.reader(fh, delimiter=sep)
            width = len(next(rows, []))
            for i, row in enumerate(rows, 1):
                if len(row) > width:
                    return i
    except (OSError, UnicodeDecodeError, EOFError, csv.Error):
        return None
    return None


def _check_columns(path: Path, columns: Sequence[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {missing} (it has {list(columns)}). The expected header is "
                        f"{_HEADER}: one row per group × language.")


def _read_jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, line in _iter_lines(str(path), _local_opener(path)):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        hint = (" The file looks like one JSON array; write JSON Lines instead (one object per line, e.g. pandas "
                "to_json(orient='records', lines=True))." if lineno == 1 and line.lstrip().startswith("[") else "")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}). Each line must be one "
                            f'object like {{"group": ..., "lang": ..., "query": ..., "positive": ..., '
                            f'"negative": ...}}.{hint}') from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}. Each line must be one object "
                            f"with the keys {_HEADER}.{hint}")
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise DataError(f"{where}: missing key(s) {missing} (has {sorted(row)}). Each line needs the keys "
                            f"{_HEADER}.")
        yield where, row


def _text_cell(value: Any, where: str, column: str, context: str) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        value = ""
    if not isinstance(value, str):
        raise DataError(f"{where}: the {column} cell must be text, got {type(value).__name__} {value!r}{context}.")
    if not value.strip():
        raise DataError(f"{where}: empty {column} cell{context}. Fill it in or remove the row.")
    return value


def read_parallel_file(path: str | os.PathLike, *, name: str | None = None, languages: Sequence[str] | None = None,
                       max_groups: int | None = None) -> ParallelDataset:
    """Read a parallel corpus file (columns ``group, lang, query, positive[, negative]``; see the module doc).

    Args:
        path: a ``.csv``, ``.tsv``, ``.jsonl``/``.json`` (JSON Lines) or ``.parquet`` file;
            ``.gz`` is allowed for the text formats.
        name: the dataset's name (default: the file name without extensions).
        languages: keep only these languages (default: all in the file). Each must occur.
        max_groups: keep the first ``max_groups`` groups (in order of first appearance).

    Raises:
        DataError: the file is missing, unreadable or corrupt, lacks columns, has an empty
            text cell, or a (group, lang) pair twice.
        UnknownLanguageError: a row has an unknown language code, or a requested language
            has no row (the message lists those available).
    """
    file = Path(path).expanduser()
    max_groups = _check_count("max_groups", max_groups)
    wanted = None
    if languages is not None:
        if isinstance(languages, str):
            languages = [languages]
        wanted = check_languages(languages, where=f"read_parallel_file({file.name})")
    fmt, gz = _file_format(file)
    if not file.exists():
        raise DataError(f"Parallel data file not found: {file}. Check the path (relative paths start at "
                        f"{Path.cwd()}).")
    if not file.is_file():
        raise DataError(f"{file} is not a file. Pass one {_SUPPORTED} file.")
    if name is None:
        name = file.name
        if name.lower().endswith(".gz"):
            name = name[:-3]
        name = name.rsplit(".", 1)[0] or file.name
    rows = _read_jsonl_rows(file) if fmt == "jsonl" else _read_table_rows(file, fmt, gz)

    first_row: dict[tuple[str, str], str] = {}
    present: set[str] = set()
    items: list[ParallelItem] = []
    for where, row in rows:
        group = row.get("group")
        if group is None or isinstance(group, (float, bool)) or not str(group).strip():
            raise DataError(f"{where}: empty or invalid group cell ({group!r}). Every row needs the id of its group "
                            "(the same id for all translations of one item).")
        group = str(group)
        lang = row.get("lang")
        lang = lang.strip() if isinstance(lang, str) else lang
        check_language(lang, where=where)
        key = (group, lang)
        if key in first_row:
            raise DataError(f"{where}: group {group!r} has a second row in language {lang!r} (the first is "
                            f"{first_row[key].rsplit(', ', 1)[-1]}). Keep one row per group and language.")
        first_row[key] = where
        context = f" (group {group!r}, language {lang!r})"
        query = _text_cell(row.get("query"), where, "query", context)
        positive = _text_cell(row.get("positive"), where, "positive", context)
        negative = row.get("negative")
        if negative is None or (isinstance(negative, float) and negative != negative) or (
                isinstance(negative, str) and not negative.strip()):
            negative = None
        elif not isinstance(negative, str):
            raise DataError(f"{where}: the negative cell must be text or empty, got {type(negative).__name__} "
                            f"{negative!r}{context}.")
        present.add(lang)
        if wanted is None or lang in wanted:
            items.append(ParallelItem(group, lang, query, positive, negative))
    if not first_row:
        raise DataError(f"{file} has no data rows. Add one row per group × language under the header {_HEADER}.")
    if wanted is not None:
        absent = [lang for lang in wanted if lang not in present]
        if absent:
            raise UnknownLanguageError(f"{file} has no rows in language(s) {absent}. Available: {sorted(present)}. "
                                       "Drop them from languages= or add rows for them.")
    if max_groups is not None:
        keep: set[str] = set()
        for it in items:
            if len(keep) == max_groups:
                break
            keep.add(it.group)
        items = [it for it in items if it.group in keep]
    return ParallelDataset(items, name=name)


def write_parallel_file(dataset: ParallelDataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` as a parallel corpus file readable by :func:`read_parallel_file`.

    The format follows the extension (as for reading). The file is written atomically:
    a complete new file replaces the old one, or nothing changes. A missing hard negative
    is an empty cell (CSV/TSV) or null (JSONL/Parquet). Returns the path.
    """
    if not isinstance(dataset, ParallelDataset):
        raise ConfigError(f"write_parallel_file needs a ParallelDataset, got {type(dataset).__name__}.")
    if not dataset.passage_has_language:
        raise ConfigError(f"{dataset.name} is image–text data (its passages have no language); the parallel file "
                          "format holds text data only.")
    file = Path(path).expanduser()
    fmt, gz = _file_format(file)
    rows = [(it.group, it.lang, it.query, it.positive, it.negative) for it in dataset.items()]
    try:
        with atomic_path(file) as tmp:
            if fmt == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.table({c: pa.array([r[i] for r in rows], type=pa.string()) for i, c in enumerate(COLUMNS)})
                pq.write_table(table, tmp)
            elif fmt == "jsonl":
                opener = gzip.open if gz else open
                with opener(tmp, "wt", encoding="utf-8", newline="\n") as fh:
                    for r in rows:
                        fh.write(json.dumps(dict(zip(COLUMNS, r)), ensure_ascii=False) + "\n")
            else:
                import pandas as pd

                frame = pd.DataFrame([r[:4] + (r[4] if r[4] is not None else "",) for r in rows], columns=COLUMNS)
                frame.to_csv(tmp, sep="," if fmt == "csv" else "\t", index=False, lineterminator="\n",
                             encoding="utf-8", compression="gzip" if gz else None)
    except OSError as exc:
        raise DataError(f"Cannot write {file} ({_brief(exc)}). Check that the folder is writable and the disk has "
                        "space.") from exc
    return file


# --------------------------------------------------------------------------- mMARCO

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
        f"hbkit.datasets.training_data's documentation)? Without the hub, {_MMARCO_LOCAL_HINT}")


def _hub_lines(path_in_repo: str) -> Iterator[tuple[int, str]]:
    label = f"hf://datasets/{MMARCO_REPO}/{path_in_repo}"

    def opener():
        from huggingface_hub import HfFileSystem

        return HfFileSystem().open(f"datasets/{MMARCO_REPO}/{path_in_repo}", "rb", block_size=0)

    return _iter_lines(label, opener, on_error=lambda exc: _mmarco_hub_error(label, _brief(exc)))


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
        return _iter_lines(str(path), _local_opener(path))

    def has_triples(self) -> bool:
        try:
            self._local(_MMARCO_TRIPLES)
        except DataError:
            return False
        return True


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
    for lineno, line in _iter_lines(str(path), _local_opener(path)):
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
        q = _text_cell(q, where, "query", "")
        p = _text_cell(p, where, "positive", "")
        yield where, rid, q, p, _text_cell(n, where, "negative", "")


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
    max_groups = _check_count("max_groups", max_groups)
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


# --------------------------------------------------------------------------- SQuADShifts

def _squadshifts_file(subset: str, source: str | os.PathLike | None) -> Path:
    filename = SQUADSHIFTS_FILES[subset]
    if source is None:
        from hbkit.datasets import download as dl

        try:
            return dl.download(SQUADSHIFTS_URL + filename, dl.default_cache_dir() / "squadshifts")
        except DataError as exc:
            raise DataError(f"{exc} For SQuADShifts, you can also pass the file: load_squadshifts({subset!r}, "
                            f"source='/path/to/{filename}').") from exc
    path = Path(source).expanduser()
    if path.is_dir():
        for cand in (path / filename, path / "datasets" / filename):
            if cand.is_file():
                return cand
        raise DataError(f"No {filename} in {path}. Pass the SQuADShifts {subset} file itself or its folder "
                        f"(download it from {SQUADSHIFTS_URL + filename}).")
    if not path.is_file():
        raise DataError(f"SQuADShifts file not found: {path}. Download {SQUADSHIFTS_URL + filename} or pass "
                        "source=None to download it.")
    return path


def _read_squad(path: Path) -> list[list[tuple[str, list[tuple[str, str, list[tuple[str, int]]]]]]]:
    """Articles -> paragraphs (context, questions (id, question, answers (text, start)))."""
    data = read_squad_json(path, "SQuADShifts file", "Download it again, or pass source=None to download it.")
    articles = []
    try:
        for a_index, article in enumerate(data["data"]):
            paragraphs = []
            for para in article["paragraphs"]:
                context = para["context"]
                if not isinstance(context, str):
                    raise TypeError(f"context of article {a_index} is {type(context).__name__}")
                qas = []
                for qa in para["qas"]:
                    answers = [(str(a["text"]), int(a["answer_start"])) for a in qa.get("answers", [])]
                    qas.append((str(qa["id"]), str(qa["question"]), answers))
                paragraphs.append((context, qas))
            articles.append(paragraphs)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path} does not have the SQuAD structure data/paragraphs/(context, qas/(id, question, "
                        f"answers/(text, answer_start))): {_brief(exc)}.") from exc
    return articles


def load_squadshifts(subset: str = "nyt", *, source: str | os.PathLike | None = None,
                     max_items: int | None = None) -> ParallelDataset:
    """An English SQuADShifts subset as a validation :class:`ParallelDataset` (``"squadshifts-<subset>"``).

    Args:
        subset: one of :data:`SQUADSHIFTS_SUBSETS`.
        source: the subset's SQuAD-format JSON file or a folder holding it; None downloads
            it (cached in ``$HBKIT_CACHE/squadshifts``).
        max_items: keep this many questions, evenly spaced over the file.

    Every item has a hard negative (module doc for the construction).
    """
    from hbkit.datasets.mlqa_r import split_sentences

    if subset not in SQUADSHIFTS_SUBSETS:
        raise ConfigError(f"Unknown SQuADShifts subset {subset!r}: use one of {', '.join(SQUADSHIFTS_SUBSETS)}.")
    max_items = _check_count("max_items", max_items)
    path = _squadshifts_file(subset, source)
    articles = _read_squad(path)

    items: list[ParallelItem] = []
    used_positives: set[tuple[int, int, int]] = set()
    no_negative = unanswerable = repeated = 0
    for a_index, paragraphs in enumerate(articles):
        spans_cache: dict[int, list[tuple[int, int]]] = {}

        def spans_of(p: int) -> list[tuple[int, int]]:
            if p not in spans_cache:
                spans_cache[p] = split_sentences(paragraphs[p][0], "en")
            return spans_cache[p]

        for p_index, (context, qas) in enumerate(paragraphs):
            for qid, question, answers in qas:
                if not question.strip() or not answers:
                    unanswerable += 1
                    continue
                start = answers[0][1]
                spans = spans_of(p_index)
                if not spans or not 0 <= start < len(context):
                    raise DataError(f"{path}: question {qid!r} has answer_start {start} outside its context "
                                    f"({len(context)} characters). The file is damaged: download it again.")
                s_index = max(i for i, (a, _) in enumerate(spans) if a <= start) if spans[0][0] <= start else 0
                if (a_index, p_index, s_index) in used_positives:
                    repeated += 1
                    continue
                positive = context[slice(*spans[s_index])]
                answer_texts = [t for t, _ in answers if t.strip()]

                def usable(text: str) -> bool:
                    return bool(text.strip()) and text != positive and not any(t in text for t in answer_texts)

                negative = None
                for d in range(1, len(spans)):
                    for j in (s_index + d, s_index - d):
                        if 0 <= j < len(spans) and usable(context[slice(*spans[j])]):
                            negative = context[slice(*spans[j])]
                            break
                    if negative is not None:
                        break
                if negative is None:  # nearest other paragraph of the same article
                    others = sorted((k for k in range(len(paragraphs)) if k != p_index),
                                    key=lambda k: (abs(k - p_index), k < p_index))
                    for k in others:
                        other = paragraphs[k][0]
                        negative = next((other[a:b] for a, b in spans_of(k) if usable(other[a:b])), None)
                        if negative is not None:
                            break
                if negative is None:
                    no_negative += 1
                    continue
                used_positives.add((a_index, p_index, s_index))
                items.append(ParallelItem(f"squadshifts-{subset}:{qid}", "en", question, positive, negative))
    if repeated or no_negative or unanswerable:
        log.info("SQuADShifts %s: skipped %d questions whose answer sentence an earlier question already has, %d "
                 "without a usable negative sentence, %d without a question or answer.", subset, repeated,
                 no_negative, unanswerable)
    if not items:
        raise DataError(f"{path} yielded no usable question (each needs an answer and a context or article with "
                        "another sentence). Check that it is a SQuADShifts file.")
    if max_items is not None and max_items < len(items):
        n = len(items)
        items = [items[k * n // max_items] for k in range(max_items)]
    return ParallelDataset(items, name=f"squadshifts-{subset}")


# --------------------------------------------------------------------------- summaries

def mix_summary(datasets: ParallelDataset | Iterable[ParallelDataset] | Mapping[str, ParallelDataset], *,
                languages: Sequence[str] | None = None):
    """A table of a training mixture: one row per dataset.

    Columns: ``name``, ``groups``, ``items`` (group × language rows), ``languages``
    (comma-separated), ``negatives`` (share of items with a hard negative) and ``share``
    (the dataset's expected share of batches, groups / total groups: one dataset per
    batch, chosen in proportion to its size, PROTOCOL §1.2). With ``languages``, counts
    are restricted to those training languages, as the samplers do (a group counts when
    it has at least one of them). A mapping's keys override the names.
    """
    import pandas as pd

    if isinstance(datasets, ParallelDataset):
        named = [(datasets.name, datasets)]
    elif isinstance(datasets, Mapping):
        named = list(datasets.items())
    else:
        named = [(getattr(d, "name", "?"), d) for d in datasets]
    if not named:
        raise ConfigError("mix_summary got no datasets: pass a ParallelDataset or a list of them.")
    keep = set(check_languages(languages, where="mix_summary")) if languages is not None else None
    rows = []
    for name, ds in named:
        if not isinstance(ds, ParallelDataset):
            raise ConfigError(f"mix_summary: {name!r} is a {type(ds).__name__}, not a ParallelDataset.")
        items = [it for it in ds.items() if keep is None or it.lang in keep]
        langs = sorted({it.lang for it in items})
        rows.append({"name": str(name), "groups": len({it.group for it in items}), "items": len(items),
                     "languages": ", ".join(langs),
                     "negatives": (sum(it.negative is not None for it in items) / len(items)) if items else 0.0})
    frame = pd.DataFrame(rows, columns=["name", "groups", "items", "languages", "negatives"])
    total = frame["groups"].sum()
    frame["share"] = frame["groups"] / total if total else 0.0
    return frame
