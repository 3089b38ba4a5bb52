"""The Open Clip Art Library as a real text+image catalogue (Debian ``openclipart-svg``/``-png``).

The Debian packages ``openclipart-svg`` and ``openclipart-png`` (public domain) hold the same
8,121 drawings as ``usr/share/openclipart/{svg,png}/<category>/<name>.{svg,png}``. Each SVG
carries its metadata as RDF: ``dc:title``, ``dc:description``, ``dc:creator`` (the artist) and
``dc:subject`` keywords. Three relations group the same drawings in conflicting ways:

- :data:`SAME_CATEGORY`: the same category folder (e.g. ``animals/bugs``);
- :data:`SAME_ARTIST`: drawn by the same artist (most artists draw across categories);
- :data:`SHARED_KEYWORD`: the two drawings share a keyword (the artist's name and keywords too
  common to mean anything are not counted).

The machine-generated ``shapes/`` folder (star polygons) is left out. Each item's text is its
title, followed by its description when it has one; keywords, category and artist stay out of the
text (they define the relations) and are kept as metadata.

Parsing uses the standard library's expat parser, which resolves no external entities and, from
expat 2.4.1 on, refuses entity-expansion bombs; only the ``<metadata>`` element is read (the
parser stops there, so the drawing itself is never parsed). A malformed SVG is skipped and counted,
never fatal.

Example:
    >>> import io
    >>> svg = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    ...        b' xmlns:cc="http://web.resource.org/cc/"'
    ...        b' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><metadata><rdf:RDF>'
    ...        b'<cc:Work><dc:title>Red apple</dc:title><dc:creator><cc:Agent><dc:title>Ann'
    ...        b'</dc:title></cc:Agent></dc:creator><dc:subject><rdf:Bag><rdf:li>fruit</rdf:li>'
    ...        b'<rdf:li>Apple</rdf:li></rdf:Bag></dc:subject></cc:Work></rdf:RDF></metadata></svg>')
    >>> parse_svg_metadata(io.BytesIO(svg))
    SvgMetadata(title='Red apple', description='', creator='Ann', keywords=('fruit', 'apple'))
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger("rcml_st")

SAME_CATEGORY = "in the same category of clip art"
SAME_ARTIST = "drawn by the same artist"
SHARED_KEYWORD = "tagged with a shared keyword"
RELATIONS = (SAME_CATEGORY, SAME_ARTIST, SHARED_KEYWORD)

#: PNGs above this many pixels are left out (see :func:`scan_library`).
MAX_PIXELS = 16_000_000

#: Folders left out: machine-generated star polygons.
EXCLUDED_CATEGORIES = ("shapes",)

_DC = "{http://purl.org/dc/elements/1.1/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_SVG_METADATA = ("{http://www.w3.org/2000/svg}metadata", "metadata")


@dataclass(frozen=True)
class SvgMetadata:
    """The metadata of one drawing, read from its SVG's RDF block.

    Attributes:
        title: ``dc:title`` of the work ('' when absent).
        description: ``dc:description`` ('' when absent).
        creator: the artist (``dc:creator``'s agent title, '' when absent).
        keywords: ``dc:subject`` keywords, lower-cased, stripped, de-duplicated in order.
    """

    title: str
    description: str
    creator: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class Drawing:
    """One drawing of the library: its metadata, category and files.

    Attributes:
        id: ``<category>/<name>`` with ``/`` kept (unique across the library).
        category: the category folder, e.g. ``animals/bugs``.
        svg: path of the SVG file.
        png: path of the PNG file.
        meta: what the SVG says about it.
    """

    id: str
    category: str
    svg: Path
    png: Path
    meta: SvgMetadata


def _text(element: ET.Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _work_metadata(metadata: ET.Element) -> SvgMetadata:
    work = next((e for e in metadata.iter() if e.tag.endswith("}Work")), metadata)
    title = _text(work.find(f"{_DC}title"))
    description = _text(work.find(f"{_DC}description"))
    creator_el = work.find(f"{_DC}creator")
    creator = ""
    if creator_el is not None:
        agent_title = next((e for e in creator_el.iter(f"{_DC}title")), None)
        creator = _text(agent_title) if agent_title is not None else _text(creator_el)
    keywords: list[str] = []
    subject = work.find(f"{_DC}subject")
    if subject is not None:
        words = [_text(li) for li in subject.iter(f"{_RDF}li")] or _text(subject).split(",")
        for word in words:
            word = " ".join(word.lower().split())
            if word and word not in keywords:
                keywords.append(word)
    return SvgMetadata(title, description, creator, tuple(keywords))


def parse_svg_metadata(source: str | os.PathLike[str] | IO[bytes]) -> SvgMetadata | None:
    """Reads the RDF metadata of one SVG file; ``None`` when it has none or is malformed there.

    Parsing stops at the end of the first ``<metadata>`` element, so the drawing itself (often
    megabytes of path data) is never parsed, and an error after the metadata does not matter.

    Args:
        source: a path or a binary file object.

    Returns:
        The drawing's metadata, or ``None`` when the file has no ``<metadata>`` element or is
        not well-formed XML before its end.

    Example:
        >>> import io
        >>> parse_svg_metadata(io.BytesIO(b"<svg><g/></svg>")) is None
        True
        >>> parse_svg_metadata(io.BytesIO(b"<svg><metadata><broken></svg>")) is None
        True
    """
    try:
        for _event, element in ET.iterparse(source, events=("end",)):
            if element.tag in _SVG_METADATA:
                return _work_metadata(element)
    except (ET.ParseError, UnicodeDecodeError, ValueError) as exc:
        logger.debug("malformed SVG %s: %s", source, exc)
    return None


def _pixels(png: Path) -> int:
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():  # the decompression-bomb warning: this is what we check
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(png) as image:  # reads the header only
                return image.width * image.height
    except Exception:  # PIL raises many types for a broken file
        return -1


def drop_oversized(
    drawings: Iterable[Drawing], max_pixels: int = MAX_PIXELS
) -> tuple[list[Drawing], Counter[str]]:
    """The drawings whose PNG reads and has at most ``max_pixels`` pixels, and what was dropped.

    A few drawings ship as 10,000 x 16,000 pixel PNGs: seconds and gigabytes to decode for a
    224-pixel tower input. Only the PNG headers are read. Applied after
    :func:`select_drawings`, so that the choice of drawings does not depend on it.

    Example:
        >>> drop_oversized([])
        ([], Counter())
    """
    kept: list[Drawing] = []
    dropped: Counter[str] = Counter()
    for drawing in drawings:
        pixels = _pixels(drawing.png)
        if pixels < 0 or pixels > max_pixels:
            dropped["unreadable png" if pixels < 0 else "png too large"] += 1
        else:
            kept.append(drawing)
    return kept, dropped


def scan_library(root: str | os.PathLike[str]) -> tuple[list[Drawing], Counter[str]]:
    """Every drawing under an extracted package root that has both its SVG and its PNG.

    Args:
        root: the folder the packages were extracted into (holding ``usr/share/openclipart``),
            or the ``openclipart`` folder itself (holding ``svg/`` and ``png/``).

    Returns:
        The drawings sorted by id (excluded categories left out), and the counts of what was
        skipped and why (``"no png"``, ``"no metadata"``, ``"no title"``, ``"excluded category"``).

    Raises:
        FileNotFoundError: when ``root`` holds no ``svg`` folder.
    """
    base = Path(root)
    if not (base / "svg").is_dir():
        base = base / "usr" / "share" / "openclipart"
    if not (base / "svg").is_dir():
        raise FileNotFoundError(f"{root}: no openclipart svg/ folder (extract openclipart-svg there)")
    drawings: list[Drawing] = []
    skipped: Counter[str] = Counter()
    for svg in sorted((base / "svg").rglob("*.svg")):
        relative = svg.relative_to(base / "svg")
        category = relative.parent.as_posix()
        if category.split("/")[0] in EXCLUDED_CATEGORIES:
            skipped["excluded category"] += 1
            continue
        png = (base / "png" / relative).with_suffix(".png")
        if not png.is_file():
            skipped["no png"] += 1
            continue
        meta = parse_svg_metadata(svg)
        if meta is None:
            skipped["no metadata"] += 1
            continue
        if not meta.title:
            skipped["no title"] += 1
            continue
        drawing_id = relative.with_suffix("").as_posix()
        drawings.append(Drawing(drawing_id, category, svg, png, meta))
    return drawings, skipped


def _groups(drawings: list[Drawing], max_group_fraction: float) -> dict[str, dict[str, list[int]]]:
    """relation -> group key -> indices of the drawings in that group (groups of 2 or more)."""
    groups: dict[str, dict[str, list[int]]] = {r: defaultdict(list) for r in RELATIONS}
    for i, drawing in enumerate(drawings):
        groups[SAME_CATEGORY][drawing.category].append(i)
        creator = " ".join(drawing.meta.creator.lower().split())
        if creator:
            groups[SAME_ARTIST][creator].append(i)
        for keyword in drawing.meta.keywords:
            if keyword != creator:
                groups[SHARED_KEYWORD][keyword].append(i)
    cap = max(2, int(max_group_fraction * len(drawings)))
    kept: dict[str, dict[str, list[int]]] = {}
    for relation, by_key in groups.items():
        # A keyword on a large share of the drawings says little about any two of them.
        limit = cap if relation == SHARED_KEYWORD else len(drawings)
        kept[relation] = {k: v for k, v in by_key.items() if 2 <= len(v) <= limit}
    return kept


def held_out(item_id: str, fraction: float, salt: str = "") -> bool:
    """Whether an item goes to the held-out split: a stable hash of its id, not the run's order.

    Example:
        >>> held_out("animals/bugs/ant", 0.0), held_out("animals/bugs/ant", 1.0)
        (False, True)
    """
    digest = hashlib.sha256((salt + item_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def build_records(
    drawings: list[Drawing],
    *,
    partners: int = 5,
    max_group_fraction: float = 0.05,
    seed: int = 0,
    image_path: Any = None,
) -> list[dict[str, Any]]:
    """Catalogue records (``docs/contract/data-format.md``) for a set of drawings.

    Relation targets are other drawings of the same set: for each drawing and relation, up to
    ``partners`` drawings of its group(s), drawn with ``seed`` (a drawing with several keywords
    draws from all drawings it shares one with). Drawings with no partner under any relation are
    kept (they serve as negatives).

    Args:
        drawings: the drawings, e.g. from :func:`scan_library` (only these are linked).
        partners: at most this many targets per drawing and relation.
        max_group_fraction: keywords carried by more than this share of the drawings are not used.
        seed: the seed of the partner draw.
        image_path: maps a drawing to the ``image`` string written (default: the PNG's path).

    Returns:
        One record per drawing, in the order given.
    """
    groups = _groups(drawings, max_group_fraction)
    member_of: dict[str, dict[int, list[str]]] = {r: defaultdict(list) for r in RELATIONS}
    for relation, by_key in groups.items():
        for key, members in by_key.items():
            for i in members:
                member_of[relation][i].append(key)
    rng = random.Random(seed)
    records = []
    for i, drawing in enumerate(drawings):
        relations: dict[str, list[str]] = {}
        for relation in RELATIONS:
            pool = sorted({j for key in member_of[relation][i] for j in groups[relation][key]} - {i})
            if pool:
                chosen = sorted(rng.sample(pool, min(partners, len(pool))))
                relations[relation] = [drawings[j].id for j in chosen]
        meta = drawing.meta
        text = (
            meta.title
            if not meta.description or meta.description == meta.title
            else (f"{meta.title}. {meta.description}")
        )
        records.append({
            "id": drawing.id,
            "text": text,
            "image": str(image_path(drawing) if image_path else drawing.png),
            "relations": relations,
            "category": drawing.category,
            "artist": meta.creator,
            "keywords": list(meta.keywords),
        })  # fmt: skip
    return records


def artist_key(drawing: Drawing) -> str:
    """The drawing's artist as one key (case and spacing folded); empty when unknown."""
    return " ".join(drawing.meta.creator.lower().split())


def select_drawings(
    drawings: Iterable[Drawing],
    *,
    min_per_artist: int = 5,
    per_artist: int | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> list[Drawing]:
    """A deterministic subsample that keeps the same-artist relation alive.

    Only artists with ``min_per_artist`` or more drawings are kept (a uniform sample of 10% would
    keep 1% of the same-artist pairs); of each, at most ``per_artist`` drawings drawn with
    ``seed`` (a few prolific artists would otherwise make up most of the catalogue); with
    ``limit``, whole artists in a seeded order until the limit is reached.

    Returns:
        The chosen drawings, sorted by id.

    Example:
        >>> select_drawings([], limit=10)
        []
    """
    by_artist: dict[str, list[Drawing]] = defaultdict(list)
    for drawing in drawings:
        by_artist[artist_key(drawing)].append(drawing)
    artists = sorted(a for a, members in by_artist.items() if a and len(members) >= min_per_artist)
    rng = random.Random(seed)
    rng.shuffle(artists)
    chosen: list[Drawing] = []
    for artist in artists:
        if limit is not None and len(chosen) >= limit:
            break
        members = sorted(by_artist[artist], key=lambda d: d.id)
        if per_artist is not None and len(members) > per_artist:
            members = rng.sample(members, per_artist)
        if limit is not None:
            members = members[: limit - len(chosen)]
        chosen.extend(members)
    return sorted(chosen, key=lambda d: d.id)
