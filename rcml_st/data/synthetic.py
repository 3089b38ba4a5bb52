"""A generated baby-products-like catalogue in which relations matter.

Every item has a product type (which fixes an activity), a colour and a brand, chosen
independently. Each of the three relations groups items by one of these attributes, so the
relations partition the catalogue in conflicting ways: two items can be "used together for the
same activity" while differing in colour and brand. A relation-agnostic embedding cannot put an
item close to all its partners at once; a relation-conditioned one can. That makes this catalogue
a quick, offline test bed for training, evaluation, indexing and the demo.

Both modalities carry all three attributes: the title names them in varied templates, and the
image encodes the product type as a shape, the colour as its fill and the brand as a mark
(border, stripes, corner glyph...), with a little jitter and noise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from rcml_st.data.catalog import Item, write_catalog

#: The three relation descriptions, one per attribute.
SAME_ACTIVITY = "used together for the same activity"
SAME_COLOUR = "matches in colour"
SAME_BRAND = "made by the same brand"
RELATIONS: tuple[str, ...] = (SAME_ACTIVITY, SAME_COLOUR, SAME_BRAND)

#: Relation description -> the metadata key whose value is the item's group under it.
GROUP_KEYS: dict[str, str] = {SAME_ACTIVITY: "activity", SAME_COLOUR: "colour", SAME_BRAND: "brand"}

#: Activity -> its product types (each product type belongs to exactly one activity).
ACTIVITIES: dict[str, tuple[str, ...]] = {
    "feeding": ("nursing pillow", "bottle sterilizer", "milk storage bags"),
    "sleeping": ("swaddle blanket", "crib mobile", "sleep sack"),
    "bathing": ("baby bathtub", "hooded towel", "bath thermometer"),
    "playing": ("stacking rings", "activity play mat", "teething rattle"),
    "travel": ("stroller organizer", "diaper backpack", "car seat mirror"),
}
PRODUCT_TYPES: tuple[str, ...] = tuple(p for products in ACTIVITIES.values() for p in products)
ACTIVITY_OF: dict[str, str] = {p: a for a, products in ACTIVITIES.items() for p in products}

#: Colour name -> RGB fill.
COLOURS: dict[str, tuple[int, int, int]] = {
    "sage green": (143, 168, 118),
    "navy": (34, 46, 96),
    "coral": (247, 120, 90),
    "mustard": (222, 170, 20),
    "lilac": (190, 150, 215),
    "grey": (135, 135, 135),
}

#: Invented brand names; each is drawn as its own mark on the image.
BRANDS: tuple[str, ...] = ("Little Fern", "Nestling", "Bumbleroo", "Oakbud", "Pippa & Co")

# One shape per product type (same order as PRODUCT_TYPES).
_SHAPES: tuple[str, ...] = (
    "crescent", "hexagon", "tall_rect",
    "square", "star", "trapezoid",
    "circle", "triangle", "hbar",
    "ring", "diamond", "cross",
    "pentagon", "arrow", "heart",
)  # fmt: skip
SHAPE_OF: dict[str, str] = dict(zip(PRODUCT_TYPES, _SHAPES, strict=True))

# Base prices per activity (a product type adds a fixed offset) and a multiplier per brand.
_BASE_PRICE = {"feeding": 18.0, "sleeping": 32.0, "bathing": 22.0, "playing": 15.0, "travel": 40.0}
_BRAND_FACTOR = dict(zip(BRANDS, (1.0, 1.25, 0.85, 1.4, 1.1), strict=True))

_MATERIALS = (
    "organic cotton",
    "bamboo",
    "BPA-free",
    "soft-touch",
    "washable",
    "lightweight",
    "eco-friendly",
    "hypoallergenic",
)
_TITLE_TEMPLATES = (
    "{brand} {material} {product}, {colour}",
    "{product} by {brand} in {colour}",
    "{brand} {product} ({colour}, {material})",
    "{Colour} {material} {product} from {brand}",
    "{brand} {product} - {colour} - {material}",
)

_MARK_COLOUR = (35, 35, 40)


@dataclass(frozen=True)
class SyntheticCatalog:
    """Where :func:`generate_catalog` wrote its files.

    Attributes:
        train_path: the training catalogue (``train.jsonl``).
        test_path: the held-out catalogue (``test.jsonl``), or ``None`` when ``holdout=0``.
        images_dir: the folder holding every item's PNG.
        relations: the relation descriptions used (:data:`RELATIONS`).
        n_train: number of items in ``train_path``.
        n_test: number of items in ``test_path``.
    """

    train_path: Path
    test_path: Path | None
    images_dir: Path
    relations: tuple[str, ...]
    n_train: int
    n_test: int


def groups(item: Item | Mapping[str, Any]) -> dict[str, str]:
    """Returns relation description -> the item's group label under that relation.

    Two items are related under a relation exactly when they share its group label (the file
    links a random sample of those pairs). Useful to colour plots and to check evaluation.

    Args:
        item: an :class:`~rcml_st.data.catalog.Item` or a record/metadata dict from this generator.

    Example:
        >>> groups({"activity": "feeding", "colour": "navy", "brand": "Oakbud"})[SAME_COLOUR]
        'navy'
    """
    metadata = item.metadata if isinstance(item, Item) else item
    try:
        return {relation: str(metadata[key]) for relation, key in GROUP_KEYS.items()}
    except KeyError as exc:
        raise ValueError(f"not an item of the synthetic catalogue: no {exc.args[0]!r} key") from None


def generate_catalog(
    out_dir: str | os.PathLike[str],
    n_items: int = 200,
    seed: int = 0,
    holdout: float = 0.25,
    links_per_item: int | None = None,
    image_size: int = 64,
) -> SyntheticCatalog:
    """Writes a synthetic baby-products catalogue: ``images/``, ``train.jsonl`` and ``test.jsonl``.

    The split is by item: test items never appear in the training file, and each file's
    relations only link items inside that file. For every item and relation, the item links to
    every other item of its group (same activity, colour or brand) in its own split, or to
    ``links_per_item`` random ones of them. Complete groups are the default because evaluation
    draws negatives from items *not linked* to the source: with sparse links, unlinked members of
    the source's own group would count as negatives while being true matches.
    The output is byte-for-byte identical for the same arguments.

    Args:
        out_dir: the output folder (created when needed; existing files are overwritten).
        n_items: total number of items (train + test).
        seed: random seed; everything (attributes, titles, links, pixels) follows from it.
        holdout: fraction of items held out for ``test.jsonl`` (0 writes no test file).
        links_per_item: links per item and relation (``None``: the whole group; fewer when the
            group is smaller).
        image_size: width and height of the square PNG images, in pixels.

    Returns:
        A :class:`SyntheticCatalog` with the paths written.

    Example:
        >>> import tempfile
        >>> from rcml_st.data import read_catalog
        >>> synth = generate_catalog(tempfile.mkdtemp(), n_items=20, seed=1)
        >>> train = read_catalog(synth.train_path)
        >>> len(train), train.relations == sorted(RELATIONS)
        (15, True)
    """
    if n_items < 2:
        raise ValueError(f"n_items must be at least 2, got {n_items}")
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    if links_per_item is not None and links_per_item < 0:
        raise ValueError(f"links_per_item must be >= 0, got {links_per_item}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    n_test = round(n_items * holdout)
    if holdout > 0 and not 1 <= n_test <= n_items - 1:
        raise ValueError(f"holdout {holdout} of {n_items} items leaves an empty split")

    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    width = max(4, len(str(n_items)))
    records = [_make_record(i, width, rng) for i in range(n_items)]
    for record in records:
        _draw_image(record, image_size, rng).save(out / record["image"], format="PNG", optimize=False)

    order = rng.permutation(n_items)
    test_set = {int(i) for i in order[:n_test]}
    train = [r for i, r in enumerate(records) if i not in test_set]
    test = [r for i, r in enumerate(records) if i in test_set]

    train_path = write_catalog(_link(train, links_per_item, rng), out / "train.jsonl")
    test_path = write_catalog(_link(test, links_per_item, rng), out / "test.jsonl") if test else None
    if test_path is None:
        (out / "test.jsonl").unlink(missing_ok=True)  # never leave a stale split from an earlier run
    return SyntheticCatalog(train_path, test_path, images_dir, RELATIONS, len(train), len(test))


# --------------------------------------------------------------------------- records


def _make_record(index: int, width: int, rng: np.random.Generator) -> dict[str, Any]:
    product = PRODUCT_TYPES[int(rng.integers(len(PRODUCT_TYPES)))]
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    brand = BRANDS[int(rng.integers(len(BRANDS)))]
    activity = ACTIVITY_OF[product]
    material = _MATERIALS[int(rng.integers(len(_MATERIALS)))]
    template = _TITLE_TEMPLATES[int(rng.integers(len(_TITLE_TEMPLATES)))]
    title = template.format(
        brand=brand, material=material, product=product, colour=colour, Colour=colour.capitalize()
    )
    offset = 4.0 * (PRODUCT_TYPES.index(product) % 3)  # product types within an activity differ a bit
    price = (_BASE_PRICE[activity] + offset) * _BRAND_FACTOR[brand] * float(rng.uniform(0.9, 1.1))
    price = math.floor(price) + 0.99  # shop prices end in .99
    item_id = f"S{index:0{width}d}"
    return {
        "id": item_id,
        "text": title,
        "image": f"images/{item_id}.png",
        "product_type": product,
        "activity": activity,
        "colour": colour,
        "brand": brand,
        "price": price,
    }


def _link(records: list[dict[str, Any]], k: int | None, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Adds ``relations``: for each item and relation, k random other items of its group (all if None)."""
    members: dict[tuple[str, str], list[str]] = {}
    for record in records:
        for relation, key in GROUP_KEYS.items():
            members.setdefault((relation, record[key]), []).append(record["id"])
    linked = []
    for record in records:
        relations: dict[str, list[str]] = {}
        for relation, key in GROUP_KEYS.items():
            others = [i for i in members[(relation, record[key])] if i != record["id"]]
            if others and k is None:
                relations[relation] = others
            elif others and k:
                picks = rng.choice(len(others), size=min(k, len(others)), replace=False)
                relations[relation] = [others[int(p)] for p in picks]
        # Reserved keys first, then metadata: the file reads like the documented format.
        out = {"id": record["id"], "text": record["text"], "image": record["image"]}
        if relations:
            out["relations"] = relations
        out.update({k_: v for k_, v in record.items() if k_ not in out})
        linked.append(out)
    return linked


