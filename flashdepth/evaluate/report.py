"""Per-dataset means, ranks and the files people read: results.json, table.md, table.csv.

A dataset's score is the mean of its videos' scores (each metric over the videos where it is
defined), added in ground-truth order in float64, exactly as
:class:`~flashdepth.metrics.VideoDepthMetrics` reduces ``flashdepth test``'s videos. In each
table (one per protocol and metric: methods x datasets), the methods are ranked per dataset
column (1 = best: lowest AbsRel and flicker, highest δ1 and boundary F1; equal values share
the best rank, "1, 1, 3"), and ``Avg. rank`` is the mean of a method's ranks over the datasets,
as the paper's "Avg. δ1 rank" (left empty when the method has no score on some dataset).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from flashdepth.evaluate.scoring import METRICS

#: Whether a higher value is better, per metric.
HIGHER_IS_BETTER = {"abs_rel": False, "delta1": True, "boundary_f1": True, "flicker": False}
TITLES = {
    "abs_rel": "AbsRel ↓",
    "delta1": "δ1 ↑",
    "boundary_f1": "Boundary F1 ↑",
    "flicker": "Flicker ↓",
}
PROTOCOLS = {
    "flashdepth": (
        "FlashDepth protocol",
        "One scale and shift per video in disparity; depth clipped to [1e-3, cap] m, sky "
        "included; AbsRel and δ1 over all pixels of a video.",
    ),
    "vda": (
        "Video Depth Anything protocol",
        "One scale and shift per video in disparity; pixels with 1e-3 < depth < cap m; "
        "AbsRel and δ1 per frame, averaged over frames.",
    ),
}


def dataset_means(records: list[dict], protocol: str) -> dict[str, dict[str, float | None]]:
    """``{dataset: {metric: mean over videos, "videos": count}}`` of one method's records."""
    totals: dict[str, dict[str, list[float]]] = {}
    for record in records:
        scores = record["protocols"][protocol]
        per_metric = totals.setdefault(record["dataset"], {metric: [] for metric in METRICS})
        for metric in METRICS:
            if scores[metric] is not None:
                per_metric[metric].append(scores[metric])
    means: dict[str, dict[str, float | None]] = {}
    for dataset, per_metric in sorted(totals.items()):
        means[dataset] = {"videos": sum(1 for r in records if r["dataset"] == dataset)}
        for metric, values in per_metric.items():
            total = 0.0
            for value in values:  # one float64 addition per video, in order, as the metrics
                total += value
            means[dataset][metric] = total / len(values) if values else None
    return means


def competition_ranks(
    values: dict[str, float | None], higher_is_better: bool
) -> dict[str, int | None]:
    """Rank 1 for the best value, ties sharing the best rank ("1, 1, 3"); ``None`` unranked."""
    scored = [value for value in values.values() if value is not None]
    sign = -1.0 if higher_is_better else 1.0
    ranks: dict[str, int | None] = {}
    for name, value in values.items():
        better = None if value is None else sum(sign * other < sign * value for other in scored)
        ranks[name] = None if better is None else 1 + better
    return ranks


def rank_table(
    means: dict[str, dict[str, dict[str, float | None]]], metric: str
) -> list[dict[str, object]]:
    """Rows of one metric's table: ``{"method", "values", "ranks", "average_rank"}``.

    Args:
        means: ``{method: {dataset: {metric: value}}}`` under one protocol.
        metric: One of :data:`~flashdepth.evaluate.scoring.METRICS`.
    """
    datasets = sorted({dataset for per_method in means.values() for dataset in per_method})
    ranks = {
        dataset: competition_ranks(
            {method: means[method].get(dataset, {}).get(metric) for method in means},
            HIGHER_IS_BETTER[metric],
        )
        for dataset in datasets
    }
    rows = []
    for method in means:
        method_ranks = [ranks[dataset][method] for dataset in datasets]
        complete = bool(method_ranks) and None not in method_ranks
        rows.append(
            {
                "method": method,
                "values": [means[method].get(d, {}).get(metric) for d in datasets],
                "ranks": method_ranks,
                "average_rank": sum(method_ranks) / len(method_ranks) if complete else None,
            }
        )
    return rows


def _cell(value: float | None, rank: int | None) -> str:
    if value is None:
        return "–"
    number = f"{value:.3f}"
    return f"**{number}** (1)" if rank == 1 else f"{number} ({rank})"


def markdown(summary: dict[str, dict], caps: dict[str, dict[str, float]], notes: list[str]) -> str:
    """``table.md``: per protocol, one methods x datasets table per metric.

    Args:
        summary: ``{protocol: {method: {dataset: {metric: value, "videos": n}}}}``.
        caps: ``{protocol: {dataset: depth cap in metres}}``.
        notes: Lines added under the tables (missing frames, options).
    """
    lines = ["# flashdepth evaluate", ""]
    for protocol, means in summary.items():
        datasets = sorted({d for per_method in means.values() for d in per_method})
        first = next(iter(means.values()))
        title, description = PROTOCOLS[protocol]
        sizes = ", ".join(f"{d} {first[d]['videos']} ({caps[protocol][d]:g} m)" for d in datasets)
        lines += [f"## {title}", "", description, "", f"Videos (depth cap): {sizes}.", ""]
        for metric in METRICS:
            lines += [f"### {TITLES[metric]}", ""]
            lines.append("| Method | " + " | ".join(datasets) + " | Avg. rank |")
            lines.append("|:--|" + "--:|" * (len(datasets) + 1))
            for row in rank_table(means, metric):
                cells = [_cell(v, r) for v, r in zip(row["values"], row["ranks"], strict=True)]
                average = row["average_rank"]
                lines.append(
                    f"| {row['method']} | "
                    + " | ".join(cells)
                    + f" | {'–' if average is None else f'{average:.2f}'} |"
                )
            lines.append("")
    lines += [
        "Each cell: mean over the dataset's videos (rank among the methods; 1 = best).",
        *notes,
    ]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, summary: dict[str, dict]) -> None:
    """``table.csv``: one row per protocol, metric and method; per dataset its value and rank."""
    datasets = sorted({d for means in summary.values() for m in means.values() for d in m})
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        header = ["protocol", "metric", "method"]
        writer.writerow(header + [c for d in datasets for c in (d, f"{d} rank")] + ["avg rank"])
        for protocol, means in summary.items():
            for metric in METRICS:
                for row in rank_table(means, metric):
                    cells = [
                        "" if item is None else item
                        for pair in zip(row["values"], row["ranks"], strict=True)
                        for item in pair
                    ]
                    average = row["average_rank"]
                    writer.writerow(
                        [
                            protocol,
                            metric,
                            row["method"],
                            *cells,
                            "" if average is None else average,
                        ]
                    )


def write_results(path: Path, results: dict) -> None:
    """``results.json`` (NaN never appears: undefined scores are ``null``)."""
    path.write_text(json.dumps(results, indent=1, allow_nan=False))
