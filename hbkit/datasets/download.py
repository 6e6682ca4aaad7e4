"""Cached, resumable, checksum-verified downloads (standard library only).

:func:`download` fetches a URL into a cache folder (``$HBKIT_CACHE`` or
``~/.cache/hbkit``):

- the bytes go to ``<name>.part`` first; a ``.part`` left by an interrupted run is
  resumed with an HTTP ``Range`` request (when the server ignores the range and answers
  with the whole file, the download restarts from byte 0);
- the size is checked against ``Content-Length`` (or the total in ``Content-Range``):
  a connection that closes early leaves a short ``.part`` that is resumed, never used;
- with ``sha256=`` the digest is checked before the file is used: on a mismatch the
  file is deleted and a :class:`~hbkit.errors.DataError` names both digests;
- only a complete, verified file is renamed (atomically) to its final name, so a file
  with the final name in the cache is always complete and is returned without network.

:func:`extract_zip` unpacks an archive into a folder atomically (into a temporary
folder that is renamed when complete) and does nothing when it was already unpacked.

Only plain URLs come here (the MLQA archive, LAReQA's XQuAD-R files, SQuADShifts); files
on the Hugging Face hub go through ``huggingface_hub`` (its cache, tokens and
``HF_ENDPOINT`` mirrors). ``pooch`` is not used because it cannot resume: it streams each
attempt into a new temporary file that it deletes when the attempt fails and sends no
``Range`` request, so a cut connection restarts the 76 MB MLQA archive from byte 0; it
also relies on the HTTP client to notice a short body instead of checking the size the
server announced.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from http.client import HTTPException
from pathlib import Path

from hbkit.engine.atomic import atomic_dir
from hbkit.errors import ConfigError, DataError
from hbkit.engine.progress import progress

__all__ = ["default_cache_dir", "download", "extract_zip", "sha256_of"]

#: Bytes read per chunk.
CHUNK = 1 << 16
#: Attempts in a row that may end without new bytes before :func:`download` gives up.
MAX_STALLED_ATTEMPTS = 3
#: Name of the marker file :func:`extract_zip` writes into a finished folder.
EXTRACTED_MARKER = ".hbkit-extracted"

_USER_AGENT = "hbkit-download/1.0 (python urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.I)


def default_cache_dir() -> Path:
    """``$HBKIT_CACHE`` if set, else ``~/.cache/hbkit``."""
    env = os.environ.get("HBKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hbkit"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_name(url: str, filename: str | None) -> str:
    name = filename if filename is not None else Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ConfigError(f"Cannot derive a file name from {url!r} (got {name!r}): pass filename='something.zip' "
                          "(a plain name, no folders).")
    return name


def _offline_hint(url: str, final: Path) -> str:
    return (f"If this machine is offline, download {url} elsewhere and either put it at {final} "
            "(a file there is used without network) or pass the local file or folder to the loader instead of "
            "downloading.")


class _Stalled(Exception):
    """One attempt ended without the full file (connection cut, server error); retry."""


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range`` header; None where absent or ``*``."""
    if not value:
        return None, None
    m = _CONTENT_RANGE.match(value.strip())
    if not m:
        return None, None
    first = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return first, total


