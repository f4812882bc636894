"""Alerts routed like production: the local stack's Alertmanager (the distribution's binary, its configuration
checked by its own ``amtool``), the receivers of the notification log and the retraining trigger, and a drift alert
that travels from a drifted window through real Prometheus and Alertmanager to the trigger."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import urllib.request

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from seldon_market_ab.cli.demo import crash_windows
from seldon_market_ab.client import InferenceClient
from seldon_market_ab.local_seldon.alert_receiver import AlertReceiver
from seldon_market_ab.local_seldon.alertmanager import alertmanager_config
from seldon_market_ab.local_seldon.manifests import load_all
from seldon_market_ab.local_seldon.prometheus import scrape_config
from seldon_market_ab.local_seldon.serve_process import ServeProcess

from ..conftest import MARKET_AB, MODELS, REPO


def alert(name="MarketAbInputDrift", status="firing", starts="2026-12-07T06:00:00Z", **labels):
    labels = {"alertname": name, "model": "drift-detector", **labels}
    return {"status": status, "labels": labels, "annotations": {"summary": f"{name} on {labels['model']}"},
            "startsAt": starts, "fingerprint": json.dumps(labels, sort_keys=True)[:16]}


def payload(*alerts):
    return {"version": "4", "status": "firing", "receiver": "retrain", "alerts": list(alerts)}


def test_the_routes_pass_amtool_and_send_drift_to_retraining(tmp_path):
    amtool = shutil.which("amtool")
    assert amtool, "amtool comes with the distribution's prometheus-alertmanager package (.ci/run installs it)"
    config = alertmanager_config("http://127.0.0.1:9002/alerts/notify", "http://127.0.0.1:9002/alerts/retrain")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    checked = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    routes = {}
    for labels in ({"alertname": "MarketAbInputDrift", "model": "drift-detector"},
                   {"alertname": "MarketAbErrorRate", "model": "faulty"},
                   {"alertname": "Custom", "retrain": "true"}):
        tested = subprocess.run([amtool, "config", "routes", "test", "--config.file", str(path),
                                 *(f"{k}={v}" for k, v in labels.items())], capture_output=True, text=True)
        routes[labels["alertname"]] = tested.stdout.strip().split(",")
    assert routes == {"MarketAbInputDrift": ["retrain", "notifications"], "MarketAbErrorRate": ["notifications"],
                      "Custom": ["retrain", "notifications"]}


def test_prometheus_sends_its_alerts_to_the_alertmanager():
    config = scrape_config({"gateway": "127.0.0.1:9000"}, alertmanagers=["127.0.0.1:9093"])
    assert config["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]}
    assert "alerting" not in scrape_config({"gateway": "127.0.0.1:9000"})


def call(receiver: AlertReceiver, method: str, path: str, body=None) -> tuple[int, dict]:
    async def go():
        async with TestClient(TestServer(receiver.app())) as client:
            data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
            answer = await client.request(method, path, data=data)
            return answer.status, await answer.json()

    return asyncio.run(go())


def test_every_alert_reaches_the_notification_log(tmp_path):
    receiver = AlertReceiver(tmp_path)
    status, answer = call(receiver, "POST", "/alerts/notify",
                          payload(alert(), alert("MarketAbErrorRate", status="resolved", model="faulty")))
    assert status == 200 and answer == {"received": 2}
    lines = (tmp_path / "notifications.log").read_text().splitlines()
    assert [line.split()[1:3] for line in lines] == [["FIRING", "MarketAbInputDrift"],
                                                    ["RESOLVED", "MarketAbErrorRate"]]
    assert "model=faulty" in lines[1]


def test_a_drift_alert_is_one_retraining_request_however_often_it_is_sent(tmp_path):
    triggered = threading.Condition()
    keys: list[str] = []

    def trigger(request):
        with triggered:
            keys.append(request["key"])
            triggered.notify_all()

    receiver = AlertReceiver(tmp_path, trigger)
    status, answer = call(receiver, "POST", "/alerts/retrain", payload(alert()))
    assert status == 200 and len(answer["new_requests"]) == 1
    for _ in range(3):  # Alertmanager repeats while the alert fires; a restart reads what was recorded
        assert call(receiver, "POST", "/alerts/retrain", payload(alert()))[1]["new_requests"] == []
        receiver = AlertReceiver(tmp_path, trigger)
    resolved = call(receiver, "POST", "/alerts/retrain", payload(alert(status="resolved")))[1]
    again = call(receiver, "POST", "/alerts/retrain", payload(alert(starts="2026-12-08T06:00:00Z")))[1]
    assert resolved["new_requests"] == [] and len(again["new_requests"]) == 1  # a new episode of drift: new
    requests = [json.loads(line) for line in (tmp_path / "retrain-requests.jsonl").read_text().splitlines()]
    assert len(requests) == 2 and requests[0]["alert"]["labels"]["alertname"] == "MarketAbInputDrift"
    assert call(receiver, "GET", "/alerts/retrain")[1]["requests"] == requests
    with triggered:  # each trigger runs in a thread of its own
        assert triggered.wait_for(lambda: len(keys) >= 2, timeout=10)
    assert sorted(keys) == sorted(r["key"] for r in requests)


def test_a_watch_answers_once_what_it_waits_for_is_written(tmp_path):
    """``GET /alerts/retrain?at_least=1&wait=S`` answers when the first request is recorded, not after S."""
    receiver = AlertReceiver(tmp_path)

    async def go():
        async with TestClient(TestServer(receiver.app())) as client:
            watch = asyncio.create_task(client.get("/alerts/retrain", params={"at_least": "1", "wait": "300"}))
            await asyncio.sleep(0)  # usually lets the watch begin first; begun after the post, it answers at once
            posted = await client.post("/alerts/retrain", data=json.dumps(payload(alert())))
            assert posted.status == 200
            answer = await asyncio.wait_for(watch, 60)  # well before its 300 s
            assert [r["alert"]["labels"]["alertname"] for r in (await answer.json())["requests"]] == \
                ["MarketAbInputDrift"]
            empty = await client.get("/alerts/notify", params={"at_least": "0", "wait": "300"})
            assert (await empty.json())["notifications"] == []  # nothing to wait for: at once
            bad = await client.get("/alerts/retrain", params={"at_least": "many"})
            assert bad.status == 400 and "at_least" in (await bad.json())["error"]

    asyncio.run(go())


@pytest.mark.parametrize(("body", "words"), [
    ("{not json", "as JSON"),
    ({"alerts": "none"}, "'alerts' is a list of objects"),
    ({"alerts": [{"status": "firing"}]}, "each with 'labels'"),
    ({"alerts": [{"status": "firing", "labels": {}, "annotations": "text"}]}, "'annotations', if any"),
])
def test_a_payload_that_is_not_alertmanagers_is_a_client_error(tmp_path, body, words):
    receiver = AlertReceiver(tmp_path)
    for path in ("/alerts/notify", "/alerts/retrain"):
        status, answer = call(receiver, "POST", path, body)
        assert status == 400 and words in answer["error"]
    assert not (tmp_path / "retrain-requests.jsonl").exists()


def test_a_request_that_could_not_be_recorded_stays_new_for_the_retry(tmp_path, monkeypatch):
    receiver = AlertReceiver(tmp_path)
    real, failures = AlertReceiver._append, []

    def full_disk(path, lines):
        if not failures:
            failures.append(path)
            raise OSError(28, "No space left on device")
        real(path, lines)

    monkeypatch.setattr(AlertReceiver, "_append", staticmethod(full_disk))
    status, answer = call(receiver, "POST", "/alerts/retrain", payload(alert()))
    assert status == 500 and "No space left" in answer["error"]
    status, answer = call(receiver, "POST", "/alerts/retrain", payload(alert()))  # Alertmanager retries
    assert status == 200 and len(answer["new_requests"]) == 1
    assert len((tmp_path / "retrain-requests.jsonl").read_text().splitlines()) == 1


def test_a_line_cut_short_by_a_crash_is_dropped_and_a_damaged_one_named(tmp_path):
    receiver = AlertReceiver(tmp_path)
    call(receiver, "POST", "/alerts/retrain", payload(alert()))
    path = tmp_path / "retrain-requests.jsonl"
    with open(path, "a") as file:
        file.write('{"key": "half-writ')  # never acknowledged: its reply comes after a whole line's fsync
    receiver = AlertReceiver(tmp_path)
    assert path.read_text().endswith("}\n") and len(path.read_text().splitlines()) == 1
    again = call(receiver, "POST", "/alerts/retrain", payload(alert(starts="2026-12-09T00:00:00Z")))[1]
    assert len(again["new_requests"]) == 1
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()][1] == again["new_requests"][0]
    path.write_text("not json\n" + path.read_text())
    with pytest.raises(ValueError, match="retrain-requests.jsonl:1: not a recorded request"):
        AlertReceiver(tmp_path)


@pytest.mark.parametrize("case", ["port taken", "not installed"])
def test_market_ab_serve_names_an_alertmanager_it_cannot_run_before_starting_anything(tmp_path, case):
    import os
    import socket

    from seldon_market_ab.local_seldon.mlserver_process import free_port

    env = dict(os.environ)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if case == "not installed":  # a PATH with prometheus and python but no Alertmanager
            folder = tmp_path / "bin"
            folder.mkdir()
            (folder / "prometheus").symlink_to(shutil.which("prometheus"))
            env["PATH"] = f"{folder}:{os.path.dirname(sys.executable)}"
        done = subprocess.run([*MARKET_AB, "--models-dir", str(MODELS), "serve",
                               "--alertmanager-port", str(port), "--prometheus-port", str(free_port()),
                               "--state-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    expected = (f"port {port} on 127.0.0.1 is in use" if case == "port taken" else
                "prometheus-alertmanager is not installed")
    assert expected in done.stderr and "--no-alertmanager" in done.stderr
    assert "starting MLServer" not in done.stdout


def test_a_drifted_window_reaches_the_retraining_trigger_through_prometheus_and_alertmanager(tmp_path):
    """The S&P 500's autumn 2008 sent to the drift detector: market_ab_drift_is_drift turns 1, Prometheus fires
    MarketAbInputDrift (its for: capped at 1 s), Alertmanager routes it to the trigger and to the notification log."""
    with ServeProcess(MODELS, [REPO / "manifests" / "overlays" / "dev"], prometheus=True, alertmanager=True,
                      extra_args=["--alert-for", "1s", "--alerts-dir", str(tmp_path)],
                      log_path=tmp_path / "serve.log") as serve:
        assert serve.alertmanager_url.startswith("http://127.0.0.1:"), serve.output()  # loopback only
        client = InferenceClient(serve.grpc_address)
        verdict = client.infer("drift-detector", {"ohlcv": crash_windows()})
        client.close()
        assert verdict.outputs["is_drift"][0] == 1
        watch = f"{serve.admin_url}/alerts/retrain?at_least=1&wait=90"  # answers once the request is recorded
        requests = json.loads(urllib.request.urlopen(watch, timeout=100).read())["requests"]
        assert [r["alert"]["labels"]["alertname"] for r in requests] == ["MarketAbInputDrift"]
        assert requests[0]["alert"]["labels"]["model"] == "drift-detector"
        watch = f"{serve.admin_url}/alerts/notify?at_least=1&wait=60"
        notified = json.loads(urllib.request.urlopen(watch, timeout=70).read())["notifications"]
        assert any("FIRING MarketAbInputDrift" in line for line in notified), notified
        held = json.loads(urllib.request.urlopen(f"{serve.alertmanager_url}/api/v2/alerts", timeout=5).read())
        drift = [a for a in held if a["labels"]["alertname"] == "MarketAbInputDrift"]
        assert drift and {r["name"] for r in drift[0]["receivers"]} == {"retrain", "notifications"}


# on a cluster --------------------------------------------------------------------------------------------------

OPERATOR_CRD = REPO / "tests" / "fixtures" / "prometheus-operator" / "alertmanagerconfigs.yaml"


def rendered(overlay: str) -> list[dict]:
    text = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests" / "overlays" / overlay)],
                          capture_output=True, text=True, check=True).stdout
    return [doc for doc in load_all(text) if doc]


@pytest.mark.parametrize(("overlay", "namespace"), [("dev", "seldon-market-ab-dev"), ("prod", "seldon-market-ab")])
def test_the_clusters_alertmanager_config_validates_and_routes_as_the_local_stack_does(overlay, namespace):
    from seldon_market_ab.local_seldon.alertmanager import RETRAIN_ALERTS
    from seldon_market_ab.local_seldon.manifests import validate

    crd = yaml.safe_load(OPERATOR_CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    documents = rendered(overlay)
    (config,) = [d for d in documents if d["kind"] == "AlertmanagerConfig"]
    assert validate(config, schema) == []
    route_schema = schema["properties"]["spec"]["properties"]["route"]
    for child in config["spec"]["route"]["routes"]:  # child routes: the CRD preserves them; the operator checks them
        assert validate(child, route_schema) == []
    retrain = [r for r in config["spec"]["route"]["routes"] if r["receiver"] == "retrain"]
    assert [f'{m["name"]}="{m["value"]}"' for r in retrain for m in r["matchers"]] == list(RETRAIN_ALERTS)
    assert all(r["continue"] for r in retrain)
    assert config["spec"]["route"]["routes"][-1] == {"receiver": "notifications"}
    (service,) = [d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == "market-ab-alerts"]
    urls = {r["name"]: r["webhookConfigs"][0]["url"] for r in config["spec"]["receivers"]}
    port = service["spec"]["ports"][0]["port"]
    assert urls == {"notifications": f"http://market-ab-alerts.{namespace}.svc:{port}/alerts/notify",
                    "retrain": f"http://market-ab-alerts.{namespace}.svc:{port}/alerts/retrain"}
    assert service["metadata"]["namespace"] == config["metadata"]["namespace"] == namespace
    (deployment,) = [d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "market-ab-alerts"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["alerts", "receive"]


def test_the_alertmanager_config_fixture_names_its_source():
    header = OPERATOR_CRD.read_text().splitlines()[:2]
    assert "prometheus-operator" in header[1] and "monitoring.coreos.com_alertmanagerconfigs.yaml" in header[1]


def test_the_receiver_runs_on_its_own_as_on_a_cluster(tmp_path):
    from seldon_market_ab.local_seldon.mlserver_process import free_port

    port = free_port()
    process = subprocess.Popen([*MARKET_AB, "alerts", "receive", "--port", str(port),
                                "--dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        line = process.stdout.readline()  # printed once its port is bound
        assert line.startswith("market-ab alerts: receiving on"), line + process.stdout.read()
        body = json.dumps(payload(alert())).encode()
        posted = urllib.request.urlopen(urllib.request.Request(f"{url}/alerts/retrain", body, method="POST"),
                                        timeout=10)
        assert len(json.loads(posted.read())["new_requests"]) == 1
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        assert 'market_ab_retrain_requests_total{outcome="new"} 1.0' in metrics
    finally:
        process.terminate()
        process.wait(30)
    assert len((tmp_path / "retrain-requests.jsonl").read_text().splitlines()) == 1
