"""The `ragbench` command (installed with the package):

    ragbench run [Hydra overrides]        e.g. ragbench run strategy=rag model=deepseek-chat run.limit=10
    ragbench report [--experiment ...]    the research report (pipelines/report.py)
    ragbench compare --a ... --b ...      paired comparison of two runs (pipelines/compare.py)
    ragbench review export/import ...     human ratings in and out (pipelines/review.py)
    ragbench export --run ID --squad F    predictions for the official SQuAD v2.0 script (pipelines/export.py)

`ragbench run --help` lists the config groups; `ragbench run --shell-completion install=bash` prints
Hydra's tab completion for your shell."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {"run": "pipelines.run", "report": "pipelines.report", "compare": "pipelines.compare",
            "review": "pipelines.review", "export": "pipelines.export"}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(COMMANDS[command])
    if command == "run":
        sys.argv = [f"{sys.argv[0]} run", *rest]  # Hydra reads its overrides from sys.argv
        module.main()
    else:
        module.main(rest)


if __name__ == "__main__":
    main()
