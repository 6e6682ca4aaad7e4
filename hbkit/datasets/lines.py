"""Streaming the lines of local, gzipped or remote text files, with errors that name the line.

Shared by the parallel-file reader (:mod:`hbkit.datasets.files`), mMARCO
(:mod:`hbkit.datasets.mmarco`) and the TREC readers (:mod:`hbkit.datasets.trec`).

- Lines end at ``\\n`` only (a trailing ``\\r`` is dropped), so text holding other line
  separators (U+2028, a lone ``\\r``) stays on its line; a UTF-8 byte order mark at the
  start of the first line is dropped.
- A gzip file is recognised by its name (``.gz``, any case) or by its first two bytes
  (the gzip magic number), so a compressed file saved without the suffix is read too.
- Bytes that are not UTF-8 raise :class:`~hbkit.errors.DataError` naming the line and
  the byte offset in the file (in the uncompressed data for gzip), where an editor or
  ``head -c`` finds it.
"""
from __future__ import annotations

import gzip
import numbers
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from hbkit.errors import ConfigError, DataError

__all__ = ["CHUNK", "GZIP_MAGIC", "brief", "check_count", "is_gzip", "open_binary", "iter_lines", "local_lines"]

#: Bytes read at a time when streaming lines.
CHUNK = 1 << 20
#: The first two bytes of every gzip file.
GZIP_MAGIC = b"\x1f\x8b"


def brief(exc: BaseException) -> str:
    """``'ErrorClass: first line of the message'`` (no trailing period), for wrapping errors."""
    text = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def check_count(name: str, value: Any) -> int | None:
    """``value`` as a positive int, or None (no limit); anything else is a :class:`ConfigError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer or None (no limit), got {value!r}.")
    return int(value)


def is_gzip(path: str | os.PathLike) -> bool:
    """True when ``path`` is named ``*.gz`` or starts with the gzip magic number."""
    path = Path(path)
    if path.name.lower().endswith(".gz"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False  # let the real open report it


def open_binary(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for reading bytes, decompressing it when it is gzip (:func:`is_gzip`)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # type: ignore[return-value]


def _decode(raw: bytes, label: str, lineno: int, offset: int, compressed: bool) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "of the uncompressed data" if compressed else "in the file"
        raise DataError(f"{label}, line {lineno}: not valid UTF-8 text ({exc.reason}: byte 0x{raw[exc.start]:02x} "
                        f"at byte offset {offset + exc.start} {where} (counted from 0), byte {exc.start + 1} of the "
                        "line). Save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).") from None
    return text[1:] if lineno == 1 and text.startswith("\ufeff") else text


def iter_lines(label: str, opener: Callable[[], Any], on_error: Callable[[BaseException], DataError] | None = None,
               *, compressed: bool = False) -> Iterator[tuple[int, str]]:
    """Stream ``(line number, text)`` from a binary file opened by ``opener`` (1-based numbers).

    Reading is chunked: only what is consumed is read, so a caller that stops early
    never touches the rest. ``on_error`` turns an I/O failure (open or read) into a
    DataError; ``compressed`` only words the byte offsets of encoding errors.
    """
    def fail(exc: BaseException) -> DataError:
        if on_error is not None:
            return on_error(exc)
        return DataError(f"{label} could not be read ({brief(exc)}). Check the file (a truncated download or a "
                         "corrupt .gz?) and download or write it again.")

    try:
        fh = opener()
    except Exception as exc:  # noqa: BLE001 - local or remote I/O of any kind
        raise fail(exc) from exc
    with fh:
        buf = b""
        lineno = 0
        offset = 0  # byte offset of the start of the next line
        while True:
            try:
                block = fh.read(CHUNK)
            except Exception as exc:  # noqa: BLE001
                raise fail(exc) from exc
            if not block:
                break
            parts = (buf + block).split(b"\n")
            buf = parts.pop()
            for raw in parts:
                lineno += 1
                yield lineno, _decode(raw, label, lineno, offset, compressed)
                offset += len(raw) + 1
        if buf:
            yield lineno + 1, _decode(buf, label, lineno + 1, offset, compressed)


def local_lines(path: str | os.PathLike, label: str | None = None) -> Iterator[tuple[int, str]]:
    """:func:`iter_lines` of a local file, gunzipped when it is gzip."""
    path = Path(path)
    gz = is_gzip(path)
    opener = (lambda: gzip.open(path, "rb")) if gz else (lambda: open(path, "rb"))
    return iter_lines(label or str(path), opener, compressed=gz)
