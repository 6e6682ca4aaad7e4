"""Model families the trainer can drive (each implements :class:`hbkit.models.base.RetrievalModel`).

A new family is one module plus one line in :data:`FAMILIES`.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from hbkit.errors import UnknownModelError

#: family name -> "module:Class"
FAMILIES: dict[str, str] = {
    "bi-encoder": "hbkit.models.bi_encoder:BiEncoder",
    "clip": "hbkit.models.clip:CLIPModel",
    "albef": "hbkit.models.albef:ALBEFModel",
}

#: A file each exported model folder holds, naming its family.
FAMILY_FILE = "hbkit_model.json"


def model_class(family: str):
    """The class of model family ``family``."""
    if family not in FAMILIES:
        raise UnknownModelError(f"Unknown model family {family!r}. Known: {', '.join(sorted(FAMILIES))}.")
    module, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), name)


def load_model(path: str | os.PathLike):
    """Load any exported hbkit model folder (a run's ``model/``), whatever its family."""
    path = Path(path)
    marker = path / FAMILY_FILE
    if marker.exists():
        family = json.loads(marker.read_text())["family"]
    elif (path / "hbkit_encoder.json").exists():  # text bi-encoders saved before families were recorded
        family = "bi-encoder"
    else:
        raise UnknownModelError(f"{path} holds no exported hbkit model ({FAMILY_FILE} missing). Point at a run's "
                                "model/ folder, or train the run first.")
    return model_class(family).load(path)
