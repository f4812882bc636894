"""The binary data extension (seldon_market_ab/binary_data.py) against a third party's encoder and decoder.

tritonclient (a dependency of MLServer, so installed here) builds the request bodies and reads the response bodies,
so these tests check the extension as clients speak it, not as we read the spec.
"""

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import given, settings
from hypothesis import strategies as st

from seldon_market_ab.binary_data import HEADER, BinaryOutputs, binary_response, read_request, with_data, write_response
from seldon_market_ab.protocol_types import TensorError

from ..conftest import triton_body

ARRAYS = {
    "prices": np.arange(12, dtype=np.float32).reshape(1, 3, 4) / 7,
    "counts": np.array([[1, -2, 2**40]], dtype=np.int64),
    "flags": np.array([True, False, True]),
    "half": np.array([0.5, -1.25], dtype=np.float16),
    "ids": np.array([b"r-1", b"", "\u00e9t\u00e9".encode()], dtype=object),
}
DATATYPES = {"prices": "FP32", "counts": "INT64", "flags": "BOOL", "half": "FP16", "ids": "BYTES"}


def body_of(binary: set[str], names=tuple(ARRAYS)) -> tuple[bytes, int | None]:
    return triton_body({name: ARRAYS[name] for name in names}, binary)


def decoded(request: dict, name: str) -> np.ndarray:
    tensor = next(t for t in request["inputs"] if t["name"] == name)
    if DATATYPES[name] == "BYTES":  # JSON carries text, the extension bytes
        items = [v.encode() if isinstance(v, str) else v for v in tensor["data"]]
        return np.array(items, dtype=object).reshape(tensor["shape"])
    return np.array(tensor["data"], dtype=ARRAYS[name].dtype).reshape(tensor["shape"])


@pytest.mark.parametrize("binary", [set(), {"prices"}, set(ARRAYS) - {"half"}, set(ARRAYS)],
                         ids=["json", "one", "all-but-fp16", "all"])
def test_requests_built_by_tritonclient_read_back_exactly(binary):
    names = tuple(n for n in ARRAYS if n != "half" or n in binary)  # JSON has no FP16: tritonclient refuses it
    body, length = body_of(binary, names)
    request = with_data(read_request(body, None if length is None else str(length)))
    for name in names:
        assert np.array_equal(decoded(request, name), ARRAYS[name]), name
        parameters = next(t for t in request["inputs"] if t["name"] == name).get("parameters", {})
        assert "binary_data_size" not in parameters  # steps downstream never see it


def test_the_bytes_of_binary_inputs_are_kept_as_they_came():
    body, length = body_of({"prices", "ids"}, ("prices", "ids"))
    buffers = read_request(body, str(length)).buffers
    assert buffers["prices"] == ARRAYS["prices"].tobytes()
    assert buffers["ids"] == b"".join(len(v).to_bytes(4, "little") + v for v in ARRAYS["ids"])


@pytest.mark.parametrize("request_parameters, outputs, expected", [
    ({}, [], set()),
    ({"binary_data_output": True}, [], {"probability", "model"}),
    ({"binary_data_output": True}, [{"name": "model", "parameters": {"binary_data": False}}], {"probability"}),
    ({}, [{"name": "model", "parameters": {"binary_data": True}}], {"model"}),
])
def test_outputs_are_bytes_where_asked_and_tritonclient_reads_them(request_parameters, outputs, expected):
    wanted = BinaryOutputs.of({"parameters": request_parameters, "outputs": outputs})
    response = {"model_name": "m", "id": "r", "outputs": [
        {"name": "probability", "datatype": "FP32", "shape": [2], "data": [0.25, 0.75]},
        {"name": "model", "datatype": "BYTES", "shape": [2], "data": ["m:1", "m:1"]}]}
    body, length = binary_response(response, wanted)
    result = triton.InferResult.from_response_body(body, header_length=length)
    assert {o["name"] for o in result.get_response()["outputs"] if "binary_data_size" in o.get("parameters", {})} \
        == expected
    assert (length is None) == (not expected)
    assert result.as_numpy("probability").tolist() == [0.25, 0.75]
    assert [v if isinstance(v, bytes) else v.encode() for v in result.as_numpy("model")] == [b"m:1", b"m:1"]


