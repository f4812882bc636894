"""The gateway's tensors (local_seldon/tensors.py): raw bytes between steps, numbers only at the edges."""

import numpy as np
import pytest
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.types import RequestInput

from seldon_market_ab.local_seldon.tensors import Tensor, infer_response, request_tensors, response_tensors
from seldon_market_ab.protocol_types import TensorError


def test_typed_and_raw_grpc_contents_give_the_same_tensor():
    raw = pb.ModelInferRequest(raw_input_contents=[np.array([1, -2, 3], "<i8").tobytes()])
    raw.inputs.add(name="x", datatype="INT64", shape=[1, 3])
    typed = pb.ModelInferRequest()
    typed.inputs.add(name="x", datatype="INT64", shape=[1, 3]).contents.int64_contents.extend([1, -2, 3])
    assert request_tensors(raw)["x"] == request_tensors(typed)["x"]


def test_an_answer_with_fp16_is_all_raw_even_for_a_typed_client():
    tensors = {"half": Tensor.from_array(np.ones(2, np.float16)), "full": Tensor.from_array(np.ones(2, np.float32))}
    response = infer_response(tensors, "r", raw=False)
    assert len(response.raw_output_contents) == len(response.outputs) == 2
    assert response_tensors(response)["half"].array().tolist() == [1.0, 1.0]


@pytest.mark.parametrize("datatype, data, shape, expected", [
    ("INT64", [9223372036854775808], [1], "range"),
    ("INT8", [300], [1], "range"),
    ("UINT8", [-1], [1], "range"),
    ("INT32", [1.5], [1], "whole numbers"),
    ("FP32", [1.0, 2.0], [-1, 2], "negative dimension"),
    ("FP32", [1.0, 2.0, 3.0], [2, 2], "do not make"),
    ("COMPLEX", [1], [1], "not one of"),
])
def test_rest_inputs_that_do_not_make_their_tensor_are_client_errors(datatype, data, shape, expected):
    with pytest.raises(TensorError, match=expected):
        Tensor.from_json(RequestInput.model_construct(name="x", datatype=datatype, shape=shape, data=data,
                                                      parameters=None))


@pytest.mark.parametrize("raw, expected", [(b"\x00" * 7, "needs 12 bytes, got 7"),
                                           (b"\x00" * 16, "needs 12 bytes, got 16")])
def test_raw_contents_of_the_wrong_size_are_client_errors(raw, expected):
    request = pb.ModelInferRequest(raw_input_contents=[raw])
    request.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    with pytest.raises(TensorError, match=expected):
        request_tensors(request)


def test_bytes_round_trip_and_malformed_bytes_are_refused():
    tensor = Tensor.from_array(np.array([b"up", b"", "down"], dtype=object))
    assert tensor.array().tolist() == [b"up", b"", b"down"] and tensor.json("m")["data"] == ["up", "", "down"]
    request = pb.ModelInferRequest(raw_input_contents=[b"\x05\x00\x00\x00ab"])
    request.inputs.add(name="s", datatype="BYTES", shape=[1])
    with pytest.raises(TensorError, match="inside an item"):
        request_tensors(request)
