"""Datasets as tensors in [-1, 1], the forget/retain split and the attacker's data sets.

* digits: sklearn's 8x8 digits (shipped with scikit-learn), stratified 70/30 split.
* mnist: IDX files under ``data_root`` (train split if present, else the test split
  alone, split 80/20), padded 28 -> 32 and average-pooled to 16x16.
* cifar10: torchvision's CIFAR-10 (train / test), 32x32x3; downloads only when asked.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageData:
    """Labelled images.

    Attributes:
        images: float tensor (N, C, H, W) scaled to [-1, 1].
        labels: long tensor (N,).
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        assert self.images.ndim == 4, self.images.shape
        assert self.labels.shape == (self.images.shape[0],), self.labels.shape

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, mask: torch.Tensor) -> ImageData:
        """Return the rows where boolean ``mask`` is true."""
        return ImageData(self.images[mask], self.labels[mask])

    def classes(self) -> list[int]:
        """Sorted class indices present."""
        return sorted(int(c) for c in torch.unique(self.labels))


@dataclass(frozen=True)
class DatasetSplits:
    """Training data (for the DDPM and the judge) and disjoint held-out data."""

    name: str
    train: ImageData
    holdout: ImageData
    num_classes: int


def load_dataset(
    name: str, data_root: str | None = None, split_seed: int = 0, download: bool = False
) -> DatasetSplits:
    """Load one of ``digits``, ``mnist``, ``cifar10``.

    Args:
        name: dataset name.
        data_root: folder with the raw files (MNIST, CIFAR-10); unused for digits.
        split_seed: seed of the train/held-out split where we make one.
        download: let torchvision download CIFAR-10 (needs a network).

    Raises:
        ValueError: unknown name or missing ``data_root``.
        FileNotFoundError: the raw files are not where ``data_root`` says.
    """
    if name == "digits":
        return _load_digits(split_seed)
    if name == "mnist":
        if data_root is None:
            raise ValueError(
                "data_root: got None, expected the folder with MNIST IDX files"
            )
        return _load_mnist(Path(data_root), split_seed)
    if name == "cifar10":
        if data_root is None:
            raise ValueError("data_root: got None, expected a folder for CIFAR-10")
        return _load_cifar10(Path(data_root), download)
    raise ValueError(f"dataset: got {name!r}, expected 'digits', 'mnist' or 'cifar10'")


def _stratified_split(
    images: torch.Tensor, labels: torch.Tensor, holdout_fraction: float, seed: int
) -> tuple[ImageData, ImageData]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    tr, ho = train_test_split(
        idx, test_size=holdout_fraction, stratify=labels.numpy(), random_state=seed
    )
    tr, ho = torch.as_tensor(np.sort(tr)), torch.as_tensor(np.sort(ho))
    return ImageData(images[tr], labels[tr]), ImageData(images[ho], labels[ho])


def _load_digits(split_seed: int) -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixels are 0..16; x / 8 - 1 maps them to [-1, 1] (dimum.md section 9.1).
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    train, holdout = _stratified_split(x, y, 0.3, split_seed)
    return DatasetSplits("digits", train, holdout, 10)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a NumPy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {data[:4]!r})")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: IDX dtype 0x{dtype_code:02x}, expected 0x08 (uint8)")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for suffix in ("", ".gz"):
            p = folder / (stem + suffix)
            if p.exists():
                return p
    return None


def _mnist_to_tensor(images: np.ndarray) -> torch.Tensor:
    x = torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 127.5 - 1.0
    x = F.pad(x, (2, 2, 2, 2), value=-1.0)  # (N, 1, 32, 32)
    return F.avg_pool2d(x, 2)  # (N, 1, 16, 16)


