"""``python -m hbkit.kit.replicate --profile demo``: run the notebooks end to end with papermill.

Executed notebooks go to ``<output_dir>/<profile>/notebooks/``. A rerun skips
finished runs (trained and evaluated, with their executed notebooks) and resumes
interrupted ones from their ``latest`` checkpoint.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from hbkit.engine.atomic import atomic_path
from hbkit.errors import HbkitError
from hbkit.kit.experiment import RunSpec, resolve_output_dir
from hbkit.kit.profiles import get_profile

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _execute(name: str, out: Path, params: dict, cwd: Path) -> float:
    import papermill as pm

    src = NOTEBOOKS / name
    if not src.exists():
        raise HbkitError(f"Notebook {src} is missing: run from a full checkout of hbkit.")
    t0 = time.perf_counter()
    print(f"[hbkit] running {name} -> {out.name}", flush=True)
    with atomic_path(out) as tmp:
        try:
            pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name="python3",
                                progress_bar=False, cwd=str(cwd), language="python")
        except pm.PapermillExecutionError as exc:
            failed = out.with_name(out.stem + ".FAILED.ipynb")
            shutil.copy(tmp, failed)
            raise HbkitError(f"{name} failed ({exc.ename}: {exc.evalue}). The partly executed notebook is "
                             f"{failed}; fix the cause and rerun: finished runs are skipped and "
                             "interrupted ones resume.") from None
    return time.perf_counter() - t0


def planned_runs(profile: str, output_dir: str) -> list[dict]:
    """The notebook parameters of every run of a profile: models × strategies × seeds, then the α sweep."""
    prof = get_profile(profile)
    t = prof["train"]
    base = {"profile": profile, "output_dir": output_dir, "max_steps": t["max_steps"],
            "batch_size": t["batch_size"], "lr": t["lr"]}
    runs = [{**base, "model": m, "strategy": s, "seed": seed, "alpha": t["alpha"]}
            for m in prof["models"] for s in prof["strategies"] for seed in prof["seeds"]]
    sweep = prof.get("alpha_sweep")
    if sweep:
        for a in sweep["alphas"]:
            for seed in sweep["seeds"]:
                run = {**base, "model": sweep["model"], "strategy": "hybrid", "seed": seed, "alpha": float(a)}
                if run not in runs:
                    runs.append(run)
    return runs


def replicate(profile: str, output_dir: str, fresh: bool = False) -> Path:
    """Run all notebooks of ``profile``; returns the profile directory."""
    prof = get_profile(profile)
    out_root = resolve_output_dir(output_dir)
    root = out_root / profile
    if fresh and root.exists():
        shutil.rmtree(root)
    nb_dir = root / "notebooks"
    nb_dir.mkdir(parents=True, exist_ok=True)
    base = {"profile": profile, "output_dir": str(out_root)}
    t0 = time.perf_counter()
    train_cfg = prof["train"]
    first = {"batch_size": train_cfg["batch_size"], "alpha": train_cfg["alpha"]}
    if "world" in prof and not (nb_dir / "01_batches.ipynb").exists():
        _execute("01_batches.ipynb", nb_dir / "01_batches.ipynb", {**base, **first}, nb_dir)
    for params in planned_runs(profile, str(out_root)):
        spec = RunSpec(**params)  # type-check before starting a kernel
        tag = f"{spec.model}_{spec.label}_seed{spec.seed}"
        train_nb = nb_dir / f"02_train_{tag}.ipynb"
        if not ((spec.run_dir / "train_state.json").exists() and train_nb.exists()):
            _execute("02_train.ipynb", train_nb, params, nb_dir)
        eval_nb = nb_dir / f"03_evaluate_{tag}.ipynb"
        if not ((spec.run_dir / "results.csv").exists() and eval_nb.exists()):
            _execute("03_evaluate.ipynb", eval_nb, params, nb_dir)
    _execute("04_compare.ipynb", nb_dir / "04_compare.ipynb", base, nb_dir)
    _execute("05_report.ipynb", nb_dir / "05_report.ipynb", base, nb_dir)
    print(f"[hbkit] profile {profile!r} done in {time.perf_counter() - t0:.0f} s: "
          f"{root / 'results.csv'}, figures in {root / 'figures'}", flush=True)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hbkit.kit.replicate", description=__doc__)
    ap.add_argument("--profile", default=os.environ.get("PROFILE", "demo"))
    ap.add_argument("--output-dir", default=os.environ.get("OUTPUT_DIR", "runs"))
    ap.add_argument("--fresh", action="store_true", help="delete the profile's previous outputs first")
    args = ap.parse_args(argv)
    try:
        replicate(args.profile, args.output_dir, args.fresh)
    except HbkitError as exc:
        print(f"[hbkit] error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
