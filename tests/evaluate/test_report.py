"""Per-dataset means, ranks and the table layout, on hand-made numbers."""

from __future__ import annotations

import csv
import json

import pytest

from flashdepth.evaluate.report import (
    competition_ranks,
    dataset_means,
    markdown,
    rank_table,
    write_csv,
    write_results,
)


def _means(abs_rel: float, delta1: float, boundary_f1: float | None, flicker: float, videos: int):
    return {"abs_rel": abs_rel, "delta1": delta1, "boundary_f1": boundary_f1,
            "flicker": flicker, "videos": videos}  # fmt: skip


#: ``{method: {dataset: {metric: value, "videos": n}}}`` of three methods on two datasets.
MEANS = {
    "ours": {"sintel": _means(0.2, 0.7, 0.3, 0.05, 2), "waymo": _means(0.1, 0.9, 0.2, 0.02, 1)},
    "dav2": {"sintel": _means(0.3, 0.7, 0.4, 0.09, 2), "waymo": _means(0.15, 0.8, 0.25, 0.04, 1)},
    "external": {
        "sintel": _means(0.25, 0.6, None, 0.07, 2), "waymo": _means(0.05, 0.95, 0.1, 0.03, 1)
    },
}  # fmt: skip


def test_competition_ranks_share_ties_and_skip_missing() -> None:
    values = {"a": 0.1, "b": 0.3, "c": 0.1, "d": None, "e": 0.2}
    assert competition_ranks(values, higher_is_better=False) == {
        "a": 1, "b": 4, "c": 1, "d": None, "e": 3
    }  # fmt: skip
    assert competition_ranks(values, higher_is_better=True) == {
        "a": 3, "b": 1, "c": 3, "d": None, "e": 2
    }  # fmt: skip


def test_average_rank_is_the_mean_over_datasets() -> None:
    delta1 = {row["method"]: row for row in rank_table(MEANS, "delta1")}
    assert delta1["ours"]["ranks"] == [1, 2] and delta1["ours"]["average_rank"] == 1.5
    assert delta1["dav2"]["ranks"] == [1, 3] and delta1["dav2"]["average_rank"] == 2.0
    assert delta1["external"]["ranks"] == [3, 1] and delta1["external"]["average_rank"] == 2.0
    abs_rel = {row["method"]: row["ranks"] for row in rank_table(MEANS, "abs_rel")}
    assert abs_rel == {"ours": [1, 2], "dav2": [3, 3], "external": [2, 1]}
    boundary = {row["method"]: row for row in rank_table(MEANS, "boundary_f1")}
    assert boundary["external"]["ranks"] == [None, 3]
    assert boundary["external"]["average_rank"] is None  # no score on sintel: no average


def test_markdown_layout() -> None:
    caps = {"flashdepth": {"sintel": 70.0, "waymo": 70.0}}
    text = markdown({"flashdepth": MEANS}, caps, ["- a note"])
    lines = text.splitlines()
    start = lines.index("### δ1 ↑")
    assert lines[start : start + 7] == [
        "### δ1 ↑",
        "",
        "| Method | sintel | waymo | Avg. rank |",
        "|:--|--:|--:|--:|",
        "| ours | **0.700** (1) | 0.900 (2) | 1.50 |",
        "| dav2 | **0.700** (1) | 0.800 (3) | 2.00 |",
        "| external | 0.600 (3) | **0.950** (1) | 2.00 |",
    ]
    assert "| external | – | 0.100 (3) | – |" in lines
    assert "Videos (depth cap): sintel 2 (70 m), waymo 1 (70 m)." in lines
    assert [line for line in lines if line.startswith("### ")] == [
        "### AbsRel ↓", "### δ1 ↑", "### Boundary F1 ↑", "### Flicker ↓"
    ]  # fmt: skip
    assert lines[0] == "# flashdepth evaluate" and lines[-1] == "- a note"


def test_csv_has_a_value_and_a_rank_per_dataset(tmp_path) -> None:
    path = tmp_path / "table.csv"
    write_csv(path, {"flashdepth": MEANS, "vda": MEANS})
    rows = list(csv.reader(path.open()))
    assert rows[0] == [
        "protocol", "metric", "method", "sintel", "sintel rank", "waymo", "waymo rank", "avg rank"
    ]  # fmt: skip
    assert len(rows) == 1 + 2 * 4 * 3
    assert rows[1] == ["flashdepth", "abs_rel", "ours", "0.2", "1", "0.1", "2", "1.5"]
    assert ["vda", "boundary_f1", "external", "", "", "0.1", "3", ""] in rows


def test_dataset_means_average_videos_in_order_and_skip_unscored() -> None:
    def record(dataset: str, abs_rel: float | None) -> dict:
        scores = {"abs_rel": abs_rel, "delta1": 0.5, "boundary_f1": None, "flicker": 0.1}
        return {"dataset": dataset, "protocols": {"vda": scores}}

    records = [
        record("kitti", 0.1),
        record("kitti", 0.2),
        record("kitti", None),
        record("bonn", 0.4),
    ]
    means = dataset_means(records, "vda")
    assert list(means) == ["bonn", "kitti"]
    assert means["kitti"]["abs_rel"] == (0.1 + 0.2) / 2  # float64, in order
    assert means["kitti"]["videos"] == 3 and means["kitti"]["delta1"] == 0.5
    assert means["kitti"]["boundary_f1"] is None and means["bonn"]["abs_rel"] == 0.4


def test_results_json_refuses_nan(tmp_path) -> None:
    write_results(tmp_path / "results.json", {"abs_rel": None})
    assert json.loads((tmp_path / "results.json").read_text()) == {"abs_rel": None}
    with pytest.raises(ValueError):
        write_results(tmp_path / "results.json", {"abs_rel": float("nan")})
