"""The packed wire form (codec.pack / unpack): exact, compact and strict."""

import json
import math

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from vflgan_app.core.protocol import Call
from vflgan_app.flower import codec


def plain_content():
    rng = np.random.default_rng(0)
    content = RecordDict()
    content["c0.v"] = ConfigRecord({
        "step": 7, "lr": 0.5, "nan": float("nan"), "name": "wine", "flag": True,
        "ints": [1, 2, 3], "floats": [0.25, -1.0], "names": ["a", "b"], "blob": b"\x00\xff",
        "blobs": [b"x", b"yz"], "empty": "",
    })
    content["stack"] = ArrayRecord({
        "g0": Array(rng.standard_normal((3, 4)).astype(np.float32)),
        "g1": Array(np.arange(5, dtype=np.int64)),
        "g2": Array(np.array([True, False])),
        "g3": Array(rng.standard_normal((2, 2)).astype(np.float16)),
        "g4": Array(np.zeros((0, 3), dtype=np.float64)),
        "g5": Array(np.array(3.5, dtype=np.float64)),
    })
    content["calls"] = ConfigRecord({"methods": ["critic_forward"]})
    return content


def assert_same(a: RecordDict, b: RecordDict):
    assert list(a.keys()) == list(b.keys())
    for name in a.keys():
        ra, rb = a[name], b[name]
        assert type(ra) is type(rb)
        assert list(ra.keys()) == list(rb.keys())
        for k in ra.keys():
            va, vb = ra[k], rb[k]
            if isinstance(ra, ArrayRecord):
                x, y = va.numpy(), vb.numpy()
                assert x.dtype == y.dtype and x.shape == y.shape
                assert x.tobytes() == y.tobytes()
            elif isinstance(va, float) and math.isnan(va):
                assert isinstance(vb, float) and math.isnan(vb)
            else:
                assert type(va) is type(vb) and va == vb, k


def test_pack_round_trip_is_exact_and_one_record():
    content = plain_content()
    packed = codec.pack(content)
    assert list(packed.keys()) == [codec.WIRE] and codec.is_packed(packed)
    assert_same(codec.unpack(packed), content)
    # the payload holds exactly the arrays' bytes, nothing else
    nbytes = sum(a.numpy().nbytes for a in content["stack"].values())
    assert len(packed[codec.WIRE]["payload"]) == nbytes


def test_large_payload_travels_as_one_uint8_array(monkeypatch):
    monkeypatch.setattr(codec, "INLINE_MAX", 16)
    content = plain_content()
    packed = codec.pack(content)
    assert set(packed.keys()) == {codec.WIRE, codec.WIRE_BYTES}
    assert "payload" not in packed[codec.WIRE]
    assert packed[codec.WIRE_BYTES]["payload"].numpy().dtype == np.uint8
    assert_same(codec.unpack(packed), content)


def test_the_byte_array_is_the_npy_file_flwr_would_write(monkeypatch):
    """The large payload's ``Array`` is built without ``np.save``: its bytes must still be
    exactly the ``.npy`` file flwr's own ``Array(ndarray)`` holds, or a node reading it
    with ``Array.numpy()`` (np.load) gets something else."""
    import io

    monkeypatch.setattr(codec, "INLINE_MAX", 16)
    reply = codec.encode_replies([{"G": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
                                   "h": np.ones((2, 3), np.float64), "step": 4}])
    arr = reply[codec.WIRE_BYTES]["payload"]
    buf = io.BytesIO()
    np.save(buf, arr.numpy(), allow_pickle=False)
    assert arr.data == buf.getvalue()
    assert (arr.dtype, tuple(arr.shape)) == ("uint8", (24 * 4 + 6 * 8,))
    got = codec.decode_replies(reply)[0]
    assert np.array_equal(got["G"].numpy(), np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    assert got["h"].dtype == torch.float64 and got["step"] == 4
    got["G"][0, 0, 0] = -1  # decoded tensors are writable copies, not views of the bytes
    assert codec.decode_replies(reply)[0]["G"][0, 0, 0] == 0


def test_calls_and_replies_travel_packed():
    calls = [Call("critic_forward", {"step": 1, "idx": np.arange(4)})]
    wire = codec.encode_calls(calls)
    assert codec.is_packed(wire) and list(wire.keys()) == [codec.WIRE]
    assert np.array_equal(codec.decode_calls(wire)[0].args["idx"].numpy(), np.arange(4))
    reply = codec.encode_replies([{"h_real": np.ones((2, 3), np.float32), "step": 1}])
    assert codec.is_packed(reply)
    assert codec.decode_replies(reply)[0]["h_real"].shape == (2, 3)


def _tampered(change):
    packed = codec.pack(plain_content())
    wire = packed[codec.WIRE]
    header = json.loads(str(wire["header"]))
    payload = bytes(wire["payload"])
    header, payload = change(header, payload)
    out = RecordDict()
    out[codec.WIRE] = ConfigRecord({"header": json.dumps(header), "payload": payload})
    return out


def _shift_first_array(h, p):
    h["records"][1][2][1][3] += 1  # g1 starts one byte late: a gap and an overlap
    return h, p


def _object_dtype(h, p):
    h["records"][1][2][0][1] = "|O"
    return h, p


def _string_dtype(h, p):
    h["records"][1][2][0][1] = "<U1"
    h["records"][1][2][0][4] = 48
    return h, p


def _wrong_size(h, p):
    h["records"][1][2][0][2] = [3, 3]  # 36 bytes of shape, 48 in the header
    return h, p


@pytest.mark.parametrize("change, match", [
    (lambda h, p: (h, p + b"\x01" * 8), "8 bytes|header says"),  # a hidden tail
    (lambda h, p: ({**h, "nbytes": h["nbytes"] + 8}, p + b"\x01" * 8),
     "accounts for"),  # a hidden tail the header admits to
    (_shift_first_array, "expected it at"),
    (_object_dtype, "expected bool, integer or float"),
    (_string_dtype, "expected bool, integer or float"),
    (_wrong_size, "bytes per value"),
    (lambda h, p: ({**h, "v": 99}, p), "version 99"),
    (lambda h, p: ({"records": []}, p), "unreadable header"),
], ids=["tail", "admitted tail", "gap", "object dtype", "string dtype", "size",
        "version", "no nbytes"])
def test_unpack_refuses_what_the_header_does_not_account_for(change, match):
    with pytest.raises(ValueError, match=match):
        codec.unpack(_tampered(change))


def test_unpack_refuses_extra_records_and_double_payloads(monkeypatch):
    packed = codec.pack(plain_content())
    packed["smuggled"] = ConfigRecord({"rows": [0.1, 0.2]})
    with pytest.raises(ValueError, match="expected the packed form"):
        codec.unpack(packed)
    monkeypatch.setattr(codec, "INLINE_MAX", 16)
    both = codec.pack(plain_content())
    both[codec.WIRE]["payload"] = b""
    with pytest.raises(ValueError, match="not both"):
        codec.unpack(both)


def test_pack_refuses_object_arrays():
    content = RecordDict()
    content["stack"] = ArrayRecord({"g0": Array(np.array(["a", "b"]))})
    with pytest.raises(TypeError, match="expected bool, integer or float"):
        codec.pack(content)


def test_unpack_names_a_malformed_header():
    with pytest.raises(ValueError, match="malformed header"):
        codec.unpack(_tampered(lambda h, p: ({**h, "records": [["stack", "arrays", [1]]]},
                                             p)))
