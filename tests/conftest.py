"""Suite-wide settings (every test process, and the processes the tests start)."""

import os

# DP runs in tests use a fixed noise seed to be reproducible; outside a test suite the
# package refuses one (vflgan_app.dp.plan.ALLOW_FIXED_NOISE_SEED).
os.environ.setdefault("VFLGAN_ALLOW_FIXED_NOISE_SEED", "1")
