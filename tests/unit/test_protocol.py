"""Decoding float tensors (seldon_market_ab/protocol.py): the fast path for flat lists gives exactly what MLServer's
NumpyCodec gives, and leaves everything else to it."""

import numpy as np
import pytest
from mlserver.codecs import NumpyCodec
from mlserver.types import RequestInput

from seldon_market_ab.protocol import _decode_flat_floats


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
