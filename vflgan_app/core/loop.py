"""The one training loop: step, log, checkpoint, stop (nanoGPT's order), for every entry point.

``Coordinator.fit``, the Python API, the CLI, the ServerApp and the drivers all train
through :func:`fit`. It runs exact steps (``steps_per_round = 1``: one round trip per
step) or chunks of K steps (the communication-efficient approximation), updates the
progress bar and log, and, given a checkpoint folder, saves resumable checkpoints
(each party its own files, the server D_S and progress) and turns any fault into
:class:`~vflgan_app.errors.RunInterrupted` naming the checkpoint to resume from.

Checkpoints know their run (:class:`~vflgan_app.core.checkpoint.RunIdentity`): a fresh
run draws a run id and refuses a checkpoint folder that already holds checkpoints
(:func:`start_run`, unless ``overwrite``); :func:`resume` adopts the run id of the
checkpoint it restores, after checking the config fingerprint and that every party
holds that step of that run. The identity lives on the coordinator
(``coordinator.run_identity``) for the rest of the run.

A DP budget stop (:class:`~vflgan_app.errors.PrivacyBudgetExceeded`) is not a fault:
the parties are brought up to date and the exception propagates as it is, so the
caller can publish what the budget paid for.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trainkit import progress_bar
from vflgan_app.core.checkpoint import (
    DEFAULT_KEEP,
    RunIdentity,
    completed_steps,
    latest_step,
    load_server_checkpoint,
    read_server_identity,
    save_server_checkpoint,
    start_server_checkpoints,
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
    keep: int = DEFAULT_KEEP,
    fingerprint: Mapping[str, Any] | None = None,
    overwrite: bool = False,
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
        keep: checkpoints kept, by the server and by every party.
        fingerprint: the run's settings (:func:`~vflgan_app.core.checkpoint.
            config_fingerprint`), recorded in (and on resume checked against) every
            checkpoint; None = only the data (row count, id-list hash).
        overwrite: a fresh run may delete the checkpoints it finds in the folders.
        progress: show a progress bar.
        log_every: steps between progress-bar / debug-log updates.
        on_step: called with the step count after each step (or chunk).

    Returns:
        The coordinator's loss history.

    Raises:
        FileExistsError: a fresh run (no :func:`resume` before) finds checkpoints in
            its folders and not ``overwrite``.
        RunInterrupted: with a checkpoint folder, any fault (a party that does not
            answer, answers with an error or a malformed reply), naming the newest
            checkpoint.
        PrivacyBudgetExceeded: the DP budget stops training (parties flushed).
    """
    if checkpoint_root is not None and run_identity(coordinator) is None:
        start_run(coordinator, checkpoint_root, fingerprint=fingerprint, overwrite=overwrite)
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
                last = save_checkpoint_now(coordinator, checkpoint_root, keep=keep)
        # 4. stop: deliver the last gradients (and checkpoint the end)
        if checkpoint_root is not None:
            save_checkpoint_now(coordinator, checkpoint_root, keep=keep)
        else:
            coordinator.flush()
    except PrivacyBudgetExceeded:
        coordinator.flush()
        raise
    except Exception as e:
        if checkpoint_root is None:
            raise
        where = (f"resume from checkpoint-{last} (CLI --resume, run config "
                 "flower.resume=true)" if last is not None
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


def run_identity(coordinator) -> RunIdentity | None:
    """The run identity :func:`start_run` or :func:`resume` gave ``coordinator``."""
    return getattr(coordinator, "run_identity", None)


def run_fingerprint(coordinator, fingerprint: Mapping[str, Any] | None = None) -> dict:
    """``fingerprint`` plus the data every party holds (row count and id-list hash)."""
    ref = coordinator.hellos[coordinator.party_ids[0]]
    return {**(fingerprint or {}), "data.n_rows": int(ref["n_rows"]),
            "data.id_hash": str(ref["id_hash"])}


def start_run(coordinator, root: str | Path, *, fingerprint: Mapping[str, Any] | None = None,
              overwrite: bool = False) -> RunIdentity:
    """Begin a fresh run's checkpoints in ``root`` (and in every party's folder).

    Every folder is checked before anything is deleted: the server's, then each
    party's (a ``start_checkpoints`` call); with ``overwrite`` the parties delete theirs,
    then the server its own.

    Raises:
        FileExistsError: a folder holds checkpoints (of a previous run) and not
            ``overwrite``; or ``root`` holds files that are not checkpoints.
    """
    start_server_checkpoints(root, overwrite=overwrite)
    coordinator.transport.exchange(
        {p: [Call("start_checkpoints", {"overwrite": bool(overwrite)})]
         for p in coordinator.party_ids})
    start_server_checkpoints(root, overwrite=overwrite, remove=overwrite)
    identity = RunIdentity.new(run_fingerprint(coordinator, fingerprint))
    coordinator.run_identity = identity
    logger.info("run %s: checkpoints in %s", identity.run_id, root)
    return identity


def save_checkpoint_now(coordinator, root: str | Path, keep: int = DEFAULT_KEEP) -> int:
    """Flush, ask every party to save its own state, then save the server's.

    The server's folder (``COMPLETE``) is written last, so a checkpoint is resumable
    only once every party has written its own. A coordinator without a run identity
    starts a fresh run first (:func:`start_run`).
    """
    identity = run_identity(coordinator) or start_run(coordinator, root)
    coordinator.flush()
    step = coordinator.step
    coordinator.transport.exchange(
        {p: [Call("save_checkpoint", {**identity.to_call(step), "keep": int(keep)})]
         for p in coordinator.party_ids})
    state = coordinator.state_dict()
    state["schemas"] = {str(p): coordinator.hellos[p]["schema"] for p in coordinator.party_ids}
    save_server_checkpoint(root, step, state, identity, keep=keep)
    logger.info("checkpoint-%d saved", step)
    return step


def resume(coordinator, root: str | Path, step: int | None = None, *,
           fingerprint: Mapping[str, Any] | None = None) -> int:
    """Restore the server and every party from ``checkpoint-<step>`` (default: newest).

    Nothing is restored until everything is checked: the server's files are read, the
    checkpoint's fingerprint is compared with this run's, and every party confirms it
    holds that step of that run, with the same settings, readable
    (``check_checkpoint``). The run then continues under the checkpoint's run id.

    Args:
        coordinator: a coordinator after its handshake.
        root: the server's checkpoint folder.
        step: the checkpoint to resume (default: the newest complete one).
        fingerprint: this run's settings, as passed to :func:`fit`.

    Raises:
        FileNotFoundError: no complete checkpoint under ``root`` (or not ``step``), or a
            party lacks its folder of the step.
        ValueError: a setting differs from the checkpoint's (the message names the
            field), a party's folder belongs to another run, the folder holds
            checkpoints of several runs, a party's schema differs, or the checkpoint
            holds state (e.g. the DP accountant's) this run has no place for.
        CheckpointError: a file of the checkpoint is empty, truncated or corrupt.
    """
    root = Path(root)
    steps = completed_steps(root)
    step = (steps[-1] if steps else None) if step is None else int(step)
    if step is None or step not in steps:
        raise FileNotFoundError(f"resume: no complete checkpoint"
                                f"{'' if step is None else f'-{step}'} under {root} "
                                f"(complete: {steps or 'none'})")
    where = f"checkpoint-{step}"
    # 1. the server's own files, and which run wrote them
    saved = read_server_identity(root, step)
    runs = sorted({read_server_identity(root, s).run_id for s in steps})
    if len(runs) > 1:
        raise ValueError(f"resume: {root} holds checkpoints of {len(runs)} runs ({runs}); "
                         "expected one run per checkpoint folder")
    identity = RunIdentity.new(run_fingerprint(coordinator, fingerprint), saved.run_id)
    identity.check(saved, where)
    state = load_server_checkpoint(root, step)
    saved_extra, installed = set(state.get("extra", {})), set(coordinator.extra_state)
    if saved_extra != installed:  # e.g. the DP accountant's state
        raise ValueError(
            f"resume: {where} holds plug-in state {sorted(saved_extra)}, this run has "
            f"{sorted(installed)} installed (a DP checkpoint resumed without DP, or the "
            "reverse?); refusing to drop or invent it")
    for p in coordinator.party_ids:
        schema = state.get("schemas", {}).get(str(p))
        if schema is not None and schema != coordinator.hellos[p]["schema"]:
            raise ValueError(f"resume: party {p} now holds another column schema than in "
                             f"{where}; refusing to resume")
    # 2. every party holds this step of this run (before anything is restored)
    coordinator.transport.exchange(
        {p: [Call("check_checkpoint", identity.to_call(step))] for p in coordinator.party_ids})
    # 3. restore
    state.pop("schemas", None)
    coordinator.load_state_dict(state)
    coordinator.transport.exchange(
        {p: [Call("load_checkpoint", identity.to_call(step))] for p in coordinator.party_ids})
    coordinator.run_identity = identity
    logger.info("resumed run %s from checkpoint-%d", identity.run_id, step)
    return step
