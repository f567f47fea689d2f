"""A real single-node cluster: control plane, containerd, kubelet, kube-proxy, cluster DNS.

``NodeCluster.start()`` builds, in this order, everything under its own work directory:

1. a host-only bridge (``flowreg-<id>``, a free 10.x.y.0/24) that pods attach to; its gateway
   address is where the apiserver and, in some tests, a Qdrant server listen;
2. etcd + kube-apiserver (``ControlPlane`` bound to the gateway, ServiceAccount admission on,
   Services in ``SERVICE_RANGE``, the ``kubernetes`` Service's endpoints kept by the apiserver);
3. containerd (Debian's, its own root, state, socket and runc root; ``restrict_oom_score_adj``)
   with a bridge + host-local CNI whose only routes are the pod subnet and the Service range,
   so pods have no route off the machine;
4. the images, imported with ``ctr images import`` (no registry);
5. kube-controller-manager, kube-scheduler and a kubelet (cgroupfs, settings for this host's
   hybrid cgroups, ``clusterDNS`` ``DNS_IP`` and ``clusterDomain`` ``DOMAIN``), and kube-proxy
   in iptables mode, all built by hack/testbin.sh from the same module as kube-apiserver;
   kube-proxy runs as a host process (kubeadm runs it as a DaemonSet of host-network pods: the
   same process, the same rules);
6. CoreDNS (tests/support/cluster_dns.py): a Deployment and the ``kube-dns`` Service at
   ``DNS_IP``, from the image hack/node-images.sh builds; ``start`` returns once it is Ready.

kube-proxy's chains (``KUBE-SERVICES`` and the rest) are host-wide, and two kube-proxies would
rewrite each other's: a node holds ``KUBE_PROXY_LOCK`` (an advisory lock file) from start to
stop, so a second node on the same machine waits for the first to stop.

``stop()`` undoes all of it: pods' containers killed, processes stopped, kube-proxy's rules
removed (``kube-proxy --cleanup``), mounts under the work directory unmounted, the pods' network
namespaces and the bridge removed, the pods' cgroups deleted. Needs root; ``missing()`` says
what else is absent.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.support import cluster_dns
from tests.support.controlplane import ControlPlane, find_testbin, free_port, scaled
from tests.support.images import Image, build, build_node_image
from tests.support.processes import command_lines, die_with_parent, stop_group
from tests.support.skips import loud_skip

NODE_BINARIES = ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns")
HOST_TOOLS = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "ip", "iptables",
              "nsenter", "mount", "umount")
CNI_BIN = Path("/usr/lib/cni")
NODE_NAME = "flowreg-node"
CGROUP_ROOT = Path("/sys/fs/cgroup")
SERVICE_RANGE = "10.96.0.0/24"
"""The node's Service range (kubeadm's first /24): ``kubernetes`` is 10.96.0.1."""
DNS_IP = "10.96.0.10"
"""The ``kube-dns`` Service's cluster IP, the kubelet's ``clusterDNS``."""
DOMAIN = "cluster.local"
KUBE_PROXY_LOCK = Path("/run/lock/flowreg-kube-proxy.lock")
STORAGE_CLASS = "local-storage"
"""The StorageClass of ``local_volumes``: no provisioner, bound when a pod is scheduled."""


def missing(bin_dir: Path) -> str | None:
    """Why a node cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (containerd and the kubelet need root)"
    absent = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    absent += [str(CNI_BIN / p) for p in ("bridge", "host-local", "loopback")
               if not (CNI_BIN / p).exists()]
    if absent:
        return (f"{', '.join(absent)} not installed (Debian: containerd, runc, iptables, "
                "containernetworking-plugins; .ci/run installs them)")
    unbuilt = [b for b in NODE_BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if unbuilt:
        return f"{', '.join(unbuilt)} not built in {bin_dir} (hack/testbin.sh builds them)"
    return None


class CommandFailed(subprocess.CalledProcessError):
    """A failed command whose message carries what it wrote to stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr:\n{(self.stderr or '')[-4000:]}"


def run(*args: str, check: bool = True, timeout: float = 60,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a command, its output captured; with ``check``, a failure raises CommandFailed."""
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          input=stdin)
    if check and done.returncode:
        raise CommandFailed(done.returncode, done.args, done.stdout, done.stderr)
    return done


