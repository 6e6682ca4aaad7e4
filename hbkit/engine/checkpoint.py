"""Checkpoint I/O and run status: atomic writes, safe loads, one answer to "is this run finished?".

Checkpoints are loaded with ``torch.load(weights_only=True)``: a ``runs/`` folder
shared through a Drive or by a colleague cannot run code on resume. Everything a
checkpoint holds is therefore tensors, numbers, strings and containers of them;
the NumPy RNG state (which holds an ndarray) is converted to a tensor on save and
back on load.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hbkit.engine.atomic import torch_save, write_json
from hbkit.errors import DataError

STATE_FILE = "train_state.json"
FINISHED = "finished"


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states, in a form ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """Write ``obj`` atomically (complete or absent, never half written)."""
    return torch_save(obj, path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True``; a file that needs arbitrary code is refused."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
        raise DataError(
            f"{path} could not be loaded safely ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}). "
            "It is corrupt, or it holds objects other than tensors and plain values, which hbkit never writes: "
            "do not load files from an untrusted source. Delete it to restart the run from scratch."
        ) from exc


def run_status(run_dir: str | os.PathLike) -> str:
    """``"finished"``, ``"interrupted"`` (a checkpoint exists) or ``"new"`` — the one place that says it."""
    run_dir = Path(run_dir)
    state = run_dir / STATE_FILE
    if state.exists():
        try:
            if json.loads(state.read_text()).get("status") == FINISHED:
                return FINISHED
        except json.JSONDecodeError:
            pass
    return "interrupted" if (run_dir / "checkpoints" / "latest.pt").exists() else "new"


def is_finished(run_dir: str | os.PathLike) -> bool:
    """Whether the run in ``run_dir`` has finished training (its model is exported)."""
    return run_status(run_dir) == FINISHED


def read_state(run_dir: str | os.PathLike) -> dict:
    """The final state of a finished run (steps, precision, early stopping)."""
    return json.loads((Path(run_dir) / STATE_FILE).read_text())


def write_state(run_dir: str | os.PathLike, state: dict) -> Path:
    return write_json(Path(run_dir) / STATE_FILE, state)
