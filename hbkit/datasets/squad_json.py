"""Reading SQuAD-format JSON files (XQuAD-R, MLQA, SQuADShifts share the layout)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from hbkit.errors import DataError


def read_squad_json(path: str | os.PathLike, label: str, how_to_get: str = "") -> dict:
    """Load a SQuAD-format file and check it has a top-level ``data`` list.

    ``label`` names the dataset in errors ("XQuAD-R file", "MLQA file"...); ``how_to_get``
    says where to get a good copy. Missing, non-JSON or non-UTF-8 files raise DataError.
    """
    file = Path(path).expanduser()
    hint = f" {how_to_get}" if how_to_get else ""
    if not file.is_file():
        raise DataError(f"{label} not found: {file}.{hint}")
    try:
        with open(file, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{label} {file} is not valid JSON ({exc.msg}, line {exc.lineno}). "
                        f"Re-download it.{hint}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{label} {file} is not UTF-8 JSON ({exc.reason}). Re-download it.{hint}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{label} {file} has no top-level 'data' list (not SQuAD format). Re-download it.{hint}")
    return data
