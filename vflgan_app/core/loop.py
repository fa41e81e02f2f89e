"""The one training loop: step, log, checkpoint, stop (nanoGPT's order), for every entry point.

``Coordinator.fit``, the Python API, the CLI, the ServerApp and the drivers all train
through :func:`fit`. It runs exact steps (``steps_per_round = 1``: one round trip per
step) or chunks of K steps (the communication-efficient approximation), updates the
progress bar and log, and, given a checkpoint folder, saves resumable checkpoints
(each party its own files, the server D_S and progress) and turns any fault into
:class:`~vflgan_app.errors.RunInterrupted` naming the checkpoint to resume from.

A DP budget stop (:class:`~vflgan_app.errors.PrivacyBudgetExceeded`) is not a fault:
the parties are brought up to date and the exception propagates as it is, so the
caller can publish what the budget paid for.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

from trainkit import progress_bar
from vflgan_app.core.checkpoint import (
    latest_step,
    load_server_checkpoint,
    save_server_checkpoint,
)
from vflgan_app.core.protocol import Call
from vflgan_app.errors import PrivacyBudgetExceeded, RunInterrupted

logger = logging.getLogger(__name__)


def fit(
    coordinator,
    steps: int,
    *,
    steps_per_round: int = 1,
    checkpoint_root: str | Path | None = None,
    checkpoint_every: int = 0,
    progress: bool = False,
    log_every: int = 100,
    on_step: Callable[[int], None] | None = None,
):
    """Train ``coordinator`` until its step is ``steps`` (resumes from its current step).

    Args:
        coordinator: a coordinator after its handshake.
        steps: the step to train to.
        steps_per_round: K; 1 = the exact algorithm, K > 1 = chunked mode.
        checkpoint_root: the server's checkpoint folder; None = no checkpoints.
        checkpoint_every: steps between checkpoints (0 = only at the end).
        progress: show a progress bar.
        log_every: steps between progress-bar / debug-log updates.
        on_step: called with the step count after each step (or chunk).

    Returns:
        The coordinator's loss history.

    Raises:
        RunInterrupted: with a checkpoint folder, any fault (a party that does not
            answer, answers with an error or a malformed reply), naming the newest
            checkpoint.
        PrivacyBudgetExceeded: the DP budget stops training (parties flushed).
    """
    last = latest_step(checkpoint_root) if checkpoint_root is not None else None
    bar = progress_bar(total=steps, initial=coordinator.step, desc="VFLGAN",
                       disable=not progress)
    try:
        while coordinator.step < steps:
            before = coordinator.step
            # 1. step (or chunk of K steps)
            if steps_per_round > 1:
                d_loss = coordinator.train_chunk(min(steps_per_round, steps - before))[-1]
            else:
                d_loss = coordinator.train_step()
            # 2. log
            bar.update(coordinator.step - before)
            if coordinator.step % log_every < coordinator.step - before \
                    or coordinator.step == steps:
                _log(coordinator, bar, d_loss)
            if on_step is not None:
                on_step(coordinator.step)
            # 3. checkpoint
            if checkpoint_root is not None and checkpoint_every \
                    and coordinator.step % checkpoint_every == 0 and coordinator.step < steps:
                last = save_checkpoint_now(coordinator, checkpoint_root)
        # 4. stop: deliver the last gradients (and checkpoint the end)
        if checkpoint_root is not None:
            save_checkpoint_now(coordinator, checkpoint_root)
        else:
            coordinator.flush()
    except PrivacyBudgetExceeded:
        coordinator.flush()
        raise
    except Exception as e:
        if checkpoint_root is None:
            raise
        where = (f"resume from checkpoint-{last} (run config resume=true)" if last is not None
                 else "no checkpoint was written yet")
        raise RunInterrupted(
            f"training stopped at step {coordinator.step}: {type(e).__name__}: {e}; {where}",
            last) from e
    finally:
        bar.close()
    return coordinator.history


def _log(coordinator, bar, d_loss: float) -> None:
    history = coordinator.history
    g = history.g_loss[max(history.g_loss)] if history.g_loss else math.nan
    extra = {k: v for f in coordinator.postfix_providers for k, v in f().items()}
    bar.set_postfix(d_loss=f"{d_loss:.3f}", g_loss=f"{g:.3f}", **extra)
    logger.debug("step %d d_loss %.4f g_loss %.4f", coordinator.step, d_loss, g)


def save_checkpoint_now(coordinator, root: str | Path) -> int:
    """Flush, ask every party to save its own state, then save the server's."""
    coordinator.flush()
    step = coordinator.step
    coordinator.transport.exchange(
        {p: [Call("save_checkpoint", {"step": step})] for p in coordinator.party_ids})
    state = coordinator.state_dict()
    state["schemas"] = {str(p): coordinator.hellos[p]["schema"] for p in coordinator.party_ids}
    save_server_checkpoint(root, step, state)
    logger.info("checkpoint-%d saved", step)
    return step


def resume(coordinator, root: str | Path, step: int | None = None) -> int:
    """Restore the server and every party from ``checkpoint-<step>`` (default: newest).

    Raises:
        FileNotFoundError: no complete checkpoint under ``root``.
        ValueError: a party's schema differs from the one saved in the checkpoint.
    """
    step = latest_step(root) if step is None else step
    if step is None:
        raise FileNotFoundError(f"resume: no complete checkpoint under {root}")
    state = load_server_checkpoint(root, step)
    for p in coordinator.party_ids:
        saved = state.get("schemas", {}).get(str(p))
        if saved is not None and saved != coordinator.hellos[p]["schema"]:
            raise ValueError(f"resume: party {p} now holds another column schema than in "
                             f"checkpoint-{step}; refusing to resume")
    state.pop("schemas", None)
    coordinator.load_state_dict(state)
    coordinator.transport.exchange(
        {p: [Call("load_checkpoint", {"step": step})] for p in coordinator.party_ids})
    logger.info("resumed from checkpoint-%d", step)
    return step
