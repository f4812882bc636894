"""seldon_market_ab.mlserver_compat against the installed MLServer and prometheus-client.

These details are private or undocumented. If a version changes, this file fails first, and by name:
re-check each function of mlserver_compat against the new version, then update CHECKED_VERSIONS.
"""

import re

import numpy as np
import pytest
from mlserver.errors import MLServerError
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.types import InferenceRequest
from prometheus_client import Counter

from seldon_market_ab import mlserver_compat
from seldon_market_ab.metrics import counter
from seldon_market_ab.protocol_types import CONTENTS, DTYPES, datatype_of


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


def test_the_datatype_table_is_the_one_mlserver_decodes_with():
    """MLServer's codecs and gRPC converter decode what our byte sizes and typed contents describe: the tables agree
    (but for FP16's typed contents: MLServer puts them in bytes_contents, the protocol has none)."""
    from mlserver.codecs.numpy import _DatatypeToNumpy, to_datatype
    from mlserver.grpc.converters import _FIELDS

    assert {d.value: np.dtype(name) for d, name in _DatatypeToNumpy.items() if d.value != "BYTES"} == DTYPES
    assert {d.value: field for d, field in _FIELDS.items() if d.value != "FP16"} == CONTENTS
    for dtype in [*DTYPES.values(), np.dtype(object), np.dtype("U3"), np.dtype("S3")]:
        assert datatype_of(np.zeros(2, dtype)) == to_datatype(dtype).value


def test_response_from_grpc():
    response = pb.ModelInferResponse(model_name="m", id="r1")
    tensor = response.outputs.add(name="p", datatype="FP32", shape=[2])
    tensor.contents.fp32_contents.extend([0.25, 0.75])
    converted = mlserver_compat.response_from_grpc(response)
    assert converted.id == "r1" and converted.outputs[0].data.root == [0.25, 0.75]


def test_the_patches_install_once_and_replace_what_they_name():
    import inspect

    from mlserver.errors import ModelNotReady
    from mlserver.grpc import converters
    from mlserver.grpc import utils as grpc_utils
    from mlserver.handlers.dataplane import DataPlane

    mlserver_compat.install_patches()
    mlserver_compat.install_patches()  # idempotent
    assert getattr(converters.ModelInferRequestConverter.to_types, "_market_ab_patched", False)
    assert DataPlane._infer_contextmanager is mlserver_compat._infer_contextmanager_bounded
    assert grpc_utils.STATUS_CODE_MAPPING[503].name == "UNAVAILABLE"
    assert ModelNotReady("m").status_code == 503
    # What the replacement of DataPlane._infer_contextmanager relies on in the pinned MLServer:
    source = inspect.getsource(DataPlane.__init__)
    for attribute in ("_ModelInferRequestDuration", "_ModelInferRequestFailure", "_ModelInferRequestSuccess",
                      "_model_registry"):
        assert f"self.{attribute}" in source, attribute


def test_the_rest_patches_install_once_and_rest_on_what_the_pinned_versions_do():
    import inspect

    import fastapi.routing
    from mlserver.rest import app, responses
    from starlette._exception_handler import wrap_app_handling_exceptions
    from starlette.middleware.exceptions import ExceptionMiddleware
    from starlette.responses import Response

    mlserver_compat.install_patches()
    installed = (app.Request, responses.Response.render, responses.Response.init_headers)
    mlserver_compat.install_patches()  # idempotent: nothing wrapped twice
    assert (app.Request, responses.Response.render, responses.Response.init_headers) == installed
    assert app.Request._market_ab_patched and app.Request.__mro__[1].__module__ == "mlserver.rest.requests"
    # MLServer's routes build their request from the module's `Request`, looked up on every request
    assert "request = Request(request.scope, request.receive)" in inspect.getsource(app.APIRoute.get_route_handler)
    # Starlette sets a response's status before rendering its body, and its headers after
    init = inspect.getsource(Response.__init__)
    assert init.index("self.status_code = status_code") < init.index("self.render(content)") \
        < init.index("self.init_headers(headers)")
    # the app's live exception handlers travel in the scope, and are looked up there when an error is raised
    assert 'scope["starlette.exception_handlers"] = (' in inspect.getsource(ExceptionMiddleware.__call__)
    assert 'conn.scope["starlette.exception_handlers"]' in inspect.getsource(wrap_app_handling_exceptions)
    # FastAPI lets an HTTPException out of its body parsing unchanged, and parses JSON with no Content-Type
    handler = inspect.getsource(fastapi.routing.get_request_handler)
    assert "except HTTPException:" in handler and "if not content_type_value:" in handler
    error = mlserver_compat.BodyError("bad body")  # found by MLServer's handler first, and let out by FastAPI's
    assert isinstance(error, fastapi.HTTPException) and type(error).__mro__[1] is MLServerError
    assert (str(error), error.status_code) == ("bad body", 400)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda r: r.raw_input_contents.__setitem__(0, b"\x00" * 7), "needs 8 bytes of raw contents, got 7"),
    (lambda r: r.inputs[0].__setattr__("datatype", "FP7"), "datatype 'FP7'"),
    (lambda r: r.inputs.add(name="y", datatype="FP32", shape=[1]), "2 inputs carry no typed contents but 1"),
    (lambda r: r.inputs[0].shape.__setitem__(0, -2), "negative dimension"),
], ids=["length", "datatype", "buffers", "dimension"])
def test_check_raw_contents(mutate, expected):
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[2])
    request.raw_input_contents.append(np.zeros(2, np.float32).tobytes())
    mlserver_compat.check_raw_contents(request)  # the good request passes
    mutate(request)
    with pytest.raises(MLServerError, match=re.escape(expected)) as error:
        mlserver_compat.check_raw_contents(request)
    assert error.value.status_code == 400
