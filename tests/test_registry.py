"""hbkit.datasets.registry: profile source dicts -> loaders, with the arguments the kit passed before."""
from __future__ import annotations

import types
from pathlib import Path

import pytest

from hbkit.datasets import mlqa_r, mmarco, registry, squadshifts, xquad_r
from hbkit.errors import ConfigError
from hbkit.parallel import ParallelItem


BUILTIN_TRAINING = {"mmarco": registry._mmarco, "file": registry._file, "squadshifts": registry._squadshifts}
BUILTIN_BENCHMARKS = {"xquad-r": registry._xquad_r, "mlqa-r": registry._mlqa_r}
AS_IMPORTED = (dict(registry.TRAINING), dict(registry.BENCHMARKS))


@pytest.fixture(autouse=True)
def builtin_only(monkeypatch):
    """Each test sees the built-in kinds only (the kit registers more when it is imported)."""
    monkeypatch.setattr(registry, "TRAINING", dict(BUILTIN_TRAINING))
    monkeypatch.setattr(registry, "BENCHMARKS", dict(BUILTIN_BENCHMARKS))


@pytest.fixture
def recorded(monkeypatch):
    """Replace the loaders by recorders: {name: (args, kwargs)}."""
    calls: dict = {}

    def recorder(name):
        def fn(*args, **kwargs):
            calls[name] = (args, kwargs)
            return name
        return fn

    monkeypatch.setattr(mmarco, "load_mmarco", recorder("mmarco"))
    monkeypatch.setattr(squadshifts, "load_squadshifts", recorder("squadshifts"))
    monkeypatch.setattr(xquad_r, "load_xquad_r", recorder("xquad-r"))
    monkeypatch.setattr(mlqa_r, "load_mlqa_r", recorder("mlqa-r"))
    return calls


def test_builtin_kinds():
    # as imported (other kinds, such as the kit's "demo", may have been registered since)
    assert {k: AS_IMPORTED[0][k] for k in BUILTIN_TRAINING} == BUILTIN_TRAINING
    assert {k: AS_IMPORTED[1][k] for k in BUILTIN_BENCHMARKS} == BUILTIN_BENCHMARKS
    assert "miracl" not in AS_IMPORTED[1]


def test_training_kinds_pass_the_profile_entries(recorded, tmp_path, monkeypatch):
    monkeypatch.delenv("HBKIT_DATA", raising=False)
    assert registry.load_training({"kind": "mmarco", "languages": ["en", "de"], "max_groups": 6000}) == "mmarco"
    assert recorded["mmarco"] == ((["en", "de"],), {"max_groups": 6000, "source": None})
    (tmp_path / "mmarco").mkdir()
    monkeypatch.setenv("HBKIT_DATA", str(tmp_path))  # a local copy is preferred to the hub
    registry.load_training({"kind": "mmarco", "languages": ["en"]})
    assert recorded["mmarco"] == ((["en"],), {"max_groups": None, "source": tmp_path / "mmarco"})
    registry.load_training({"kind": "mmarco", "languages": ["en"], "source": "/data/mm"})
    assert recorded["mmarco"][1]["source"] == "/data/mm"
    registry.load_training({"kind": "squadshifts"})
    assert recorded["squadshifts"] == (("nyt",), {"max_items": None, "source": None})
    registry.load_training({"kind": "squadshifts", "subset": "reddit", "max_items": 50, "source": "/s.json"})
    assert recorded["squadshifts"] == (("reddit",), {"max_items": 50, "source": "/s.json"})


def test_file_kind_expands_variables_and_reads(tmp_path, monkeypatch):
    (tmp_path / "mine.csv").write_text("group,lang,query,positive\n1,en,q,p\n1,deu,q2,p2\n", encoding="utf-8")
    monkeypatch.setenv("MY_DATA", str(tmp_path))
    ds = registry.load_training({"kind": "file", "path": "$MY_DATA/mine.csv", "name": "own"})
    assert ds.name == "own" and ds.items() == [ParallelItem("1", "en", "q", "p"), ParallelItem("1", "de", "q2", "p2")]
    assert registry.load_training({"kind": "file", "path": str(tmp_path / "mine.csv")}).name == "mine"


