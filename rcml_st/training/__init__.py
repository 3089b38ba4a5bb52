"""Training RCML models: pairs, trainer setup, checkpoints and resuming, device choice.

Example:
    >>> from rcml_st.training import TrainConfig, train
    >>> config = TrainConfig("train.jsonl", "rcml-baby", backbone="rcml-small", lr=1e-3)
    >>> result = train(config)  # doctest: +SKIP
"""

from __future__ import annotations

from rcml_st.training.architectures import ARCHITECTURES, write_architecture
from rcml_st.training.device import DeviceChoice, choose_device
from rcml_st.training.pairs import SAME_ITEM, PairSet, build_pairs
from rcml_st.training.run import TrainConfig, TrainResult, load_training_data, train

__all__ = [
    "ARCHITECTURES",
    "SAME_ITEM",
    "DeviceChoice",
    "PairSet",
    "TrainConfig",
    "TrainResult",
    "build_pairs",
    "choose_device",
    "load_training_data",
    "train",
    "write_architecture",
]