def _attempt(url: str, part: Path, timeout: float, show_progress: bool | None, label: str) -> int | None:
    """One request: append to (or restart) ``part``. Returns the expected total size (None if unknown).

    Raises :class:`_Stalled` when the server cut the transfer or answered with a transient error,
    and :class:`DataError` for errors a retry cannot fix.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # range not satisfiable: the .part is complete, or wrong
            _, total = _parse_content_range(exc.headers.get("Content-Range"))
            exc.close()
            if total is not None and total == offset:
                return total
            part.unlink()
            raise _Stalled(f"the server refused to resume at byte {offset}; restarting") from exc
        exc.close()
        if exc.code in (408, 429) or exc.code >= 500:
            raise _Stalled(f"the server answered HTTP {exc.code} {exc.reason}") from exc
        raise DataError(f"Downloading {url} failed: the server answered HTTP {exc.code} {exc.reason}. "
                        "Check the URL (it may have moved).") from exc
    except (urllib.error.URLError, socket.timeout, ConnectionError, HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if offset:
            raise _Stalled(f"the connection failed ({reason})") from exc
        raise DataError(f"Could not reach {url} ({reason}): is this machine offline, or is the address wrong? "
                        f"{_offline_hint(url, part.with_name(part.name[:-len('.part')]))}") from exc

    with response:
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206:
            first, total = _parse_content_range(response.headers.get("Content-Range"))
            if first is not None and first != offset:  # not the range asked for: start over
                part.unlink(missing_ok=True)
                raise _Stalled(f"the server sent bytes from {first} instead of {offset}; restarting")
            if total is None and length is not None:
                total = offset + length
            mode = "ab"
        else:  # 200: the server ignored the range (or there was none): take the whole file
            offset, total, mode = 0, length, "wb"
        bar = progress(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=label, show=show_progress, leave=False)
        try:
            with open(part, mode) as fh:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (socket.timeout, ConnectionError, HTTPException, OSError) as exc:
                        raise _Stalled(f"the connection broke ({exc!r})") from exc
                    if not block:
                        break
                    fh.write(block)
                    bar.update(len(block))
        finally:
            bar.close()
    return total


def download(url: str, dest_dir: str | os.PathLike | None = None, *, sha256: str | None = None,
             filename: str | None = None, show_progress: bool | None = None, timeout: float = 60) -> Path:
    """Download ``url`` into ``dest_dir`` (default :func:`default_cache_dir`) and return the file's path.

    Args:
        url: an ``http(s)://`` (or ``file://``) address.
        dest_dir: cache folder; created if needed.
        sha256: expected hex digest; checked before the file is used.
        filename: name of the file in ``dest_dir`` (default: the last part of the URL path).
        show_progress: progress bar on/off (default: on unless ``HBKIT_PROGRESS=0``).
        timeout: seconds to wait for the server on connect and on each read.

    A complete cached file (with the right digest, when one is given) is returned without
    contacting the server. A partial ``<name>.part`` is resumed with a ``Range`` request.

    Raises:
        DataError: the server cannot be reached, answers with an error, keeps cutting the
            transfer short, or the digest does not match.
    """
    expected = sha256.strip().lower() if sha256 else None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ConfigError(f"sha256={sha256!r} is not a SHA-256 hex digest (64 hex digits). "
                          "Pass the digest as printed by `sha256sum`, or None to skip the check.")
    folder = Path(dest_dir).expanduser() if dest_dir is not None else default_cache_dir()
    name = _file_name(url, filename)
    final = folder / name
    part = folder / (name + ".part")

    if final.is_file():
        if expected is None or sha256_of(final) == expected:
            return final
        final.unlink()  # a different file under this name: fetch again and check again

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create the download folder {folder} ({exc}). Set HBKIT_CACHE to a writable "
                        "folder or pass dest_dir=.") from exc

    stalled = 0
    total: int | None = None
    last_note = ""
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            total = _attempt(url, part, timeout, show_progress, name)
        except _Stalled as exc:
            last_note = str(exc)
            total = None
        size = part.stat().st_size if part.exists() else 0
        if total is not None and size > total:  # longer than the server says: the .part is not this file
            part.unlink()
            last_note = f"the partial file had {size} bytes but the file has {total}; restarting"
            size = 0
        elif total is not None and size == total:
            break
        elif total is None and not last_note:  # size unknown and the server closed normally
            break
        if total is not None and size < total and not last_note:
            last_note = f"the transfer stopped at byte {size} of {total}"
        if size <= before and not (before and size == 0):
            stalled += 1
        else:
            stalled = 0
        if stalled >= MAX_STALLED_ATTEMPTS:
            kept = (f"The {size} bytes received so far are kept in {part}; run again later to resume."
                    if size else "Run again later.")
            raise DataError(f"Downloading {url} failed after {MAX_STALLED_ATTEMPTS} attempts without progress: "
                            f"{last_note}. {kept} {_offline_hint(url, final)}")
        last_note = ""
        time.sleep(0.1 * stalled)

    if expected is not None:
        actual = sha256_of(part)
        if actual != expected:
            part.unlink()
            raise DataError(f"Checksum mismatch for {url}: expected sha256 {expected}, got {actual}. "
                            f"The downloaded file was deleted. Check the URL and the expected digest; if a copy "
                            f"was placed in the cache by hand, delete the cache file {final} and download again.")
    os.replace(part, final)
    return final


def _is_complete(out_dir: Path, zip_path: Path) -> bool:
    marker = out_dir / EXTRACTED_MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == zip_path.name


def extract_zip(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Unpack the zip file ``path`` into the folder ``out_dir`` and return ``out_dir``.

    The archive is unpacked into a temporary folder next to ``out_dir`` that is renamed
    to ``out_dir`` only when complete (a marker file in it records the archive). Calling
    again after a complete extraction does nothing. ``out_dir`` must not exist yet (or be
    empty): an existing folder with other content is never overwritten.

    Raises:
        DataError: the file is missing, not a valid zip archive (e.g. a truncated
            download), or holds paths that would land outside ``out_dir``.
    """
    zip_path = Path(path).expanduser()
    out = Path(out_dir).expanduser()
    if _is_complete(out, zip_path):
        return out
    if not zip_path.is_file():
        raise DataError(f"Zip file not found: {zip_path}. Download it first (hbkit.datasets.download.download) or fix "
                        "the path.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"Cannot extract {zip_path.name} into {out}: it already exists and was not made by "
                        f"extract_zip from this archive (it would be replaced). Pass a new folder, or delete {out} "
                        "if it is a leftover.")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise DataError(f"{zip_path} is corrupt (member {bad!r} fails its CRC check). Delete it and "
                                "download it again.")
            for member in zf.namelist():
                target = Path(member)
                if target.is_absolute() or ".." in target.parts:
                    raise DataError(f"{zip_path} holds the unsafe path {member!r} (outside the target folder); "
                                    "refusing to extract. Check where the archive came from.")
            with atomic_dir(out) as tmp:
                zf.extractall(tmp)
                (tmp / EXTRACTED_MARKER).write_text(zip_path.name + "\n", encoding="utf-8")
    except zipfile.BadZipFile as exc:
        raise DataError(f"{zip_path} is not a valid zip archive ({exc}); the download may be truncated or "
                        "the URL may point to an HTML page. Delete the file and download it again.") from exc
    return out