def _load_mnist(root: Path, split_seed: int) -> DatasetSplits:
    test_x, test_y = (
        _find_idx(root, "t10k-images-idx3-ubyte"),
        _find_idx(root, "t10k-labels-idx1-ubyte"),
    )
    train_x, train_y = (
        _find_idx(root, "train-images-idx3-ubyte"),
        _find_idx(root, "train-labels-idx1-ubyte"),
    )
    if test_x is None or test_y is None:
        raise FileNotFoundError(
            f"MNIST: no t10k-images-idx3-ubyte[.gz] / t10k-labels-idx1-ubyte[.gz] "
            f"under "
            f"{root} (also looked in MNIST/raw and raw)"
        )
    x = _mnist_to_tensor(read_idx(test_x))
    y = torch.tensor(read_idx(test_y), dtype=torch.long)
    if train_x is not None and train_y is not None:
        train = ImageData(
            _mnist_to_tensor(read_idx(train_x)),
            torch.tensor(read_idx(train_y), dtype=torch.long),
        )
        return DatasetSplits("mnist", train, ImageData(x, y), 10)
    logger.info("MNIST: only the test split found; splitting it 80/20")
    train, holdout = _stratified_split(x, y, 0.2, split_seed)
    return DatasetSplits("mnist", train, holdout, 10)


def _load_cifar10(root: Path, download: bool) -> DatasetSplits:
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as e:  # pragma: no cover - torchvision is a dependency
        raise ImportError("CIFAR-10 needs torchvision: pip install torchvision") from e

    def to_data(ds) -> ImageData:
        x = torch.tensor(ds.data, dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1.0
        return ImageData(x, torch.tensor(ds.targets, dtype=torch.long))

    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    except RuntimeError as e:
        raise FileNotFoundError(
            f"CIFAR-10 not found under {root}; pass --download true with a network"
        ) from e
    return DatasetSplits("cifar10", to_data(train), to_data(test), 10)


def check_forget_class(forget_class: int, num_classes: int) -> None:
    """Raise ``ValueError`` unless ``0 <= forget_class < num_classes``."""
    if not 0 <= forget_class < num_classes:
        raise ValueError(
            f"forget_class: got {forget_class}, expected an integer in "
            f"[0, {num_classes - 1}]"
        )


def assert_no_class(data: ImageData, forget_class: int, what: str) -> None:
    """Raise ``ValueError`` if ``data`` holds any sample of ``forget_class``.

    This guards the DiMRA threat model: the attacker's data never contains the
    forgotten class.
    """
    n = int((data.labels == forget_class).sum())
    if n:
        raise ValueError(
            f"{what}: contains {n} samples of the forgotten class {forget_class}, "
            "expected none"
        )


def split_forget_retain(
    data: ImageData, forget_class: int, num_classes: int
) -> tuple[ImageData, ImageData]:
    """Return (D_f, D_r): the forgotten class and everything else."""
    check_forget_class(forget_class, num_classes)
    is_f = data.labels == forget_class
    forget, retain = data.subset(is_f), data.subset(~is_f)
    if len(forget) == 0:
        raise ValueError(f"forget set: class {forget_class} has no samples in the data")
    return forget, retain


def auxiliary_set(holdout: ImageData, forget_class: int) -> ImageData:
    """D_au: held-out data (disjoint from D_r) minus the forgotten class."""
    aux = holdout.subset(holdout.labels != forget_class)
    assert_no_class(aux, forget_class, "auxiliary set")
    return aux


class ExperimentSplits(NamedTuple):
    """The four sets one unlearning experiment on forget class c_f uses."""

    forget: ImageData  # D_f: training images of c_f
    retain: ImageData  # D_r: the other training images
    aux: ImageData  # D_au: held-out images without c_f (DiMRA's second attacker)
    reference: ImageData  # held-out retained-class images (Frechet reference)


def experiment_splits(data: DatasetSplits, forget_class: int) -> ExperimentSplits:
    """D_f, D_r, D_au and the Frechet reference of ``data`` for ``forget_class``."""
    forget, retain = split_forget_retain(data.train, forget_class, data.num_classes)
    aux = auxiliary_set(data.holdout, forget_class)
    reference = data.holdout.subset(data.holdout.labels != forget_class)
    return ExperimentSplits(forget, retain, aux, reference)


def sample_batch(
    data: ImageData, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch_size`` rows with replacement -> (x0, labels).

    The generator's device must match the data's (keep both on the training device).
    """
    idx = torch.randint(
        len(data), (batch_size,), generator=generator, device=generator.device
    )
    return data.images[idx], data.labels[idx]


def to_device(data: ImageData, device: torch.device | str) -> ImageData:
    """Return ``data`` on ``device``."""
    return ImageData(data.images.to(device), data.labels.to(device))
