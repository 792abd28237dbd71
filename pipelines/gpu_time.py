"""Per-call cost of a model paid by the GPU-hour (`prices.gpu_usd_per_hour`, e.g. vLLM on your own GPU).

A call alone on the GPU pays its whole latency; calls in flight together split the time they overlap,
so call i pays `rate x integral over the call of 1/n(t) dt`, n(t) being the run's calls in flight at t.
The costs of a run then add up to the rate times the time the GPU was busy with at least one of its
calls, and self-hosted and API models share one cost axis. Calls from other users of the same server
are not seen (a shared server is over-charged to this run). Hand-written: a sweep line over the call
intervals, which no maintained library offers as such."""

from __future__ import annotations

from dataclasses import replace

from pipelines.record import QuestionRecord


def share(records: list[QuestionRecord], usd_per_hour: float) -> list[QuestionRecord]:
    """The records with each call sent in this run charged its share of the GPU time. Cached answers
    (sent in an earlier run) and the rows of several-call plans keep the cost of their call alone."""
    timed = [i for i, r in enumerate(records) if not r.cached and not r.calls and r.started_at is not None
             and r.latency_s and r.answered]
    edges = sorted({t for i in timed for t in (records[i].started_at, records[i].started_at + records[i].latency_s)})
    seconds = dict.fromkeys(timed, 0.0)
    for start, end in zip(edges, edges[1:]):
        active = [i for i in timed if records[i].started_at <= start and records[i].started_at + records[i].latency_s >= end]
        for i in active:
            seconds[i] += (end - start) / len(active)
    out = list(records)
    for i, s in seconds.items():
        usd = usd_per_hour * s / 3600
        out[i] = replace(records[i], cost_usd=usd, spent_usd=usd)
    return out
