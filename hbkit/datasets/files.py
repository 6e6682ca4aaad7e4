"""Bring your own parallel corpus: :func:`read_parallel_file` and :func:`write_parallel_file`.

One file, one row per item. Two kinds of file, told apart by the header:

**Text pairs** (question–answer, query–passage, bitext):

=========  ==========================================================================
group      id linking the translations of one item (any string; compared as text)
lang       language code of the row (``en``, ``de``, ... see :data:`hbkit.languages.LANGUAGES`;
           ISO 639-3 and upper case are accepted and stored normalised: ``deu`` -> ``de``)
query      the question / query text
positive   the passage that answers it, in the same language
negative   optional: a hard negative passage in the same language (empty cell = none)
=========  ==========================================================================

**Image–caption pairs** (one row per image × language × caption):

=========  ==========================================================================
group      the image's id (all captions of one image share it)
lang       language of the caption
caption    the caption text (the query side)
image      the image: a path, or a key resolved against an image folder
           (:class:`~hbkit.parallel.ImageRef`); the same for every row of a group
=========  ==========================================================================

A file with ``query`` and ``positive`` columns is a text file, one with ``caption`` and
``image`` an image–caption file (having both sets is an error). Other columns are
ignored. A group may lack some languages, and may hold several rows in one language
(five captions of an image, several questions about one passage): all are kept, in file
order.

The format follows the extension: ``.csv``, ``.tsv`` (CSV quoting: a cell holding a tab,
newline or double quote is quoted), ``.jsonl`` / ``.json`` (JSON Lines: one object per
line with those keys), ``.parquet``; the text formats may be gzipped (``.csv.gz``,
``.tsv.gz``, ``.jsonl.gz``). Errors name the file and the row (CSV/TSV/Parquet: data rows
counted from 1, the header excluded; JSONL: the line); a file that is not UTF-8 is
reported with the line and byte offset of the first bad byte.
"""
from __future__ import annotations

import gzip
import itertools
import json
import os
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from hbkit.datasets.lines import brief, check_count, local_lines
from hbkit.engine.atomic import atomic_path
from hbkit.errors import ConfigError, DataError, UnknownLanguageError
from hbkit.languages import check_language, check_languages
from hbkit.parallel import IMAGE, TEXT, ImageRef, ParallelDataset, ParallelItem

__all__ = ["REQUIRED_COLUMNS", "COLUMNS", "IMAGE_COLUMNS", "read_parallel_file", "write_parallel_file",
           "file_format"]

#: Columns every text file must have, and all columns written for text data.
REQUIRED_COLUMNS: tuple[str, ...] = ("group", "lang", "query", "positive")
COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + ("negative",)
#: Columns of an image–caption file (all required), as written for image data.
IMAGE_COLUMNS: tuple[str, ...] = ("group", "lang", "caption", "image")
_KIND_COLUMNS = {TEXT: REQUIRED_COLUMNS, IMAGE: IMAGE_COLUMNS}
_HEADER = "group,lang,query,positive[,negative]"
_IMAGE_HEADER = "group,lang,caption,image"
_HEADERS = f"{_HEADER} (text pairs) or {_IMAGE_HEADER} (image–caption pairs)"
_FORMATS = ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".json", "jsonl"), (".parquet", "parquet"))
_SUPPORTED = ".csv, .tsv, .jsonl, .json (JSON Lines), .parquet; .gz for the text formats"


def file_format(path: str | os.PathLike) -> tuple[str, bool]:
    """``(format, gzipped)`` from the file name: format is ``csv``, ``tsv``, ``jsonl`` or ``parquet``."""
    path = Path(path)
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


# --------------------------------------------------------------------------- columns and kinds

def _kind_of(path: Path, columns: Sequence[str]) -> str:
    """``"text"`` or ``"image"`` from a header; a missing or ambiguous header is a DataError."""
    has_text = "query" in columns and "positive" in columns
    has_image = "caption" in columns and "image" in columns
    if has_text and has_image:
        raise DataError(f"{path} has both text columns (query, positive) and image–caption columns (caption, "
                        "image). One file holds one kind of pair: split it, or rename the columns.")
    if has_image or (not has_text and ("caption" in columns or "image" in columns)):
        kind = IMAGE
    else:
        kind = TEXT
    missing = [c for c in _KIND_COLUMNS[kind] if c not in columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {missing} (it has {list(columns)}). The expected header is "
                        f"{_HEADERS}: one row per item.")
    return kind


