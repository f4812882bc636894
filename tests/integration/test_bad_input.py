"""Bad input gets 400 / INVALID_ARGUMENT naming what was expected; the server keeps serving afterwards."""

import json

import grpc
import numpy as np
import pytest

from seldon_market_ab.client import RestError, build_grpc_request

from ..conftest import MIN_WINDOW, N_FEATURES, SEQUENCE_LENGTH, rest_body


def _window(rows=MIN_WINDOW, batch=1):
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (batch, rows)), axis=1))
    return np.stack([close, close * 1.01, close * 0.99, close, np.full_like(close, 1e6)], axis=-1).astype(np.float32)


def _with(value, index=(0, 50, 3)):
    window = _window()
    window[index] = value
    return window


# (case, inputs, expected words in the message); arrays go out as raw gRPC contents and as REST JSON.
BAD_INPUTS = [
    ("wrong tensor name", {"prices": _window()}, f"expected one input: 'ohlcv' FP32 [batch, >={MIN_WINDOW}, 5]"),
    ("two inputs", {"ohlcv": _window(), "features": _window()}, "expected one input"),
    ("integer dtype", {"ohlcv": _window().astype(np.int32)}, "must be FP32 (or FP64), got INT32"),
    ("rank 2", {"ohlcv": _window()[0]}, "must have shape [batch, rows, 5]"),
    ("four columns", {"ohlcv": _window()[..., :4]}, "must have shape [batch, rows, 5]"),
    ("window too short", {"ohlcv": _window(rows=60)}, f"windows have 60 rows; at least {MIN_WINDOW} are needed"),
    ("NaN", {"ohlcv": _with(np.nan)}, "holds NaN or Inf (windows [0])"),
    ("Inf", {"ohlcv": _with(np.inf)}, "holds NaN or Inf"),
    ("empty batch", {"ohlcv": _window(batch=1)[:0]}, "empty batch"),
    ("negative price", {"ohlcv": _with(-5.0)}, "prices (open, high, low, close) must be > 0"),
    ("features too short", {"features": np.zeros((1, 10, N_FEATURES), np.float32)},
     f"at least {SEQUENCE_LENGTH} are needed"),
    ("features wrong width", {"features": np.zeros((1, SEQUENCE_LENGTH, 7), np.float32)},
     f"[batch, rows, {N_FEATURES}]"),
]
IDS = [case for case, _, _ in BAD_INPUTS]


@pytest.mark.parametrize(("case", "inputs", "expected"), BAD_INPUTS, ids=IDS)
def test_rest_answers_400(served, case, inputs, expected):
    _, client = served
    with pytest.raises(RestError) as error:
        client.infer_rest("baseline", body=rest_body(inputs))
    assert error.value.status == 400, error.value.message
    assert expected in json.loads(error.value.message)["error"]


@pytest.mark.parametrize(("case", "inputs", "expected"), BAD_INPUTS, ids=IDS)
def test_grpc_answers_invalid_argument(served, case, inputs, expected):
    _, client = served
    with pytest.raises(grpc.RpcError) as error:
        client.infer_grpc("conservative", inputs)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert expected in error.value.details()


def test_rest_nan_literal_is_rejected_by_mlserver_json_parser(served):
    """``NaN`` is not JSON: the REST layer answers 400 in the protocol's error shape before the runtime runs."""
    _, client = served
    body = rest_body({"ohlcv": _window()}).replace(b"1000000.0", b"NaN", 1)
    with pytest.raises(RestError) as error:
        client.infer_rest("baseline", body=body)
    assert error.value.status == 400 and json.loads(error.value.message)["error"].startswith("the body is not JSON")


def test_grpc_typed_data_that_does_not_fit_the_shape(served):
    """(Raw contents of the wrong length fail inside MLServer's converter, before the runtime; see README.)"""
    _, client = served
    request = build_grpc_request("baseline", {"ohlcv": _window()}, raw=False)
    del request.inputs[0].shape[:]
    request.inputs[0].shape.extend([2, MIN_WINDOW, 5])  # twice the data that was sent
    with pytest.raises(grpc.RpcError) as error:
        client._stub.ModelInfer(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert f"does not fit shape [2, {MIN_WINDOW}, 5]" in error.value.details()


def test_rest_string_data_for_fp32(served):
    _, client = served
    body = {"inputs": [{"name": "ohlcv", "datatype": "BYTES", "shape": [1], "data": ["AAPL"]}]}
    with pytest.raises(RestError) as error:
        client.infer_rest("baseline", body=body)
    assert error.value.status == 400
    assert "must be FP32" in error.value.message


def test_unknown_model(served):
    _, client = served
    with pytest.raises(RestError) as error:
        client.infer_rest("no-such-model", {"ohlcv": _window()})
    assert error.value.status == 404
    with pytest.raises(grpc.RpcError) as error:
        client.infer_grpc("no-such-model", {"ohlcv": _window()})
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_server_keeps_serving_after_bad_input(served):
    _, client = served
    for _, inputs, _ in BAD_INPUTS:
        with pytest.raises((RestError, grpc.RpcError)):
            client.infer_grpc("baseline", inputs)
    answer = client.infer_grpc("baseline", {"ohlcv": _window(batch=3)})
    assert answer["probability"].shape == (3,) and np.isfinite(answer["probability"]).all()
    assert client.infer_rest("baseline", {"ohlcv": _window()})["direction"].shape == (1,)
