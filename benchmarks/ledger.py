"""A paid call's ledger work (one reserve + one settle, with a cap) against the ledger's history.

    nice -n 19 .venv/bin/python benchmarks/ledger.py --rounds 3

The SQLite ledger is one file per cache folder, shared by every command run with it, so its rows keep
growing. History is written before the ledger under test is opened, as a resumed run finds it:
`other` settled rows of earlier commands (other scopes) and `same` settled rows of this scope. CPU ms
per reserve + settle pair (200 pairs), median of the rounds, and SQLite VM steps per pair (a count of
the work, which the machine's load does not change; `tests/test_spend_safety.py` pins it)."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.ledger import HOST, Ledger  # noqa: E402

HISTORIES = [(0, 0), (10_000, 0), (100_000, 0), (300_000, 0), (0, 10_000), (0, 50_000)]
PAIRS = 200


def seeded(path: Path, other: int, same: int) -> Ledger:
    seed = Ledger(path, "seed")
    rows = [(f"old-{i // 1000}",) for i in range(other)] + [("run",)] * same
    seed._db.execute("BEGIN")
    seed._db.executemany("INSERT INTO reservations (scope, host, pid, key, reserved, actual, state, created) "
                         "VALUES (?, ?, 1, 'k', 0.01, 0.01, 'settled', 0)", [(s, HOST) for (s,) in rows])
    seed._db.execute("COMMIT")
    return Ledger(path, "run")


def pairs(ledger: Ledger, n: int) -> None:
    for _ in range(n):
        ledger.settle(ledger.reserve(0.01, 1e9, "k"), 0.005)


def measure(ledger: Ledger) -> tuple[float, float]:
    start = time.process_time()
    pairs(ledger, PAIRS)
    cpu_ms = (time.process_time() - start) / PAIRS * 1000
    steps = [0]  # counted apart: a Python callback per step would swamp the CPU figure
    ledger._db.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1), 1)
    pairs(ledger, 10)
    ledger._db.set_progress_handler(None, 1)
    return cpu_ms, steps[0] / 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple, list] = {h: [] for h in HISTORIES}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(args.rounds):
            order = HISTORIES if r % 2 == 0 else HISTORIES[::-1]  # interleaved, as the other benchmarks
            for other, same in order:
                path = Path(folder) / f"r{r}-{other}-{same}.sqlite"
                results[(other, same)].append(measure(seeded(path, other, same)))
    print("| rows of other scopes | rows of this scope | CPU ms per reserve + settle (rounds) | **median** | VM steps per pair |")
    print("|---|---|---|---|---|")
    for (other, same), got in results.items():
        cpu = [c for c, _ in got]
        print(f"| {other:,} | {same:,} | {' / '.join(f'{c:.2f}' for c in cpu)} | **{statistics.median(cpu):.2f}** "
              f"| {statistics.median(s for _, s in got):,.0f} |")


if __name__ == "__main__":
    main()
