"""Score any model's synthetic data the same way: quality, utility, cross-party dependence.

An :class:`Evaluator` is built once per dataset (it trains the image feature extractor
and classifier on real data) and then scores VFLGAN, VertiGAN and the centralized
baseline alike. Every report shows each dependence metric for real data, the model, and
the model sampled with independent latents per party (the control).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from trainkit import progress_bar
from vflgan_app.data.partition import PartyData
from vflgan_app.data.sources import Dataset
from vflgan_app.eval import quality as metrics
from vflgan_app.eval.dependence import (
    dependence_report,
    mean_cross_party_correlation_error,
    targets_from_spans,
)
from vflgan_app.eval.plots import PlotInputs

logger = logging.getLogger(__name__)


class EvaluationReport(dict):
    """The evaluation's JSON-serialisable dict, carrying the arrays behind its plots.

    ``plot_inputs`` (a :class:`~vflgan_app.eval.plots.PlotInputs`) is an attribute, not
    a key: ``json.dumps`` and ``dict(...)`` see only the metrics, while
    :func:`vflgan_app.publish.write_report` finds the real, synthetic and control
    arrays it plots without another argument through every caller.
    """

    plot_inputs: PlotInputs | None = None


class Evaluator:
    """Metrics of synthetic data against one real dataset.

    Args:
        dataset: the built-in dataset (labels, target, image shape).
        parties_data: the prepared parties (encoded real columns, schemas).
        seed: seed of the metric models and the real train/hold-out split.
        ae_epochs: epochs of the image autoencoder (FD features).
        max_rows: cap on rows used by the slower metrics.
    """

    def __init__(
        self,
        dataset: Dataset,
        parties_data: Sequence[PartyData],
        seed: int = 0,
        ae_epochs: int = 10,
        max_rows: int = 10_000,
    ) -> None:
        self.dataset = dataset
        self.parties_data = list(parties_data)
        self.seed = seed
        self.max_rows = max_rows
        self.real = np.concatenate([p.x for p in parties_data], axis=1)
        widths = [p.schema.width for p in parties_data]
        self.party_slices = [
            slice(s, s + w) for s, w in zip(np.cumsum([0, *widths[:-1]]), widths)
        ]
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(self.real))
        cut = int(0.7 * len(perm))
        self.train_idx, self.holdout_idx = np.sort(perm[:cut]), np.sort(perm[cut:])
        # parties sort rows by id; the dataset's labels are in id order too (ids 0..N-1)
        self.labels = dataset.labels
        self.ae = self.classifier = None
        if dataset.is_image:
            self.ae = metrics.train_autoencoder(
                self.real, dataset.image_shape, ae_epochs, seed
            )
            self.real_features = metrics.encode_features(self.ae, self.real[:max_rows])
            if self.labels is not None:
                self.classifier = metrics.train_classifier(
                    self.real[self.train_idx], self.labels[self.train_idx], seed=seed
                )

    # ---------------------------------------------------------------------------------
    def _joined_schema_slices(self) -> tuple[list[str], list[slice]]:
        names, spans, offset = [], [], 0
        for p in self.parties_data:
            for name, sl in p.schema.column_slices().items():
                names.append(name)
                spans.append(slice(sl.start + offset, sl.stop + offset))
            offset += p.schema.width
        return names, spans

    def quality(self, synthetic: np.ndarray) -> dict:
        """FD (AE latent for images, data space for tables), IS analogue, TSTR.

        Also ``cross_party_corr_error``: the mean |corr error| over every cross-party
        column pair, against all real rows (``mean_cross_party_correlation_error``;
        the dependence report's ``corr_error_all`` is the same formula against the
        subsampled real_train split).
        """
        out: dict = {}
        if self.dataset.is_image:
            feats = metrics.encode_features(self.ae, synthetic[: self.max_rows])
            out["fd"] = metrics.frechet_distance(self.real_features, feats)
            out["fd_space"] = "autoencoder latent (trained on the real training split)"
            if self.classifier is not None:
                out["inception_score"] = metrics.inception_score(
                    metrics.predict_proba(self.classifier, synthetic[: self.max_rows])
                )
                real_is = metrics.predict_proba(
                    self.classifier, self.real[self.holdout_idx]
                )
                out["inception_score_real_holdout"] = metrics.inception_score(real_is)
        else:
            n = min(len(self.real), len(synthetic), self.max_rows)
            out["fd"] = metrics.frechet_distance(self.real[:n], synthetic[:n])
            out["fd_space"] = "encoded data space (z-scored numerics + one-hot)"
            if self.dataset.target:
                names, spans = self._joined_schema_slices()
                t = spans[names.index(self.dataset.target)]
                keep = np.ones(self.real.shape[1], bool)
                keep[t] = False
                out.update(
                    metrics.tstr_score(
                        self.real[:, keep],
                        self.real[:, t].argmax(1),
                        synthetic[:, keep],
                        synthetic[:, t].argmax(1),
                        seed=self.seed,
                    )
                )
        # all cross pairs against every real row (train + hold-out), unsubsampled
        out["cross_party_corr_error"] = mean_cross_party_correlation_error(
            self.real, synthetic, self.party_slices
        )
        return out

    def evaluate(
        self,
        model,
        n: int | None = None,
        seed: int = 0,
        dependence: bool = True,
        progress: bool | None = None,
    ) -> EvaluationReport:
        """Sample ``model`` (``sample_parts(n, seed, independent)``) and score it.

        Args:
            model: anything with ``sample_parts(n, seed, independent)``.
            n: rows to sample (default: as many as the real table).
            seed: sampling seed.
            dependence: also run the cross-party dependence report.
            progress: show a progress bar over the evaluation's stages; None = the
                model's ``config.progress`` (off for a model without a config).

        Returns:
            ``{"model": quality metrics, "control": the same for independent latents,
            "real": real-vs-real reference values, "dependence": dependence_report}``,
            with the arrays the publication step plots in ``.plot_inputs``.
        """
        if progress is None:
            progress = bool(getattr(getattr(model, "config", None), "progress", False))
        n = n or len(self.real)
        stages = ["sampling", "quality (model)", "quality (control)"]
        stages += ["dependence"] if dependence else []
        bar = progress_bar(total=len(stages), desc="evaluation", disable=not progress)

        def stage(name: str) -> None:
            bar.set_postfix_str(name)
            logger.debug("evaluation: %s", name)

        try:
            stage("sampling")
            synth = np.concatenate(model.sample_parts(n, seed), axis=1)
            control = np.concatenate(model.sample_parts(n, seed, independent=True), axis=1)
            bar.update()
            stage("quality (model)")
            report = EvaluationReport(n_samples=n, model=self.quality(synth))
            bar.update()
            stage("quality (control)")
            report["control"] = self.quality(control)
            bar.update()
            hold = self.real[self.holdout_idx]
            report["real"] = {
                "cross_party_corr_error_holdout_vs_all": (
                    mean_cross_party_correlation_error(self.real, hold, self.party_slices)
                )
            }
            if dependence:
                stage("dependence")
                report["dependence"] = self.dependence(
                    synth, control, on_stage=lambda s: stage(f"dependence: {s}")
                )
                bar.update()
        finally:
            bar.close()
        report.plot_inputs = PlotInputs(
            real=self.real,
            synthetic=synth,
            control=control,
            schemas=tuple(p.schema for p in self.parties_data),
            party_slices=tuple(self.party_slices),
            is_image=bool(self.dataset.is_image),
        )
        return report

    def dependence(
        self,
        synth: np.ndarray,
        control: np.ndarray,
        on_stage: Callable[[str], None] | None = None,
    ) -> dict:
        """The cross-party dependence report (``vflgan_app.eval.dependence``).

        ``on_stage`` is called with each metric family's name as it starts.
        """
        labels_tr = labels_ho = targets = None
        if self.labels is not None:
            labels_tr, labels_ho = (
                self.labels[self.train_idx],
                self.labels[self.holdout_idx],
            )
        if not self.dataset.is_image:
            # a few targets keep it fast: the dataset's target and each party's first column
            names, spans = self._joined_schema_slices()
            firsts = [next(iter(p.schema.column_slices())) for p in self.parties_data]
            chosen = [
                n for n in dict.fromkeys([self.dataset.target, *firsts]) if n in names
            ]
            targets = targets_from_spans(
                self.party_slices, [spans[names.index(n)] for n in chosen], chosen
            )
        return dependence_report(
            self.real[self.train_idx],
            self.real[self.holdout_idx],
            synth,
            control,
            self.party_slices,
            labels_train=labels_tr,
            labels_holdout=labels_ho,
            targets=targets,
            seed=self.seed,
            on_stage=on_stage,
        )
