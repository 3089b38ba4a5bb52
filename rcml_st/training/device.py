"""Choosing the training device and precision."""

from __future__ import annotations

from dataclasses import dataclass

from rcml_st.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    """Where and how training runs.

    Attributes:
        device: ``"cuda"`` or ``"cpu"``.
        bf16: whether to train in bfloat16 mixed precision (CUDA with bf16 support).
        description: a short human-readable summary, e.g. ``"cuda (NVIDIA H100, bf16)"``.
    """

    device: str
    bf16: bool
    description: str


def choose_device(requested: str = "auto") -> DeviceChoice:
    """Resolves ``auto|cpu|cuda`` to a device: CUDA (with bf16 when supported) if present, else CPU.

    Raises:
        UsageError: for an unknown value, or ``cuda`` on a machine without a usable GPU.

    Example:
        >>> choose_device("cpu")
        DeviceChoice(device='cpu', bf16=False, description='cpu (float32)')
    """
    import torch

    requested = (requested or "auto").strip().lower()
    if requested not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got {requested!r}")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise UsageError("--device cuda: no CUDA GPU is available here (use --device auto or cpu)")
    if requested == "cpu" or not has_cuda:
        return DeviceChoice("cpu", False, "cpu (float32)")
    bf16 = bool(torch.cuda.is_bf16_supported())
    name = torch.cuda.get_device_name(torch.cuda.current_device())
    count = torch.cuda.device_count()
    gpus = f"{count} x {name}" if count > 1 else name
    return DeviceChoice("cuda", bf16, f"cuda ({gpus}, {'bf16' if bf16 else 'float32'})")
