"""`rcml-st prepare log`: relations from (who, item, when) logs in CSV, TSV, JSON Lines or Parquet."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

from rcml_st.data.catalog import read_catalog
from rcml_st.data.interactions import parse_duration

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
    if kind == "parquet":
        columns = {
            "order": [o for o, _, _ in rows],
            "sku": [i for _, i, _ in rows],
            "ts": [t for *_, t in rows],
        }
        pq.write_table(pa.table(columns), path)
        return path
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
        "--threads",
        "--relation",
        "--cluster",
        "--skip-invalid",
    ]:
        assert option in text, option
    assert "Examples:" in text and "rcml-st prepare log orders.csv.gz" in text


@pytest.mark.parametrize(
    "name", ["orders.csv", "orders.csv.gz", "orders.tsv", "orders.jsonl.gz", "orders.parquet"]
)
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
    assert "1 " in result.stdout and "item not in the catalogue (e.g. 'unknown-sku')" in result.stdout
    assert len(read_catalog(out)) == len(ITEMS)
    assert result.stderr == ""  # one unknown row of 14: no warning


def test_a_glob_of_parquet_files_and_threads(catalog: Path, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    # Split by order, in two files; the timestamps as a real Parquet timestamp column.
    for part, orders in enumerate([("o1", "o2", "o3"), ("o4", "o5", "o6")]):
        rows = [r for r in ROWS if r[0] in orders]
        table = pa.table({"order": [r[0] for r in rows], "sku": [r[1] for r in rows]})
        table = table.append_column("ts", pa.array([r[2] * 1000 for r in rows], pa.timestamp("ms")))
        pq.write_table(table, tmp_path / "logs" / f"part{part}.parquet")
    out = tmp_path / "out.jsonl"
    result = _prepare(tmp_path / "logs" / "*.parquet", catalog, out, "--threads", "1", "--memory-mb", "128")
    assert result.exit_code == 0, result.output
    assert _relations(out)["tent"] == {"bought by the same customers": ["stove", "mug", "bottle"]}
    extra = ["--time-column", "ts", "--window", "1m", "--top-k", "1"]
    assert _prepare(tmp_path / "logs" / "*.parquet", catalog, out, *extra).exit_code == 0
    assert _relations(out)["tent"] == {"bought by the same customers": ["stove"]}
    bad = tmp_path / "logs" / "part2.parquet"  # Parquet has rows, not lines: "file: row N"
    pq.write_table(pa.table({"order": ["o7", None], "sku": ["tent", "mug"], "ts": [1, 2]}), bad)
    result = _prepare(tmp_path / "logs" / "*.parquet", catalog, out)
    assert result.exit_code == 2 and result.stderr == f"Error: {bad}: row 2: empty or missing 'order'\n"
    result = _prepare(tmp_path / "logs" / "*.none.parquet", catalog, out)
    assert result.exit_code == 2 and "no file matches this pattern" in result.stderr


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
    log.write_text("order,sku,ts\no1,tent,1\n,stove,2\no1,mug,3\n")
    out = tmp_path / "out.jsonl"
    result = _prepare(log, catalog, out)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {log}:3: empty or missing 'order'\n"
    assert not out.exists()
    result = _prepare(log, catalog, out, "--skip-invalid")
    assert result.exit_code == 0 and "rows skipped" in result.stdout and "missing 'order'" in result.stdout
    short = tmp_path / "short.tsv"
    short.write_text("order\tsku\no1\ttent\no2\n")
    result = _prepare(short, catalog, out)
    assert result.exit_code == 2 and result.stderr == f"Error: {short}:3: 1 fields, the header has 2\n"
    blank = tmp_path / "blank.jsonl"  # a blank line: the error names the file's line, not the row
    blank.write_text(
        '{"order": "o1", "sku": "tent", "ts": 1}\n\n{"order": "o1", "sku": "mug", "ts": "soon"}\n'
    )
    result = _prepare(blank, catalog, out, "--time-column", "ts")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {blank}:3: 'ts': not a time (a number or ISO 8601): soon\n"
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"order": "o1", "sku": "tent"}\n{"order": "o2", "sku" "mug"}\n{"order": "o2"}\n')
    result = _prepare(broken, catalog, out)
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {broken}:2: bad JSON")
    result = _prepare(log, catalog, out, "--user-column", "customer")
    assert result.exit_code == 2 and "no column 'customer' in the header" in result.stderr
    result = _prepare(log, catalog, out, "--window", "1h")
    assert result.exit_code == 2 and result.stderr == "Error: --window needs --time-column\n"
    result = _prepare(log, catalog, out, "--time-column", "ts", "--window", "soon")
    assert result.exit_code == 2 and "not a duration" in result.stderr


def test_times_in_seconds_milliseconds_and_iso_8601_pair_the_same(catalog: Path, tmp_path: Path) -> None:
    log = tmp_path / "orders.csv"
    log.write_text("order,sku,ts\no1,tent,1700000000\no1,stove,1700000060000\no1,mug,2023-11-14T22:13:20Z\n")
    out = tmp_path / "out.jsonl"
    assert _prepare(log, catalog, out, "--time-column", "ts", "--window", "30s").exit_code == 0
    assert _relations(out)["tent"] == {"bought by the same customers": ["mug"]}  # stove is 60 s later


def test_a_log_of_unknown_items_is_an_error_not_an_empty_success(catalog: Path, tmp_path: Path) -> None:
    log = _write(tmp_path / "orders.csv", "csv", [(o, "X" + i, t) for o, i, t in ROWS])
    out = tmp_path / "out.jsonl"
    result = _prepare(log, catalog, out)
    assert result.exit_code == 2 and not out.exists()
    assert result.stderr.startswith(
        f"Error: {log}: no relations: of 14 rows, 14 name items not in the catalogue"
    )
    assert "check --item-column and --catalog" in result.stderr
    # Mostly unknown, some edges: written, with a warning that says how many rows were dropped.
    rows = [(o, "X" + i, t) for o, i, t in ROWS[2:]] + ROWS[:2]
    result = _prepare(_write(tmp_path / "orders.csv", "csv", rows), catalog, out)
    assert result.exit_code == 0 and out.exists()
    assert "Warning: 12 of 14 log rows name items not in the catalogue" in result.stderr


def test_a_full_disk_fails_loudly_and_leaves_no_half_file(catalog: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(small)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {exc}")
    try:
        big = tmp_path / "big.jsonl"  # a catalogue whose output cannot fit in 12 kB
        big.write_text(
            "".join(json.dumps({**ITEMS[n % 5], "id": f"i{n}", "text": "x" * 200}) + "\n" for n in range(200))
        )
        log = _write(tmp_path / "orders.csv", "csv", [(f"o{n // 3}", f"i{n % 200}", n) for n in range(600)])
        out = small / "out.jsonl"
        result = _prepare(log, big, out)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: cannot write {out}: No space left on device")
        assert os.listdir(small) == []  # no half file, no temporary file, no DuckDB spill folder
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_durations() -> None:
    assert parse_duration("2h") == 7200 and parse_duration("1.5d") == 129600
    with pytest.raises(ValueError):
        parse_duration("-1h")
