"""``python -m hbkit.kit.replicate --profile demo``: run the notebooks end to end with papermill.

Executed notebooks go to ``<output_dir>/<profile>/notebooks/``. A rerun skips
finished runs (trained and evaluated, with their executed notebooks) and resumes
interrupted ones from their ``latest`` checkpoint. One line is printed per notebook::

    [3/15] 02_train X-Y seed0  41 s  (12 left, ~4 min)

Notebooks are planned in stages (the batches notebook; the runs; per-model evaluation; the
comparisons). Within a stage, independent groups (one run's train and evaluate notebooks) run
``--jobs`` at a time in separate kernels (default: the profile's ``parallel_notebooks``, 2 for the
CPU toys, 1 for GPU profiles); each kernel keeps torch's default thread count, so the results are
the same as one at a time (checked bit for bit on the toy runs). The profile's generated data and
tiny models are built once first, so two kernels never build the same folder.

Kernels run unattended: on POSIX they talk over IPC sockets in a private temporary
folder (not TCP), they are shut down without the interrupt jupyter_client sends first
by default (papermill shuts a kernel down only after its last cell returned), progress
bars are off in them (``HBKIT_PROGRESS=0`` unless set), and the kernel process's own
log goes to a file that is kept, and named, only when the notebook fails.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hbkit.engine.atomic import atomic_path
from hbkit.engine.checkpoint import is_finished
from hbkit.errors import HbkitError
from hbkit.kit.experiment import RunSpec, resolve_output_dir, run_label
from hbkit.kit.profiles import get_profile

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _kernel_manager_class(log_path: Path, socket_dir: str):
    """An AsyncKernelManager for unattended runs (see the module docstring), logging to ``log_path``."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class BatchKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc" if os.name == "posix" else "tcp"

        @default("ip")
        def _default_ip(self) -> str:
            return os.path.join(socket_dir, "k") if self.transport == "ipc" else super()._ip_default()

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:  # idle after the last cell: the shutdown request suffices
                return
            await super()._async_interrupt_kernel()

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            env = dict(kw.get("env") or os.environ)
            env.setdefault("HBKIT_PROGRESS", "0")
            kw["env"] = env
            with open(log_path, "ab") as log:  # noqa: ASYNC230 (the kernel keeps its own copy of the descriptor)
                kw["stdout"] = kw["stderr"] = log
                await super()._async_launch_kernel(kernel_cmd, **kw)

    return BatchKernelManager


def _failure_message(label: str, exc: BaseException, failed: Path | None, log: Path | None) -> str:
    import papermill as pm

    lines = [f"{label} failed."]
    if isinstance(exc, pm.PapermillExecutionError):
        lines[0] = f"{label} failed in cell In [{exc.exec_count}]:"
        tb = [ln for part in (exc.traceback or []) for ln in _ANSI.sub("", part).splitlines()]
        lines += ["  " + ln for ln in tb[-20:]] or [f"  {exc.ename}: {exc.evalue}"]
    else:
        lines.append(f"  {type(exc).__name__}: {exc}")
    if failed is not None:
        lines.append(f"The executed notebook, with its outputs up to the error: {failed}")
    if log is not None:
        lines.append(f"The kernel's own log: {log}")
    lines.append("Fix the cause and rerun: finished runs are skipped and interrupted ones resume.")
    return "\n".join(lines)


def execute(name: str, out: Path, params: dict, cwd: Path, label: str | None = None) -> float:
    """Execute notebook ``name`` with ``params`` into ``out`` (atomically); returns the seconds taken.

    On failure the partly executed notebook is kept as ``<out>.FAILED.ipynb`` and an HbkitError
    names it, the failing cell and its traceback; a later success removes it.
    """
    import papermill as pm

    src = NOTEBOOKS / name
    if not src.exists():
        raise HbkitError(f"Notebook {src} is missing: run from a full checkout of hbkit.")
    label = label or Path(name).stem
    t0 = time.perf_counter()
    sockets = tempfile.mkdtemp(prefix="hbkit-kernel-")
    log = out.with_name(f".{out.stem}.kernel.log")
    log.unlink(missing_ok=True)
    try:
        with atomic_path(out) as tmp:
            try:
                pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name="python3",
                                    progress_bar=False, log_output=False, cwd=str(cwd), language="python",
                                    kernel_manager_class=_kernel_manager_class(log, sockets))
            except Exception as exc:  # noqa: BLE001 (a cell raised, the kernel died, or a timeout)
                failed = out.with_name(out.stem + ".FAILED.ipynb")
                if tmp.exists() and tmp.stat().st_size:
                    shutil.copy(tmp, failed)
                kept = None
                if log.exists() and log.stat().st_size:
                    kept = out.with_name(out.stem + ".FAILED.kernel.log")
                    os.replace(log, kept)
                raise HbkitError(_failure_message(label, exc, failed if failed.exists() else None, kept)) from None
    finally:
        log.unlink(missing_ok=True)
        shutil.rmtree(sockets, ignore_errors=True)
    for stale in (out.with_name(out.stem + ".FAILED.ipynb"), out.with_name(out.stem + ".FAILED.kernel.log")):
        stale.unlink(missing_ok=True)  # an earlier failure, now fixed
    return time.perf_counter() - t0


