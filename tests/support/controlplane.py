"""Start and stop a real kube-apiserver backed by a real etcd, the way envtest does.

``ControlPlane.start()`` generates a CA, a serving certificate, an admin client certificate
(``system:masters``) and service-account signing keys; starts etcd and kube-apiserver on free
loopback ports with RBAC authorization; waits for ``/readyz``; and writes an admin kubeconfig.
``stop()`` ends both processes (their whole process groups). Children are killed (SIGKILL) if the
process that started them dies, so no etcd or apiserver outlives a killed test run.

Binaries come from ``$FLOWREG_TESTBIN_DIR`` (built by ``hack/testbin.sh``).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.processes import die_with_parent, stop_group
from tests.support.processes import free_port as free_port

REPO = Path(__file__).resolve().parents[2]
BINARIES = ("etcd", "kube-apiserver", "kubectl", "helm")
IDLE_STARTUP_SECONDS = 4.0
"""How long a control plane takes to start on an idle 2-core machine (3.4 s measured)."""
SERVICE_RANGE = "10.0.0.0/24"
"""``--service-cluster-ip-range`` unless a ``ControlPlane`` is given another."""
SERVICE_IP = "10.0.0.1"
"""The ``kubernetes`` Service's cluster IP in ``SERVICE_RANGE`` (the range's first address)."""
FIRST_START_TIMEOUT = 120.0
"""Deadline of the first start, before anything was measured: only a guard against a hang."""
_startups: list[float] = []


def slowdown() -> float:
    """How much slower than idle this machine started its control planes (at least 1)."""
    return max([1.0, *(s / IDLE_STARTUP_SECONDS for s in _startups)])


def scaled(seconds: float) -> float:
    """A deadline of ``seconds`` on an idle machine, stretched by the measured ``slowdown``.

    Deadlines in the end-to-end tests are written for an idle machine with ample headroom;
    on a loaded machine (CI beside other jobs) everything the test waits for is slower in
    proportion, and so is the control plane's start-up, which is measured first.
    """
    return seconds * slowdown()


def find_testbin(build: bool = False) -> Path:
    """Where the binaries are; with ``build``, run hack/testbin.sh first (it skips what exists)."""
    if build:
        out = subprocess.run(["bash", str(REPO / "hack" / "testbin.sh")], check=True,
                             stdout=subprocess.PIPE, text=True)
        return Path(out.stdout.strip().splitlines()[-1])
    env = os.environ.get("FLOWREG_TESTBIN_DIR")
    if env:
        return Path(env)
    out = subprocess.run(["bash", "-c", "grep -m1 '^K8S_VERSION=' hack/testbin.sh"],
                         cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    version = out.stdout.strip().split("=", 1)[1]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "flowreg" / "testbin" / version


def missing_binaries(directory: Path) -> list[str]:
    return [b for b in BINARIES if not os.access(directory / b, os.X_OK)]


@dataclass
class Certificates:
    ca: Path
    ca_cert: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public: Path
    sa_private: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: x509.Name, key: rsa.RSAPrivateKey, issuer: x509.Name,
          issuer_key: rsa.RSAPrivateKey, *, ca: bool, sans: Sequence[x509.GeneralName] = (),
          client: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if not ca:
        usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client \
            else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(directory: Path, address: str = "127.0.0.1",
                      service_ip: str = SERVICE_IP) -> Certificates:
    """A CA, a serving certificate (127.0.0.1, ``address``, the ``kubernetes`` Service's
    ``service_ip``), an admin client cert, and SA keys."""
    directory.mkdir(parents=True, exist_ok=True)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def write(path: Path, data: bytes) -> Path:
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    ca_key = _key()
    ca_name = name("flowreg-test-ca")
    ca_cert = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    pem = serialization.Encoding.PEM
    serving_key = _key()
    ips = dict.fromkeys(["127.0.0.1", address, service_ip])
    sans = [x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc"),
            *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]
    serving = _cert(name("kube-apiserver"), serving_key, ca_name, ca_key, ca=False, sans=sans)
    admin_key = _key()
    admin = _cert(name("admin", "system:masters"), admin_key, ca_name, ca_key, ca=False,
                  client=True)
    sa_key = _key()
    return Certificates(
        ca=write(directory / "ca.crt", ca_cert.public_bytes(pem)),
        ca_cert=ca_cert, ca_key=ca_key,
        serving_cert=write(directory / "apiserver.crt", serving.public_bytes(pem)),
        serving_key=write(directory / "apiserver.key", _pem_key(serving_key)),
        admin_cert=write(directory / "admin.crt", admin.public_bytes(pem)),
        admin_key=write(directory / "admin.key", _pem_key(admin_key)),
        sa_public=write(directory / "sa.pub", sa_key.public_key().public_bytes(
            pem, serialization.PublicFormat.SubjectPublicKeyInfo)),
        sa_private=write(directory / "sa.key", _pem_key(sa_key)),
    )


@dataclass
class ControlPlane:
    """etcd + kube-apiserver, with an admin kubeconfig.

    By default the apiserver listens on loopback and runs no pods (no ServiceAccount admission).
    For a node (tests/support/node.py), ``address`` is a host-only bridge's address that pods can
    reach, and ``pods`` turns ServiceAccount admission on (pods get their token volumes) and the
    endpoint reconciler that points the ``kubernetes`` Service at this apiserver (for
    kube-proxy); ``service_range`` is ``--service-cluster-ip-range``.
    """

    bin_dir: Path
    address: str = "127.0.0.1"
    pods: bool = False
    service_range: str = SERVICE_RANGE
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="flowreg-cp-")))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    server: str = ""
    certs: Certificates | None = None
    startup_seconds: float = 0.0

    @property
    def kubeconfig(self) -> Path:
        return self.work_dir / "kubeconfig"

    @property
    def port(self) -> int:
        """The apiserver's port."""
        return int(self.server.rsplit(":", 1)[1])

    @property
    def service_ip(self) -> str:
        """The ``kubernetes`` Service's cluster IP: the first address of ``service_range``."""
        return str(ipaddress.ip_network(self.service_range).network_address + 1)

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def helm(self) -> Path:
        return self.bin_dir / "helm"

    def start(self, timeout: float | None = None) -> ControlPlane:
        """Start etcd and kube-apiserver and wait until ``/readyz`` answers ok.

        ``timeout`` defaults to ten times the slowest start-up measured in this process (or
        ``FIRST_START_TIMEOUT`` for the first); the start-up is measured for ``scaled``.
        """
        if timeout is None:
            timeout = (scaled(10 * IDLE_STARTUP_SECONDS) if _startups
                       else FIRST_START_TIMEOUT)
        started = time.monotonic()
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise FileNotFoundError(
                f"missing {', '.join(missing)} in {self.bin_dir}: run `bash hack/testbin.sh`")
        try:
            self.certs = make_certificates(self.work_dir / "pki", self.address,
                                           self.service_ip)
            client_port, peer_port = free_port(), free_port()
            etcd_url = f"http://127.0.0.1:{client_port}"
            self._spawn("etcd", [
                str(self.bin_dir / "etcd"), "--name", "default",
                "--data-dir", str(self.work_dir / "etcd"),
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync", "--log-level", "warn"])
            port = free_port()
            self.server = f"https://{self.address}:{port}"
            certs = self.certs
            self._spawn("kube-apiserver", [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={self.address}", f"--advertise-address={self.address}",
                f"--secure-port={port}",
                f"--tls-cert-file={certs.serving_cert}",
                f"--tls-private-key-file={certs.serving_key}",
                f"--client-ca-file={certs.ca}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={self.service_range}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={certs.sa_public}",
                f"--service-account-signing-key-file={certs.sa_private}",
                *(["--kubelet-preferred-address-types=InternalIP",
                   f"--kubelet-client-certificate={certs.admin_cert}",
                   f"--kubelet-client-key={certs.admin_key}"] if self.pods
                  else ["--disable-admission-plugins=ServiceAccount"]),
                "--allow-privileged=true",
                f"--endpoint-reconciler-type={'lease' if self.pods else 'none'}",
                f"--cert-dir={self.work_dir / 'cert-dir'}",
                "--v=0"])
            self._write_kubeconfig()
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        _startups.append(self.startup_seconds)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop kube-apiserver, then etcd (SIGTERM, then SIGKILL); remove the work dir."""
        timeout = scaled(15.0) if timeout is None else timeout
        for name in ("kube-apiserver", "etcd"):
            proc = self.processes.pop(name, None)
            if proc is not None:
                stop_group(proc, timeout)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.processes.items()}

    def kubeconfig_for_token(self, token: str, path: Path, user: str = "user") -> Path:
        """A kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount's)."""
        assert self.certs is not None
        ca = base64.b64encode(self.certs.ca.read_bytes()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        path.chmod(0o600)
        return path

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.work_dir / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        log.close()

    def _write_kubeconfig(self) -> None:
        assert self.certs is not None
        b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "admin",
            "clusters": [{"name": "test", "cluster": {
                "server": self.server, "certificate-authority-data": b64(self.certs.ca)}}],
            "users": [{"name": "admin", "user": {
                "client-certificate-data": b64(self.certs.admin_cert),
                "client-key-data": b64(self.certs.admin_key)}}],
            "contexts": [{"name": "admin", "context": {"cluster": "test", "user": "admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.kubeconfig.chmod(0o600)

    def _wait_ready(self, timeout: float) -> None:
        assert self.certs is not None
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        context.load_cert_chain(str(self.certs.admin_cert), str(self.certs.admin_key))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    log = (self.work_dir / f"{name}.log").read_text(errors="replace")
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=context,
                                            timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"kube-apiserver not ready in {timeout}s: {last}")


def wait_established(api: Any, crd_name: str, timeout: float = 30.0) -> None:
    """Wait until a CustomResourceDefinition is Established (its API is served)."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api)
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(crd_name)
        for cond in (crd.status and crd.status.conditions) or []:
            if cond.type == "Established" and cond.status == "True":
                return
        time.sleep(0.1)
    raise TimeoutError(f"CRD {crd_name} not Established in {timeout}s")


def apply_documents(api: Any, documents: Iterable[Mapping[str, Any]],
                    namespace: str | None = None) -> list[Any]:
    """Server-side apply each document (CRDs first wait for Established); return the objects."""
    from kubernetes import dynamic

    dyn = dynamic.DynamicClient(api)
    applied = []
    for doc in documents:
        if not doc:
            continue
        body = dict(doc)
        resource = dyn.resources.get(api_version=body["apiVersion"], kind=body["kind"])
        meta = dict(body.get("metadata") or {})
        ns = meta.get("namespace") or (namespace if resource.namespaced else None)
        if ns and resource.namespaced:
            meta["namespace"] = ns
            body["metadata"] = meta
        obj = resource.server_side_apply(body=body, name=meta["name"], namespace=ns,
                                         field_manager="flowreg-tests", force_conflicts=True)
        applied.append(obj)
        if body["kind"] == "CustomResourceDefinition":
            wait_established(api, meta["name"])
            dyn.resources.invalidate_cache()
    return applied


def apply_file(api: Any, path: Path, namespace: str | None = None) -> list[Any]:
    """Server-side apply every document of a YAML file."""
    with path.open(encoding="utf-8") as fh:
        return apply_documents(api, list(yaml.safe_load_all(fh)), namespace)


def service_account_token(api: Any, namespace: str, name: str,
                          seconds: int = 3600) -> str:
    """A token of ServiceAccount ``namespace/name`` (created if absent), via TokenRequest."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name=name)))
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=["https://kubernetes.default.svc"],
                                       expiration_seconds=seconds))
    result = core.create_namespaced_service_account_token(name, namespace, request)
    return str(result.status.token)
