"""The client's TLS option against real TLS servers (a gRPC server and an HTTPS server with a certificate made for
the test by openssl). No MLServer here: what is tested is the client's channel, not a model."""

import json
import ssl
import subprocess
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer

import grpc
import numpy as np
import pytest
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc

from seldon_market_ab.client import InferenceClient
from seldon_market_ab.local_seldon.mlserver_process import free_port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "cert.pem")], check=True, capture_output=True)
    return (folder / "key.pem").read_bytes(), (folder / "cert.pem").read_bytes(), folder


class Echo(dataplane_pb2_grpc.GRPCInferenceServiceServicer):
    def ModelInfer(self, request, context):
        metadata = dict(context.invocation_metadata())
        answer = pb.ModelInferResponse(model_name=metadata["seldon-model"], id=request.id)
        for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
            answer.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            answer.raw_output_contents.append(raw)
        return answer


def test_grpc_over_tls_trusts_the_given_certificate_only(certificate):
    key, cert, _ = certificate
    server = grpc.server(futures.ThreadPoolExecutor(2))
    dataplane_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(), server)
    port = server.add_secure_port(f"127.0.0.1:{free_port()}", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    try:
        client = InferenceClient(f"localhost:{port}", tls=True, root_certificates=cert)
        answer = client.infer("m", {"x": np.arange(3, dtype=np.float32)[None]}, request_id="tls-1")
        assert answer.outputs["x"].tolist() == [[0.0, 1.0, 2.0]] and answer.request_id == "tls-1"
        untrusting = InferenceClient(f"localhost:{port}", tls=True, retries=0)  # the system's roots only
        with pytest.raises(grpc.RpcError) as caught:
            untrusting.infer("m", {"x": np.zeros((1, 3), np.float32)}, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        plain = InferenceClient(f"localhost:{port}", retries=0)  # no TLS against a TLS server
        with pytest.raises(grpc.RpcError):
            plain.infer("m", {"x": np.zeros((1, 3), np.float32)}, timeout=10)
    finally:
        server.stop(0)


def test_rest_over_https(certificate):
    _, cert, folder = certificate

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer = {"model_name": self.headers["seldon-model"], "id": body["id"],
                      "outputs": [{**tensor, "parameters": None} for tensor in body["inputs"]]}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = InferenceClient(http_url=f"https://localhost:{server.server_port}", tls=True, root_certificates=cert)
        answer = client.infer("m", {"x": np.arange(2, dtype=np.float32)[None]}, "rest", request_id="tls-2")
        assert answer.outputs["x"].tolist() == [[0.0, 1.0]] and answer.request_id == "tls-2"
    finally:
        server.shutdown()