def planned_runs(profile: str, output_dir: str) -> list[dict]:
    """The notebook parameters of every run of a profile: models × strategies × seeds, then the α sweep
    (a sweep point that is an already planned run — same model, label and seed — is not repeated)."""
    prof = get_profile(profile)
    t = prof["train"]
    base = {"profile": profile, "output_dir": output_dir, "max_steps": t["max_steps"],
            "batch_size": t["batch_size"], "lr": t["lr"]}
    runs = [{**base, "model": m, "strategy": s, "seed": seed, "alpha": t["alpha"]}
            for m in prof["models"] for s in prof["strategies"] for seed in prof["seeds"]]
    equal = prof.get("one_to_k_equal_images")
    if equal:  # 1-to-K at K x the batch: as many distinct images per step as the other strategies
        k = int(t.get("one_to_k", 0))
        if k < 2:
            raise HbkitError(f"Profile {profile!r} asks for one_to_k_equal_images but sets no train.one_to_k "
                             "(K >= 2, the caption languages per image).")
        runs += [{**base, "model": m, "strategy": "1-to-K", "seed": seed, "alpha": t["alpha"],
                  "batch_size": t["batch_size"] * k} for m in equal["models"] for seed in equal["seeds"]]
    sweep = prof.get("alpha_sweep")
    if sweep:
        seen = {(r["model"], run_label(r["strategy"], r["alpha"], t["alpha"]), r["seed"]) for r in runs}
        for a in sweep["alphas"]:
            for seed in sweep["seeds"]:
                run = {**base, "model": sweep["model"], "strategy": "hybrid", "seed": seed, "alpha": float(a)}
                key = (run["model"], run_label("hybrid", float(a), t["alpha"]), seed)
                if key not in seen:  # α = 0, 0.5 and 1 are the X-Y, hybrid and X-X runs when already planned
                    seen.add(key)
                    runs.append(run)
    return runs


@dataclass
class Job:
    """One notebook execution of a replication.

    ``stage``: stages run in order; ``group``: jobs of one group run one after another, groups of
    a stage may run at the same time (``--jobs``)."""

    notebook: str
    out: Path
    params: dict
    label: str
    stage: int = 0
    group: str = ""
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        self.kind = Path(self.notebook).stem


def plan_image_text(profile: str, out_root: Path) -> list[Job]:
    """The notebooks of an image–text profile: 06 (batches, toy world only), 07 per CLIP run and 10 per
    ALBEF run (train, then evaluate), 08 per CLIP model (the zero-shot row and one run's evaluation in
    figures), 09 (compare), and 11 (CLIP and ALBEF side by side) when the profile holds ALBEF models."""
    from hbkit.kit.image_text import model_family

    prof = get_profile(profile)
    nb_dir = out_root / profile / "notebooks"
    base = {"profile": profile, "output_dir": str(out_root)}
    t = prof["train"]
    jobs = []
    if "image_world" in prof and not (nb_dir / "06_image_batches.ipynb").exists():
        jobs.append(Job("06_image_batches.ipynb", nb_dir / "06_image_batches.ipynb",
                        {**base, "batch_size": t["batch_size"], "alpha": t["alpha"]}, "06_image_batches"))
    runs = planned_runs(profile, str(out_root))
    models = list(dict.fromkeys(p["model"] for p in runs))
    for params in runs:
        spec = RunSpec(**params)
        tag = f"{spec.model}_{spec.label}_seed{spec.seed}"
        what = (f"{spec.model} " if len(models) > 1 else "") + f"{spec.label} seed{spec.seed}"
        name = "10_train_albef" if model_family(spec.model) == "albef" else "07_train_clip"
        out = nb_dir / f"{name}_{tag}.ipynb"
        if not ((spec.run_dir / "results.csv").exists() and out.exists()):
            jobs.append(Job(f"{name}.ipynb", out, params, f"{name} {what}", stage=1, group=tag))
    for model in models:
        if model_family(model) == "clip":
            out = nb_dir / f"08_evaluate_clip_{model}.ipynb"
            jobs.append(Job("08_evaluate_clip.ipynb", out, {**base, "model": model, "strategy": "hybrid", "seed": 0},
                            f"08_evaluate_clip {model}", stage=2, group=model))
    jobs.append(Job("09_compare_clip.ipynb", nb_dir / "09_compare_clip.ipynb", base, "09_compare_clip", stage=3,
                    group="09"))
    if any(model_family(m) == "albef" for m in models):
        jobs.append(Job("11_compare_families.ipynb", nb_dir / "11_compare_families.ipynb", base,
                        "11_compare_families", stage=3, group="11"))
    return jobs


