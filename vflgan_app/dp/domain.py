"""The decoding schema under DP: declared public domains, and a DP release of the rest.

Without DP a party's schema (:meth:`TableSchema.fit`) holds its exact categories (a
value seen in one row included), means and standard deviations; it is sent to the
server in the handshake and decodes every published row. Under DP each column's domain
comes instead from

* a **declared public domain** (``dp.public-domain``; bounded columns declared with
  their bounds): categories, or ``low``/``high`` with the z-score centre and scale
  ``(low + high) / 2`` and ``(high - low) / 2``; nothing is read from the table; or
* a **DP release** (:func:`private_schema`, when the plan has a schema budget): noisy
  counts with a threshold. A categorical column releases the values whose count plus
  Gaussian noise passes a threshold; a numeric column does the same with the
  power-of-two bucket (sign, octave, integral or not) of each value
  (:func:`numeric_bucket`), and its bounds are the edges of the released buckets.

Either way the column gets ``clip=True``: a real value outside its domain is clipped
(numbers) or encoded as the column's fallback category at the party, never released.

**Privacy of the release** (docs/privacy.md, "The decoding schema"). Party k releases
the histograms of its m columns that need one. Replacing one row moves, in each
histogram, one count down and one up: L2 sensitivity ``sqrt(2 m)`` over the whole
release, so noise std ``sigma_s * sqrt(2 m)`` per count makes it one Gaussian mechanism
of noise multiplier ``sigma_s`` (:attr:`DPPlan.schema_noise_multiplier`), composed once
with training by the accountant. Only values present in the table get a noisy count;
the one value that is present in one of two neighbouring tables and not the other has
count 1, and is released with probability ``p = Phi_bar((tau - 1) / std)``. The
threshold ``tau`` is set so that ``p = schema_delta / (K m)``: summed over every column
of every party, at most ``schema_delta`` is added to delta and ``-log(1 -
schema_delta)`` to epsilon.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Hashable, Mapping
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch

from vflgan_app.data.schema import (
    DOMAIN_SETTING,
    ColumnSpec,
    TableSchema,
    category_keys,
    public_column_spec,
    sort_categories,
)
from vflgan_app.dp.plan import DPPlan, NoiseSource

logger = logging.getLogger(__name__)

__all__ = ["BUCKET_EXPONENTS", "bucket_edges", "numeric_bucket", "private_schema",
           "release_counts", "release_parameters", "release_probability",
           "release_threshold"]

#: Octaves of the numeric buckets: |v| in [2^e, 2^(e+1)) for e in this range; smaller
#: magnitudes count as zero, larger ones fall in the top octave.
BUCKET_EXPONENTS = (-32, 64)


# ---------------------------------------------------------------------------------
# noisy counts with a threshold


def release_threshold(std: float, p: float) -> float:
    """The threshold at which a count of 1 plus N(0, std^2) passes with probability p."""
    return 1.0 + std * -NormalDist().inv_cdf(p)


def release_parameters(plan: DPPlan, columns: int) -> tuple[float, float]:
    """(noise std per count, threshold) of a party releasing ``columns`` histograms.

    std = ``sigma_s * sqrt(2 m)`` (replace-one L2 sensitivity ``sqrt(2 m)``); the
    threshold makes a count of 1 pass with probability ``schema_delta / (K m)``.
    """
    m = int(columns)
    if plan.schema_noise_multiplier is None or m < 1:
        raise ValueError(f"columns: got {columns} with schema noise "
                         f"{plan.schema_noise_multiplier}; expected >= 1 and a budget")
    std = plan.schema_noise_multiplier * math.sqrt(2 * m)
    p = plan.schema_delta / (max(plan.num_parties, 1) * m)
    return std, release_threshold(std, p)


def release_probability(count: int, std: float, threshold: float) -> float:
    """Probability that ``count`` plus N(0, std^2) reaches ``threshold``."""
    return 1.0 - NormalDist(count, std).cdf(threshold)


def release_counts(counts: Mapping[Hashable, int], *, std: float, threshold: float,
                   generator: torch.Generator) -> dict[Hashable, float]:
    """The keys whose count plus Gaussian noise reaches ``threshold``, with that count.

    Only keys present (count >= 1) get noise; they are drawn in sorted order, so the
    result depends on the generator and the counts only.
    """
    keys = sorted(counts, key=repr)
    noise = torch.randn(len(keys), generator=generator, dtype=torch.float64) * std
    return {k: counts[k] + float(z) for k, z in zip(keys, noise.tolist(), strict=True)
            if counts[k] + float(z) >= threshold}


# ---------------------------------------------------------------------------------
# numeric buckets


def numeric_bucket(value: float) -> tuple[int, int, bool]:
    """``(sign, octave, integral)`` of a number: the key a numeric column counts.

    ``sign`` is 0 for zero (|v| < 2^-32 included), else +1 / -1; ``octave`` is
    ``floor(log2 |v|)`` within :data:`BUCKET_EXPONENTS`; ``integral``: v is a whole number.
    """
    v = float(value)
    lo, hi = BUCKET_EXPONENTS
    if not math.isfinite(v):
        return (1 if v > 0 else -1), hi, False
    integral = v.is_integer()
    if abs(v) < 2.0**lo:
        return 0, 0, integral
    e = min(max(math.floor(math.log2(abs(v))), lo), hi)
    return (1 if v > 0 else -1), e, integral


def bucket_edges(sign: int, octave: int) -> tuple[float, float]:
    """The ``[low, high]`` a bucket spans (zero: ``[0, 0]``)."""
    if sign == 0:
        return 0.0, 0.0
    a, b = 2.0**octave, 2.0 ** (octave + 1)
    return (a, b) if sign > 0 else (-b, -a)


def _integer_span(sign: int, octave: int) -> tuple[float, float]:
    """The smallest and largest whole number of a bucket.

    Buckets are ``[2^e, 2^(e+1))`` for positive numbers, ``(-2^(e+1), -2^e]`` for
    negative ones.
    """
    if sign == 0:
        return 0.0, 0.0
    a, b = 2.0**octave, 2.0 ** (octave + 1)
    lo, hi = float(math.ceil(a)), float(math.ceil(b) - 1)
    return (lo, hi) if sign > 0 else (-hi, -lo)


def _numeric_dp_spec(name: str, released: Mapping[tuple, float]) -> ColumnSpec:
    # integral keys exist only for octaves >= 0 (and zero), so every span is non-empty
    integer = all(integral for _, _, integral in released)
    edges = [(_integer_span if integer else bucket_edges)(s, e) for s, e, _ in released]
    low, high = min(e[0] for e in edges), max(e[1] for e in edges)
    half = (high - low) / 2
    return ColumnSpec(name, "numeric", mean=(low + high) / 2, std=half if half > 0 else 1.0,
                      integer=integer, low=low, high=high, clip=True, domain="dp")


def _categorical_dp_spec(base: ColumnSpec, released: Mapping[str, float]) -> ColumnSpec:
    cats = sort_categories(list(released), base.value_type)
    fallback = max(cats, key=lambda k: released[k])  # post-processing of the release
    return ColumnSpec(base.name, "categorical", categories=cats,
                      value_type=base.value_type, clip=True, fallback=fallback,
                      domain="dp")


# ---------------------------------------------------------------------------------
# the party's schema under DP


def private_schema(schema: TableSchema, table: pd.DataFrame | None, *,
                   public_domain: Mapping[str, Mapping], plan: DPPlan,
                   party_id: int) -> TableSchema:
    """A party's schema under DP: declared domains, and a DP release of the rest.

    Args:
        schema: the party's exact schema (:meth:`TableSchema.fit`): only the names,
            kinds, categorical value types and bounded columns' bounds are read.
        table: the party's real values of its non-bounded columns (rows in any order).
        public_domain: the checked ``dp.public-domain`` declaration (columns of other
            parties are ignored here).
        plan: the DP plan (schema noise, thresholds, noise seeding).
        party_id: this party (its noise stream).

    Returns:
        The schema every column of which is ``domain="public"`` or ``"dp"``.

    Raises:
        ValueError: a column with no declared domain when the plan has no schema
            budget, or a date/time column with none; a declaration that does not fit
            its column; a column none of whose values passes the threshold (the
            message gives only public numbers).
    """
    specs: dict[str, ColumnSpec] = {}
    todo = []
    for c in schema.columns:
        if c.name in public_domain:
            specs[c.name] = public_column_spec(c.name, public_domain[c.name], c)
        elif c.kind == "bounded":  # declared with its bounds (image pixels)
            specs[c.name] = ColumnSpec(c.name, "bounded", low=c.low, high=c.high,
                                       clip=True, domain="public")
        elif c.datetime:  # power-of-two buckets of seconds since 1970: no usable range
            raise ValueError(
                f"party {party_id}: column {c.name!r} is a date/time ({c.datetime}) with "
                f"no public domain; under DP its range is neither read from the table "
                f"nor released with DP; expected it in {DOMAIN_SETTING} (e.g. "
                f'{{"{c.name}": {{"low": "2020-01-01", "high": "2030-01-01"}}}}: '
                "date/times as text, or seconds since 1970-01-01)")
        else:
            todo.append(c)
    if todo and plan.schema_noise_multiplier is None:
        c = todo[0]
        example = ('{"%s": {"categories": [...]}}' if c.kind == "categorical"
                   else '{"%s": {"low": ..., "high": ...}}') % c.name
        raise ValueError(
            f"party {party_id}: column {c.name!r} ({c.kind}) has no public domain, and "
            f"dp.schema-epsilon-fraction is 0, so it cannot be released with DP; "
            f"expected it in {DOMAIN_SETTING} (e.g. {example}) or "
            "dp.schema-epsilon-fraction > 0"
            + (f" (also undeclared: {[t.name for t in todo[1:]][:10]})"
               if len(todo) > 1 else "")
        )
    if todo:
        if table is None or any(c.name not in table.columns for c in todo):
            raise ValueError(
                f"party {party_id}: the real values of {[c.name for c in todo][:10]} are "
                "not available to release their domain with DP; expected a PartyData "
                "from prepare_party (it keeps them)"
            )
        m = len(todo)
        std, threshold = release_parameters(plan, m)
        gen = NoiseSource(plan.noise_seed, "schema", party_id)(0)
        for c in todo:
            if c.kind == "categorical":
                counts = Counter(category_keys(table[c.name], c.value_type).tolist())
            else:
                counts = Counter(numeric_bucket(v) for v in
                                 table[c.name].to_numpy(dtype=np.float64).tolist())
            released = release_counts(counts, std=std, threshold=threshold,
                                      generator=gen)
            if not released:
                raise ValueError(
                    f"party {party_id}: column {c.name!r} ({c.kind}): no "
                    f"{'value' if c.kind == 'categorical' else 'range bucket'} of the "
                    f"{len(table)} rows passed the DP release threshold {threshold:.1f} "
                    f"(noise std {std:.1f}); expected its domain in {DOMAIN_SETTING}, "
                    "or a larger dp.schema-epsilon-fraction or dp.target-epsilon"
                )
            specs[c.name] = (_categorical_dp_spec(c, released) if c.kind == "categorical"
                             else _numeric_dp_spec(c.name, released))
        logger.info("party %d: released the domain of %d column(s) with DP (noise std "
                    "%.3g per count, threshold %.3g)", party_id, m, std, threshold)
    return TableSchema(tuple(specs[c.name] for c in schema.columns))
