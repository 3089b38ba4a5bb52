"""`rcml-st index` at catalogue scale: time, points/s, client and server memory, per layout.

For each size (default 10k and 100k items; add 1000000 with ``--sizes``) a generated text
catalogue (3 relations, tiny backbone) is indexed by the real command (``rcml-st index``, a
subprocess) into a fresh local Qdrant server, once with the full layout (text, image, item
float32 vectors in RAM: what every index held before) and once with the compact one
(``--vectors item --quantization int8``: int8 copy in RAM, originals on disk). Measured per run:

- wall time and points/s of the command (validation pass, model load, encoding, writing,
  verification);
- the client's peak RSS (``wait4`` of the subprocess);
- the server's RSS and anonymous RSS (``RssAnon``: memory not backed by files; the on-disk
  originals are file-backed, memory-mapped pages the kernel can drop) once its optimizer is
  idle, minus those of the same server before the run, per point: Qdrant's RAM per point;
- the storage folder's size on disk.

Also, in the same run: the overlapped pipeline against ``--sequential`` on the smallest size
(full layout), and Hit@5 through ``search`` for full vs compact on a small generated catalogue
with relations (a tiny model trained for it first, or ``--model DIR``): for every item and
relation with related items, is one of them among the top 5 of a search by the item's id.

Memory: the server holds the vectors (about 4 GB at 1M items x 3 relations, full layout); the
client stays around its 100k figure (it streams the file).

Examples:
    python benchmarks/index_scale.py                         # 10k and 100k, about 10 minutes on 2 cores
    python benchmarks/index_scale.py --sizes 1000000 --layouts full,compact --no-overlap-check --no-quality
    python benchmarks/index_scale.py --sizes 2000 --quality-items 300 --json out.json   # a quick look
    python benchmarks/index_scale.py --sizes 30000 --dim 512 --no-overlap-check --no-quality  # 512-d
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from rcml_st.index._testing import QdrantServer, find_qdrant_binary

RELATIONS = ("made by the same brand", "matches in colour", "used together for the same activity")
LAYOUTS = {
    "full": [],
    "compact": ["--vectors", "item", "--quantization", "int8"],
    "compact-m8": ["--vectors", "item", "--quantization", "int8", "--hnsw-m", "8"],
    "compact-binary": ["--vectors", "item", "--quantization", "binary"],
}
CLI = [sys.executable, "-c", "from rcml_st.cli.main import app; app()"]

NOUNS = ["bib", "bottle", "pillow", "blanket", "rattle", "spoon", "cup", "onesie", "sock", "hat", "teether"]
ADJECTIVES = ["organic", "soft", "washable", "bamboo", "knitted", "silicone", "wooden", "cotton", "merino"]
COLOURS = ["sage", "navy", "cream", "coral", "mustard", "grey", "blush", "teal"]
BRANDS = [f"Brand{n:02d}" for n in range(40)]


@dataclass
class Run:
    items: int
    layout: str
    overlap: bool
    points: int
    seconds: float
    points_per_s: float
    client_peak_rss_mb: float
    server_rss_mb: float
    server_anon_mb: float
    server_peak_rss_mb: float
    server_bytes_per_point: float
    server_anon_bytes_per_point: float
    restarted_rss_mb: float
    restarted_bytes_per_point: float
    storage_mb: float


def write_catalog(path: Path, n: int, seed: int = 0) -> None:
    """n text items with brand/colour metadata, streamed to disk (no relations: indexing ignores them)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            colour = rng.choice(COLOURS)
            text = f"{rng.choice(ADJECTIVES)} {colour} {rng.choice(NOUNS)} no. {i % 997}"
            record = {"id": f"G{i:07d}", "text": text, "brand": rng.choice(BRANDS), "colour": colour}
            fh.write(json.dumps(record) + "\n")


def save_tiny_model(directory: Path, dim: int = 32) -> Path:
    """rcml-tiny (32-d), or the same towers projecting into ``dim`` dimensions (e.g. 512, as ViT-B-32)."""
    import torch

    import rcml_st
    from rcml_st.modules.architectures import ARCHITECTURES

    torch.manual_seed(0)
    if dim == 32:
        model = rcml_st.build_model("rcml-tiny", device="cpu")
    else:
        config = directory.parent / f"tiny-{dim}.json"
        config.write_text(json.dumps({**ARCHITECTURES["rcml-tiny"], "embed_dim": dim}))
        model = rcml_st.build_model(str(config), device="cpu")
    rcml_st.set_relation_vocabulary(model, list(RELATIONS))
    model.save_pretrained(str(directory))
    return directory


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _collection_green(server: QdrantServer, name: str, restarted: bool = False) -> bool:
    with urllib.request.urlopen(f"{server.url}/collections/{name}", timeout=5) as response:
        result = json.load(response)["result"]
    # A restarted server marks a collection with pending optimizations "grey" until the next
    # update triggers them (seen at 1M items): settled enough to measure, nothing is running.
    settled = ("green", "grey") if restarted else ("green",)
    return result["status"] in settled and result.get("optimizer_status") == "ok"


