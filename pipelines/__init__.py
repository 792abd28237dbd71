"""Compare chunked RAG, a pre-filtered hybrid and full long-context on the same questions.

Run `python -m pipelines.run` (Hydra) and look at the results with `mlflow ui --backend-store-uri mlruns`.
"""

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# `${project:experiments/x}`: a path inside this repository, whatever the working directory.
OmegaConf.register_new_resolver("project", lambda path: str(PROJECT_ROOT / path), replace=True)
