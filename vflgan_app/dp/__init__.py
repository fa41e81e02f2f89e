"""DP-VFLGAN in composable parts (docs/privacy.md).

* :mod:`~vflgan_app.dp.plan`: ``DPConfig`` -> the :class:`DPPlan` every participant shares
  (calibrated sigma, clip, q); private noise seeding.
* :mod:`~vflgan_app.dp.mechanisms`: the arithmetic (clip + Gaussian noise of a batch
  gradient; per-sample gradients, clipping and aggregation).
* :mod:`~vflgan_app.dp.processors`: paper and strict mode as critic rules for the
  party and server slots of the core.
* :mod:`~vflgan_app.dp.domain`: the decoding schema under DP (declared public domains,
  a noisy-count release of the rest).
* :mod:`~vflgan_app.dp.accountant` (history, budget stop, metadata) and
  :mod:`~vflgan_app.dp.analysis` (the RDP maths, on dp-accounting).
"""
