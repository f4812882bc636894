"""seldon_market_ab.mlserver_compat against the installed MLServer and prometheus-client.

These details are private or undocumented. If a version changes, this file fails first, and by name:
re-check each function of mlserver_compat against the new version, then update CHECKED_VERSIONS.
"""

import numpy as np
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.types import InferenceRequest
from prometheus_client import Counter

from seldon_market_ab import mlserver_compat
from seldon_market_ab.metrics import counter


def test_installed_versions_are_the_checked_ones():
    assert mlserver_compat.unchecked_versions() == {}, (
        "mlserver_compat was checked against " + str(mlserver_compat.CHECKED_VERSIONS)
        + ": re-check every function in seldon_market_ab/mlserver_compat.py, then update CHECKED_VERSIONS")


def test_registered_collector_finds_a_metric_again():
    created = Counter("market_ab_compat_probe_total", "probe", ["x"])
    assert mlserver_compat.registered_collector("market_ab_compat_probe_total") is created
    assert mlserver_compat.registered_collector("market_ab_never_registered") is None
    # and the metrics helper relies on it to survive a second import of a runtime module
    assert counter("compat_again_total", "probe", ["x"]) is counter("compat_again_total", "probe", ["x"])


def test_request_headers_come_from_parameters():
    payload = InferenceRequest.model_validate({"inputs": [], "parameters": {"headers": {"x-request-id": "abc"}}})
    assert mlserver_compat.request_headers(payload) == {"x-request-id": "abc"}
    assert mlserver_compat.request_headers(InferenceRequest(inputs=[])) == {}


def test_datatype_of_numpy_arrays():
    assert mlserver_compat.datatype_of(np.zeros(2, np.float32)) == "FP32"
    assert mlserver_compat.datatype_of(np.zeros(2, np.float64)) == "FP64"
    assert mlserver_compat.datatype_of(np.zeros(2, np.int32)) == "INT32"


def test_response_from_grpc():
    response = pb.ModelInferResponse(model_name="m", id="r1")
    tensor = response.outputs.add(name="p", datatype="FP32", shape=[2])
    tensor.contents.fp32_contents.extend([0.25, 0.75])
    converted = mlserver_compat.response_from_grpc(response)
    assert converted.id == "r1" and converted.outputs[0].data.root == [0.25, 0.75]
