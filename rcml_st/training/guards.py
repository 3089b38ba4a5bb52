"""Training stops at the first non-finite gradient or weight, and nothing non-finite is saved.

A learning rate far too high (``--lr 1e6``), or corrupt cached trunk outputs, turn the loss into
NaN or infinity. The trainer would carry on (logging the average of the earlier losses in its
place) and save NaN weights as a model that encodes everything to NaN. :class:`FiniteGuard`
checks, at every optimizer step, that the gradients are finite before the step (a non-finite loss
makes them so) and that the weights are finite after it, so the run stops before the next
checkpoint; :func:`check_finite` is the last check before the final model is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from rcml_st.errors import RCMLError


class NonFiniteError(RCMLError):
    """Training produced a NaN or infinite loss, gradient or weight (a runtime failure, exit 1)."""


def _trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    tensors = [t.detach() for t in tensors]
    if not tensors:
        return True
    # One reduction over all tensors (a norm is finite iff every element is, barring an overflow
    # of the sum of squares, itself a sign of divergence), and one sync with the device.
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(tensors, error_if_nonfinite=False)))


def first_non_finite(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first tensor holding a NaN or an infinity, or ``None``.

    Example:
        >>> first_non_finite([("a", torch.ones(2)), ("b", torch.tensor([1.0, float("nan")]))])
        'b'
    """
    return next((name for name, tensor in named if not bool(torch.isfinite(tensor.detach()).all())), None)


def check_finite(model: torch.nn.Module, what: str = "the model") -> None:
    """Raises :class:`NonFiniteError` when any weight of ``model`` is NaN or infinite.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> check_finite(layer)
        >>> with torch.no_grad():
        ...     layer.weight[0, 0] = float("inf")
        >>> check_finite(layer)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rcml_st.training.guards.NonFiniteError: the model has non-finite weights (weight); nothing was ...
    """
    name = first_non_finite(model.named_parameters())
    if name is not None:
        raise NonFiniteError(
            f"{what} has non-finite weights ({name}); nothing was saved. The run diverged: "
            "use a lower --lr, and check the data"
        )


class FiniteGuard(TrainerCallback):
    """Stops training (:class:`NonFiniteError`) at the first non-finite gradient or weight.

    Before each optimizer step the trainable parameters' gradients must be finite (a NaN or
    infinite loss makes them non-finite); after it, their values. Raising from the callback ends
    ``trainer.train`` before the step's checkpoint is written.
    """

    def __init__(self, lr: float | None = None) -> None:
        self.lr = lr

    def _fail(self, what: str, name: str | None, state: Any) -> NonFiniteError:
        hint = (
            f"Use a lower --lr (this run: {self.lr:g})"
            if self.lr is not None
            else "Use a lower learning rate"
        )
        return NonFiniteError(
            f"training diverged at step {state.global_step + 1} (epoch {state.epoch or 0:.2f}): "
            f"{what} of {name or 'a parameter'} is NaN or infinite (the loss diverged); stopped before "
            f"saving anything of this step. {hint}, and check the data (a corrupt trunk cache too: delete it)"
        )

    def on_pre_optimizer_step(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        if model is not None:
            self._check(
                "the gradient", [(n, p.grad) for n, p in _trainable(model) if p.grad is not None], state
            )

    def on_optimizer_step(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        if model is not None:
            self._check("the weight", _trainable(model), state)

    def _check(self, what: str, named: Sequence[tuple[str, torch.Tensor]], state: Any) -> None:
        if not _all_finite(tensor for _, tensor in named):
            raise self._fail(what, first_non_finite(named), state)


__all__ = ["FiniteGuard", "NonFiniteError", "check_finite", "first_non_finite"]
