"""Training RCML models: pairs, trainer setup, checkpoints and resuming, device choice.

Example:
    >>> from rcml_st.training import TrainConfig, train
    >>> config = TrainConfig("train.jsonl", "rcml-baby", backbone="rcml-small", lr=1e-3)
    >>> result = train(config)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rcml_st._lazy import lazy_exports

if TYPE_CHECKING:
    from rcml_st.modules.architectures import ARCHITECTURES, write_architecture
    from rcml_st.training.device import DeviceChoice, choose_device
    from rcml_st.training.frozen import cache_frozen_trunks, freeze_backbone
    from rcml_st.training.pairs import SAME_ITEM, PairSet, build_pairs
    from rcml_st.training.run import TrainConfig, TrainResult, load_training_data, train

# Public names resolve on first use (PEP 562): `rcml-st train bad.jsonl` reads and rejects the
# data before torch, open_clip and sentence-transformers are imported (architectures pulls them in).
_LAZY = {
    "ARCHITECTURES": "rcml_st.modules.architectures",
    "write_architecture": "rcml_st.modules.architectures",
    "DeviceChoice": "rcml_st.training.device",
    "choose_device": "rcml_st.training.device",
    "cache_frozen_trunks": "rcml_st.training.frozen",
    "freeze_backbone": "rcml_st.training.frozen",
    "SAME_ITEM": "rcml_st.training.pairs",
    "PairSet": "rcml_st.training.pairs",
    "build_pairs": "rcml_st.training.pairs",
    "TrainConfig": "rcml_st.training.run",
    "TrainResult": "rcml_st.training.run",
    "load_training_data": "rcml_st.training.run",
    "train": "rcml_st.training.run",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = [
    "ARCHITECTURES",
    "SAME_ITEM",
    "DeviceChoice",
    "PairSet",
    "TrainConfig",
    "TrainResult",
    "build_pairs",
    "cache_frozen_trunks",
    "choose_device",
    "freeze_backbone",
    "load_training_data",
    "train",
    "write_architecture",
]
