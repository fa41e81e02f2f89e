"""The judge: a classifier trained by us on real data, used to score generated samples.

digits: an MLP on the 64 pixels; mnist: a small CNN; cifar10: a small ResNet. No weights
are downloaded. ``features`` (the penultimate layer) feeds the Frechet distance.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from trainkit import load_checkpoint, make_generator, progress_bar, save_checkpoint
from unlearning.data import ImageData, sample_batch, to_device

logger = logging.getLogger(__name__)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(c_out)
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )
        )

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(h)) + self.skip(x))


class Judge(nn.Module):
    """Classifier with a feature head: ``features(x)`` (B, d) and ``forward`` logits."""

    def __init__(self, dataset: str, num_classes: int = 10) -> None:
        super().__init__()
        self.dataset = dataset
        if dataset == "digits":
            self.body = nn.Sequential(
                nn.Flatten(),
                nn.Linear(64, 256),
                nn.ReLU(),
                nn.Dropout(0.2),
                nn.Linear(256, 64),
                nn.ReLU(),
            )
            d = 64
        elif dataset == "mnist":
            self.body = nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(64 * 4 * 4, 128),
                nn.ReLU(),
            )
            d = 128
        elif dataset == "cifar10":
            self.body = nn.Sequential(
                nn.Conv2d(3, 64, 3, 1, 1, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(),
                _Block(64, 64, 1),
                _Block(64, 128, 2),
                _Block(128, 256, 2),
                _Block(256, 512, 2),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            d = 512
        else:
            raise ValueError(f"dataset: got {dataset!r}, expected digits/mnist/cifar10")
        self.head = nn.Linear(d, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, d) for images x in [-1, 1]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K)."""
        return self.head(self.features(x))


JUDGE_BUDGET = {  # steps, batch, lr
    "digits": (2000, 128, 1e-3),
    "mnist": (2000, 128, 1e-3),
    "cifar10": (20000, 128, 1e-3),
}


@torch.no_grad()
def accuracy(judge: Judge, data: ImageData, batch_size: int = 1024) -> float:
    """Fraction of ``data`` the judge labels correctly."""
    judge.eval()
    dev = next(judge.parameters()).device
    correct = 0
    for lo in range(0, len(data), batch_size):
        x = data.images[lo : lo + batch_size].to(dev)
        y = data.labels[lo : lo + batch_size].to(dev)
        correct += int((judge(x).argmax(1) == y).sum())
    return correct / len(data)


