"""Decoding float tensors (seldon_market_ab/protocol.py): the fast path for flat lists gives exactly what MLServer's
NumpyCodec gives, and leaves everything else to it. The protocol's types (seldon_market_ab/protocol_types.py): one
shape check for every reader, and a datatype for every numpy dtype the protocol has."""

import numpy as np
import pytest
from mlserver.codecs import NumpyCodec
from mlserver.errors import MLServerError
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.types import InferenceRequest, RequestInput

from seldon_market_ab.local_seldon.tensors import Tensor
from seldon_market_ab.mlserver_compat import check_raw_contents
from seldon_market_ab.protocol import InvalidInput, _decode_flat_floats, decode_float_tensor
from seldon_market_ab.protocol_types import DTYPES, TensorError, datatype_of
from seldon_market_ab.tensor_bytes import check_size


@pytest.mark.parametrize("datatype, dtype", [("FP32", np.float32), ("FP64", np.float64)])
def test_flat_lists_decode_as_numpy_codec_does(datatype, dtype):
    values = np.random.default_rng(0).normal(100, 30, (4, 133, 5)).astype(dtype)
    values[0, 0, 0] = np.nan  # passed through: the checks that follow reject it
    for data in (values.ravel().tolist(), [1, 2.5, True, 0] * 665):
        request_input = RequestInput(name="ohlcv", datatype=datatype, shape=list(values.shape), data=data)
        fast, codec = _decode_flat_floats(request_input), NumpyCodec.decode_input(request_input)
        assert fast.dtype == codec.dtype and fast.shape == codec.shape
        np.testing.assert_array_equal(fast, codec)
        assert fast.flags.writeable


@pytest.mark.parametrize("data", [[[1.0, 2.0], [3.0, 4.0]], [None, 1.0, 2.0, 3.0], [1e300, 1.0, 2.0, 3.0],
                                  ["1", 2.0, 3.0, 4.0]])
def test_anything_else_is_left_to_numpy_codec(data):
    """Nested JSON lists, nulls, a number beyond FP32 and strings: NumpyCodec decodes or rejects them as before."""
    assert _decode_flat_floats(RequestInput(name="ohlcv", datatype="FP32", shape=[2, 2], data=data)) is None


def test_a_list_that_does_not_fit_the_shape_is_a_value_error():
    with pytest.raises(ValueError):
        _decode_flat_floats(RequestInput(name="ohlcv", datatype="FP32", shape=[3, 2], data=[1.0, 2.0, 3.0, 4.0]))


def test_a_negative_dimension_is_refused_in_the_same_words_by_every_reader():
    """The runtimes' decoding, the patched gRPC converter, the binary data extension and the gateway share one check
    (seldon_market_ab/protocol_types.py)."""
    expected = "input 'x': shape [-1, 2] has a negative dimension; a shape is a list of non-negative integers"
    request_input = RequestInput(name="x", datatype="FP32", shape=[-1, 2], data=[1.0, 2.0])
    with pytest.raises(InvalidInput) as runtime:
        decode_float_tensor(InferenceRequest(inputs=[request_input]), ("x",), "'x' FP32")
    grpc_request = pb.ModelInferRequest(raw_input_contents=[bytes(8)])
    grpc_request.inputs.add(name="x", datatype="FP32", shape=[-1, 2])
    with pytest.raises(MLServerError) as converter:
        check_raw_contents(grpc_request)
    with pytest.raises(TensorError) as binary:
        check_size("input 'x'", "FP32", [-1, 2], bytes(8))
    with pytest.raises(TensorError) as gateway:
        Tensor.from_json(request_input)
    assert {str(error.value) for error in (runtime, converter, binary, gateway)} == {expected}
    assert (runtime.value.status_code, runtime.value.reason, converter.value.status_code) == (400, "shape", 400)


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<i8", ">u2", "?", "<f2"])
def test_numbers_of_either_byte_order_have_the_datatype_of_their_values(dtype):
    assert DTYPES[datatype_of(np.zeros(2, dtype))] == np.dtype(dtype).newbyteorder("<")


@pytest.mark.parametrize("dtype", ["O", "U2", "S2"])
def test_strings_and_objects_are_bytes(dtype):
    assert datatype_of(np.zeros(2, dtype)) == "BYTES"


def test_a_dtype_the_protocol_lacks_is_a_tensor_error():
    with pytest.raises(TensorError, match="numpy dtype complex64 has no Open Inference Protocol datatype"):
        datatype_of(np.zeros(1, np.complex64))
