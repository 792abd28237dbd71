"""Crash safety around MLflow runs: every run carries its process and a digest of its configuration,
so rerunning the same command after kill -9 closes the orphaned RUNNING run (and its sweep's parent)
as KILLED and says so; the answers it had paid for come back from the response cache."""

from __future__ import annotations

import hashlib
import os
import sys

import mlflow
from omegaconf import DictConfig, OmegaConf

from pipelines.ledger import HOST, _alive


def config_digest(cfg: DictConfig) -> str:
    settings = OmegaConf.to_container(cfg, resolve=True)
    settings.pop("tracking", None)
    for key in ("progress", "confirm"):
        settings.get("run", {}).pop(key, None)
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(settings)).encode()).hexdigest()[:16]


def process_tags() -> dict[str, str]:
    return {"pid": str(os.getpid()), "host": HOST}


def _orphaned(run) -> bool:
    tags = run.data.tags
    return tags.get("host") == HOST and tags.get("pid", "").isdigit() and not _alive(int(tags["pid"]))


def close_orphans(experiment_id: str, digest: str) -> list[str]:
    """Close RUNNING runs of this configuration (and sweep parents) whose process is gone."""
    client = mlflow.MlflowClient()
    found = mlflow.search_runs(experiment_ids=[experiment_id], output_format="list",
                               filter_string="attributes.status = 'RUNNING'")
    closed = []
    for run in found:
        same = run.data.tags.get("config_digest") == digest or run.data.tags.get("kind") == "sweep"
        if same and _orphaned(run):
            client.set_tag(run.info.run_id, "closed_as_orphan", f"process {run.data.tags['pid']} on {HOST} was gone")
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
            print(f"closed orphaned run {run.info.run_id[:8]} ({run.info.run_name}, status KILLED): its process "
                  f"{run.data.tags['pid']} is gone; answers it paid for come from the response cache", file=sys.stderr)
    return closed
