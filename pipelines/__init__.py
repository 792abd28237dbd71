"""Compare chunked RAG, a pre-filtered hybrid and full long-context on the same questions.

Run `ragbench run` (or `python -m pipelines.run`; Hydra) and look at the results with
`mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`; from Python, `pipelines.api.run([...])`.
"""

import importlib.resources
import os
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small table download is noise


def package_dir(name: str) -> Path:
    """`conf` or `experiments`: shipped inside the package, at the repository's top in a checkout."""
    return Path(str(importlib.resources.files(f"pipelines.{name}")))


def project_path(path: str) -> str:
    """`${project:experiments/x}`: an embedded data set's path, wherever the package is installed."""
    head, _, rest = path.partition("/")
    if head in ("experiments", "conf"):
        return str(package_dir(head) / rest)
    return str(PROJECT_ROOT / path)


OmegaConf.register_new_resolver("project", project_path, replace=True)
