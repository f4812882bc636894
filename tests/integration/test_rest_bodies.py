"""MLServer's REST server reads bodies as the protocol has them (seldon_market_ab/mlserver_compat.py's REST patches).

JSON whatever the Content-Type (tritonclient sends none; KServe's SDK sends ``application/octet-stream``), the binary
data extension both ways, and every body that is not a request answered 400 in the protocol's ``{"error": ...}``
shape. Against a real MLServer, in process and with parallel workers (the patches live in the main process, which
holds the REST server).
"""

import gzip
import http.client
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as triton

from seldon_market_ab.binary_data import HEADER

from ..conftest import MIN_WINDOW, triton_body


@pytest.fixture(params=["served", "served_workers"])
def url(request):
    server, _ = request.getfixturevalue(request.param)
    return f"{server.http_url}/v2/models/baseline/infer"


def window(low: float = 1.0) -> np.ndarray:
    close = 100 * np.exp(np.cumsum(np.random.default_rng(5).normal(0, 0.01, MIN_WINDOW)))
    ohlcv = np.stack([close, close * 1.01, close * 0.99, close, np.full_like(close, 1e6)], axis=-1)[None]
    ohlcv[0, 0, 2] *= low
    return ohlcv.astype(np.float32)


def post(url: str, body: bytes, headers: dict):
    """Status, headers (looked up case-insensitively) and body."""
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def ohlcv_body(array: np.ndarray, binary_in: bool, binary_out: bool | None) -> tuple[bytes, int | None]:
    """``binary_out`` None names no outputs (so all come back as bytes)."""
    outputs = None if binary_out is None else dict.fromkeys(("probability", "direction", "model"), binary_out)
    return triton_body({"ohlcv": array}, binary_in, outputs, request_id="b1")


def answer(status: int, headers: dict, body: bytes) -> triton.InferResult:
    assert status == 200, body[:300]
    length = headers.get(HEADER)
    return triton.InferResult.from_response_body(body, header_length=None if length is None else int(length))


JSON_BODY = json.dumps({"inputs": [{"name": "ohlcv", "datatype": "FP32", "shape": [1, MIN_WINDOW, 5],
                                    "data": window().ravel().tolist()}]}).encode()


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain", "application/json"])
def test_a_json_body_is_read_whatever_its_content_type(url, content_type):
    status, _, body = post(url, JSON_BODY, {"Content-Type": content_type} if content_type else {})
    assert status == 200 and json.loads(body)["outputs"][2]["data"] == ["baseline:1"]


@pytest.mark.parametrize("binary_in, binary_out", [(False, False), (True, False), (False, True), (True, True),
                                                   (True, None)])
def test_the_binary_extension_both_ways_gives_the_json_answer(url, binary_in, binary_out):
    reference = answer(*post(url, ohlcv_body(window(), False, False)[0], {})).as_numpy("probability")
    body, length = ohlcv_body(window(), binary_in, binary_out)
    status, headers, content = post(url, body, {HEADER: str(length)} if length else {})
    result = answer(status, headers, content)
    assert (HEADER in headers) == (binary_out is not False)
    if binary_out is not False:
        assert headers["content-type"] == "application/octet-stream"
        assert all("data" not in o for o in result.get_response()["outputs"])
    assert result.as_numpy("probability").tolist() == reference.tolist()  # bit for bit: same floats
    assert result.as_numpy("model").tolist() in ([b"baseline:1"], ["baseline:1"])


def test_a_gzipped_binary_body_is_read(url):
    body, length = ohlcv_body(window(), True, True)
    status, headers, content = post(url, gzip.compress(body), {HEADER: str(length), "Content-Encoding": "gzip"})
    assert answer(status, headers, content).as_numpy("direction").shape == (1,)


def test_a_body_with_no_content_type_header_at_all_is_read(url):
    """urllib adds a form Content-Type to every POST; http.client sends exactly the headers given."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("POST", "/v2/models/baseline/infer", body=JSON_BODY, headers={})
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["outputs"][2]["data"] == ["baseline:1"]
    connection.close()


@pytest.mark.parametrize("body, headers, expected", [
    (b'{"inputs": [], "outputs": 5}', {}, "not an inference request: outputs"),
    (b'{"inputs": [3], "parameters": {"binary_data_output": true}}', {}, "not an inference request: inputs.0"),
    (b'{"inputs": [7, {"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]}'
     + bytes(4), {HEADER: "103"}, "not an inference request: inputs.0"),
    (b"not gzip at all", {"Content-Encoding": "gzip"}, "is not gzip"),
    (b"{not json", {}, "the body is not JSON"),
    (b'{"inputs": "ohlcv"}', {}, "not an inference request: inputs: Input should be a valid list"),
    (b'{"inputs": [{"name": "ohlcv"}]}', {}, "not an inference request: inputs.0.shape: Field required"),
    (b"[]", {}, "must be a JSON object"),
    (JSON_BODY, {HEADER: "12"}, "is not JSON"),
    (JSON_BODY + b"\x00", {HEADER: str(len(JSON_BODY))}, "1 bytes follow the JSON"),
    (JSON_BODY, {HEADER: "-3"}, f"{HEADER}: '-3' must be the length"),
])
def test_a_body_that_is_not_a_request_is_a_400_in_the_protocols_shape(url, body, headers, expected):
    status, answered, content = post(url, body, headers)
    assert status == 400 and answered["content-type"] == "application/json", content
    assert expected in json.loads(content)["error"]


def test_a_binary_request_the_model_refuses_is_answered_in_json(url):
    body, length = ohlcv_body(window(low=-1.0), True, True)
    status, headers, content = post(url, body, {HEADER: str(length)})
    assert status == 400 and HEADER not in headers and "must be > 0" in json.loads(content)["error"]


def test_other_routes_keep_their_reading_and_answer_in_the_protocols_shape(url):
    base = url.rsplit("/v2/", 1)[0]
    status, _, content = post(f"{base}/v2/repository/index", b"", {})
    assert status == 400 and json.loads(content)["error"].startswith("invalid request: ")


def test_metadata_and_health_are_untouched(url):
    base = url.rsplit("/v2/", 1)[0]
    for path in ("/v2/health/ready", "/v2/models/baseline", "/v2/models/baseline/ready"):
        with urllib.request.urlopen(base + path, timeout=30) as response:
            assert response.status == 200 and HEADER not in response.headers