def plan(profile: str, out_root: Path) -> list[Job]:
    """The notebooks still to execute for ``profile`` under ``out_root`` (finished runs are skipped)."""
    prof = get_profile(profile)
    if prof.get("family") == "clip":
        return plan_image_text(profile, out_root)
    nb_dir = out_root / profile / "notebooks"
    base = {"profile": profile, "output_dir": str(out_root)}
    jobs = []
    train_cfg = prof["train"]
    if "world" in prof and not (nb_dir / "01_batches.ipynb").exists():
        first = {"batch_size": train_cfg["batch_size"], "alpha": train_cfg["alpha"]}
        jobs.append(Job("01_batches.ipynb", nb_dir / "01_batches.ipynb", {**base, **first}, "01_batches"))
    models = {p["model"] for p in planned_runs(profile, str(out_root))}
    for params in planned_runs(profile, str(out_root)):
        spec = RunSpec(**params)  # type-check before starting a kernel
        tag = f"{spec.model}_{spec.label}_seed{spec.seed}"
        what = (f"{spec.model} " if len(models) > 1 else "") + f"{spec.label} seed{spec.seed}"
        train_nb = nb_dir / f"02_train_{tag}.ipynb"
        if not (is_finished(spec.run_dir) and train_nb.exists()):
            jobs.append(Job("02_train.ipynb", train_nb, params, f"02_train {what}", stage=1, group=tag))
        eval_nb = nb_dir / f"03_evaluate_{tag}.ipynb"
        if not ((spec.run_dir / "results.csv").exists() and eval_nb.exists()):
            jobs.append(Job("03_evaluate.ipynb", eval_nb, params, f"03_evaluate {what}", stage=1, group=tag))
    jobs.append(Job("04_compare.ipynb", nb_dir / "04_compare.ipynb", base, "04_compare", stage=2, group="report"))
    jobs.append(Job("05_report.ipynb", nb_dir / "05_report.ipynb", base, "05_report", stage=2, group="report"))
    return jobs


def prepare_assets(profile: str, out_root: Path) -> None:
    """Build the profile's generated data and tiny models once, before notebooks run side by side
    (two kernels must not build the same folder at once)."""
    from hbkit.kit import image_text
    from hbkit.kit.experiment import TINY_MODELS, prepare_model

    prof = get_profile(profile)
    models = list(dict.fromkeys(p["model"] for p in planned_runs(profile, str(out_root))))
    root = out_root / profile
    if prof.get("family") == "clip":
        if "image_world" in prof:
            image_text.image_world(profile, root)
        for m in models:
            if m in image_text.TINY_CLIPS:
                image_text.prepare_tiny_clip(profile, root, m)
            elif m in image_text.TINY_ALBEFS:
                image_text.prepare_tiny_albef(profile, root, m)
    else:
        for m in models:
            if m in TINY_MODELS:
                prepare_model(profile, str(out_root), m)


def _run_group(jobs: list[Job], nb_dir: Path, parallel: bool) -> list[tuple[Job, float | None, str | None]]:
    """Execute one group's jobs in order (in a worker process when ``parallel``); stops at a failure."""
    if parallel:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # kernels side by side: no busy-waiting threads
    out = []
    for job in jobs:
        try:
            out.append((job, execute(job.notebook, job.out, job.params, nb_dir, label=job.label), None))
        except HbkitError as exc:
            out.append((job, None, str(exc)))
            break
    return out


def format_seconds(seconds: float) -> str:
    """``41 s``, ``12 min``, ``2 h 05 min``."""
    s = round(seconds)
    if s < 100:
        return f"{s} s"
    m = round(s / 60)
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def estimate_left(done: dict[str, list[float]], left: list[str]) -> float | None:
    """Seconds the notebook kinds in ``left`` may take: each at the mean time of its kind so far,
    a kind not yet run at the mean of all; None while no kind in ``left`` has run yet."""
    times = [t for ts in done.values() for t in ts]
    if not any(done.get(k) for k in left):
        return None
    overall = sum(times) / len(times)
    return sum(sum(done[k]) / len(done[k]) if done.get(k) else overall for k in left)


