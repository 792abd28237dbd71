"""The report's charts (matplotlib, no display needed). Each function writes one PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

COLORS = {"rag": "#1f77b4", "hybrid": "#2ca02c", "full_context": "#d62728", "no_context": "#7f7f7f"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _color(cfg) -> str:
    return COLORS.get(cfg["strategy"], "#9467bd")


def bars(configs, key: str, title: str, ylabel: str, path: Path, err_key: str | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(max(6, len(configs) * 1.1), 4))
    labels = [c["label"] for c in configs]
    values = [c.get(key) or 0 for c in configs]
    err = None
    if err_key:
        err = [[0] * len(configs), [max(0, (c.get(err_key) or 0) - (c.get(key) or 0)) for c in configs]]
    ax.bar(labels, values, color=[_color(c) for c in configs], yerr=err, capsize=4)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=30)
    for label in ax.get_xticklabels():
        label.set_ha("right")
    return _save(fig, path)


def token_usage(configs, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(max(6, len(configs) * 1.3), 4))
    parts = [("input_miss", "input (cache miss)", "#ff7f0e"), ("input_hit", "input (cache hit)", "#ffbb78"),
             ("output", "output", "#17becf")]
    width = 0.8 / len(parts)
    for i, (key, name, color) in enumerate(parts):
        xs = [n + (i - 1) * width for n in range(len(configs))]
        ax.bar(xs, [c["tokens_per_question"][key] for c in configs], width, label=name, color=color)
    ax.set_xticks(range(len(configs)), [c["label"] for c in configs], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)  # log scale: input and output differ by orders of magnitude
    ax.set_ylabel("tokens per question")
    ax.set_title("Token usage: input vs output")
    ax.legend()
    return _save(fig, path)


def scatter(configs, x: str, y: str, xlabel: str, ylabel: str, title: str, path: Path,
            pareto: bool = False, y_ci: tuple[str, str] | None = None, higher_is_better: bool = True) -> Path:
    fig, ax = plt.subplots(figsize=(7, 5))
    for c in configs:
        if c.get(x) is None or c.get(y) is None:
            continue
        yerr = None
        if y_ci and c.get(y_ci[0]) is not None:
            yerr = [[c[y] - c[y_ci[0]]], [c[y_ci[1]] - c[y]]]
        ax.errorbar(c[x], c[y], yerr=yerr, fmt="o", color=_color(c), capsize=3)
        ax.annotate(c["label"], (c[x], c[y]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if pareto:
        front = pareto_front(configs, x, y, higher_is_better)
        if len(front) > 1:
            ax.plot([c[x] for c in front], [c[y] for c in front], "--", color="black", lw=1, label="Pareto frontier")
            ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def pareto_front(configs, cost: str, quality: str, higher_is_better: bool = True) -> list:
    """Configurations no other beats on both: cheaper-or-equal and at least as good, "good" in the
    quality metric's declared direction."""
    sign = 1.0 if higher_is_better else -1.0
    points = sorted((c for c in configs if c.get(cost) is not None and c.get(quality) is not None),
                    key=lambda c: (c[cost], -sign * c[quality]))
    front, best = [], float("-inf")
    for c in points:
        if sign * c[quality] > best:
            front.append(c)
            best = sign * c[quality]
    return front


def distributions(configs, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(max(6, len(configs) * 1.1), 4))
    data = [c["latencies"] or [0] for c in configs]
    ax.boxplot(data, tick_labels=[c["label"] for c in configs])
    ax.set_ylabel("seconds per question")
    ax.set_title("Latency distribution")
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, path)


def break_even(rows, limits: dict, path: Path) -> Path:
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), sharey=True, squeeze=False)
    for ax, model in zip(axes[0], models):
        for strategy in dict.fromkeys(r["strategy"] for r in rows):
            pts = [r for r in rows if r["model"] == model and r["strategy"] == strategy]
            ax.plot([p["corpus_tokens"] for p in pts], [p["usd_per_question"] for p in pts], label=strategy,
                    color=COLORS.get(strategy, "#9467bd"))
        if model in limits:
            ax.axvline(limits[model], ls=":", color="black", lw=1)
            ax.text(limits[model], ax.get_ylim()[0], " full context\n stops fitting", fontsize=7, va="bottom")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("corpus (cl100k tokens)")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("USD per question")
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)
