"""What a shadow worker process runs: one call of the caller's fit callables.

Kept free of imports so that a spawned worker starts fast: it loads only this module
and whatever the callables themselves need.
"""

from __future__ import annotations


def fit_one(fit_and_sample, fit_and_features, rows, fit_seed: int, what: str):
    """Fit one shadow on ``rows`` with ``fit_seed``.

    Returns:
        (what ``fit_and_sample`` returned, what ``fit_and_features`` returned or
        ``None``).

    Raises:
        Exception: whatever a callable raises, with a note naming the shadow.
    """
    try:
        synthetic = fit_and_sample(rows, fit_seed)
        intermediate = None
        if fit_and_features is not None:
            intermediate = fit_and_features(rows, fit_seed)
    except Exception as e:
        e.add_note(f"while fitting {what} with fit seed {fit_seed}")
        raise
    return synthetic, intermediate
