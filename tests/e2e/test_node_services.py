"""Services and DNS on the real node: what a pod uses to reach another workload by name.

A StatefulSet of two HTTP servers (the operator image's Python, restricted Pod Security) behind
a ClusterIP Service and a headless one; a client pod resolves both through CoreDNS (short names,
through the pod's search path, and full names) and connects through kube-proxy's rules.
"""

from __future__ import annotations

import json
import textwrap
import time

from tests.support.controlplane import scaled
from tests.support.images import Image
from tests.support.node import DNS_IP, DOMAIN, SERVICE_RANGE, NodeCluster

NAMESPACE = "dns-check"
RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
              "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
              "seccompProfile": {"type": "RuntimeDefault"}}

CLIENT = textwrap.dedent("""\
    import json, socket, time, urllib.error, urllib.request
    def addresses(name):
        return sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)})
    refused = []
    def get(url):
        # kube-proxy programs a Service's endpoints some time after its pods are Ready (it
        # rejects connections until then): a client retries, as every real one does.
        deadline = time.monotonic() + %(retry)d
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    return response.status, response.read().decode()
            except urllib.error.URLError as exc:
                if not isinstance(exc.reason, ConnectionRefusedError) \
                        or time.monotonic() > deadline:
                    raise
                refused.append(url)
                time.sleep(0.5)
    out = {"resolv": open("/etc/resolv.conf").read(),
           "web": addresses("web"), "web_fqdn": addresses("web.%(ns)s.svc.%(domain)s"),
           "headless": addresses("web-headless"), "web_0": addresses("web-0.web-headless"),
           "via_service": get("http://web/"), "via_headless": get("http://web-1.web-headless:8000/")}
    try:
        addresses("example.com")
        out["outside"] = "resolved"
    except OSError as exc:
        out["outside"] = type(exc).__name__
    out["refused"] = len(refused)
    print(json.dumps(out))
""")
"""The client pod's program: formatted with the namespace, the cluster domain and how long it
retries a refused connection."""


def manifests(image: str) -> list[dict]:
    labels = {"app": "web"}
    server = {"name": "web", "image": image, "imagePullPolicy": "Never",
              "command": ["python", "-c",
                          "import http.server, socketserver, os\n"
                          "class H(http.server.BaseHTTPRequestHandler):\n"
                          "    def do_GET(self):\n"
                          "        body = os.environ['HOSTNAME'].encode()\n"
                          "        self.send_response(200); self.end_headers()\n"
                          "        self.wfile.write(body)\n"
                          "http.server.HTTPServer(('0.0.0.0', 8000), H).serve_forever()\n"],
              "ports": [{"containerPort": 8000, "name": "http"}],
              "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
              "securityContext": RESTRICTED}
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-headless"},
         "spec": {"selector": labels, "clusterIP": "None",
                  "ports": [{"port": 8000, "targetPort": "http"}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
         "spec": {"serviceName": "web-headless", "replicas": 2,
                  "podManagementPolicy": "Parallel", "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [server]}}}},
    ]


def test_a_pod_reaches_a_clusterip_and_a_headless_service_by_name(
        node: NodeCluster, operator_image: Image):
    node.kubectl("create", "namespace", NAMESPACE)
    node.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    node.apply([{**obj, "metadata": {**obj["metadata"], "namespace": NAMESPACE}}
                for obj in manifests(operator_image.ref)])
    waited = node.kubectl("-n", NAMESPACE, "rollout", "status", "statefulset/web",
                          f"--timeout={scaled(90):.0f}s", check=False, timeout=scaled(100))
    assert waited.returncode == 0, (waited.stderr + node.kubectl(
        "-n", NAMESPACE, "describe", "pods", check=False).stdout + node.container_logs())
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in json.loads(node.kubectl(
        "-n", NAMESPACE, "get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]}
    cluster_ip = node.kubectl("-n", NAMESPACE, "get", "service", "web",
                              "-o", "jsonpath={.spec.clusterIP}").stdout
    assert cluster_ip.startswith(SERVICE_RANGE.rsplit(".", 2)[0]), cluster_ip

    client = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "client", "namespace": NAMESPACE},
              "spec": {"restartPolicy": "Never", "containers": [{
                  "name": "client", "image": operator_image.ref, "imagePullPolicy": "Never",
                  "command": ["python", "-c", CLIENT % {
                      "ns": NAMESPACE, "domain": DOMAIN, "retry": scaled(30)}],
                  "securityContext": RESTRICTED}]}}
    started = time.monotonic()
    node.apply([client])
    deadline = started + scaled(90)
    phase = ""
    while phase not in ("Succeeded", "Failed"):
        assert time.monotonic() < deadline, node.kubectl(
            "-n", NAMESPACE, "describe", "pod", "client").stdout + node.container_logs()
        time.sleep(0.5)
        phase = node.kubectl("-n", NAMESPACE, "get", "pod", "client",
                             "-o", "jsonpath={.status.phase}").stdout
    logs = node.kubectl("-n", NAMESPACE, "logs", "client", check=False)
    assert phase == "Succeeded", logs.stdout + logs.stderr + node.container_logs()
    seen = json.loads(logs.stdout.strip().splitlines()[-1])
    print(f"\nclient pod done {time.monotonic() - started:.1f} s after apply: {seen}")

    assert f"nameserver {DNS_IP}" in seen["resolv"]
    assert f"search {NAMESPACE}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}" in seen["resolv"]
    assert seen["web"] == seen["web_fqdn"] == [cluster_ip]  # the ClusterIP, short and full name
    assert seen["headless"] == sorted(pods.values())  # a headless name: every pod's address
    assert seen["web_0"] == [pods["web-0"]]  # one pod of the StatefulSet by its own name
    assert seen["via_service"][0] == 200 and seen["via_service"][1] in pods
    assert seen["via_headless"] == [200, "web-1"]
    assert seen["outside"] == "gaierror"  # nothing resolves off the cluster: no route out

    node.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
