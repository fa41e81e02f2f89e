"""Exponential moving average of a module's parameters (store / copy_to / restore)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keep ``shadow = decay * shadow + (1 - decay) * param`` for every parameter.

    Use ``store`` -> ``copy_to`` -> (sample or save) -> ``restore`` to publish the EMA
    weights without losing the training weights (the diffusers ``EMAModel`` pattern).

    Args:
        model: the module to track.
        decay: the EMA decay in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay: got {decay}, expected 0 <= decay < 1")
        self.decay = decay
        self.shadow = [p.detach().clone() for p in model.parameters()]
        self._backup: list[torch.Tensor] | None = None
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the module's current parameters into the average."""
        self.num_updates += 1
        for s, p in zip(self.shadow, model.parameters(), strict=True):
            s.lerp_(p.detach(), 1.0 - self.decay)

    @torch.no_grad()
    def store(self, model: nn.Module) -> None:
        """Remember the module's current parameters (for :meth:`restore`)."""
        self._backup = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the module's parameters with the averaged ones."""
        for s, p in zip(self.shadow, model.parameters(), strict=True):
            p.copy_(s)

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        """Put back the parameters saved by :meth:`store`."""
        if self._backup is None:
            raise RuntimeError("EMA.restore called without a prior store")
        for b, p in zip(self._backup, model.parameters(), strict=True):
            p.copy_(b)
        self._backup = None

    def state_dict(self) -> dict:
        """Return a picklable state."""
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": [s.clone() for s in self.shadow],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        self.shadow = [copy.deepcopy(s) for s in state["shadow"]]
