"""Compare PDF text extractors on real SEC 10-Q filings: robustness, speed, and how many of the figures
in Docugami's human-written answers (mostly read off tables) appear in the extracted text.

    nice .venv/bin/python benchmarks/pdf_parsers.py /work/shared/data/sec10q [--parsers pypdf,pypdf_limits,pdfium,pdfplumber]

Figure recall: for every question whose `Source Docs` names one filing, the numbers of 3+ digits in its
answer (e.g. "81,797", "2.1") are looked up in that filing's text, digits only (so "$ 81,797" and
"81,797" both count). A parser that scrambles table rows or drops cells loses figures.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines import documents, tokens  # noqa: E402

NUMBER = re.compile(r"\d[\d,]*\.?\d*")


def pypdf_default(path: Path) -> str:
    import pypdf

    return "\n\n".join(p.extract_text() or "" for p in pypdf.PdfReader(path).pages)


def pypdf_limits(path: Path) -> str:
    return documents.pypdf_text(path)


def pdfium(path: Path) -> str:
    return documents.pdfium_text(path)


def pdfplumber_text(path: Path) -> str:
    import pdfplumber

    with pdfplumber.open(path) as pdf:
        return "\n\n".join(p.extract_text() or "" for p in pdf.pages)


PARSERS = {"pypdf": pypdf_default, "pypdf_limits": pypdf_limits, "pdfium": pdfium, "pdfplumber": pdfplumber_text}


def figures_by_file(folder: Path, names: list[str]) -> dict[str, list[str]]:
    out = {n: [] for n in names}
    with (folder / "qna_data.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            matches = [n for n in names if fnmatch.fnmatch(n.replace("_", " "), row["Source Docs"].strip())]
            if len(matches) == 1:
                answer = row["Answer"].split("SOURCE")[0]
                out[matches[0]] += [d for d in (re.sub(r"\D", "", m) for m in NUMBER.findall(answer)) if len(d) >= 3]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--parsers", default=",".join(PARSERS))
    args = ap.parse_args()
    paths = sorted((args.folder / "docs").glob("*.pdf"))
    figures = figures_by_file(args.folder, [p.name for p in paths])
    print(f"{len(paths)} filings, {sum(map(len, figures.values()))} answer figures from single-filing questions\n")
    print("| parser | file | seconds | cl100k tokens | figures found | error |")
    print("|---|---|---|---|---|---|")
    totals = {}
    for name in args.parsers.split(","):
        times, found, wanted, failed = [], 0, 0, 0
        for path in paths:
            start = time.perf_counter()
            try:
                text, error = PARSERS[name](path), ""
            except Exception as err:  # the point of the benchmark: which parser fails how
                text, error = "", f"{type(err).__name__}: {str(err)[:60]}"
                failed += 1
            seconds = time.perf_counter() - start
            times.append(seconds)
            digits = re.sub(r"\D", "", text)
            hits = sum(f in digits for f in figures[path.name])
            found, wanted = found + hits, wanted + len(figures[path.name])
            print(f"| {name} | {path.name} | {seconds:.2f} | {tokens.count(text):,} | "
                  f"{hits}/{len(figures[path.name])} | {error} |", flush=True)
        totals[name] = (sum(times), statistics.median(times), found, wanted, failed)
    print("\n| parser | total s | median s/filing | figures found | failed files |")
    print("|---|---|---|---|---|")
    for name, (total, median, found, wanted, failed) in totals.items():
        print(f"| {name} | {total:.1f} | {median:.2f} | {found}/{wanted} ({found / max(wanted, 1):.1%}) | {failed}/{len(paths)} |")


if __name__ == "__main__":
    main()
