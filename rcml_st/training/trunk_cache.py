"""Trunk features of frozen towers, computed once per item and reused by every step and epoch.

With the towers' trunks frozen (``--freeze-backbone``), an item's trunk output (the pooled
feature, the token features and their mask, before the projection into the joint space) depends
on the item alone. :class:`TrunkCache` computes it once per distinct text and image of the
training data and serves it to the data collator, so a training step runs only the projections,
the relation pooling and the loss: no image decoding, no tower forward.

Storage: the cache is always written to a folder (``DIR/checkpoints/trunk-cache/<fingerprint>/``
for ``rcml-st train``), so a resumed run finds it and skips the first pass. It is then read into
memory when it fits in ``memory_gb`` (per process), and otherwise served from memory-mapped files,
whose pages the operating system caches and evicts as memory allows. The fingerprint covers the
data (every distinct text, every image path with its size and modification time), the trunk
weights, the tokenizer and image preprocessing settings and the storage precision: change any of
them and a new cache is built. The stale caches in the same parent folder are deleted, and only
folders the cache can prove it made (holding its marker or manifest, named by their fingerprint):
anything else in that folder is left as it is. A cache whose files do not have the sizes its
manifest records (truncated, overwritten) is rebuilt.

Layout of one cache folder (``<modality>`` is ``text`` or ``image``, ``<r>`` the process that wrote
the shard; under ``torchrun`` every process computes its share of the items)::

    rcml-trunk-cache               written first: the fingerprint (marks the folder as a cache's)
    manifest.json                  written last: shards, widths, precision, sizes (its presence = complete)
    <modality>-<r>.json            the shard's keys (texts, or image keys) and token counts
    <modality>-<r>.pooled          (n, C) pooled features, raw, in the stored precision
    <modality>-<r>.tokens          (sum of token counts, C') token features, all items end to end
    <modality>-<r>.mask            (sum of token counts,) token mask, one byte per token

Example:
    >>> import rcml_st, tempfile
    >>> model = rcml_st.build_model("rcml-tiny", device="cpu")
    >>> clip = model[0]
    >>> cache = TrunkCache.build(clip, ["a red pram", "a blue cup"], [], tempfile.mkdtemp())
    >>> cache.text_count, cache.image_count
    (2, 0)
    >>> trunk = cache.text_trunk(["a blue cup"])
    >>> ids = clip.preprocess([{"text": "a blue cup"}])["input_ids"]
    >>> bool((trunk.pooled - clip.text_trunk(ids).pooled).abs().max() < 1e-5)
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from torch.nn.utils.rnn import pad_sequence

from rcml_st.losses.distributed import world
from rcml_st.modules.towers import TrunkOutput

logger = logging.getLogger("rcml_st.training")

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Written first into every cache folder: what lets the cache delete only folders it made itself.
MARKER = "rcml-trunk-cache"
#: Default in-memory budget of a cache, per process (GiB); beyond it, memory-mapped files serve it.
DEFAULT_MEMORY_GB = 2.0
DTYPES = {"float32": np.float32, "float16": np.float16}
MODALITIES = ("text", "image")


@dataclass
class _Shard:
    """One process's part of one modality: ``n`` items, their tokens end to end."""

    pooled: torch.Tensor  # (n, C)
    tokens: torch.Tensor  # (T, C')
    mask: torch.Tensor  # (T,) uint8
    offsets: np.ndarray  # (n + 1,) int64: item i's tokens are tokens[offsets[i]:offsets[i + 1]]


def image_key(image: Any) -> str | None:
    """The cache key of an image input: its path (as the data gives it), or ``None``.

    In-memory images (PIL) are not cached: the collator falls back to the model's own
    preprocessing for them.
    """
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    return None