def test_benchmark_kinds_pass_the_profile_entries(recorded, tmp_path, monkeypatch):
    monkeypatch.setenv("HBKIT_DATA", str(tmp_path))
    registry.load_benchmark({"kind": "xquad-r", "path": "/x", "languages": ["de", "en"]})
    assert recorded["xquad-r"] == ((Path("/x"),), {"languages": ["de", "en"]})
    (tmp_path / "xquad-r").mkdir()
    registry.load_benchmark({"kind": "xquad-r"})
    assert recorded["xquad-r"] == ((tmp_path / "xquad-r",), {"languages": None})
    registry.load_benchmark({"kind": "mlqa-r", "path": "/m", "languages": ["ar"]})
    assert recorded["mlqa-r"] == (("/m",), {"languages": ["ar"], "download": False})
    registry.load_benchmark({"kind": "mlqa-r"})  # no local copy: download
    assert recorded["mlqa-r"] == ((None,), {"languages": None, "download": True})
    (tmp_path / "MLQA_V1").mkdir()
    registry.load_benchmark({"kind": "mlqa-r"})
    assert recorded["mlqa-r"] == ((tmp_path / "MLQA_V1",), {"languages": None, "download": False})


def test_real_benchmarks_from_shared_data(shared_data):
    xq = registry.load_benchmark({"kind": "xquad-r", "path": str(shared_data / "xquad-r"), "languages": ["de"]})
    assert xq.name == "xquad-r" and len(xq.queries) == 1190 and xq.query_langs == ["de"]
    ml = registry.load_benchmark({"kind": "mlqa-r", "path": str(shared_data / "mlqa"), "languages": ["ar"]})
    assert ml.name == "mlqa-r" and len(ml.queries) == 517


def test_unknown_kinds_and_bad_sources():
    with pytest.raises(ConfigError, match=r"Unknown training data kind 'demo'\. Valid kinds: file, mmarco, "
                                          r"squadshifts \(add one with register_training\(kind, fn\)\)"):
        registry.load_training({"kind": "demo"})
    with pytest.raises(ConfigError, match=r"Unknown benchmark kind 'miracl'\. Valid kinds: mlqa-r, xquad-r \(add one "
                                          r"with register_benchmark"):
        registry.load_benchmark({"kind": "miracl", "languages": ["sw"]})
    with pytest.raises(ConfigError, match="has no 'kind'"):
        registry.load_training({"path": "x.csv"})
    with pytest.raises(ConfigError, match="must be a dict"):
        registry.load_benchmark("xquad-r")
    with pytest.raises(ConfigError, match=r"The 'file' data source needs a 'path' entry"):
        registry.load_training({"kind": "file"})
    with pytest.raises(ConfigError, match=r"The 'mmarco' data source needs a 'languages' entry"):
        registry.load_training({"kind": "mmarco", "max_groups": 10})


def _module_level_loader(src, **context):
    return "module level"


def test_register_kinds_with_context():
    def demo(src, profile="?"):
        return ("train", profile, src["kind"])

    registry.register_training("demo", demo)
    registry.register_training("demo", demo)  # the same function again: fine
    assert registry.load_training({"kind": "demo"}, profile="demo-xs") == ("train", "demo-xs", "demo")
    with pytest.raises(ConfigError, match=r"kind 'demo' is already registered \(to demo\)\. Pass replace=True"):
        registry.register_training("demo", lambda src: None)
    registry.register_training("demo", lambda src, **_: "replaced", replace=True)
    assert registry.load_training({"kind": "demo"}) == "replaced"
    registry.register_benchmark("demo", lambda src, profile: f"bench {profile}")
    assert registry.load_benchmark({"kind": "demo"}, profile="p") == "bench p"
    assert "demo" in registry.BENCHMARKS and "demo" in registry.TRAINING
    # the same definition from a reloaded module replaces the old one without replace=True
    registry.register_benchmark("mod", _module_level_loader)
    twin = types.FunctionType(_module_level_loader.__code__, _module_level_loader.__globals__, "_module_level_loader")
    twin.__qualname__ = _module_level_loader.__qualname__
    registry.register_benchmark("mod", twin)
    assert registry.BENCHMARKS["mod"] is twin
    with pytest.raises(ConfigError, match="must be callable"):
        registry.register_benchmark("x", "not a function")
    with pytest.raises(ConfigError, match="non-empty name"):
        registry.register_training(" ", demo)