# --------------------------------------------------------------------------- images


def _draw_image(record: Mapping[str, Any], size: int, rng: np.random.Generator) -> Image.Image:
    """Draws the item: shape = product type, fill = colour, mark = brand, plus jitter and noise."""
    background = np.clip(np.array([246, 244, 238]) + rng.integers(-8, 9, size=3), 0, 255)
    image = Image.new("RGB", (size, size), tuple(int(c) for c in background))

    mask = Image.new("L", (size, size), 0)
    scale = size * float(rng.uniform(0.30, 0.38))
    centre = (
        size / 2 + float(rng.uniform(-0.06, 0.06)) * size,
        size / 2 + float(rng.uniform(-0.06, 0.06)) * size,
    )
    angle = float(rng.uniform(-0.25, 0.25))  # radians, about +-15 degrees
    _draw_shape(ImageDraw.Draw(mask), SHAPE_OF[record["product_type"]], centre, scale, angle)
    fill = np.clip(np.array(COLOURS[record["colour"]]) + rng.integers(-12, 13, size=3), 0, 255)
    image.paste(tuple(int(c) for c in fill), mask=mask)

    _draw_brand_mark(ImageDraw.Draw(image), BRANDS.index(record["brand"]), size)

    pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 5, size=(size, size, 3)).round().astype(
        np.int16
    )
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _polygon(points: list[tuple[float, float]], centre, scale, angle) -> list[tuple[float, float]]:
    """Maps unit-square points (about [-1, 1]) to pixels: scale, rotate, translate."""
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = centre
    return [(cx + scale * (x * cos - y * sin), cy + scale * (x * sin + y * cos)) for x, y in points]