def _search_a_little(server: QdrantServer, data: Path, queries: int = 50) -> None:
    """A few searches by id through the command's own code path (what a service would do)."""
    from rcml_st.index import RelationIndex, search_index

    with open(data) as fh:
        ids = [json.loads(next(fh))["id"] for _ in range(queries)]
    with RelationIndex.connect(url=server.url, grpc_port=server.grpc_port, collection="bench") as index:
        for item_id in ids:
            search_index(None, index, RELATIONS[0], item_id=item_id, limit=10)


def _du_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return total / 1e6


def index_once(
    binary: Path, data: Path, items: int, model: Path, layout: str, overlap: bool, work: Path
) -> Run:
    """One `rcml-st index` run into a fresh server; returns its measurements."""
    storage = work / f"qdrant-{items}-{layout}-{overlap}"
    shutil.rmtree(storage, ignore_errors=True)
    server = QdrantServer(binary, storage).start()
    try:
        pid = server.process.pid  # type: ignore[union-attr]
        time.sleep(1.0)
        base_rss, base_anon = _status_kb(pid, "VmRSS"), _status_kb(pid, "RssAnon")
        peak = [base_rss]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                peak[0] = max(peak[0], _status_kb(pid, "VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        command = [
            *CLI,
            "index",
            str(data),
            "-m",
            str(model),
            "--qdrant-url",
            server.url,
            "--grpc-port",
            str(server.grpc_port),
            "--collection",
            "bench",
            "--no-progress",
            "--device",
            "cpu",
            *LAYOUTS[layout],
            "--overlap" if overlap else "--sequential",
        ]
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        out, err = proc.stdout.read().decode(), proc.stderr.read().decode()  # type: ignore[union-attr]
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"rcml-st index failed ({proc.returncode}):\n{out}\n{err}")
        deadline = time.monotonic() + 600
        while not _collection_green(server, "bench") and time.monotonic() < deadline:
            time.sleep(1.0)
        time.sleep(2.0)
        stop.set()
        sampler.join()
        rss, anon = _status_kb(pid, "VmRSS"), _status_kb(pid, "RssAnon")
        points = items * len(RELATIONS)
        # Right after writing, pages of on-disk files are still cached and mapped; a restarted
        # server holds what the layout keeps in RAM (plus what a few searches touch).
        server.stop()
        server.start(timeout=600)
        pid = server.process.pid  # type: ignore[union-attr]
        while not _collection_green(server, "bench", restarted=True):
            time.sleep(1.0)
        _search_a_little(server, data)
        restarted = _status_kb(pid, "VmRSS")
        return Run(
            items=items,
            layout=layout,
            overlap=overlap,
            points=points,
            seconds=round(seconds, 1),
            points_per_s=round(points / seconds),
            client_peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
            server_rss_mb=round(rss / 1024, 1),
            server_anon_mb=round(anon / 1024, 1),
            server_peak_rss_mb=round(max(peak[0], rss) / 1024, 1),
            server_bytes_per_point=round((rss - base_rss) * 1024 / points),
            restarted_rss_mb=round(restarted / 1024, 1),
            restarted_bytes_per_point=round((restarted - base_rss) * 1024 / points),
            server_anon_bytes_per_point=round((anon - base_anon) * 1024 / points),
            storage_mb=round(_du_mb(storage / "storage"), 1),
        )
    finally:
        server.stop()
        shutil.rmtree(storage, ignore_errors=True)


READER = """
import sys, time
from rcml_st.data import read_catalog, stream_catalog
import torch, sentence_transformers  # the command's import floor, so the figures compare with its RSS
path, how = sys.argv[1], sys.argv[2]
started = time.perf_counter()
if how == "stream":
    items = stream_catalog(path)
    n = sum(1 for _ in items)  # what `rcml-st index` does: one validating pass, one reading pass
else:
    n = len(read_catalog(path).items)  # what it did before: every item and the relation graph held
print(n, round(time.perf_counter() - started, 1))
"""


