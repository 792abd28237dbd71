"""Compare chunked RAG, a pre-filtered hybrid and full long-context on the same questions.

Run `python -m pipelines.run` (Hydra) and look at the results with `mlflow ui --backend-store-uri mlruns`.
"""
