"""Thread counts per process, from the cores this process may use and how many jobs run beside it.

torch's and ggml's default pools busy-wait: on a 2-core machine shared with a joblib sweep, one query
embedding took 13-28x longer wall than with one thread (issue 16). So every pool gets
cores // parallel jobs (a Ray launcher job: the CPUs Ray assigned it), or `run.threads` when set, and
the choice is logged."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

# Read by OpenMP / MKL / OpenBLAS when their library loads, so they must be set before torch is imported.
ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_chosen: int | None = None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / cgroup cpusets, unlike os.cpu_count()
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def ray_task_cpus() -> int | None:
    """The CPUs Ray assigned to this process's task (a job of the Ray launcher), else None. Ray already
    runs only as many jobs on a node as their `num_cpus` fit, so the job gets those, not the node's cores."""
    ray = sys.modules.get("ray")  # a Ray worker has imported it; nothing else needs to
    if ray is None or not ray.is_initialized():
        return None
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except AssertionError:  # Ray's way of saying "not a worker" (the driver, e.g. the sweep's own process)
        return None
    return max(1, int(cpus)) if cpus else None


def choose(setting: int | None = None, parallel_jobs: int = 1) -> int:
    if setting is not None:
        if int(setting) < 1:
            from pipelines.errors import UserError
            raise UserError(f"run.threads: must be a positive number of threads or null, not {setting}")
        return int(setting)
    return ray_task_cpus() or max(1, available_cores() // max(1, parallel_jobs))


def configure(setting: int | None = None, parallel_jobs: int = 1) -> int:
    """Apply one thread count to every pool this process runs; returns it (also for llama.cpp)."""
    global _chosen
    n = choose(setting, parallel_jobs)
    for var in ENV_VARS:
        os.environ[var] = str(n)
    if "torch" in sys.modules:  # already loaded: the env vars came too late for its pool
        set_torch(n)
    _chosen = n
    log.info("threads: %d per pool (%d cores available, %d parallel job(s), Ray task CPUs %s, run.threads=%s)",
             n, available_cores(), parallel_jobs, ray_task_cpus(), setting)
    return n


def set_torch(n: int | None = None) -> None:
    import torch

    n = n or current()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def current() -> int:
    """The configured count, or the default for one job when `configure` was never called."""
    return _chosen if _chosen is not None else choose()


def hydra_parallel_jobs() -> int:
    """n_jobs of the joblib launcher in a sweep (-1: one job per core), else 1."""
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
    except (ImportError, ValueError):  # not inside a Hydra job
        return 1
    n_jobs = launcher.get("n_jobs") if hasattr(launcher, "get") else None
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    return available_cores() if n_jobs < 0 else max(1, n_jobs)