@dataclass
class Bridge:
    """A host-only Linux bridge with a /24 nobody else routes."""

    name: str
    network: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)

    @classmethod
    def create(cls, tag: str) -> Bridge:
        routes = run("ip", "-4", "route", "show", "table", "all").stdout
        taken = [ipaddress.ip_network(word, strict=False) for word in routes.split()
                 if "/" in word and word[0].isdigit()]
        rng = random.Random()
        for _ in range(100):
            network = ipaddress.ip_network(f"10.{rng.randint(200, 250)}.{rng.randint(0, 255)}.0/24")
            if not any(network.overlaps(t) for t in taken):
                break
        else:  # pragma: no cover - a host routing all of 10.200/13
            raise RuntimeError("no free 10.x.y.0/24 for the pod bridge")
        bridge = cls(f"flowreg-{tag}"[:15], network)
        run("ip", "link", "add", bridge.name, "type", "bridge")
        try:
            run("ip", "addr", "add", f"{bridge.gateway}/24", "dev", bridge.name)
            run("ip", "link", "set", bridge.name, "up")
        except BaseException:
            bridge.delete()
            raise
        return bridge

    def delete(self) -> None:
        run("ip", "link", "delete", self.name, check=False)


@dataclass
class NodeCluster:
    """A control plane and one node whose pods run in containerd. See the module docstring."""

    bin_dir: Path
    images: list[Path]
    sandbox_image: str
    dns_image: str
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="flowreg-node-")))
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    bridge: Bridge | None = None
    plane: ControlPlane | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _netns_before: set[str] = field(default_factory=set)
    _proxy_lock: int | None = None

    @property
    def socket(self) -> Path:
        return self.work_dir / "containerd.sock"

    @property
    def kubeconfig(self) -> Path:
        assert self.plane is not None
        return self.plane.kubeconfig

    def start(self, timeout: float = 120.0) -> NodeCluster:
        """Start everything (see the module docstring); ``timings`` says how long each part
        took: ``proxy-lock`` (waiting for another node's kube-proxy), ``control-plane``,
        ``images`` (the imports), ``node`` (until Ready), ``dns`` (until CoreDNS is Ready)
        and ``start`` (all of it)."""
        started = time.monotonic()
        try:
            self._take_proxy_lock(scaled(1200))
            self.timings["proxy-lock"] = time.monotonic() - started
            self._netns_before = set(_netns())
            self.bridge = Bridge.create(self.tag)
            mark = time.monotonic()
            self.plane = ControlPlane(self.bin_dir, address=self.bridge.gateway, pods=True,
                                      service_range=SERVICE_RANGE).start()
            self.timings["control-plane"] = time.monotonic() - mark
            self._start_containerd(scaled(30))
            mark = time.monotonic()
            for image in self.images:
                self._ctr("images", "import", str(image), timeout=scaled(300))
            self.timings["images"] = time.monotonic() - mark
            mark = time.monotonic()
            self._start_controllers()
            self._start_kubelet()
            self._start_kube_proxy()
            self._wait_node_ready(scaled(timeout))
            self.timings["node"] = time.monotonic() - mark
            mark = time.monotonic()
            self._start_dns(scaled(timeout))
            self.timings["dns"] = time.monotonic() - mark
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Tear everything down; safe to call twice and after a failed start."""
        for name in ("kube-scheduler", "kube-controller-manager", "kubelet", "kube-proxy"):
            proc = self.processes.pop(name, None)
            if proc is not None:
                stop_group(proc, scaled(15))
        if self._proxy_lock is not None:  # this node's kube-proxy ran: its rules go
            run(str(self.bin_dir / "kube-proxy"), "--cleanup", check=False, timeout=scaled(60))
        if "containerd" in self.processes:
            self._remove_pods()
            stop_group(self.processes.pop("containerd"), scaled(15))
        self._kill_shims()
        self._unmount_all()
        for netns in set(_netns()) - self._netns_before:
            run("ip", "netns", "delete", netns, check=False)
        if self.bridge is not None:
            self.bridge.delete()
            self.bridge = None
        _remove_pod_cgroups()
        if self.plane is not None:
            self.plane.stop()
            self.plane = None
        shutil.rmtree(self.work_dir, ignore_errors=True)
        if self._proxy_lock is not None:
            os.close(self._proxy_lock)
            self._proxy_lock = None

    def load(self, image: Path) -> float:
        """Import an image (a docker-archive) into the node's containerd; the seconds it took."""
        started = time.monotonic()
        self._ctr("images", "import", str(image), timeout=scaled(300))
        return time.monotonic() - started

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        assert self.plane is not None
        return run(str(self.plane.kubectl), f"--kubeconfig={self.kubeconfig}", *args,
                   timeout=scaled(timeout), check=check, stdin=stdin)

    def helm(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert self.plane is not None
        return run(str(self.plane.helm), f"--kubeconfig={self.kubeconfig}", *args,
                   timeout=scaled(timeout))

    def wait_pods_gone(self, namespace: str, timeout: float = 60) -> None:
        """Until ``namespace`` holds no pod (they go after their Deployment does)."""
        deadline = time.monotonic() + scaled(timeout)
        while left := self.kubectl("-n", namespace, "get", "pods", "-o", "name").stdout.split():
            if time.monotonic() > deadline:
                raise TimeoutError(f"pods left in {namespace} after {timeout:.0f}s: {left}")
            time.sleep(0.5)

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.work_dir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def container_logs(self, tail: int = 3000) -> str:
        """The last lines of every container's log on the node (also of crashed ones)."""
        logs = sorted((self.work_dir / "pod-logs").rglob("*.log"))
        return "\n".join(f"--- {p.relative_to(self.work_dir)}\n"
                         f"{p.read_text(errors='replace')[-tail:]}" for p in logs)

    # -- parts ---------------------------------------------------------------------------

    def _start_containerd(self, timeout: float) -> None:
        assert self.bridge is not None
        cni = self.work_dir / "cni"
        (cni / "net.d").mkdir(parents=True)
        (cni / "net.d" / "10-flowreg.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": f"flowreg-{self.tag}",
            "plugins": [{
                "type": "bridge", "bridge": self.bridge.name, "isGateway": True,
                "ipMasq": False, "hairpinMode": True,
                "ipam": {"type": "host-local", "dataDir": str(cni / "ipam"),
                         "ranges": [[{"subnet": str(self.bridge.network),
                                      "gateway": self.bridge.gateway}]],
                         # no default route: pods reach the subnet and the Service IPs only
                         "routes": [{"dst": SERVICE_RANGE}]},
            }]}))
        config = self.work_dir / "containerd.toml"
        root = self.work_dir / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config.write_text(f"""\
version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[{cri}]
  sandbox_image = "{self.sandbox_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{shutil.which('runc')}"
  Root = "{self.work_dir / 'runc'}"
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{cni / 'net.d'}"
""")
        self._spawn("containerd", ["containerd", "--config", str(config)])
        deadline = time.monotonic() + timeout
        while self._ctr("version", check=False).returncode != 0:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"containerd not up in {timeout:.0f}s:\n"
                                   f"{self.log('containerd')}")
            time.sleep(0.2)

    def _start_controllers(self) -> None:
        assert self.plane is not None and self.plane.certs is not None
        certs, kubeconfig = self.plane.certs, str(self.kubeconfig)
        auth = [f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false",
                "--bind-address=127.0.0.1"]
        self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"), *auth,
            f"--secure-port={free_port()}", f"--root-ca-file={certs.ca}",
            f"--service-account-private-key-file={certs.sa_private}",
            "--use-service-account-credentials=false", "--cluster-name=flowreg-test", "--v=1"])
        self._spawn("kube-scheduler", [
            str(self.bin_dir / "kube-scheduler"), *auth, f"--secure-port={free_port()}",
            "--v=1"])

    def _start_kubelet(self) -> None:
        assert self.plane is not None and self.plane.certs is not None and self.bridge
        root = self.work_dir / "kubelet"
        root.mkdir()
        resolv = self.work_dir / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\n")  # pods resolve nothing off the machine
        config = self.work_dir / "kubelet.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
            "maxOpenFiles": 20000, "resolvConf": str(resolv),
            "clusterDNS": [DNS_IP], "clusterDomain": DOMAIN,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.bridge.gateway, "port": free_port(), "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.plane.certs.ca)}},
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": str(self.work_dir / "pod-logs"),
            "volumePluginDir": str(self.work_dir / "volume-plugins"),
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "registerNode": True,
            "nodeStatusUpdateFrequency": "2s", "syncFrequency": "5s",
        }))
        run("mount", "--make-rshared", "/")  # the kubelet's volume mounts propagate
        self._spawn("kubelet", [
            str(self.bin_dir / "kubelet"), f"--config={config}",
            f"--kubeconfig={self.kubeconfig}", f"--root-dir={root}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={self.bridge.gateway}", "--v=1"])

    def _take_proxy_lock(self, timeout: float) -> None:
        """``KUBE_PROXY_LOCK``, held until ``stop``: one kube-proxy per machine at a time."""
        KUBE_PROXY_LOCK.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(KUBE_PROXY_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TimeoutError(f"another node held {KUBE_PROXY_LOCK} for "
                                       f"{timeout:.0f} s") from None
                time.sleep(1)
        self._proxy_lock = fd

    def _start_kube_proxy(self) -> None:
        assert self.bridge is not None
        config = self.work_dir / "kube-proxy.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)},
            "mode": "iptables", "hostnameOverride": NODE_NAME,
            "clusterCIDR": str(self.bridge.network), "detectLocalMode": "ClusterCIDR",
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # NodePorts on the bridge's address only, none on the host's loopback
            "nodePortAddresses": [f"{self.bridge.gateway}/32"],
            # A pod reaching a Service whose endpoint is on the same bridge gets its replies
            # de-NATed only if bridged traffic passes iptables (br_netfilter); without it,
            # every Service connection is masqueraded instead.
            "iptables": {"localhostNodePorts": False, "minSyncPeriod": "0s",
                         "syncPeriod": "30s", "masqueradeAll": not _bridged_traffic_filtered()},
            # kube-proxy lowers its OOM score by default: no process here may (CAP_SYS_RESOURCE)
            "oomScoreAdj": int(Path("/proc/self/oom_score_adj").read_text()),
            # this host's conntrack settings stay as they are
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
        }))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={config}",
                                   "--v=1"])

    def _start_dns(self, timeout: float) -> None:
        """CoreDNS applied and Ready (its Deployment rolled out)."""
        self.apply(cluster_dns.manifests(self.dns_image, DNS_IP, DOMAIN))
        waited = self.kubectl("-n", cluster_dns.NAMESPACE, "rollout", "status",
                              "deployment/coredns", f"--timeout={timeout:.0f}s",
                              check=False, timeout=timeout + 10)
        if waited.returncode != 0:
            raise TimeoutError(
                f"CoreDNS not Ready in {timeout:.0f}s: {waited.stderr}\n"
                + self.kubectl("-n", cluster_dns.NAMESPACE, "describe", "pods",
                               check=False).stdout + self.container_logs()
                + self.log("kube-proxy"))

    def apply(self, objects: list[dict[str, object]]) -> None:
        """``kubectl apply`` of ``objects`` (server-side)."""
        self.kubectl("apply", "--server-side", "-f", "-",
                     stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))

    def local_volumes(self, count: int, size: str = "1Gi", prefix: str = "local") -> list[str]:
        """``count`` static local PersistentVolumes of ``size`` in the ``STORAGE_CLASS``
        StorageClass (made if absent): a directory each under the work directory, bound to this
        node, retained when released. Returns their names."""
        self.apply([{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                     "metadata": {"name": STORAGE_CLASS},
                     "provisioner": "kubernetes.io/no-provisioner",
                     "volumeBindingMode": "WaitForFirstConsumer",
                     "reclaimPolicy": "Retain"}])
        names, volumes = [], []
        for _ in range(count):
            name = f"{prefix}-{uuid.uuid4().hex[:8]}"
            path = self.work_dir / "volumes" / name
            path.mkdir(parents=True)
            names.append(name)
            volumes.append({
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                         "persistentVolumeReclaimPolicy": "Retain",
                         "storageClassName": STORAGE_CLASS, "local": {"path": str(path)},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{
                             "matchExpressions": [{"key": "kubernetes.io/hostname",
                                                   "operator": "In",
                                                   "values": [NODE_NAME]}]}]}}}})
        self.apply(volumes)
        return names

    def _wait_node_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            result = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if result.returncode == 0:
                node = json.loads(result.stdout)
                conditions = {c["type"]: c for c in node["status"].get("conditions", [])}
                ready = conditions.get("Ready", {})
                taints = [t["key"] for t in node["spec"].get("taints", [])]
                if ready.get("status") == "True" and not taints:
                    return
                last = f"Ready={ready.get('status')} ({ready.get('message')}), taints={taints}"
            time.sleep(0.5)
        raise TimeoutError(f"node not Ready in {timeout:.0f}s: {last}\n"
                           f"kubelet:\n{self.log('kubelet')}")

    def _remove_pods(self) -> None:
        """Every pod container and sandbox: killed and removed while containerd still runs."""
        tasks = self._ctr("tasks", "list", "-q", check=False).stdout.split()
        for task in tasks:
            self._ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        deadline = time.monotonic() + scaled(15)
        while tasks and time.monotonic() < deadline:
            for task in list(tasks):
                if self._ctr("tasks", "delete", task, check=False).returncode == 0:
                    tasks.remove(task)
            time.sleep(0.2)
        for container in self._ctr("containers", "list", "-q", check=False).stdout.split():
            self._ctr("containers", "delete", container, check=False)

    def _kill_shims(self) -> None:
        address = str(self.socket).encode()
        for pid, argv in command_lines():
            if argv[0].endswith(b"containerd-shim-runc-v2") and address in argv:
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)

    def _unmount_all(self) -> None:
        prefix = str(self.work_dir)
        for _ in range(3):
            mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text()
                      .splitlines() if line.split()[4].startswith(prefix)]
            if not mounts:
                return
            for mount in sorted(mounts, key=len, reverse=True):
                run("umount", "--lazy", mount, check=False)

    def _ctr(self, *args: str, check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run("ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args,
                   check=check, timeout=timeout)

    def _spawn(self, name: str, args: list[str]) -> None:
        with (self.work_dir / f"{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent)

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")


def _bridged_traffic_filtered() -> bool:
    setting = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    return setting.exists() and setting.read_text().strip() == "1"


def _netns() -> list[str]:
    directory = Path("/var/run/netns")
    return [p.name for p in directory.iterdir()] if directory.is_dir() else []


def _remove_pod_cgroups() -> None:
    """The kubelet's ``kubepods`` cgroups, deepest first, in every hierarchy."""
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def start_node(operator_image: Image, *extra: Image) -> NodeCluster:
    """A started node whose containerd holds the pause, CoreDNS and operator images and
    ``extra``; the test skips loudly where a node cannot run here."""
    bin_dir = find_testbin()
    why = missing(bin_dir)
    if why:
        loud_skip(f"a real node: {why}")
    pause, dns = build("pause"), build_node_image("coredns")
    cluster = NodeCluster(bin_dir, images=[pause.tar, dns.tar, operator_image.tar,
                                           *(image.tar for image in extra)],
                          sandbox_image=pause.ref, dns_image=dns.ref).start()
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in cluster.timings.items() if k != "start")
    print(f"\nnode Ready with DNS in {cluster.timings['start']:.1f} s ({parts})")
    return cluster


def stop_and_check(cluster: NodeCluster) -> None:
    """Stop the node, then check that it left nothing behind: no bridge, iptables rule, mount,
    directory or process."""
    assert cluster.bridge is not None
    bridge, work, network = cluster.bridge.name, cluster.work_dir, str(cluster.bridge.network)
    pids = [p.pid for p in cluster.processes.values()]
    cluster.stop()
    assert run("ip", "link", "show", bridge, check=False).returncode != 0
    rules = run("iptables-save").stdout
    assert network not in rules and bridge not in rules, rules
    assert "KUBE-SERVICES" not in rules, rules
    assert str(work) not in Path("/proc/self/mountinfo").read_text()
    assert not work.exists()
    assert not [pid for pid in pids if _running(pid)]


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
