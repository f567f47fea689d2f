"""The operator's login: in a pod, the API server by the kubelet's Service variables."""

from __future__ import annotations

import kopf
import pytest

from flowreg.controller import kube


@pytest.fixture
def in_a_pod(monkeypatch):
    info = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="sa-token",
                               default_namespace="flowreg-system")
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: info)
    monkeypatch.setattr(kopf, "login_with_kubeconfig", lambda **_: pytest.fail("not in a pod"))


@pytest.mark.parametrize(("host", "server"), [
    ("10.0.0.1", "https://10.0.0.1:443"),
    ("fd00::1", "https://[fd00::1]:443"),
])
def test_in_a_pod_the_service_variables_name_the_server(in_a_pod, monkeypatch, host, server):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    info = kube.login()
    assert info.server == server
    assert info.as_http_headers() == {"Authorization": "Bearer sa-token"}


def test_without_service_variables_the_service_name_is_kept(in_a_pod, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert kube.login().server == "https://kubernetes.default.svc"


def test_no_credentials_is_a_clear_login_error(monkeypatch):
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)
    monkeypatch.setattr(kopf, "login_with_kubeconfig", lambda **_: None)
    with pytest.raises(kopf.LoginError, match="no kubeconfig"):
        kube.login()
