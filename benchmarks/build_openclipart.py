"""Builds the Open Clip Art catalogue (real drawings, real titles) from the extracted Debian packages.

Get the packages once (public domain, about 156 MB; nothing is fetched at run time)::

    cd /tmp && apt-get download openclipart-svg openclipart-png
    for f in openclipart-*.deb; do dpkg-deb -x "$f" /tmp/openclipart; done

Then::

    python benchmarks/build_openclipart.py /tmp/openclipart --output data/openclipart
    python benchmarks/build_openclipart.py /tmp/openclipart --output data/oca --limit 1600 --per-artist 40

writes ``train.jsonl`` and ``test.jsonl`` (the data format of ``docs/contract/data-format.md``; ``image``
points into the extracted PNG folder) and prints what was kept. The drawings are read from the
SVG metadata (title, description, artist, keywords) and the category folder; see
:mod:`rcml_st.data.openclipart` for the three relations. Only artists with ``--min-per-artist``
drawings or more are kept (at most ``--per-artist`` each, ``--limit`` in all, whole artists in a
seeded order; then PNGs over 16 megapixels, which take seconds to decode, are left out).
The held-out split is a hash of each drawing's id (``--held-out`` of them):
held-out drawings never appear in ``train.jsonl``, and each file's relations link only its own
drawings (partners are drawn inside each split, so no edge is dropped).

Exit status 2 with one ``Error:`` line when the folder holds no extracted package.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from rcml_st.data.catalog import write_catalog
from rcml_st.data.openclipart import (
    Drawing,
    artist_key,
    build_records,
    drop_oversized,
    held_out,
    scan_library,
    select_drawings,
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "root", type=Path, help="folder the openclipart-svg/-png packages were extracted into"
    )
    parser.add_argument("--output", type=Path, required=True, help="folder for train.jsonl and test.jsonl")
    parser.add_argument("--held-out", type=float, default=0.25, help="share of drawings held out")
    parser.add_argument("--partners", type=int, default=5, help="targets per drawing and relation")
    parser.add_argument("--min-per-artist", type=int, default=5)
    parser.add_argument("--per-artist", type=int, default=None, help="at most this many drawings per artist")
    parser.add_argument("--limit", type=int, default=None, help="at most this many drawings in all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--disjoint-from-seed",
        type=int,
        default=None,
        metavar="SEED",
        help="leave out every artist that the same selection with this seed picks: a tuning "
        "subsample that shares no drawing and no artist with the benchmark's (seed 0)",
    )
    parser.add_argument(
        "--relative-images",
        action="store_true",
        help="image paths relative to --output (moves with the PNGs)",
    )
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> dict[str, Path]:
    """Scans, selects, splits and writes; returns the files written by split name."""
    drawings, skipped = scan_library(args.root)
    if args.disjoint_from_seed is not None:
        benchmark = select_drawings(
            drawings, min_per_artist=args.min_per_artist, per_artist=args.per_artist, limit=args.limit,
            seed=args.disjoint_from_seed,
        )  # fmt: skip
        taken = {artist_key(d) for d in benchmark}
        drawings = [d for d in drawings if artist_key(d) not in taken]
    chosen = select_drawings(
        drawings, min_per_artist=args.min_per_artist, per_artist=args.per_artist, limit=args.limit,
        seed=args.seed,
    )  # fmt: skip
    chosen, dropped = drop_oversized(chosen)
    print(
        f"{len(drawings)} drawings with metadata (skipped: {dict(skipped)}); {len(chosen)} chosen"
        + (f" (left out: {dict(dropped)})" if dropped else "")
    )
    output = args.output.resolve()

    def image(drawing: Drawing) -> str:
        png = drawing.png.resolve()
        return Path(os.path.relpath(png, output)).as_posix() if args.relative_images else str(png)

    written = {}
    for name, test in (("train", False), ("test", True)):
        part = [d for d in chosen if held_out(d.id, args.held_out) == test]
        records = build_records(part, partners=args.partners, seed=args.seed, image_path=image)
        edges = Counter(
            r for record in records for r, targets in record["relations"].items() for _ in targets
        )
        path = write_catalog(records, output / f"{name}.jsonl")
        print(f"{path}: {len(records)} drawings, {sum(edges.values())} edges {dict(edges)}")
        written[name] = path
    return written


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        build(args)
    except FileNotFoundError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
