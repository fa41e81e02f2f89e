"""Small, boring training utilities shared by ``vflgan_app`` and ``unlearning``.

Device and precision choice, seeding and explicit generators, atomic checkpoints,
EMA, progress bars and stage timers, and run folders that record what produced them.
"""

from trainkit.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
    state_fingerprint,
)
from trainkit.device import DeviceSetup, autocast, select_device, set_cpu_threads
from trainkit.ema import EMA
from trainkit.progress import StageTimer, progress_bar
from trainkit.runs import create_run_dir, git_commit, run_metadata
from trainkit.seeding import derive_seed, make_generator, seed_everything

__all__ = [
    "EMA",
    "CheckpointError",
    "DeviceSetup",
    "StageTimer",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "autocast",
    "create_run_dir",
    "derive_seed",
    "git_commit",
    "load_checkpoint",
    "make_generator",
    "progress_bar",
    "run_metadata",
    "save_checkpoint",
    "seed_everything",
    "select_device",
    "set_cpu_threads",
    "state_fingerprint",
]