def _file_stamp(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _digest_tensors(modules: Iterable[torch.nn.Module], parameters: Iterable[torch.Tensor]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    seen: set[int] = set()
    tensors: list[torch.Tensor] = list(parameters)
    for module in modules:
        tensors.extend(module.parameters())
        tensors.extend(module.buffers())
    for tensor in tensors:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{tuple(data.shape)}{data.dtype}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def trunk_fingerprint(clip: Any, texts: Sequence[str], images: Sequence[str], dtype: str) -> str:
    """A 32-hex-digit digest of everything the cached trunk outputs depend on.

    Args:
        clip: the :class:`~rcml_st.modules.OpenCLIPInput` module (its trunk weights, tokenizer
            and preprocessing settings).
        texts: the distinct texts to cache.
        images: the image keys to cache (paths; each file's size and modification time count).
        dtype: the storage precision (``"float32"`` or ``"float16"``).
    """
    head = {id(p) for _, p in clip.head_parameters()}
    trunk_parameters = [p for p in clip.model.parameters() if id(p) not in head]
    digest = hashlib.blake2b(digest_size=16)
    settings = {
        "format": FORMAT_VERSION,
        "dtype": dtype,
        "model_cfg": clip.model_cfg,
        "preprocess_cfg": clip.preprocess_cfg,
        "open_clip": str(getattr(open_clip, "__version__", "unknown")),  # tower code, image transforms
        "tokenizer": type(clip.tokenizer).__name__,
    }
    if getattr(clip, "image_stages", None):  # multi-scale image tokens (absent: the fingerprints of before)
        settings["image_stages"] = list(clip.image_stages)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(_digest_tensors(clip.trunk_modules(), trunk_parameters).encode())
    for text in texts:
        digest.update(b"t" + text.encode("utf-8", "surrogatepass") + b"\x00")
    for image in images:
        digest.update(b"i" + image.encode("utf-8", "surrogatepass") + b"\x00" + _file_stamp(image).encode())
    return digest.hexdigest()


def _barrier() -> None:
    if world()[1] > 1:
        torch.distributed.barrier()


class _ImageBatch:
    """Turns image keys into pixels with the module's own preprocessing (picklable for workers)."""

    def __init__(self, clip: Any) -> None:
        self.clip = clip

    def __call__(self, keys: list[str]) -> torch.Tensor:
        return self.clip.preprocess([{"image": key} for key in keys])["pixel_values"]


class _ShardWriter:
    """Streams one modality's trunk outputs to raw files (constant memory)."""

    def __init__(self, folder: Path, name: str, dtype: str) -> None:
        self.folder, self.name, self.dtype = folder, name, dtype
        # Open across add() calls, closed by close().
        parts = ("pooled", "tokens", "mask")
        self.files = {part: open(folder / f"{name}.{part}", "wb") for part in parts}  # noqa: SIM115
        self.keys: list[str] = []
        self.lengths: list[int] = []
        self.widths: tuple[int, int] | None = None

    def add(self, keys: Sequence[str], trunk: TrunkOutput) -> None:
        pooled_np = trunk.pooled.detach().float().cpu().numpy().astype(DTYPES[self.dtype])
        tokens_np = trunk.tokens.detach().float().cpu().numpy().astype(DTYPES[self.dtype])
        mask_np = trunk.mask.detach().cpu().numpy().astype(np.uint8)
        self.widths = (pooled_np.shape[1], tokens_np.shape[2])
        self.files["pooled"].write(np.ascontiguousarray(pooled_np).tobytes())
        for i, key in enumerate(keys):
            real = np.flatnonzero(mask_np[i])
            # Positions after the last real token are padding of this batch: not stored.
            length = int(real[-1]) + 1 if real.size else 1
            self.files["tokens"].write(np.ascontiguousarray(tokens_np[i, :length]).tobytes())
            self.files["mask"].write(np.ascontiguousarray(mask_np[i, :length]).tobytes())
            self.keys.append(key)
            self.lengths.append(length)

    def close(self) -> dict[str, Any]:
        for handle in self.files.values():
            handle.close()
        info: dict[str, Any] = {"name": self.name, "count": len(self.keys), "widths": self.widths}
        info["nbytes"] = sum(_part_sizes(info, self.dtype, self.lengths).values())
        (self.folder / f"{self.name}.json").write_text(
            json.dumps({"keys": self.keys, "lengths": self.lengths}), encoding="utf-8"
        )
        return info


class TrunkCache:
    """Per-item trunk outputs of a frozen model, by text and by image key (see the module docstring).

    Build one with :meth:`build`; :meth:`text_trunk` / :meth:`image_trunk` return a batch's
    :class:`~rcml_st.modules.towers.TrunkOutput` (float32, CPU, tokens padded to the batch's
    longest item), or ``None`` when an item is not in the cache. :class:`~rcml_st.training.
    trunk_collator.TrunkCacheCollator` turns them into model features.

    Attributes:
        folder: the cache's folder.
        in_memory: whether it was read into memory (else it is memory-mapped).
        reused: whether :meth:`build` found it complete on disk (nothing was computed).
        nbytes: its size (both modalities).
    """

    def __init__(self, folder: Path, memory_gb: float = DEFAULT_MEMORY_GB) -> None:
        self.folder = Path(folder)
        manifest = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{self.folder}: trunk cache format {manifest.get('format')}, expected {FORMAT_VERSION}"
            )
        self.dtype = manifest["dtype"]
        self.context_length = int(manifest["context_length"])
        self.reused = False
        np_dtype = DTYPES[self.dtype]
        sizes = [int(shard["nbytes"]) for m in MODALITIES for shard in manifest[m]]
        self.nbytes = sum(sizes)
        self.in_memory = self.nbytes <= memory_gb * 2**30
        self._shards: dict[str, list[_Shard]] = {}
        self._index: dict[str, dict[str, tuple[int, int]]] = {}
        for modality in MODALITIES:
            shards, index = [], {}
            for s, info in enumerate(manifest[modality]):
                meta = json.loads((self.folder / f"{info['name']}.json").read_text(encoding="utf-8"))
                shards.append(self._open(info, meta["lengths"], np_dtype))
                for row, key in enumerate(meta["keys"]):
                    index[key] = (s, row)
            self._shards[modality], self._index[modality] = shards, index

    def _open(self, info: dict[str, Any], lengths: list[int], dtype: type) -> _Shard:
        count = int(info["count"])
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.asarray(lengths, dtype=np.int64), out=offsets[1:])
        width, token_width = info["widths"] or (0, 0)
        shapes = {
            "pooled": (count, width),
            "tokens": (int(offsets[-1]), token_width),
            "mask": (int(offsets[-1]),),
        }
        arrays = {}
        for part, shape in shapes.items():
            path = self.folder / f"{info['name']}.{part}"
            part_dtype = np.uint8 if part == "mask" else dtype
            if self.in_memory or 0 in shape:
                arrays[part] = torch.from_numpy(np.fromfile(path, dtype=part_dtype).reshape(shape))
            else:
                mapped = np.memmap(path, dtype=part_dtype, mode="r", shape=shape)
                with warnings.catch_warnings():  # read-only by design: the cache is never written here
                    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                    arrays[part] = torch.from_numpy(mapped)
        return _Shard(arrays["pooled"], arrays["tokens"], arrays["mask"], offsets)

    # ------------------------------------------------------------------------------------------
    @property
    def text_count(self) -> int:
        """How many distinct texts the cache holds."""
        return len(self._index["text"])

    @property
    def image_count(self) -> int:
        """How many distinct images the cache holds."""
        return len(self._index["image"])

    def text_trunk(self, texts: Sequence[str]) -> Any:
        """The text trunk outputs of ``texts`` (all cached), or ``None`` if one is missing."""
        return self._gather("text", texts)

    def image_trunk(self, keys: Sequence[str | None]) -> Any:
        """The image trunk outputs of the images with these :func:`image_key` keys, or ``None``."""
        return self._gather("image", keys)

    def _gather(self, modality: str, keys: Sequence[str | None]) -> Any:
        index, shards = self._index[modality], self._shards[modality]
        spots = [index.get(key) if key is not None else None for key in keys]  # type: ignore[arg-type]
        if not spots or None in spots:
            return None
        pooled, tokens, mask = [], [], []
        for s, row in spots:  # type: ignore[misc]
            shard = shards[s]
            start, stop = int(shard.offsets[row]), int(shard.offsets[row + 1])
            pooled.append(shard.pooled[row])
            tokens.append(shard.tokens[start:stop])
            mask.append(shard.mask[start:stop])
        # Tokens padded to the batch's longest item: zeros, masked out.
        return TrunkOutput(
            torch.stack(pooled).float(),
            pad_sequence(tokens, batch_first=True).float(),
            pad_sequence(mask, batch_first=True).bool(),
        )

    # ------------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        clip: Any,
        texts: Iterable[str],
        images: Iterable[str],
        folder: str | os.PathLike[str],
        *,
        dtype: str = "float32",
        memory_gb: float = DEFAULT_MEMORY_GB,
        batch_size: int = 64,
        workers: int = 0,
        log: Callable[[str], None] | None = None,
    ) -> TrunkCache:
        """Computes (or finds on disk) the trunk outputs of every text and image, and opens the cache.

        Under ``torchrun`` every process calls this with the same items: each computes its share
        into the shared folder, then all of them open the whole cache.

        Args:
            clip: the model's :class:`~rcml_st.modules.OpenCLIPInput`, trunks frozen.
            texts: item texts (duplicates and empty ones are dropped).
            images: image keys (paths, see :func:`image_key`).
            folder: the parent folder; the cache goes to ``folder/<fingerprint>``.
            dtype: storage precision, ``"float32"`` (exact) or ``"float16"`` (half the size).
            memory_gb: read the cache into memory up to this size (GiB), else memory-map it.
            batch_size: items per trunk pass while building.
            workers: image-decoding worker processes while building.
            log: receives one line saying what was built or reused.

        Returns:
            The open :class:`TrunkCache` (``reused`` says whether it was already on disk).
        """
        if dtype not in DTYPES:
            raise ValueError(f"trunk cache dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        text_keys = sorted({t for t in texts if t is not None and t.strip()})
        image_keys = sorted(set(images))
        fingerprint = trunk_fingerprint(clip, text_keys, image_keys, dtype)
        parent = Path(folder)
        target = parent / fingerprint
        rank, world_size = world()
        problem = _check(target) if target.exists() else "absent"
        reused = problem is None
        _barrier()  # every process has looked before anyone creates or deletes
        if not reused:
            if rank == 0:
                if problem != "absent" and log is not None:
                    log(f"trunk cache in {target} is unusable ({problem}): rebuilding it")
                if parent.is_dir():  # our caches of other data or weights: stale
                    for stale in parent.iterdir():
                        if stale.name != fingerprint and _is_cache_folder(stale):
                            shutil.rmtree(stale, ignore_errors=True)
                if target.exists():  # an incomplete or damaged earlier attempt
                    if not _is_cache_folder(target):
                        raise FileExistsError(f"{target} exists and is not a trunk cache: not replacing it")
                    shutil.rmtree(target)
                target.mkdir(parents=True)
                (target / MARKER).write_text(fingerprint, encoding="utf-8")
            _barrier()
            shards = cls._compute(
                clip,
                text_keys[rank::world_size],
                image_keys[rank::world_size],
                target,
                rank,
                dtype,
                batch_size,
                workers,
            )
            (target / f"shards-{rank}.json").write_text(json.dumps(shards), encoding="utf-8")
            _barrier()
            if rank == 0:
                manifest: dict[str, Any] = {
                    "format": FORMAT_VERSION,
                    "dtype": dtype,
                    "context_length": clip.max_seq_length,
                    "fingerprint": fingerprint,
                    "text": [],
                    "image": [],
                }
                for r in range(world_size):
                    part = json.loads((target / f"shards-{r}.json").read_text(encoding="utf-8"))
                    for modality in MODALITIES:
                        manifest[modality].extend(part[modality])
                tmp = target / (MANIFEST + ".tmp")
                tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
                tmp.replace(target / MANIFEST)
            _barrier()
        cache = cls(target, memory_gb=memory_gb)
        cache.reused = reused
        if log is not None:
            where = "in memory" if cache.in_memory else f"memory-mapped (over the {memory_gb:g} GiB budget)"
            action = "reused" if reused else "built"
            log(
                f"trunk cache {action}: {cache.text_count} texts, {cache.image_count} images, "
                f"{cache.nbytes / 2**20:.1f} MiB {cache.dtype}, {where}, in {target}"
            )
        return cache

    @staticmethod
    def _compute(
        clip: Any,
        texts: list[str],
        images: list[str],
        target: Path,
        rank: int,
        dtype: str,
        batch_size: int,
        workers: int,
    ) -> dict[str, list[dict[str, Any]]]:
        device = next(clip.parameters()).device
        was_training = clip.training
        clip.eval()
        shards: dict[str, list[dict[str, Any]]] = {"text": [], "image": []}
        try:
            with torch.no_grad():
                if texts:
                    writer = _ShardWriter(target, f"text-{rank}", dtype)
                    ids = clip.preprocess([{"text": t} for t in texts])["input_ids"]
                    # Similar lengths share a batch: the trunk cuts each batch's padding.
                    order = sorted(range(len(texts)), key=lambda i: int((ids[i] != 0).sum()))
                    for start in range(0, len(order), batch_size):
                        rows = order[start : start + batch_size]
                        writer.add([texts[i] for i in rows], clip.text_trunk(ids[rows].to(device)))
                    shards["text"].append(writer.close())
                if images:
                    writer = _ShardWriter(target, f"image-{rank}", dtype)
                    loader = torch.utils.data.DataLoader(
                        images, batch_size=batch_size, num_workers=workers, collate_fn=_ImageBatch(clip)
                    )
                    for start, pixels in zip(range(0, len(images), batch_size), loader, strict=True):
                        writer.add(images[start : start + batch_size], clip.image_trunk(pixels.to(device)))
                    shards["image"].append(writer.close())
        finally:
            clip.train(was_training)
        return shards


def _is_cache_folder(path: Path) -> bool:
    """Whether ``path`` is a folder this cache made (its marker or manifest names it), never a user's."""
    if not path.is_dir() or path.is_symlink():
        return False
    with contextlib.suppress(OSError, ValueError):  # UnicodeDecodeError is a ValueError
        if (path / MARKER).read_text(encoding="utf-8") == path.name:
            return True
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("fingerprint") == path.name
    except (OSError, ValueError, AttributeError):
        return False


def _part_sizes(info: dict[str, Any], dtype: str, lengths: Sequence[int]) -> dict[str, int]:
    """The byte size of each file of one shard, from its count, widths and token lengths."""
    item = np.dtype(DTYPES[dtype]).itemsize
    width, token_width = info["widths"] or (0, 0)
    tokens = int(sum(lengths))
    return {
        "pooled": int(info["count"]) * width * item,
        "tokens": tokens * token_width * item,
        "mask": tokens,
    }


def _check(folder: Path) -> str | None:
    """Why the cache in ``folder`` cannot be used (``None``: complete and intact).

    Compares every shard file with the sizes its manifest records: a truncated or overwritten
    file, or a missing or unreadable one, makes the cache rebuilt rather than misread.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            return f"format {manifest.get('format')}, expected {FORMAT_VERSION}"
        for modality in MODALITIES:
            for info in manifest[modality]:
                meta = json.loads((folder / f"{info['name']}.json").read_text(encoding="utf-8"))
                if len(meta["keys"]) != int(info["count"]) or len(meta["lengths"]) != int(info["count"]):
                    return f"{info['name']}.json lists {len(meta['keys'])} items, expected {info['count']}"
                sizes = _part_sizes(info, manifest["dtype"], meta["lengths"])
                if sum(sizes.values()) != int(info["nbytes"]):
                    return f"{info['name']}.json does not match the manifest"
                for part, size in sizes.items():
                    actual = (folder / f"{info['name']}.{part}").stat().st_size
                    if actual != size:
                        return f"{info['name']}.{part} holds {actual} bytes, expected {size}"
    except FileNotFoundError as error:
        return f"{Path(error.filename or '?').name} is missing"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable: {error}"
    return None


def dataset_items(dataset: Any, columns: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The texts and image keys in a training dataset's item columns.

    Args:
        dataset: a ``datasets.Dataset`` (or a dict of column lists) whose item columns hold dicts
            with ``text`` / ``image`` keys (as :func:`~rcml_st.training.build_pairs` makes) or
            plain strings (texts).
        columns: the item columns (default: every column except the label columns).

    Returns:
        ``(texts, image keys)``, each without duplicates.
    """
    if columns is None:
        every = getattr(dataset, "column_names", None)
        every = list(dataset) if every is None else every
        columns = [c for c in every if c not in ("label", "labels", "score", "scores", "dataset_name")]
    texts: dict[str, None] = {}
    images: dict[str, None] = {}
    for name in columns:
        for value in dataset[name]:
            if isinstance(value, dict):
                text, image = value.get("text"), image_key(value.get("image"))
                if isinstance(text, str) and text.strip():
                    texts[text] = None
                if image is not None:
                    images[image] = None
            elif isinstance(value, str) and value.strip():
                texts[value] = None
    return list(texts), list(images)
