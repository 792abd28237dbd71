"""The `ragbench` command (installed with the package):

    ragbench run [Hydra overrides]        e.g. ragbench run strategy=rag model=deepseek-chat run.limit=10
    ragbench report [--experiment ...]    the research report (pipelines/report.py)
    ragbench compare --a ... --b ...      paired comparison of two runs (pipelines/compare.py)
    ragbench review export/import ...     human ratings in and out (pipelines/review.py)
    ragbench export --run ID --squad F    predictions for the official SQuAD v2.0 script (pipelines/export.py)
    ragbench app [Hydra overrides]        the interactive app on http://127.0.0.1:8501 (pipelines/app.py)

`ragbench run --help` lists the config groups; `ragbench run --shell-completion install=bash` prints
Hydra's tab completion for your shell."""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {"run": "pipelines.run", "report": "pipelines.report", "compare": "pipelines.compare",
            "review": "pipelines.review", "export": "pipelines.export", "app": "pipelines.app"}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    command, rest = argv[0], argv[1:]
    if command == "app":
        app(rest)
        return
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(COMMANDS[command])
    if command == "run":
        sys.argv = [f"{sys.argv[0]} run", *rest]  # Hydra reads its overrides from sys.argv
        module.main()
    else:
        module.main(rest)


def app(overrides: list[str]) -> None:
    """Streamlit serves the app on this machine only (port 8501, or STREAMLIT_SERVER_PORT); the
    overrides become the app's defaults."""
    from pathlib import Path

    from streamlit.web import cli as streamlit_cli

    os.environ["RAGBENCH_APP_OVERRIDES"] = " ".join(overrides)
    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), "--server.address", "127.0.0.1",
                "--server.headless", "true", "--client.toolbarMode", "minimal", "--browser.gatherUsageStats", "false"]
    sys.exit(streamlit_cli.main())


if __name__ == "__main__":
    main()