def _read_table_rows(path: Path, fmt: str, gz: bool) -> tuple[str, Iterator[tuple[str, dict[str, Any]]]]:
    """The file's kind and its ``(where, row)`` pairs, for CSV/TSV/Parquet."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path} could not be read as Parquet ({brief(exc)}). The file may be truncated or not "
                            "Parquet; write it again (e.g. pandas DataFrame.to_parquet).") from exc
        columns = [str(c) for c in table.column_names]
        kind = _kind_of(path, columns)
        data = {c: table.column(c).to_pylist() for c in COLUMNS + IMAGE_COLUMNS if c in columns}
        nrows = table.num_rows
    else:
        frame = _read_csv(path, fmt, gz)
        frame.columns = [str(c).strip() for c in frame.columns]
        columns = list(frame.columns)
        kind = _kind_of(path, columns)
        data = {c: frame[c].tolist() for c in COLUMNS + IMAGE_COLUMNS if c in columns}
        nrows = len(frame)

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        for i in range(nrows):
            yield f"{path}, row {i + 1}", {c: v[i] for c, v in data.items()}

    return kind, rows()


def _read_csv(path: Path, fmt: str, gz: bool):
    import pandas as pd

    sep = "," if fmt == "csv" else "\t"
    try:
        with warnings.catch_warnings():  # more cells than header names: an error, not a silent loss
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False, index_col=False,
                               encoding="utf-8-sig", compression="gzip" if gz else None)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty. It needs the header {_HEADERS} and one row per item.") from None
    except UnicodeDecodeError:
        for _ in local_lines(path):  # raises a DataError naming the line and byte offset
            pass
        raise DataError(f"{path} is not UTF-8 text. Save the file as UTF-8.") from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, EOFError, zlib.error, OSError, ValueError) as exc:
        row = _long_row(path, sep, gz) if isinstance(exc, (pd.errors.ParserError, pd.errors.ParserWarning)) else None
        if row is not None:
            raise DataError(f"{path}, row {row}: more cells than the header has columns. Quote cells that hold a "
                            f"{'comma' if fmt == 'csv' else 'tab'}, or fix the header ({_HEADERS}).") from None
        raise DataError(f"{path} could not be read as {fmt.upper()}{' (gzip)' if gz else ''} ({brief(exc)}). "
                        "Check the delimiter (comma for .csv, tab for .tsv), the quoting of cells that hold "
                        "delimiters or newlines, and that the file is complete UTF-8 text.") from exc


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


def _row_kind(row: dict) -> str | None:
    has_text = "query" in row or "positive" in row
    has_image = "caption" in row or "image" in row
    if has_text and has_image:
        return None
    return IMAGE if has_image else TEXT


def _read_jsonl_rows(path: Path) -> tuple[str, Iterator[tuple[str, dict[str, Any]]]]:
    """The file's kind (from its first object) and its ``(where, row)`` pairs."""
    objects = _jsonl_objects(path)
    first = next(objects, None)
    if first is None:
        return TEXT, iter(())
    kind = _row_kind(first[1]) or TEXT

    def checked() -> Iterator[tuple[str, dict[str, Any]]]:
        for where, row in itertools.chain([first], objects):
            rk = _row_kind(row)
            if rk is None:
                raise DataError(f"{where}: has both text keys (query, positive) and image–caption keys (caption, "
                                "image). One file holds one kind of pair.")
            if rk != kind:
                this = "an image–caption" if rk == IMAGE else "a text"
                that = "an image–caption" if kind == IMAGE else "a text"
                raise DataError(f"{where}: {this} row, but {first[0].rsplit(', ', 1)[-1]} is {that} row. One file "
                                "holds one kind of pair: split it.")
            missing = [c for c in _KIND_COLUMNS[kind] if c not in row]
            if missing:
                header = _IMAGE_HEADER if kind == IMAGE else _HEADER
                raise DataError(f"{where}: missing key(s) {missing} (has {sorted(row)}). Each line needs the keys "
                                f"{header}.")
            yield where, row

    return kind, checked()


def _jsonl_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, line in local_lines(path):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        hint = (" The file looks like one JSON array; write JSON Lines instead (one object per line, e.g. pandas "
                "to_json(orient='records', lines=True))." if lineno == 1 and line.lstrip().startswith("[") else "")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}). Each line must be one "
                            f'object like {{"group": ..., "lang": ..., "query": ..., "positive": ...}} or '
                            f'{{"group": ..., "lang": ..., "caption": ..., "image": ...}}.{hint}') from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}. Each line must be one object "
                            f"with the keys {_HEADERS}.{hint}")
        yield where, row


