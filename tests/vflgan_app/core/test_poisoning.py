"""A malicious or broken party cannot poison training or publication silently
(issue 12 items 12 and 13): absurd IFs and losses stop the run naming the party, with a
checkpoint to resume from; a publication reply of the wrong shape, or with NaN values,
is refused before anything is written."""

import numpy as np
import pandas as pd
import pytest
import torch

from tests.vflgan_app.core.conftest import make_federation
from vflgan_app.core import loop
from vflgan_app.errors import ReplyError, RunInterrupted
from vflgan_app.publish import write_synthetic


def tamper_replies(fed, party, edit, method=None):
    """Let ``edit(reply)`` rewrite ``party``'s replies (to ``method`` calls, or all)."""
    def tamper(calls, replies):
        for call, reply in zip(calls.get(party, []), replies.get(party, []), strict=False):
            if method is None or call.method == method:
                edit(reply)
        return replies
    fed.transport.tamper = tamper


def scale_ifs(factor, names=("h_real", "h_fake", "h_hat", "h_gen")):
    def edit(reply):
        for n in names:
            if n in reply:
                reply[n] = torch.as_tensor(reply[n]) * factor
    return edit


def test_finite_but_absurd_ifs_stop_the_step_naming_the_party():
    fed = make_federation()
    # IFs scaled to ~3e38: finite float32, yet every loss goes to -inf without the check
    tamper_replies(fed, 1, scale_ifs(3e38 / 10), "critic_forward")
    with pytest.raises(ReplyError, match=r"party 1: h_real holds values up to .*e\+3[78]; "
                                         r"expected \|IF\| <= 1e\+06"):
        fed.coordinator.train_step()
    assert fed.coordinator.history.d_loss == []


def test_an_absurd_party_loss_is_refused():
    fed = make_federation()

    def edit(reply):
        reply["loss"] = -1e30
    tamper_replies(fed, 0, edit, "critic_forward")
    with pytest.raises(ReplyError, match=r"party 0: loss is -1e\+30; expected a finite number"):
        fed.coordinator.train_step()


def test_poisoning_mid_run_stops_with_a_checkpoint_naming_the_party(tmp_path):
    fed = make_federation()
    for p in fed.parties:
        p.checkpoint_dir = str(tmp_path / f"party{p.party_id}")
    loop.fit(fed.coordinator, 4, checkpoint_root=tmp_path / "server", checkpoint_every=2)
    tamper_replies(fed, 1, scale_ifs(1e12), "critic_forward")
    with pytest.raises(RunInterrupted, match=r"party 1: h_real holds values .*resume from "
                                              r"checkpoint-4") as err:
        loop.fit(fed.coordinator, 8, checkpoint_root=tmp_path / "server", checkpoint_every=2)
    assert err.value.resume_step == 4
    assert all(np.isfinite(fed.coordinator.history.d_loss))


def test_honest_ifs_stay_far_below_the_limit():
    # the limit must not fire on an honest run: record the largest |IF| of 30 steps
    from vflgan_app.core.coordinator import IF_LIMIT

    fed = make_federation()
    fed.coordinator.fit(30)
    peak = max(float(torch.as_tensor(r[k]).abs().max())
               for rt in fed.transport.replies for plist in rt.values() for r in plist
               for k in ("h_real", "h_fake", "h_hat", "h_gen") if k in r)
    assert 0 < peak < IF_LIMIT / 1e3


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda r: r.update(x=r["x"][:2]), r"party 1: sample has dtype float32 and shape "
                                           r"\(2, \d+\); expected float \(4, \d+\)"),
        (lambda r: r["x"].__setitem__((0, 0), np.nan), "party 1: sample contains NaN"),
        (lambda r: r.update(x=r["x"].astype(np.int64)), "sample has dtype int64"),
        (lambda r: r.pop("x"), "sample has dtype object"),
    ],
    ids=["too-few-rows", "nan", "integer", "missing"],
)
def test_publication_replies_are_validated(edit, match):
    fed = make_federation()
    fed.coordinator.fit(2)
    tamper_replies(fed, 1, edit, "sample")
    with pytest.raises(ReplyError, match=match):
        fed.coordinator.sample(4, seed=0)


def test_a_table_with_non_finite_or_missing_cells_is_not_written(tmp_path):
    bad = pd.DataFrame({"a": [1.0, np.inf], "b": ["x", "y"]})
    with pytest.raises(ValueError, match=r"columns \['a'\] hold NaN or inf"):
        write_synthetic(tmp_path / "out", bad)
    missing = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", None]})
    with pytest.raises(ValueError, match=r"columns \['b'\] have missing cells"):
        write_synthetic(tmp_path / "out", missing)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad, want", [(float("nan"), "nan"), (float("inf"), "inf"),
                                       (float("-inf"), "inf"), (-7.0, 7.0), (3.0, 3.0)])
@pytest.mark.parametrize("where", [0, 5, -1])
def test_abs_peak_sees_every_entry(bad, want, where):
    """The one-pass check behind every received tensor: a NaN or inf anywhere shows."""
    import math

    from vflgan_app.core.protocol import abs_peak

    t = torch.linspace(-1, 2, 24).reshape(2, 3, 4).clone()
    t.view(-1)[where] = bad
    got = abs_peak(t)
    if want == "nan":
        assert math.isnan(got) and not got <= 1e6
    elif want == "inf":
        assert got == math.inf and not got <= 1e6
    else:
        assert got == want
    assert abs_peak(torch.empty(0, 3)) == 0.0
    assert abs_peak(torch.tensor([[-0.5, 0.25]], dtype=torch.float64)) == 0.5
