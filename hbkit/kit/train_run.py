"""Command-line training of one run, for ``torchrun`` (multi-GPU) or plain ``python -m``.

    torchrun --nproc_per_node 2 -m hbkit.kit.train_run --profile paper --model xlm-roberta-base \\
        --strategy hybrid --seed 0 --output-dir /kaggle/working/runs

Every process trains its slice of each global batch; negatives are all-gathered, so the
global batch keeps its composition. :func:`launch` starts this from a notebook.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from hbkit.errors import HbkitError
from hbkit.kit.experiment import RunSpec
from hbkit.kit.profiles import get_profile


def _args(argv=None) -> RunSpec:
    ap = argparse.ArgumentParser(prog="python -m hbkit.kit.train_run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--output-dir", default="runs")
    ap.add_argument("--model", required=True)
    ap.add_argument("--strategy", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    a = ap.parse_args(argv)
    t = get_profile(a.profile)["train"]
    return RunSpec(profile=a.profile, output_dir=a.output_dir, model=a.model, strategy=a.strategy, seed=a.seed,
                   alpha=t["alpha"] if a.alpha is None else a.alpha,
                   max_steps=t["max_steps"] if a.max_steps is None else a.max_steps,
                   batch_size=t["batch_size"] if a.batch_size is None else a.batch_size,
                   lr=t["lr"] if a.lr is None else a.lr)


def launch(spec: RunSpec, nproc: int) -> None:
    """Train ``spec`` with ``nproc`` processes through torchrun, streaming their output."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "hbkit.kit.train_run", "--profile", spec.profile, "--output-dir", spec.output_dir, "--model", spec.model,
           "--strategy", spec.strategy, "--seed", str(spec.seed), "--alpha", repr(spec.alpha),
           "--max-steps", str(spec.max_steps), "--batch-size", str(spec.batch_size), "--lr", repr(spec.lr)]
    rc = subprocess.call(cmd)
    if rc != 0:
        raise HbkitError(f"Distributed training exited with code {rc}; see the output above. Rerunning resumes "
                         f"from {spec.run_dir / 'checkpoints' / 'latest.pt'}.")


def run_training(spec: RunSpec) -> dict:
    """Train ``spec`` the way this machine allows: one process per GPU through torchrun when several
    GPUs are visible, else in this process. Returns the run's train_state (a finished run is not retrained)."""
    import torch

    from hbkit.engine.checkpoint import is_finished, read_state
    from hbkit.kit.experiment import train

    run = spec.resolve()
    if torch.cuda.device_count() > 1 and not is_finished(run.run_dir):
        launch(spec, nproc=torch.cuda.device_count())
        return read_state(run.run_dir)
    return train(run)


def main(argv=None) -> int:
    from hbkit.kit.experiment import train

    try:
        spec = _args(argv)
        state = train(spec)
    except HbkitError as exc:
        print(f"[hbkit] error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[hbkit] {spec.run_dir}: {state['status']} after {state['steps']} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