def format_eta(seconds: float | None) -> str:
    """``<1 min``, ``~4 min``, ``~2 h 05 min``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return "<1 min"
    if seconds < 3600:
        return f"~{round(seconds / 60)} min"
    return "~" + format_seconds(seconds)


def progress_line(i: int, n: int, label: str, elapsed: float, done: dict[str, list[float]],
                  left: list[str]) -> str:
    """``[3/15] 02_train X-Y seed0  41 s  (12 left, ~4 min)``; the last one ends ``(done)``."""
    head = f"[{i}/{n}] {label}  {format_seconds(elapsed)}"
    if not left:
        return f"{head}  (done)"
    eta = estimate_left(done, left)
    return f"{head}  ({len(left)} left" + (f", {format_eta(eta)})" if eta is not None else ")")


def default_jobs(profile: str) -> int:
    """Notebooks run side by side by default: the profile's ``parallel_notebooks`` (the CPU toys: 2,
    which on a 2-core machine finishes about 1.5x sooner with identical results), else 1."""
    return int(get_profile(profile).get("parallel_notebooks", 1))


def replicate(profile: str, output_dir: str, fresh: bool = False, jobs: int | None = None) -> Path:
    """Run all notebooks of ``profile``; returns the profile directory.

    ``jobs``: how many notebooks of one stage run at the same time (default :func:`default_jobs`).
    Each kernel keeps torch's default number of threads, so results do not depend on ``jobs``."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    import multiprocessing

    get_profile(profile)  # unknown profile: fail before anything else
    n_jobs = default_jobs(profile) if jobs is None else int(jobs)
    if n_jobs < 1:
        raise HbkitError(f"jobs must be >= 1, got {jobs}.")
    out_root = resolve_output_dir(output_dir)
    root = out_root / profile
    if fresh and root.exists():
        shutil.rmtree(root)
    nb_dir = root / "notebooks"
    nb_dir.mkdir(parents=True, exist_ok=True)
    planned = plan(profile, out_root)
    side = f", {n_jobs} at a time" if n_jobs > 1 else ""
    print(f"[hbkit] profile {profile!r}: {len(planned)} notebooks to run{side}, outputs in {root}", flush=True)
    t0 = time.perf_counter()
    if n_jobs > 1 and planned:
        prepare_assets(profile, out_root)
    done: dict[str, list[float]] = {}
    finished = 0
    left = [j.kind for j in planned]
    for stage in sorted({j.stage for j in planned}):
        groups: dict[str, list[Job]] = {}
        for j in planned:
            if j.stage == stage:
                groups.setdefault(j.group or j.label, []).append(j)
        parallel = n_jobs > 1 and len(groups) > 1
        error = None
        if parallel:
            pool = ProcessPoolExecutor(min(n_jobs, len(groups)), mp_context=multiprocessing.get_context("spawn"))
            pending = {pool.submit(_run_group, g, nb_dir, True) for g in groups.values()}
            results = []
            try:
                while pending:
                    ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in ready:
                        if f.cancelled():  # not started: an earlier group failed
                            continue
                        results.append(f.result())
                        for job, elapsed, err in results[-1]:
                            finished, error = _report(job, elapsed, err, finished, len(planned), done, left, error)
                        if error is not None:
                            for p in pending:
                                p.cancel()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            for g in groups.values():
                for job, elapsed, err in _run_group(g, nb_dir, False):
                    finished, error = _report(job, elapsed, err, finished, len(planned), done, left, error)
                if error is not None:
                    break
        if error is not None:
            raise HbkitError(error)
    print(f"[hbkit] profile {profile!r} done in {format_seconds(time.perf_counter() - t0)}: "
          f"{root / 'results.csv'}, figures in {root / 'figures'}", flush=True)
    return root


def _report(job: Job, elapsed: float | None, err: str | None, finished: int, n: int, done: dict, left: list[str],
            error: str | None) -> tuple[int, str | None]:
    finished += 1
    if err is not None:
        print(f"[{finished}/{n}] {job.label}  FAILED", flush=True)
        return finished, error or err
    done.setdefault(job.kind, []).append(elapsed)
    left.remove(job.kind)
    print(progress_line(finished, n, job.label, elapsed, done, left), flush=True)
    return finished, error


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hbkit.kit.replicate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", nargs="+", default=os.environ.get("PROFILE", "demo demo-image").split(),
                    help="one or more profiles, run in turn (default: demo demo-image, the text and the "
                         "image–text toys)")
    ap.add_argument("--output-dir", default=os.environ.get("OUTPUT_DIR", "runs"))
    ap.add_argument("--fresh", action="store_true", help="delete the profile's previous outputs first")
    ap.add_argument("--jobs", type=int, default=int(os.environ["JOBS"]) if os.environ.get("JOBS") else None,
                    help="notebooks run side by side (default: the profile's parallel_notebooks, 2 for the CPU "
                         "toys, else 1); results do not depend on it")
    args = ap.parse_args(argv)
    try:
        for profile in args.profile:
            get_profile(profile)  # unknown profile: fail before any runs
        for profile in args.profile:
            replicate(profile, args.output_dir, args.fresh, args.jobs)
    except HbkitError as exc:
        print(f"[hbkit] error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