def test_write_response_without_binary_outputs_is_plain_json():
    response = {"outputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [3]}]}
    assert write_response(dict(response), {}) == (orjson.dumps(response), None)


GOOD = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}'


@pytest.mark.parametrize("body, length, expected", [
    (GOOD + bytes(8), "abc", f"{HEADER}: 'abc' must be the length"),
    (GOOD + bytes(8), "0", "1 to"),
    (GOOD + bytes(8), str(len(GOOD) + 9), "1 to"),
    (b"[1, 2]" + bytes(8), "6", "must be a JSON object"),
    (b"{nope" + bytes(8), "5", "is not JSON"),
    (GOOD + bytes(4), str(len(GOOD)), "only 4 bytes are left"),
    (GOOD + bytes(12), str(len(GOOD)), "4 bytes follow the JSON and the binary inputs it declares"),
    (GOOD.replace(b"[2]", b"[3]") + bytes(8), str(len(GOOD)), "FP32 [3] needs 12 bytes, got 8"),
    (GOOD.replace(b"[2]", b"[-1]") + bytes(8), str(len(GOOD) + 1), "non-negative integers"),
    (GOOD.replace(b"FP32", b"FP99") + bytes(8), str(len(GOOD)), "datatype 'FP99' is not one of"),
    (GOOD.replace(b"8}", b"-8}") + bytes(8), str(len(GOOD) + 1), "must be a non-negative integer"),
    (GOOD.replace(b"8}", b"true}") + bytes(8), str(len(GOOD) + 3), "must be a non-negative integer"),
    (GOOD.replace(b'"shape"', b'"data": [1, 2], "shape"') + bytes(8), str(len(GOOD) + 16), "both data and binary"),
    (GOOD.replace(b"FP32", b"BYTES") + b"\x09\x00\x00\x00abcd", str(len(GOOD) + 1), "end inside an item"),
    (b'{"inputs": []}\x00', "14", "1 bytes follow the JSON"),
    (b'{"inputs": [], "parameters": {"binary_data_output": 1}}', None, "binary_data_output must be true or false"),
])
def test_a_malformed_body_is_a_client_error_naming_the_problem(body, length, expected):
    with pytest.raises(TensorError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        parsed = read_request(body, length)
        BinaryOutputs.of(parsed.request)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_corruption_of_a_binary_body_is_read_or_refused_as_a_client_error(data):
    body, length = body_of({"prices", "ids", "counts"}, ("prices", "ids", "counts", "flags"))
    position = data.draw(st.integers(0, len(body) - 1))
    cut = data.draw(st.integers(0, 16))
    noise = data.draw(st.binary(max_size=8))
    corrupted = body[:position] + noise + body[position + cut:]
    header = data.draw(st.one_of(st.just(str(length)), st.integers(-5, len(corrupted) + 5).map(str),
                                 st.text(max_size=4)))
    try:
        parsed = read_request(corrupted, header)
        BinaryOutputs.of(parsed.request)
        with_data(parsed)
    except TensorError:
        pass


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=False) | st.text(max_size=6),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(
                        st.sampled_from(["inputs", "outputs", "parameters", "name", "datatype", "shape", "data",
                                         "binary_data_size", "binary_data", "binary_data_output", "id"]),
                        children, max_size=5), max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(request=st.dictionaries(st.sampled_from(["inputs", "outputs", "parameters", "id"]), JSON, max_size=4),
       tail=st.binary(max_size=24), binary=st.booleans())
def test_any_json_request_is_read_or_refused_as_a_client_error(request, tail, binary):
    """Whatever JSON a client sends, only TensorError (a 400) comes out; what is left is for validation to refuse."""
    head = orjson.dumps(request)
    try:
        parsed = read_request(head + tail if binary else head, str(len(head)) if binary else None)
        BinaryOutputs.of(parsed.request)
        with_data(parsed)
    except TensorError:
        pass
