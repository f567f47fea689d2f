"""The node's cluster DNS: CoreDNS as a cluster runs it (kubeadm's layout), as manifests.

``manifests(image, dns_ip, domain)`` is what ``NodeCluster`` applies once the node is Ready:
in ``kube-system``, the ``coredns`` ServiceAccount with the ``system:coredns`` ClusterRole its
``kubernetes`` plugin needs (list/watch Services, EndpointSlices, Pods, Namespaces), the
``coredns`` ConfigMap holding the Corefile, the ``coredns`` Deployment, and the ``kube-dns``
Service at ``dns_ip`` (the kubelet's ``clusterDNS``).

Two departures from kubeadm's, both because of this node: the Corefile forwards nothing (pods
have no route off the machine, so names outside ``domain`` are refused instead of looked up
upstream), and the image runs as UID 65532 with no capability at all: the pod lowers
``net.ipv4.ip_unprivileged_port_start`` (a namespaced, safe sysctl) to 53 instead of granting
``NET_BIND_SERVICE`` through file capabilities on the binary.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "kube-system"
LABELS = {"k8s-app": "kube-dns"}

COREFILE = """\
.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes %(domain)s in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    cache 30
    reload
    loadbalance
}
"""


def manifests(image: str, dns_ip: str, domain: str = "cluster.local") -> list[dict[str, Any]]:
    """The objects, in the order they are applied."""
    meta = {"name": "coredns", "namespace": NAMESPACE}
    restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "capabilities": {"drop": ["ALL"]}}
    pod = {
        "priorityClassName": "system-cluster-critical",
        "serviceAccountName": "coredns",
        "dnsPolicy": "Default",  # CoreDNS itself does not resolve through the cluster DNS
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]},
        "containers": [{
            "name": "coredns", "image": image, "imagePullPolicy": "Never",
            "args": ["-conf", "/etc/coredns/Corefile"],
            "resources": {"requests": {"cpu": "50m", "memory": "70Mi"},
                          "limits": {"memory": "170Mi"}},
            "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns",
                              "readOnly": True}],
            "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                      {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                      {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
            "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                              "initialDelaySeconds": 10, "periodSeconds": 10,
                              "failureThreshold": 5},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                               "periodSeconds": 1},
            "securityContext": restricted,
        }],
        "volumes": [{"name": "config-volume", "configMap": {
            "name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"},
         "rules": [
             {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
         "data": {"Corefile": COREFILE % {"domain": domain}}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {**meta, "labels": LABELS},
         "spec": {"replicas": 1, "selector": {"matchLabels": LABELS},
                  "strategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxUnavailable": 1}},
                  "template": {"metadata": {"labels": LABELS}, "spec": pod}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": NAMESPACE,
                      "labels": {**LABELS, "kubernetes.io/name": "CoreDNS"}},
         "spec": {"selector": LABELS, "clusterIP": dns_ip,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                            {"name": "metrics", "port": 9153, "protocol": "TCP"}]}},
    ]
