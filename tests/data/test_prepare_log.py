"""`rcml-st prepare log`: relations from (who, item, when) logs in CSV, TSV or JSON Lines."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

from rcml_st.data.catalog import read_catalog
from rcml_st.data.interactions import parse_duration, parse_time

runner = CliRunner()

ITEMS = [
    {"id": "tent", "text": "two-person tent", "categories": ["camping", "shelter"]},
    {"id": "stove", "text": "camping stove", "categories": ["camping", "cooking"]},
    {"id": "mug", "text": "enamel mug", "categories": ["camping", "cooking"]},
    {"id": "bib", "text": "baby bib", "categories": ["baby", "feeding"]},
    {
        "id": "bottle",
        "text": "baby bottle",
        "categories": ["baby", "feeding"],
        "relations": {"same brand": ["bib"]},
    },
]
# (order, item, time): orders o1-o3 buy camping gear, o4-o5 baby things; o6 buys across, months later.
ROWS = [
    ("o1", "tent", 100),
    ("o1", "stove", 160),
    ("o1", "mug", 200),
    ("o2", "stove", 1000),
    ("o2", "mug", 1010),
    ("o3", "tent", 5000),
    ("o3", "stove", 5005),
    ("o4", "bib", 70),
    ("o4", "bottle", 75),
    ("o5", "bib", 90),
    ("o5", "bottle", 95),
    ("o5", "unknown-sku", 96),
    ("o6", "tent", 0),
    ("o6", "bottle", 10_000_000),
]


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    return path


def _write(path: Path, kind: str, rows=ROWS) -> Path:
    if kind == "jsonl":
        text = "".join(json.dumps({"order": o, "sku": i, "ts": t}) + "\n" for o, i, t in rows)
    else:
        sep = "," if kind == "csv" else "\t"
        text = f"order{sep}sku{sep}ts\n" + "".join(f"{o}{sep}{i}{sep}{t}\n" for o, i, t in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _prepare(log: Path, catalog: Path, out: Path, *extra: str):
    args = ["prepare", "log", str(log), "--catalog", str(catalog), "-o", str(out)]
    return runner.invoke(app, [*args, "--user-column", "order", "--item-column", "sku", *extra])


def _relations(path: Path) -> dict[str, dict[str, list[str]]]:
    return {r["id"]: r.get("relations", {}) for r in map(json.loads, path.read_text().splitlines())}


def test_help_has_examples_and_the_options() -> None:
    result = runner.invoke(app, ["prepare", "log", "--help"])
    assert result.exit_code == 0
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    for option in [
        "--catalog",
        "--user-column",
        "--item-column",
        "--time-column",
        "--window",
        "--top-k",
        "--score",
        "--min-count",
        "--max-items-per-user",
        "--memory-mb",
        "--relation",
        "--cluster",
        "--skip-invalid",
    ]:
        assert option in text, option
    assert "Examples:" in text and "rcml-st prepare log orders.csv.gz" in text


@pytest.mark.parametrize("name", ["orders.csv", "orders.csv.gz", "orders.tsv", "orders.jsonl.gz"])
def test_formats_give_the_same_relations(catalog: Path, tmp_path: Path, name: str) -> None:
    log = _write(tmp_path / name, name.split(".")[1])
    out = tmp_path / "out.jsonl"
    result = _prepare(log, catalog, out)
    assert result.exit_code == 0, result.output
    relations = _relations(out)
    bought = {k: v.get("bought by the same customers") for k, v in relations.items()}
    assert bought["stove"] == ["tent", "mug"]  # 2 orders each; ties in catalogue order
    assert bought["tent"] == ["stove", "mug", "bottle"]  # stove: 2 orders, then 1 each
    assert relations["bottle"] == {"same brand": ["bib"], "bought by the same customers": ["bib", "tent"]}
    assert "1 " in result.stdout and "item not in the catalogue" in result.stdout
    assert len(read_catalog(out)) == len(ITEMS)


def test_window_top_k_min_count_and_a_new_relation_name(catalog: Path, tmp_path: Path) -> None:
    log = _write(tmp_path / "orders.csv", "csv")
    out = tmp_path / "out.jsonl"
    extra = ["--time-column", "ts", "--window", "1m", "--top-k", "1", "--relation", "used together"]
    assert _prepare(log, catalog, out, *extra).exit_code == 0
    relations = _relations(out)
    assert relations["tent"] == {"used together": ["stove"]}  # o1: 60 s apart; o6's pair is months apart
    assert relations["mug"] == {"used together": ["stove"]}  # o1's tent-mug is 100 s apart
    assert _prepare(log, catalog, out, "--min-count", "2").exit_code == 0
    assert _relations(out)["tent"] == {"bought by the same customers": ["stove"]}


def test_cluster_names_types_after_what_linked_items_share(catalog: Path, tmp_path: Path) -> None:
    log = _write(tmp_path / "orders.csv", "csv", [r for r in ROWS if r[0] != "o6"])
    out = tmp_path / "out.jsonl"
    result = _prepare(log, catalog, out, "--cluster", "2")
    assert result.exit_code == 0, result.output
    names = set(read_catalog(out).relations) - {"same brand"}
    assert len(names) == 2 and all(n.startswith("bought by the same customers: ") for n in names)
    relations = _relations(out)
    baby = [n for n in relations["bib"] if n != "same brand"]
    assert len(baby) == 1 and "feeding" in baby[0]


def test_bad_rows_are_one_error_line_or_skipped_and_counted(catalog: Path, tmp_path: Path) -> None:
    log = tmp_path / "orders.csv"
    log.write_text("order,sku,ts\no1,tent,1\n,stove,2\no2,mug,3\n")
    out = tmp_path / "out.jsonl"
    result = _prepare(log, catalog, out)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {log}:3: empty 'order'\n"
    assert not out.exists()
    result = _prepare(log, catalog, out, "--skip-invalid")
    assert result.exit_code == 0 and "rows skipped" in result.stdout and "missing order" in result.stdout
    short = tmp_path / "short.tsv"
    short.write_text("order\tsku\no1\ttent\no2\n")
    result = _prepare(short, catalog, out)
    assert result.exit_code == 2 and result.stderr == f"Error: {short}:3: 1 fields, the header has 2\n"
    result = _prepare(log, catalog, out, "--user-column", "customer")
    assert result.exit_code == 2 and "no column 'customer' in the header" in result.stderr
    result = _prepare(log, catalog, out, "--window", "1h")
    assert result.exit_code == 2 and result.stderr == "Error: --window needs --time-column\n"
    result = _prepare(log, catalog, out, "--time-column", "ts", "--window", "soon")
    assert result.exit_code == 2 and "not a duration" in result.stderr


def test_times_and_durations() -> None:
    assert parse_time("2023-11-14T22:13:20Z") == parse_time(1700000000) == parse_time(1700000000000)
    assert parse_duration("2h") == 7200 and parse_duration("1.5d") == 129600
    with pytest.raises(ValueError):
        parse_time("yesterday")
    with pytest.raises(ValueError):
        parse_duration("-1h")
