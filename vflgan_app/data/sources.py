"""Built-in datasets and their paper splits into parties.

``digits`` and ``breast_cancer`` ship inside scikit-learn (the embedded defaults). MNIST,
UCI Adult and Wine Quality are read from a data root (``--data-root`` or the
``VFLGAN_DATA_ROOT`` environment variable), laid out as::

    <root>/mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    <root>/adult/adult.data            (and adult.test, joined when present)
    <root>/wine/winequality-{red,white}.csv

When a file is missing and ``download=True``, the public original is fetched
(torchvision for MNIST, UCI for the others); there is no network in tests.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vflgan_app.config import DATASETS

logger = logging.getLogger(__name__)

ID_COLUMN = "record_id"


@dataclass
class Dataset:
    """A joined table plus how it is split between parties.

    Attributes:
        name: dataset name.
        table: the joined table, with an ``record_id`` column.
        party_columns: each party's columns, party 0 first.
        categorical: categorical column names.
        bounded: ``{column: (low, high)}`` for pixel columns.
        image_shape: ``(H, W)`` for image data (rows split between parties), else None.
        labels: a shared attribute not used in training (digit labels), or None.
        target: the column TSTR predicts (tabular), or None.
    """

    name: str
    table: pd.DataFrame
    party_columns: list[list[str]]
    categorical: list[str] = field(default_factory=list)
    bounded: dict[str, tuple[float, float]] = field(default_factory=dict)
    image_shape: tuple[int, int] | None = None
    labels: np.ndarray | None = None
    target: str | None = None

    @property
    def is_image(self) -> bool:
        """Whether rows are images split by pixel rows."""
        return self.image_shape is not None

    def party_tables(self) -> list[pd.DataFrame]:
        """Per-party tables, each with the id column (what each party would hold)."""
        from vflgan_app.data.partition import split_vertical

        return split_vertical(self.table, self.party_columns, ID_COLUMN)


def resolve_data_root(data_root: str | os.PathLike | None) -> Path | None:
    """Return the data root from the argument or ``VFLGAN_DATA_ROOT`` (or None)."""
    root = data_root or os.environ.get("VFLGAN_DATA_ROOT")
    return Path(root) if root else None


def load_dataset(
    name: str,
    data_root: str | os.PathLike | None = None,
    download: bool = False,
    max_rows: int | None = None,
    num_parties: int = 2,
) -> Dataset:
    """Load a built-in dataset with its paper split.

    Args:
        name: one of ``DATASETS``.
        data_root: folder with the offline copies (see module docstring).
        download: fetch missing files from the public source (needs a network).
        max_rows: keep only the first ``max_rows`` rows (quick runs).
        num_parties: for image data, split the pixel rows into this many bands
            (2 = the paper's top/bottom halves).

    Raises:
        ValueError: unknown dataset name.
        FileNotFoundError: files missing and ``download`` is off.
    """
    loaders = {
        "digits": lambda: _digits(num_parties),
        "breast_cancer": _breast_cancer,
        "mnist": lambda: _mnist(resolve_data_root(data_root), download, num_parties),
        "adult": lambda: _adult(resolve_data_root(data_root), download),
        "wine_red": lambda: _wine("red", resolve_data_root(data_root), download),
        "wine_white": lambda: _wine("white", resolve_data_root(data_root), download),
    }
    if name not in loaders:
        raise ValueError(f"dataset: got {name!r}, expected one of {list(DATASETS)}")
    ds = loaders[name]()
    if max_rows is not None and max_rows < len(ds.table):
        ds.table = ds.table.iloc[:max_rows].reset_index(drop=True)
        if ds.labels is not None:
            ds.labels = ds.labels[:max_rows]
    return ds


# ---------------------------------------------------------------------------------
# images


def _image_dataset(
    name: str, images: np.ndarray, labels: np.ndarray, high: float, num_parties: int
) -> Dataset:
    n, h, w = images.shape
    if not 2 <= num_parties <= h:
        raise ValueError(
            f"num_parties: got {num_parties}, expected 2..{h} for {h}-row images"
        )
    cols = [f"px_{r}_{c}" for r in range(h) for c in range(w)]
    table = pd.DataFrame(images.reshape(n, h * w).astype(np.float32), columns=cols)
    table.insert(0, ID_COLUMN, np.arange(n))
    # contiguous bands of pixel rows; 2 parties = rows [0, h/2) and [h/2, h)
    bounds = np.linspace(0, h, num_parties + 1).round().astype(int)
    party_columns = [
        [f"px_{r}_{c}" for r in range(bounds[k], bounds[k + 1]) for c in range(w)]
        for k in range(num_parties)
    ]
    return Dataset(
        name,
        table,
        party_columns,
        bounded={c: (0.0, high) for c in cols},
        image_shape=(h, w),
        labels=labels.astype(np.int64),
    )


def _digits(num_parties: int) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return _image_dataset("digits", d.images, d.target, 16.0, num_parties)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array.

    Raises:
        ValueError: the file is not an IDX file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype = {
        0x08: np.uint8,
        0x09: np.int8,
        0x0B: ">i2",
        0x0C: ">i4",
        0x0D: ">f4",
        0x0E: ">f8",
    }[data[2]]
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(
            f"{path}: expected {np.prod(shape)} values, found {arr.size} (truncated?)"
        )
    return arr.reshape(shape)


def _find(raw: Path, stem: str) -> Path | None:
    for cand in (raw / stem, raw / f"{stem}.gz"):
        if cand.exists():
            return cand
    return None


def _mnist(root: Path | None, download: bool, num_parties: int) -> Dataset:
    raw = (root / "mnist" / "MNIST" / "raw") if root else None
    splits = []
    for prefix in ("train", "t10k"):
        img = _find(raw, f"{prefix}-images-idx3-ubyte") if raw else None
        lab = _find(raw, f"{prefix}-labels-idx1-ubyte") if raw else None
        if img and lab:
            splits.append((prefix, img, lab))
    if not splits:
        if not download:
            raise FileNotFoundError(
                "MNIST IDX files not found under "
                f"{raw or '<data root>/mnist/MNIST/raw'}; pass --data-root pointing at a "
                "folder that has them, or --download on a machine with a network"
            )
        import torchvision

        target = root or Path("data")
        torchvision.datasets.MNIST(str(target / "mnist"), train=True, download=True)
        return _mnist(target, False, num_parties)
    # the paper trains on the training split; use it when present, else the test split
    prefix, img, lab = splits[0]
    if prefix != "train":
        logger.info("MNIST training split not found; using the %s split", prefix)
    images, labels = read_idx(img), read_idx(lab)
    return _image_dataset("mnist", images, labels, 255.0, num_parties)


# ---------------------------------------------------------------------------------
# tables


def _breast_cancer() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer(as_frame=True)
    table = d.frame.rename(columns={"target": "diagnosis"})
    table["diagnosis"] = np.where(table["diagnosis"] == 1, "benign", "malignant")
    table.insert(0, ID_COLUMN, np.arange(len(table)))
    feats = list(d.feature_names)
    # party 0: the 10 "mean" and 10 "error" features; party 1: the 10 "worst" features
    # and the diagnosis. The worst-vs-mean dependence is strong, so it tests cross-party
    # correlation well.
    p0 = [f for f in feats if not f.startswith("worst")]
    p1 = [f for f in feats if f.startswith("worst")] + ["diagnosis"]
    return Dataset(
        "breast_cancer", table, [p0, p1], categorical=["diagnosis"], target="diagnosis"
    )


ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
]
# the paper's split: party 0 holds the first eight columns, party 1 the rest (income)
ADULT_PARTIES = [ADULT_COLUMNS[:8], ADULT_COLUMNS[8:]]
ADULT_CATEGORICAL = [
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
    "income",
]
_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases"


def _fetch(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s", url)
    urllib.request.urlretrieve(url, dest)  # noqa: S310 (public dataset URL)


def _adult(root: Path | None, download: bool) -> Dataset:
    folder = (root or Path("data")) / "adult"
    train = folder / "adult.data"
    if not train.exists():
        if not download:
            raise FileNotFoundError(
                f"{train} not found; pass --data-root with adult/adult.data, or "
                "--download on a machine with a network"
            )
        _fetch(f"{_UCI}/adult/adult.data", train)
    frames = [
        pd.read_csv(
            train,
            header=None,
            names=ADULT_COLUMNS,
            skipinitialspace=True,
            na_values="?",
        )
    ]
    test = folder / "adult.test"
    if test.exists():  # the paper joins both splits (42,960 complete rows)
        frames.append(
            pd.read_csv(
                test,
                header=None,
                names=ADULT_COLUMNS,
                skiprows=1,
                skipinitialspace=True,
                na_values="?",
            )
        )
    table = pd.concat(frames, ignore_index=True).dropna().reset_index(drop=True)
    table["income"] = table["income"].str.rstrip(".")
    table.insert(0, ID_COLUMN, np.arange(len(table)))
    return Dataset(
        "adult",
        table,
        [list(p) for p in ADULT_PARTIES],
        categorical=list(ADULT_CATEGORICAL),
        target="income",
    )


WINE_PARTIES = [
    [
        "fixed acidity",
        "volatile acidity",
        "citric acid",
        "residual sugar",
        "chlorides",
        "free sulfur dioxide",
    ],
    ["total sulfur dioxide", "density", "pH", "sulphates", "alcohol", "quality"],
]


def read_csv_any(path: str | Path) -> pd.DataFrame:
    """A CSV in any common dialect: the delimiter (``,`` ``;`` tab ``|``) is sniffed.

    Raises:
        ValueError: the file is empty or its delimiter cannot be told (names the file).
    """
    import csv

    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        head = f.read(64 * 1024)
    if not head.strip():
        raise ValueError(f"{path}: the file is empty; expected a header row and data rows")
    try:
        dialect = csv.Sniffer().sniff(head.splitlines()[0] + "\n", delimiters=",;\t|")
        sep = dialect.delimiter
    except csv.Error:
        sep = ","  # one column: nothing to split
    return pd.read_csv(path, sep=sep, encoding="utf-8-sig")


def _wine(color: str, root: Path | None, download: bool) -> Dataset:
    path = (root or Path("data")) / "wine" / f"winequality-{color}.csv"
    if not path.exists():
        if not download:
            raise FileNotFoundError(
                f"{path} not found; pass --data-root with wine/winequality-{color}.csv, "
                "or --download on a machine with a network"
            )
        _fetch(f"{_UCI}/wine-quality/winequality-{color}.csv", path)
    table = read_csv_any(path)
    table.insert(0, ID_COLUMN, np.arange(len(table)))
    return Dataset(
        f"wine_{color}",
        table,
        [list(p) for p in WINE_PARTIES],
        categorical=["quality"],
        target="quality",
    )
