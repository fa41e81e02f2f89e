"""trainkit.state_fingerprint: equal exactly when the weights are bit-identical."""

import hashlib

import pytest
import torch

from trainkit import state_fingerprint


def test_same_weights_same_fingerprint_in_any_key_order():
    m = torch.nn.Linear(3, 2)
    sd = m.state_dict()
    assert state_fingerprint(m) == state_fingerprint(dict(reversed(list(sd.items()))))
    assert state_fingerprint(m) == state_fingerprint({k: v.clone() for k, v in sd.items()})
    assert len(state_fingerprint(m)) == 16 and len(state_fingerprint(m, 64)) == 64


def test_hand_computed_digest():
    t = torch.tensor([1, 2], dtype=torch.uint8)
    want = hashlib.sha256(b"w|torch.uint8|(2,)|" + bytes([1, 2])).hexdigest()
    assert state_fingerprint({"w": t}, 64) == want


def test_any_change_changes_it():
    m = torch.nn.Linear(3, 2)
    ref = state_fingerprint(m)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    sd["weight"][0, 0] = torch.nextafter(sd["weight"][0, 0], torch.tensor(10.0))  # one ulp
    assert state_fingerprint(sd) != ref
    assert state_fingerprint({k: v.double() for k, v in m.state_dict().items()}) != ref
    assert state_fingerprint({"w2" if k == "weight" else k: v
                              for k, v in m.state_dict().items()}) != ref
    assert state_fingerprint({"weight": m.weight.detach().reshape(3, 2),
                              "bias": m.bias.detach()}) != ref


def test_bad_input_is_named():
    with pytest.raises(TypeError, match=r"state\['x'\]: got int"):
        state_fingerprint({"x": 3})
    with pytest.raises(ValueError, match="length: got 0"):
        state_fingerprint({}, 0)