def text_cell(value: Any, where: str, column: str, context: str) -> str:
    """A table cell as text (returned as is); a DataError naming ``where`` and ``column`` for a value
    that is not text or is empty (None and NaN count as empty)."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        value = ""
    if not isinstance(value, str):
        raise DataError(f"{where}: the {column} cell must be text, got {type(value).__name__} {value!r}{context}.")
    if not value.strip():
        raise DataError(f"{where}: empty {column} cell{context}. Fill it in or remove the row.")
    return value


# --------------------------------------------------------------------------- read

def read_parallel_file(path: str | os.PathLike, *, name: str | None = None, languages: Sequence[str] | None = None,
                       max_groups: int | None = None) -> ParallelDataset:
    """Read a parallel corpus file: text pairs or image–caption pairs (see the module doc).

    Args:
        path: a ``.csv``, ``.tsv``, ``.jsonl``/``.json`` (JSON Lines) or ``.parquet`` file;
            ``.gz`` is allowed for the text formats.
        name: the dataset's name (default: the file name without extensions).
        languages: keep only these languages (default: all in the file). Each must occur.
        max_groups: keep the first ``max_groups`` groups (in order of first appearance).

    Language codes are normalised (``DEU`` -> ``de``). An image–caption file gives a
    dataset whose positives are :class:`~hbkit.parallel.ImageRef` (its passages have no
    language).

    Raises:
        DataError: the file is missing, unreadable, not UTF-8 or corrupt, lacks columns,
            has an empty cell, or names two images for one group.
        UnknownLanguageError: a row has an unknown language code (the message suggests
            the closest), or a requested language has no row (it lists those available).
    """
    file = Path(path).expanduser()
    max_groups = check_count("max_groups", max_groups)
    wanted = None
    if languages is not None:
        if isinstance(languages, str):
            languages = [languages]
        wanted = check_languages(languages, where=f"read_parallel_file({file.name})")
    fmt, gz = file_format(file)
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
    kind, rows = _read_jsonl_rows(file) if fmt == "jsonl" else _read_table_rows(file, fmt, gz)

    n_rows = 0
    present: set[str] = set()
    images: dict[str, tuple[str, str]] = {}  # group -> (image key, where first named)
    items: list[ParallelItem] = []
    for where, row in rows:
        n_rows += 1
        group = row.get("group")
        if group is None or isinstance(group, (float, bool)) or not str(group).strip():
            raise DataError(f"{where}: empty or invalid group cell ({group!r}). Every row needs the id of its group "
                            "(the same id for all translations of one item).")
        group = str(group)
        lang = row.get("lang")
        lang = check_language(lang.strip() if isinstance(lang, str) else lang, where=where)
        context = f" (group {group!r}, language {lang!r})"
        if kind == IMAGE:
            query = text_cell(row.get("caption"), where, "caption", context)
            key = text_cell(row.get("image"), where, "image", context)
            first = images.setdefault(group, (key, where))
            if first[0] != key:
                raise DataError(f"{where}: group {group!r} names the image {key!r}, but {first[1]} names "
                                f"{first[0]!r}. All captions of one group describe the same image: give each image "
                                "its own group id.")
            item = ParallelItem(group, lang, query, ImageRef(key))
        else:
            query = text_cell(row.get("query"), where, "query", context)
            positive = text_cell(row.get("positive"), where, "positive", context)
            negative = row.get("negative")
            if negative is None or (isinstance(negative, float) and negative != negative) or (
                    isinstance(negative, str) and not negative.strip()):
                negative = None
            elif not isinstance(negative, str):
                raise DataError(f"{where}: the negative cell must be text or empty, got {type(negative).__name__} "
                                f"{negative!r}{context}.")
            item = ParallelItem(group, lang, query, positive, negative)
        present.add(lang)
        if wanted is None or lang in wanted:
            items.append(item)
    if not n_rows:
        raise DataError(f"{file} has no data rows. Add one row per item under the header {_HEADERS}.")
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


# --------------------------------------------------------------------------- write

def write_parallel_file(dataset: ParallelDataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` as a parallel corpus file readable by :func:`read_parallel_file`.

    Text data gets the columns :data:`COLUMNS`, image–caption data :data:`IMAGE_COLUMNS`
    (the image key of each row's group). The format follows the extension (as for
    reading). The file is written atomically: a complete new file replaces the old one,
    or nothing changes. A missing hard negative is an empty cell (CSV/TSV) or null
    (JSONL/Parquet). Returns the path.
    """
    if not isinstance(dataset, ParallelDataset):
        raise ConfigError(f"write_parallel_file needs a ParallelDataset, got {type(dataset).__name__}.")
    file = Path(path).expanduser()
    fmt, gz = file_format(file)
    if dataset.modality == IMAGE:
        columns: tuple[str, ...] = IMAGE_COLUMNS
        rows: list[tuple] = [(it.group, it.lang, it.query, it.positive.key)  # type: ignore[union-attr]
                             for it in dataset.items()]
    else:
        columns = COLUMNS
        rows = [(it.group, it.lang, it.query, it.positive, it.negative) for it in dataset.items()]
    try:
        with atomic_path(file) as tmp:
            if fmt == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.table({c: pa.array([r[i] for r in rows], type=pa.string()) for i, c in enumerate(columns)})
                pq.write_table(table, tmp)
            elif fmt == "jsonl":
                opener = gzip.open if gz else open
                with opener(tmp, "wt", encoding="utf-8", newline="\n") as fh:
                    for r in rows:
                        fh.write(json.dumps(dict(zip(columns, r)), ensure_ascii=False) + "\n")
            else:
                import pandas as pd

                frame = pd.DataFrame([tuple("" if v is None else v for v in r) for r in rows], columns=columns)
                frame.to_csv(tmp, sep="," if fmt == "csv" else "\t", index=False, lineterminator="\n",
                             encoding="utf-8", compression="gzip" if gz else None)
    except OSError as exc:
        raise DataError(f"Cannot write {file} ({brief(exc)}). Check that the folder is writable and the disk has "
                        "space.") from exc
    return file
