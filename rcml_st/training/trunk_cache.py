"""Trunk features of frozen towers, computed once per item and reused by every step and epoch.

With the towers' trunks frozen (``--freeze-backbone``), an item's trunk output (the pooled
feature, the token features and their mask, before the projection into the joint space) depends
on the item alone. :class:`TrunkCache` computes it once per distinct text and image of the
training data and serves it to the data collator, so a training step runs only the projections,
the relation pooling and the loss: no image decoding, no tower forward.

Storage: the cache is always written to a folder (``DIR/checkpoints/trunk-cache/<fingerprint>/``
for ``rcml-st train``), so a resumed run finds it and skips the first pass. Its files are PyTorch's
own (``torch.save``), read into memory when they fit in ``memory_gb`` (per process) and otherwise
memory-mapped (``torch.load(mmap=True)``), whose pages the operating system caches and evicts as
memory allows. The fingerprint covers the data (every distinct text, every image path with its
size and modification time), the trunk weights, the tokenizer and image preprocessing settings
and the storage precision: change any of them and a new cache is built. The stale caches in the
same parent folder are deleted, and only folders the cache can prove it made (holding its marker
or manifest, named by their fingerprint): anything else in that folder is left as it is. A cache
with a shard file that does not load (missing, truncated, overwritten) is rebuilt.

Layout of one cache folder (``<modality>`` is ``text`` or ``image``, ``<r>`` the process that wrote
the shard, ``<k>`` its number; under ``torchrun`` every process computes its share of the items, in
shards of about :data:`SHARD_BYTES` each, so building takes constant memory)::

    rcml-trunk-cache        written first: the fingerprint (marks the folder as a cache's)
    manifest.json           written last: the shard files, precision (its presence = complete)
    <modality>-<r>-<k>.pt   a shard: its keys (texts, or image keys), pooled features (n, C), token
                            features (T, C') and mask (T,) of all its items end to end, and the
                            offsets (n + 1,) of each item's tokens, in the stored precision

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
import functools
import hashlib
import json
import logging
import os
import pickle
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch.nn.utils.rnn import pad_sequence

from rcml_st.atomic import write_text
from rcml_st.losses.distributed import world
from rcml_st.modules.towers import TrunkOutput

logger = logging.getLogger("rcml_st.training")

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
#: Written first into every cache folder: what lets the cache delete only folders it made itself.
MARKER = "rcml-trunk-cache"
#: Default in-memory budget of a cache, per process (GiB); beyond it, memory-mapped files serve it.
DEFAULT_MEMORY_GB = 2.0
#: While building, a shard file is written each time this many bytes of trunk outputs are collected.
SHARD_BYTES = 256 * 2**20
DTYPES = {"float32": torch.float32, "float16": torch.float16}
MODALITIES = ("text", "image")


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


def trunk_fingerprint(clip: Any, texts: Sequence[str], images: Sequence[str], dtype: str) -> str:
    """A 32-hex-digit digest of everything the cached trunk outputs depend on.

    Args:
        clip: the :class:`~rcml_st.modules.OpenCLIPInput` module (its trunk weights, tokenizer
            and preprocessing settings).
        texts: the distinct texts to cache.
        images: the image keys to cache (paths; each file's size and modification time count).
        dtype: the storage precision (``"float32"`` or ``"float16"``).
    """
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
    head = {name for name, _ in clip.head_parameters()}
    for name, tensor in clip.state_dict().items():  # the trunk's weights and buffers
        if name not in head:
            data = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}{tuple(data.shape)}{data.dtype}".encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    for text in texts:
        digest.update(b"t" + text.encode("utf-8", "surrogatepass") + b"\x00")
    for image in images:
        digest.update(b"i" + image.encode("utf-8", "surrogatepass") + b"\x00" + _file_stamp(image).encode())
    return digest.hexdigest()


def _barrier() -> None:
    if world()[1] > 1:
        torch.distributed.barrier()


def _pixels(clip: Any, keys: list[str]) -> torch.Tensor:
    """Image keys to pixels with the module's own preprocessing (a data loader's ``collate_fn``)."""
    return clip.preprocess([{"image": key} for key in keys])["pixel_values"]


class _ShardWriter:
    """Collects one modality's trunk outputs and writes them as shard files of about :data:`SHARD_BYTES`."""

    def __init__(self, folder: Path, prefix: str, dtype: str) -> None:
        self.folder, self.prefix, self.dtype = folder, prefix, DTYPES[dtype]
        self.written = 0
        self._start()

    def _start(self) -> None:
        self.keys: list[str] = []
        self.parts: dict[str, list[torch.Tensor]] = {"pooled": [], "tokens": [], "mask": []}
        self.lengths: list[int] = []
        self.nbytes = 0

    def add(self, keys: Sequence[str], trunk: TrunkOutput) -> None:
        pooled, tokens = (
            trunk.pooled.detach().cpu().to(self.dtype),
            trunk.tokens.detach().cpu().to(self.dtype),
        )
        mask = trunk.mask.detach().cpu()
        # Positions after the last real token are padding of this batch: not stored.
        lengths = (mask * torch.arange(1, mask.shape[1] + 1)).amax(dim=1).clamp(min=1).tolist()
        self.parts["pooled"].append(pooled)
        for i, length in enumerate(lengths):
            self.parts["tokens"].append(tokens[i, :length])
            self.parts["mask"].append(mask[i, :length])
        self.keys += keys
        self.lengths += lengths
        self.nbytes += pooled.nbytes + sum(lengths) * tokens.shape[2] * tokens.element_size()
        if self.nbytes >= SHARD_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.keys:
            return
        shard = {name: torch.cat(parts) for name, parts in self.parts.items()}
        lengths = torch.tensor(self.lengths, dtype=torch.long)
        shard.update(keys=self.keys, offsets=torch.cat([lengths.new_zeros(1), lengths.cumsum(0)]))
        torch.save(shard, self.folder / f"{self.prefix}-{self.written}.pt")
        self.written += 1
        self._start()


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
        files = {modality: [self.folder / name for name in manifest[modality]] for modality in MODALITIES}
        self.nbytes = sum(path.stat().st_size for paths in files.values() for path in paths)
        self.in_memory = self.nbytes <= memory_gb * 2**30
        self._shards: dict[str, list[dict[str, Any]]] = {}
        self._index: dict[str, dict[str, tuple[int, int]]] = {}
        for modality, paths in files.items():
            shards = [torch.load(path, mmap=not self.in_memory, weights_only=True) for path in paths]
            for shard in shards:
                shard["offsets"] = shard["offsets"].tolist()  # read per item at every step: plain ints
            self._shards[modality] = shards
            self._index[modality] = {
                key: (s, row) for s, shard in enumerate(shards) for row, key in enumerate(shard["keys"])
            }

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
            start, stop = shard["offsets"][row], shard["offsets"][row + 1]
            pooled.append(shard["pooled"][row])
            tokens.append(shard["tokens"][start:stop])
            mask.append(shard["mask"][start:stop])
        # Tokens padded to the batch's longest item: zeros, masked out.
        return TrunkOutput(
            torch.stack(pooled).float(),
            pad_sequence(tokens, batch_first=True).float(),
            pad_sequence(mask, batch_first=True),
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
            # This process's share of the items; similar text lengths share a batch (the trunk cuts
            # each batch's padding).
            texts, images = text_keys[rank::world_size], image_keys[rank::world_size]
            device, was_training = next(clip.parameters()).device, clip.training
            clip.eval()
            try:
                with torch.no_grad():
                    writer = _ShardWriter(target, f"text-{rank}", dtype)
                    ids = clip.preprocess([{"text": t} for t in texts])["input_ids"]
                    order = sorted(range(len(texts)), key=lambda i: int((ids[i] != 0).sum()))
                    for start in range(0, len(order), batch_size):
                        rows = order[start : start + batch_size]
                        writer.add([texts[i] for i in rows], clip.text_trunk(ids[rows].to(device)))
                    writer.flush()
                    writer = _ShardWriter(target, f"image-{rank}", dtype)
                    collate = functools.partial(_pixels, clip)
                    loader = torch.utils.data.DataLoader(
                        images, batch_size, num_workers=workers, collate_fn=collate
                    )
                    for start, pixels in zip(range(0, len(images), batch_size), loader, strict=True):
                        writer.add(images[start : start + batch_size], clip.image_trunk(pixels.to(device)))
                    writer.flush()
            finally:
                clip.train(was_training)
            _barrier()
            if rank == 0:
                manifest = {
                    "format": FORMAT_VERSION,
                    "dtype": dtype,
                    "context_length": clip.max_seq_length,
                    "fingerprint": fingerprint,
                    **{m: sorted(path.name for path in target.glob(f"{m}-*.pt")) for m in MODALITIES},
                }
                write_text(target / MANIFEST, json.dumps(manifest, indent=1))  # whole, or not there
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


def _check(folder: Path) -> str | None:
    """Why the cache in ``folder`` cannot be used (``None``: complete and intact).

    Every shard file the manifest lists must load: a missing, truncated or overwritten one makes
    the cache rebuilt rather than misread.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            return f"format {manifest.get('format')}, expected {FORMAT_VERSION}"
        names = [name for modality in MODALITIES for name in manifest[modality]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{MANIFEST} unreadable: {error}"
    for name in names:
        try:
            torch.load(folder / name, mmap=True, weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            return f"{name} does not load ({str(error).splitlines()[0]})"
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
