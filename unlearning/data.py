"""Datasets as tensors in [-1, 1], the forget/retain split and the attacker's data sets.

* digits: sklearn's 8x8 digits (shipped with scikit-learn), stratified 70/30 split.
* mnist: IDX files under ``data_root`` (train split if present, else the test split
  alone, split 80/20), padded 28 -> 32 and average-pooled to 16x16.
* cifar10: torchvision's CIFAR-10 (train / test), 32x32x3; downloads only when asked.
* folder: an image folder in torchvision's ``ImageFolder`` layout (one subfolder per
  class, classes numbered in sorted folder-name order), converted to the model's
  (C, H, W) and split per class 80/20 into train / held-out.
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
    name: str,
    data_root: str | None = None,
    split_seed: int = 0,
    download: bool = False,
    image_shape: tuple[int, int, int] | None = None,
) -> DatasetSplits:
    """Load one of ``digits``, ``mnist``, ``cifar10`` or an image ``folder``.

    Args:
        name: dataset name.
        data_root: folder with the raw files (MNIST, CIFAR-10) or the image folder;
            unused for digits.
        split_seed: seed of the train/held-out split where we make one.
        download: let torchvision download CIFAR-10 (needs a network).
        image_shape: (C, H, W) to convert folder images to (the model's); required
            for ``folder``, unused otherwise.

    Raises:
        ValueError: unknown name, missing ``data_root`` or ``image_shape``, or a bad
            image folder (see :func:`load_image_folder`).
        FileNotFoundError: the raw files are not where ``data_root`` says.
    """
    if name == "folder":
        if data_root is None or image_shape is None:
            raise ValueError(
                "folder: needs data_root (one subfolder per class) and image_shape "
                f"(the model's (C, H, W)); got {data_root!r} and {image_shape!r}"
            )
        return load_image_folder(data_root, image_shape, split_seed=split_seed)
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
    raise ValueError(
        f"dataset: got {name!r}, expected 'digits', 'mnist', 'cifar10' or 'folder'"
    )


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


def _class_folders(root: Path) -> list[tuple[str, list[Path]]]:
    """(class name, image files) per subfolder of ``root``, sorted by name."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = []
    for d in sorted(c for c in root.iterdir() if c.is_dir()):
        files = sorted(
            f
            for f in d.rglob("*")
            if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS
        )
        classes.append((d.name, files))
    return classes


def load_image_folder(
    root: str | Path,
    image_shape: tuple[int, int, int],
    *,
    holdout_fraction: float = 0.2,
    split_seed: int = 0,
) -> DatasetSplits:
    """Read an ``ImageFolder``-style folder (one subfolder per class) as tensors.

    Classes are numbered in sorted subfolder-name order, as torchvision's
    ``ImageFolder`` does. Images are converted to grayscale (C=1) or RGB (C=3) and,
    where their size differs, resized (bilinear) to (H, W), then scaled to [-1, 1].
    Per class, ``floor(n * holdout_fraction)`` images (seeded shuffle) go to held-out.

    Args:
        root: the folder.
        image_shape: (C, H, W) the model expects; C must be 1 or 3.
        holdout_fraction: share of each class held out (the judge's test set and
            DiMRA's auxiliary data).
        split_seed: seed of the per-class shuffle.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no class subfolders, a class without images, a single class, or
            C not 1 or 3.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder: {root} is not a folder")
    c, h, w = image_shape
    if c not in (1, 3):
        raise ValueError(f"image folder: the model has {c} channels, expected 1 or 3")
    classes = _class_folders(root)
    if not classes:
        raise ValueError(
            f"image folder {root}: no class subfolders, expected one subfolder of "
            "images per class (torchvision ImageFolder layout)"
        )
    empty = [name for name, files in classes if not files]
    if empty:
        raise ValueError(f"image folder {root}: no images in class folder(s) {empty}")
    if len(classes) < 2:
        raise ValueError(
            f"image folder {root}: one class ({classes[0][0]!r}), expected at least 2 "
            "(one to forget and the rest to retain)"
        )
    mode = "L" if c == 1 else "RGB"
    rng = np.random.default_rng(split_seed)
    parts: dict[str, list] = {"train": [], "holdout": []}
    for k, (_, files) in enumerate(classes):
        arrays = []
        for f in files:
            with Image.open(f) as img:
                img = img.convert(mode)
                if img.size != (w, h):
                    img = img.resize((w, h), Image.BILINEAR)
                arrays.append(np.asarray(img, dtype=np.float32).reshape(h, w, c))
        x = torch.tensor(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0
        order = torch.as_tensor(rng.permutation(len(files)))
        n_ho = int(len(files) * holdout_fraction)
        y = torch.full((len(files),), k, dtype=torch.long)
        parts["holdout"].append((x[order[:n_ho]], y[order[:n_ho]]))
        parts["train"].append((x[order[n_ho:]], y[order[n_ho:]]))
    train, holdout = (
        ImageData(torch.cat([a for a, _ in v]), torch.cat([b for _, b in v]))
        for v in (parts["train"], parts["holdout"])
    )
    logger.info(
        "image folder %s: %d classes %s, %d train / %d held-out images",
        root,
        len(classes),
        [name for name, _ in classes],
        len(train),
        len(holdout),
    )
    return DatasetSplits("folder", train, holdout, len(classes))


def check_class_count(data: DatasetSplits, model_classes: int, where: str) -> None:
    """Raise ``ValueError`` unless ``data`` has exactly the model's number of classes.

    Label k of the data must mean class k of the model, so a folder with fewer or
    more classes than the model's class embeddings (minus the null label) is refused.
    """
    if data.num_classes != model_classes:
        raise ValueError(
            f"{where}: the data ({data.name}) has {data.num_classes} classes, the "
            f"model has {model_classes} (labels 0..{model_classes - 1}, and label "
            f"{model_classes} is the classifier-free-guidance null label); expected the "
            "same number"
        )


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
