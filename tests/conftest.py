"""Shared pytest fixtures."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]

# No model or dataset hub in tests: everything is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def shared_data_dir() -> Path | None:
    """The real offline data folder: $HBKIT_SHARED_DATA or ../shared/data next to the repo."""
    env = os.environ.get("HBKIT_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data folder not found: set HBKIT_SHARED_DATA or place shared/data next to the repo")
    return path


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny matrices gain nothing from intra-op threads, and on a
    shared CPU they only slow down (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch):
    """Progress bars are off under test."""
    monkeypatch.setenv("HBKIT_PROGRESS", "0")


def interrupt_at(step: int):
    """A trainer step hook that stops training with KeyboardInterrupt after ``step`` steps (a simulated kill)."""
    def hook(done: int) -> None:
        if done == step:
            raise KeyboardInterrupt
    return hook


def skip_or_fail(msg: str) -> None:
    """Skip a test whose inputs (executed notebooks, runs) are absent; fail instead under
    ``make notebook-test`` (HBKIT_REQUIRE_EXECUTED=1), where they must exist, so a green run checked them."""
    if os.environ.get("HBKIT_REQUIRE_EXECUTED"):
        pytest.fail(msg)
    pytest.skip(msg)


def load_executed(folder: Path, sources: Sequence[Path], what: str, hint: str) -> dict[str, dict]:
    """The executed notebooks in ``folder`` (name -> JSON), skipping ``.FAILED`` copies; skip (or
    fail under ``make notebook-test``) when there are none or one is older than its source in ``sources``."""
    found = sorted(p for p in folder.glob("*.ipynb") if ".FAILED" not in p.name and not p.name.startswith("."))
    if not found:
        skip_or_fail(f"no executed {what} in {folder}: {hint} writes them")
    for p in found:
        src = next((s for s in sources if p.stem.startswith(s.stem)), None)
        if src is not None and src.stat().st_mtime > p.stat().st_mtime:
            skip_or_fail(f"{p} is older than {src.relative_to(REPO)}: rerun `make notebook-test`")
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in found}
