"""``python -m hbkit.replicate --profile demo``: run the notebooks end to end with papermill.

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

from .atomic import atomic_path
from .errors import HbkitError
from .experiment import RunSpec, run_dir
from .profiles import get_profile

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


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


def replicate(profile: str, output_dir: str, fresh: bool = False) -> Path:
    """Run all notebooks of ``profile``; returns the profile directory."""
    prof = get_profile(profile)
    out_root = Path(output_dir).expanduser().resolve()
    root = out_root / profile
    if fresh and root.exists():
        shutil.rmtree(root)
    nb_dir = root / "notebooks"
    nb_dir.mkdir(parents=True, exist_ok=True)
    base = {"profile": profile, "output_dir": str(out_root)}
    t0 = time.perf_counter()
    train_cfg = prof["train"]
    first = {"batch_size": train_cfg["batch_size"], "alpha": train_cfg["alpha"]}
    if not (nb_dir / "01_batches.ipynb").exists():
        _execute("01_batches.ipynb", nb_dir / "01_batches.ipynb", {**base, **first}, nb_dir)
    for model in prof["models"]:
        for strategy in prof["strategies"]:
            for seed in prof["seeds"]:
                params = {**base, "model": model, "strategy": strategy, "seed": seed, "alpha": train_cfg["alpha"],
                          "max_steps": train_cfg["max_steps"], "batch_size": train_cfg["batch_size"],
                          "lr": train_cfg["lr"]}
                RunSpec(**params)  # type-check before starting a kernel
                rdir = run_dir(str(out_root), profile, model, strategy, seed)
                tag = f"{model}_{strategy}_seed{seed}"
                train_nb = nb_dir / f"02_train_{tag}.ipynb"
                if not ((rdir / "train_state.json").exists() and train_nb.exists()):
                    _execute("02_train.ipynb", train_nb, params, nb_dir)
                eval_nb = nb_dir / f"03_evaluate_{tag}.ipynb"
                if not ((rdir / "results.csv").exists() and eval_nb.exists()):
                    _execute("03_evaluate.ipynb", eval_nb, params, nb_dir)
    _execute("04_compare.ipynb", nb_dir / "04_compare.ipynb", base, nb_dir)
    print(f"[hbkit] profile {profile!r} done in {time.perf_counter() - t0:.0f} s: "
          f"{root / 'results.csv'}, figures in {root / 'figures'}", flush=True)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hbkit.replicate", description=__doc__)
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
