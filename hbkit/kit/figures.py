"""``python -m hbkit.kit.figures``: the README's figures, from a finished ``make replicate`` output.

Reads ``<output_dir>/<profile>/`` (default ``runs/demo``) and writes small PNGs to ``docs/``:

- ``headline.png`` — mAP per setting and strategy, mean ± std over seeds;
- ``batches_heatmap.png`` — query × passage languages of 200 real batches per strategy (demo world profiles);
- ``rank_distance.png`` — one query's correct answers ranked under X-X and under X-Y (seed 0);
- ``hybrid_training.png`` — a hybrid run's training loss on its X-X and on its X-Y batches, and its
  (English, X-X) validation loss with the step whose weights were kept;
- ``alpha_sweep.png`` — mAP against α, when the profile has an α sweep.

    make figures                  # = python -m hbkit.kit.figures --profile demo --output-dir runs --to docs
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

from hbkit.engine.atomic import atomic_path
from hbkit.errors import DataError, HbkitError

#: Resolution of the PNGs written (small files for a README).
DPI = 90
#: Batches per strategy counted in the language-pair maps (as in notebook 01).
N_BATCHES = 200


def _write(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def make_figures(profile: str = "demo", output_dir: str = "runs", to: str | Path = "docs",
                 seed: int = 0) -> dict[str, Path | str]:
    """Write the figures of a finished profile output to ``to``.

    Returns ``{name: path written}``, or ``{name: why it was skipped}`` for a figure whose inputs
    are absent (no demo world, no X-X/X-Y runs of ``seed``, no α sweep). Raises DataError when the
    profile has no evaluated run at all.
    """
    matplotlib.use("Agg")
    import pandas as pd

    from hbkit.evaluation import headline
    from hbkit.kit import experiment as ex
    from hbkit.kit import inspection, plots
    from hbkit.kit.profiles import get_profile
    from hbkit.samplers import make_sampler

    prof = get_profile(profile)
    root = ex.resolve_output_dir(output_dir) / profile
    if not any((root / "runs").glob("*/*/seed*/results.csv")):
        raise DataError(f"No evaluated runs under {root / 'runs'}: run `make replicate PROFILE={profile}` "
                        f"(or with OUTPUT_DIR=...) first, then make the figures.")
    results = ex.collect_results(output_dir, profile)
    head = headline(results)
    main = head[head.strategy.isin(["X-X", "X-Y", "hybrid"])]
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path | str] = {}
    done["headline"] = _write(plots.strategy_bars(main, metric="mAP",
                                                  title=f"mAP by strategy and setting ({profile} profile)"),
                              to / "headline.png")
    if "world" in prof:
        t = prof["train"]
        world = ex.demo_world(profile)
        counts = {s: inspection.language_pair_counts(
            make_sampler(s, [world.train], t["batch_size"], alpha=t["alpha"] if s == "hybrid" else None,
                         seed=seed).batches(), n=N_BATCHES) for s in ("X-X", "X-Y", "hybrid")}
        done["batches_heatmap"] = _write(plots.batch_language_heatmaps(
            counts, title=f"Language pairs of {N_BATCHES} training batches of {t['batch_size']} pairs"),
            to / "batches_heatmap.png")
    else:
        done["batches_heatmap"] = f"profile {profile!r} has no demo world"
    try:
        ranks = inspection.rank_example(profile, output_dir, seed=seed)
    except DataError as why:
        done["rank_distance"] = str(why)
    else:
        done["rank_distance"] = _write(plots.answer_ranks(ranks), to / "rank_distance.png")
    model = prof["models"][0]
    hybrid = inspection.run_spec(profile, output_dir, model, "hybrid", seed).run_dir / "train_log.csv"
    if hybrid.exists():
        log = pd.read_csv(hybrid)
        done["hybrid_training"] = _write(plots.training_curves(
            {f"hybrid seed {seed}": log}, by_mode=True, title=f"{model} · hybrid · seed {seed} ({profile} profile)"),
            to / "hybrid_training.png")
    else:
        done["hybrid_training"] = f"no training log at {hybrid}"
    sweep = inspection.sweep_headline(head, profile)
    if sweep.empty:
        done["alpha_sweep"] = f"profile {profile!r} has no α sweep"
    else:
        done["alpha_sweep"] = _write(plots.alpha_sweep(sweep, title=f"mAP against α ({profile} profile)"),
                                     to / "alpha_sweep.png")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hbkit.kit.figures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--output-dir", default="runs", help="the folder make replicate wrote to (OUTPUT_DIR)")
    ap.add_argument("--to", default="docs", help="where the PNGs go")
    ap.add_argument("--seed", type=int, default=0, help="seed of the runs in the one-query rank figure")
    args = ap.parse_args(argv)
    try:
        done = make_figures(args.profile, args.output_dir, args.to, args.seed)
    except HbkitError as exc:
        print(f"[hbkit] error: {exc}", file=sys.stderr)
        return 2
    for name, what in done.items():
        print(f"[hbkit] {name}: {what}" if isinstance(what, Path) else f"[hbkit] {name}: skipped ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