def reading_memory(sizes: list[int], work: Path) -> list[dict[str, float]]:
    """Peak RSS of a process that imports the command's stack and reads the catalogue: streamed vs held."""
    rows = []
    for items in sizes:
        data = work / f"reading-{items}.jsonl"
        write_catalog(data, items)
        for how in ("stream", "read_catalog"):
            proc = subprocess.Popen([sys.executable, "-c", READER, str(data), how], stdout=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
            count, seconds = proc.stdout.read().decode().split()  # type: ignore[union-attr]
            if os.waitstatus_to_exitcode(status) != 0 or int(count) != items:
                raise RuntimeError(f"reading {data} with {how} failed")
            row = {
                "items": items,
                "how": how,
                "peak_rss_mb": round(usage.ru_maxrss / 1024),
                "seconds": float(seconds),
            }
            rows.append(row)
            print(json.dumps({"reading": row}), flush=True)
        data.unlink()
    return rows


def train_quality_model(work: Path, n_items: int, dim: int = 32) -> tuple[Path, Path]:
    """A small generated catalogue with relations and a tiny model trained on it (about a minute).

    ``dim`` other than 32: rcml-tiny's towers projecting into that many dimensions (binary
    quantization needs a wide space: one bit per dimension).
    """
    from rcml_st.data import generate_catalog
    from rcml_st.modules.architectures import ARCHITECTURES

    synthetic = generate_catalog(work / "quality", n_items=n_items, holdout=0, image_size=32)
    model = work / "quality-model"
    backbone = "rcml-tiny"
    if dim != 32:
        config = work / f"quality-tiny-{dim}.json"
        config.write_text(json.dumps({**ARCHITECTURES["rcml-tiny"], "embed_dim": dim}))
        backbone = str(config)
    command = [
        *CLI,
        "train",
        str(synthetic.train_path),
        "-o",
        str(model),
        "--backbone",
        backbone,
        "--lr",
        "1e-3",
        "--epochs",
        "2",
        "--pairs-per-epoch",
        "6400",
        "--device",
        "cpu",
    ]
    subprocess.run(command, check=True, capture_output=True)
    return synthetic.train_path, model


def hit_at_5(binary: Path, data: Path, model_dir: Path, work: Path) -> dict[str, float]:
    """Hit@5 of searches by id on the full, the compact (int8) and the binary layout of one catalogue."""
    import rcml_st
    from rcml_st.data import read_catalog
    from rcml_st.index import Layout, RelationIndex, index_catalog, search_index

    catalog = read_catalog(data)
    model = rcml_st.load(model_dir, device="cpu")
    relations = rcml_st.relation_vocabulary(model)
    layouts = {
        "full": Layout(),
        "compact": Layout(vectors=("item",), quantization="int8"),
        "binary": Layout(vectors=("item",), quantization="binary"),
    }
    result: dict[str, float] = {}
    top5: dict[str, list[list[str]]] = {}
    with QdrantServer(binary, work / "qdrant-quality") as server:
        for name, layout in layouts.items():
            index = RelationIndex.connect(url=server.url, grpc_port=server.grpc_port, collection=name)
            index_catalog(model, catalog, index, relations=relations, layout=layout)
            hits = precision = 0.0
            top5[name] = []
            for relation in relations:
                for source, related in catalog.neighbours(relation).items():
                    item_id = catalog.items[source].id
                    found = [h.item_id for h in search_index(None, index, relation, item_id=item_id, limit=5)]
                    wanted = {catalog.items[t].id for t in related}
                    hits += bool(set(found) & wanted)
                    precision += len(set(found) & wanted) / 5
                    top5[name].append(found)
            queries = len(top5[name])
            result[f"{name} hit@5"] = round(hits / queries, 4)
            result[f"{name} precision@5"] = round(precision / queries, 4)
            result["queries"] = queries
            index.close()
    for name in ("compact", "binary"):
        same = [len(set(a) & set(b)) / 5 for a, b in zip(top5["full"], top5[name], strict=True)]
        result["top-5 overlap" if name == "compact" else f"{name} top-5 overlap"] = round(
            sum(same) / len(same), 4
        )
    shutil.rmtree(work / "qdrant-quality", ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated item counts")
    parser.add_argument(
        "--layouts", default="full,compact", help=f"comma-separated, of: {', '.join(LAYOUTS)}"
    )
    parser.add_argument("--no-overlap-check", action="store_true", help="skip overlap vs --sequential")
    parser.add_argument("--no-quality", action="store_true", help="skip the Hit@5 comparison")
    parser.add_argument(
        "--dim", type=int, default=32, help="vector size of the indexing model (32: rcml-tiny)"
    )
    parser.add_argument("--quality-items", type=int, default=800, help="items of the Hit@5 catalogue")
    parser.add_argument(
        "--quality-dim", type=int, default=32, help="vector size of the Hit@5 model (binary needs a wide one)"
    )
    parser.add_argument("--model", type=Path, help="a trained model for Hit@5 (default: train a tiny one)")
    parser.add_argument(
        "--reading-sizes",
        default="",
        help="also measure the client's memory for reading alone (stream vs read_catalog) at these sizes",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()

    binary = find_qdrant_binary()
    if binary is None:
        sys.exit("no qdrant binary: run .ci/qdrant.sh or set QDRANT_BINARY")
    work = args.work or Path(tempfile.mkdtemp(prefix="rcml-index-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    model = save_tiny_model(work / "tiny-model", args.dim)
    sizes = [int(s) for s in args.sizes.split(",") if s] or [0]
    layouts = [name.strip() for name in args.layouts.split(",")]
    runs: list[Run] = []
    overlap: dict[str, float] = {}
    for items in [n for n in sizes if n]:
        data = work / f"catalog-{items}.jsonl"
        write_catalog(data, items)
        for layout in layouts:
            run = index_once(binary, data, items, model, layout, True, work)
            runs.append(run)
            print(json.dumps(asdict(run)), flush=True)
        if not args.no_overlap_check and items == min(n for n in sizes if n):
            sequential = index_once(binary, data, items, model, "full", False, work)
            runs.append(sequential)
            print(json.dumps(asdict(sequential)), flush=True)
            with_overlap = next(r for r in runs if r.items == items and r.layout == "full" and r.overlap)
            overlap = {
                "items": items,
                "overlap_s": with_overlap.seconds,
                "sequential_s": sequential.seconds,
                "speedup": round(sequential.seconds / with_overlap.seconds, 3),
            }
            print(json.dumps({"overlap": overlap}), flush=True)
        data.unlink()
    reading = reading_memory([int(n) for n in args.reading_sizes.split(",") if n], work)
    quality = {}
    if not args.no_quality:
        if args.model is not None:
            from rcml_st.data import generate_catalog

            data = generate_catalog(work / "quality", n_items=args.quality_items, holdout=0).train_path
            trained = args.model
        else:
            data, trained = train_quality_model(work, args.quality_items, args.quality_dim)
        quality = hit_at_5(binary, data, trained, work)
        print(json.dumps({"hit@5": quality}), flush=True)

    print(
        "\n| items | layout | points | wall time | points/s | client peak RSS | Qdrant RSS (anon) | "
        "Qdrant RAM/point (anon) | Qdrant RSS restarted, RAM/point | storage |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        mode = "" if r.overlap else " (sequential)"
        print(
            f"| {r.items:,} | {r.layout}{mode} | {r.points:,} | {r.seconds:,.1f} s | {r.points_per_s:,} | "
            f"{r.client_peak_rss_mb:,.0f} MB | {r.server_rss_mb:,.0f} MB ({r.server_anon_mb:,.0f}) | "
            f"{r.server_bytes_per_point:,.0f} B ({r.server_anon_bytes_per_point:,.0f} B) | "
            f"{r.restarted_rss_mb:,.0f} MB, {r.restarted_bytes_per_point:,.0f} B | {r.storage_mb:,.0f} MB |"
        )
    if overlap:
        print(f"\noverlap vs sequential at {overlap['items']:,} items: {overlap['speedup']}x")
    if quality:
        print(
            f"Hit@5 full {quality['full hit@5']} vs compact {quality['compact hit@5']}, precision@5 "
            f"{quality['full precision@5']} vs {quality['compact precision@5']}, top-5 overlap "
            f"{quality['top-5 overlap']}, over {quality['queries']} queries; binary Hit@5 "
            f"{quality['binary hit@5']}, precision@5 {quality['binary precision@5']}, "
            f"top-5 overlap with full {quality['binary top-5 overlap']}"
        )
    for row in reading:
        print(
            f"reading {row['items']:,} items, {row['how']}: "
            f"peak RSS {row['peak_rss_mb']:,} MB, {row['seconds']} s"
        )
    if args.json:
        results = {
            "runs": [asdict(r) for r in runs],
            "overlap": overlap,
            "hit@5": quality,
            "reading": reading,
        }
        args.json.write_text(json.dumps(results))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