def _regular(n: int, start: float = -math.pi / 2, radius: float = 1.0) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(start + 2 * math.pi * i / n), radius * math.sin(start + 2 * math.pi * i / n))
        for i in range(n)
    ]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, centre, scale: float, angle: float) -> None:
    cx, cy = centre

    def box(rx: float, ry: float, dx: float = 0.0, dy: float = 0.0) -> list[float]:
        return [
            cx + (dx - rx) * scale,
            cy + (dy - ry) * scale,
            cx + (dx + rx) * scale,
            cy + (dy + ry) * scale,
        ]

    def poly(points: list[tuple[float, float]], value: int = 255) -> None:
        draw.polygon(_polygon(points, centre, scale, angle), fill=value)

    if shape == "circle":
        draw.ellipse(box(1, 1), fill=255)
    elif shape == "ring":
        draw.ellipse(box(1, 1), fill=255)
        draw.ellipse(box(0.55, 0.55), fill=0)
    elif shape == "crescent":
        draw.ellipse(box(1, 1), fill=255)
        draw.ellipse(box(0.85, 0.85, dx=0.45, dy=-0.25), fill=0)
    elif shape == "heart":
        draw.ellipse(box(0.5, 0.5, dx=-0.45, dy=-0.35), fill=255)
        draw.ellipse(box(0.5, 0.5, dx=0.45, dy=-0.35), fill=255)
        poly([(-0.93, -0.2), (0.93, -0.2), (0.0, 0.95)])
    elif shape == "square":
        poly([(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)])
    elif shape == "tall_rect":
        poly([(-0.45, -1.0), (0.45, -1.0), (0.45, 1.0), (-0.45, 1.0)])
    elif shape == "hbar":
        poly([(-1.0, -0.35), (1.0, -0.35), (1.0, 0.35), (-1.0, 0.35)])
    elif shape == "triangle":
        poly(_regular(3, radius=1.05))
    elif shape == "diamond":
        poly([(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)])
    elif shape == "pentagon":
        poly(_regular(5))
    elif shape == "hexagon":
        poly(_regular(6, start=0.0))
    elif shape == "star":
        outer, inner = _regular(5), _regular(5, start=-math.pi / 2 + math.pi / 5, radius=0.42)
        poly([p for pair in zip(outer, inner, strict=True) for p in pair])
    elif shape == "cross":
        poly([(-0.3, -1.0), (0.3, -1.0), (0.3, 1.0), (-0.3, 1.0)])
        poly([(-1.0, -0.3), (1.0, -0.3), (1.0, 0.3), (-1.0, 0.3)])
    elif shape == "trapezoid":
        poly([(-0.5, -0.7), (0.5, -0.7), (1.0, 0.7), (-1.0, 0.7)])
    elif shape == "arrow":
        poly([(-1.0, -0.25), (0.2, -0.25), (0.2, -0.7), (1.0, 0.0), (0.2, 0.7), (0.2, 0.25), (-1.0, 0.25)])
    else:  # pragma: no cover - guarded by SHAPE_OF
        raise ValueError(f"unknown shape {shape!r}")


def _draw_brand_mark(draw: ImageDraw.ImageDraw, brand: int, size: int) -> None:
    """Draws brand number ``brand`` as a mark near the image edges, clear of the central shape."""
    u = max(1, round(size / 32))  # 2 px at 64x64
    last = size - 1
    if brand == 0:  # a frame around the whole image
        draw.rectangle([0, 0, last, last], outline=_MARK_COLOUR, width=u + 1)
    elif brand == 1:  # two stripes along the bottom
        for y in (last - u, last - 4 * u):
            draw.rectangle([0, y - u + 1, last, y], fill=_MARK_COLOUR)
    elif brand == 2:  # a filled triangle in the top-right corner
        draw.polygon([(last - 7 * u, 0), (last, 0), (last, 7 * u)], fill=_MARK_COLOUR)
    elif brand == 3:  # a 3x3 grid of dots in the top-left corner
        for i in range(3):
            for j in range(3):
                x, y = (1 + 3 * i) * u, (1 + 3 * j) * u
                draw.rectangle([x, y, x + u, y + u], fill=_MARK_COLOUR)
    else:  # a bar down the left edge
        draw.rectangle([0, 0, 2 * u, last], fill=_MARK_COLOUR)