def train_judge(
    dataset: str,
    train: ImageData,
    holdout: ImageData,
    *,
    num_classes: int = 10,
    seed: int = 0,
    device: str | torch.device = "cpu",
    steps: int | None = None,
    progress: bool = False,
    min_accuracy: float = 0.95,
) -> tuple[Judge, float]:
    """Train the judge on real ``train`` images; return it and its held-out accuracy.

    Raises:
        RuntimeError: held-out accuracy below ``min_accuracy``.
    """
    n_steps, batch, lr = JUDGE_BUDGET[dataset]
    n_steps = steps or n_steps
    torch.manual_seed(seed)
    judge = Judge(dataset, num_classes).to(device)
    data = to_device(train, device)
    gen = make_generator(seed, "judge", device=device)
    opt = torch.optim.Adam(judge.parameters(), lr=lr, weight_decay=1e-4)
    judge.train()
    for _ in progress_bar(range(n_steps), desc="judge", disable=not progress):
        x, y = sample_batch(data, batch, gen)
        if dataset == "cifar10":  # random horizontal flip
            flip = torch.rand(x.shape[0], device=x.device, generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        # Small pixel noise makes the judge less brittle on imperfect samples.
        x = x + 0.05 * torch.randn(x.shape, generator=gen, device=x.device)
        loss = F.cross_entropy(judge(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    acc = accuracy(judge, holdout)
    logger.info("judge (%s): held-out accuracy %.4f", dataset, acc)
    if acc < min_accuracy:
        raise RuntimeError(
            f"judge held-out accuracy {acc:.4f} is below the required {min_accuracy}"
        )
    judge.eval()
    return judge, acc


def save_judge(judge: Judge, path, accuracy_: float) -> None:
    """Save the judge's weights and held-out accuracy (atomic)."""
    save_checkpoint(
        {
            "dataset": judge.dataset,
            "num_classes": judge.head.out_features,
            "state_dict": judge.state_dict(),
            "holdout_accuracy": accuracy_,
        },
        path,
    )


def load_judge(path, device: str | torch.device = "cpu") -> tuple[Judge, float]:
    """Load a judge written by :func:`save_judge`."""
    state = load_checkpoint(path)
    judge = Judge(state["dataset"], state["num_classes"])
    judge.load_state_dict(state["state_dict"])
    return judge.to(device).eval(), float(state["holdout_accuracy"])


class JudgeEnsemble:
    """Several judges of one dataset trained with different seeds (issue 15, item 4).

    ``probs(images)`` gives the (J, N, K) class probabilities that
    :func:`unlearning.metrics.ensemble_forget_metrics` reads; ``features(images)`` are
    the first judge's penultimate features (the Frechet / precision-recall space).
    """

    def __init__(self, judges: list[Judge], accuracies: list[float]) -> None:
        if not judges:
            raise ValueError("judges: got an empty list, expected at least one judge")
        if len(accuracies) != len(judges):
            raise ValueError(
                f"accuracies: got {len(accuracies)} for {len(judges)} judges, "
                "expected one per judge"
            )
        self.judges = judges
        self.accuracies = [float(a) for a in accuracies]

    def __len__(self) -> int:
        return len(self.judges)

    @property
    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of every judge's weights, in order.

        Cells measured by the same ensemble carry the same value.
        """
        from trainkit import state_fingerprint

        return state_fingerprint(
            {f"{i}.{k}": v for i, j in enumerate(self.judges)
             for k, v in j.state_dict().items()}
        )

    @torch.no_grad()
    def probs(self, images: torch.Tensor, batch: int = 1024):
        """(J, N, K) softmax outputs as a NumPy array."""
        import numpy as np

        out = []
        for judge in self.judges:
            judge.eval()
            dev = next(judge.parameters()).device
            ps = [
                torch.softmax(judge(images[lo : lo + batch].to(dev)), dim=1).cpu()
                for lo in range(0, len(images), batch)
            ]
            out.append(torch.cat(ps).numpy())
        return np.stack(out)

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch: int = 1024):
        """(N, d) penultimate features of the first judge as a NumPy array."""
        judge = self.judges[0]
        judge.eval()
        dev = next(judge.parameters()).device
        return torch.cat(
            [
                judge.features(images[lo : lo + batch].to(dev)).cpu()
                for lo in range(0, len(images), batch)
            ]
        ).numpy()


def train_judge_ensemble(
    dataset: str,
    train: ImageData,
    holdout: ImageData,
    seeds: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
    **kwargs,
) -> JudgeEnsemble:
    """One :func:`train_judge` per seed (``kwargs`` go to each call)."""
    if len(seeds) == 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: got {list(seeds)}, expected distinct seeds, >= 1")
    pairs = [train_judge(dataset, train, holdout, seed=s, **kwargs) for s in seeds]
    return JudgeEnsemble([j for j, _ in pairs], [a for _, a in pairs])


def save_judge_ensemble(ensemble: JudgeEnsemble, path) -> None:
    """Save every judge of the ensemble in one file (atomic)."""
    save_checkpoint(
        {
            "judges": [
                {
                    "dataset": j.dataset,
                    "num_classes": j.head.out_features,
                    "state_dict": j.state_dict(),
                    "holdout_accuracy": a,
                }
                for j, a in zip(ensemble.judges, ensemble.accuracies, strict=True)
            ]
        },
        path,
    )


def load_judge_ensemble(path, device: str | torch.device = "cpu") -> JudgeEnsemble:
    """Load an ensemble written by :func:`save_judge_ensemble`."""
    state = load_checkpoint(path)
    judges, accs = [], []
    for entry in state["judges"]:
        j = Judge(entry["dataset"], entry["num_classes"])
        j.load_state_dict(entry["state_dict"])
        judges.append(j.to(device).eval())
        accs.append(float(entry["holdout_accuracy"]))
    return JudgeEnsemble(judges, accs)
