"""Device and precision choice: CUDA when present, bf16 autocast and TF32 on GPU."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceSetup:
    """What :func:`select_device` chose.

    Attributes:
        device: the torch device to put modules and tensors on.
        amp_dtype: dtype for autocast (``torch.bfloat16`` on a bf16-capable GPU when
            mixed precision was asked for), or ``None`` for full float32.
    """

    device: torch.device
    amp_dtype: torch.dtype | None

    @property
    def is_cuda(self) -> bool:
        """Whether the chosen device is a CUDA GPU."""
        return self.device.type == "cuda"


def select_device(
    preference: str = "auto", mixed_precision: bool = True
) -> DeviceSetup:
    """Choose the device and precision.

    Args:
        preference: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``
            or ``"cuda:N"``.
        mixed_precision: allow bf16 autocast and TF32 matmuls on a GPU. Ignored on CPU,
            where everything stays float32 (diffusers' default too).

    Returns:
        The chosen :class:`DeviceSetup`.

    Raises:
        ValueError: on an unknown preference, or ``cuda`` asked for without a GPU.
    """
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference != "cpu" and not preference.startswith("cuda"):
        raise ValueError(
            f"device: got {preference!r}, expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        )
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: got {preference!r} but CUDA is not available here")
    device = torch.device(preference)
    amp_dtype = None
    if device.type == "cuda" and mixed_precision:
        # TF32 keeps float32 range with 10-bit mantissa matmuls: ~free speed on Ampere+.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if torch.cuda.is_bf16_supported():
            amp_dtype = torch.bfloat16
    return DeviceSetup(device=device, amp_dtype=amp_dtype)


def autocast(setup: DeviceSetup):
    """Return an autocast context for ``setup`` (a no-op context on CPU / fp32)."""
    if setup.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=setup.device.type, dtype=setup.amp_dtype)


def set_cpu_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count and return it.

    On a 2-core machine several processes each using all cores oversubscribe the CPU
    (one measurement made a VFLGAN step 8x slower), so simulations give each party
    process one thread. ``None`` reads ``TORCH_NUM_THREADS`` or keeps torch's choice.

    Args:
        n: number of threads, or ``None``.

    Returns:
        The thread count now in force.
    """
    if n is None:
        env = os.environ.get("TORCH_NUM_THREADS")
        n = int(env) if env else None
    if n is not None:
        if n < 1:
            raise ValueError(f"cpu threads: got {n}, expected >= 1")
        torch.set_num_threads(n)
    return torch.get_num_threads()
