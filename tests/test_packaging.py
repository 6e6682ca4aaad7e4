"""pyproject.toml and environment.yml declare the same dependencies."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    pip_reqs = {_name(r): r.replace(" ", "") for r in reqs}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_reqs = {_name(r): r.replace(" ", "") for r in pip_section if not r.startswith("-e")}
    assert conda_reqs == pip_reqs
    assert "-e .[test,bench]" in pip_section
    for needed in ("torch", "transformers", "datasets", "open-clip-torch", "matplotlib", "papermill", "nbval",
                   "jupyterlab"):
        assert needed in pip_reqs, needed


def test_torch_pin_allows_the_local_release():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    torch_req = next(r for r in project["dependencies"] if _name(r) == "torch")
    assert "<=2.14.1" in torch_req


def test_readme_starts_with_the_two_commands():
    head = "\n".join((REPO / "README.md").read_text().splitlines()[:15])
    assert "make replicate" in head and "make test" in head
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
