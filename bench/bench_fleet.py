"""Benchmark: one operator over a fleet of FlowRegistries, on a real control plane.

    python -m bench.bench_fleet --registries 2000 --flows 20 --store server
    python -m bench.bench_fleet --registries 200 --store edge --steady-seconds 30   # smaller

Starts etcd + kube-apiserver (the binaries ``hack/testbin.sh`` builds), a Qdrant server (the
binary ``hack/qdrant.sh`` builds; ``--store edge``: an embedded store in a directory instead),
and ``flowreg run`` as a child process with the admin kubeconfig, speaking gRPC to the Qdrant
server as the chart configures it (``--rest``: REST). ``--finalizer-policy`` installs the
chart's opt-in finalizer policy (``finalizerPolicy.enabled``: the apiserver adds the operator's
finalizer at creation; without it the operator adds it, one PATCH per registry).
``--global-index``: the collection gets Qdrant's search graph over all points (``globalIndex``)
instead of a graph per agent, flowreg's default.
Then three phases:

1. **Fleet**: ``--registries`` FlowRegistries of ``--flows`` flows each, one agent per
   registry, created at once by ``--clients`` threads. Measured: seconds from the last object
   accepted until every one is Ready at its generation, and the CPU each process used in that
   time; each first sync's engine seconds; the operator's peak RSS (VmHWM); apiserver requests
   per registry by verb and resource, the benchmark's own creates and lists subtracted
   (apiserver ``apiserver_request_total``), and the apiserver's own time per request; Qdrant
   calls by operation and embedded texts (the operator's ``flowreg_store_operations_total``,
   ``flowreg_embedded_texts_total``).
2. **Steady state**: the registries are created with ``spec.interval`` = ``--interval`` (default
   ``1h``: no re-sync is due during ``--steady-seconds``, and the operator only runs its one
   re-sync clock; ``--interval 10m --steady-seconds 600`` measures a whole interval, every
   registry re-synced once). Measured: operator CPU (utime + stime), syncs, Qdrant calls and
   status patches.
3. **Restart**: the operator is stopped (SIGTERM) and started again over the existing fleet.
   Every registry is Ready at its generation, so none is synced at once: each one's first
   re-sync comes at a random time within ``min(interval, 60 s)``. Measured: seconds until the
   operator's syncs counter reaches the fleet size (first, half), the most syncs started in
   any one second, CPU, Qdrant calls per registry, embedded texts (expected 0), status
   patches (expected 0: nothing changed).

The steady cost at a 10-minute interval is extrapolated as printed: the idle CPU per second
(phase 2, when it re-synced nothing) plus, every 600 s, one re-sync of every registry at the
CPU and Qdrant calls per re-sync measured in phase 3 (a first re-sync after a restart is the
same digest comparison an interval re-sync is).

``--py-spy FILE`` samples the operator with py-spy during phase 1 (raw folded stacks, for a
flame graph or a summary by function); py-spy is not a dependency of the project.
``--apiserver-profile FILE`` saves kube-apiserver's CPU profile of phase 1 (its first
``--apiserver-profile-seconds``), for ``go tool pprof``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "flowreg.dev", "v1alpha1", "flowregistries"
NAMESPACE = "fleet"
_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$')
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def samples(text: str, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of ``metric`` in a Prometheus text exposition, keyed by their labels."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == metric:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', match.group(2))))
            out[labels] = out.get(labels, 0.0) + float(match.group(3))
    return out


def plain_metric(text: str, metric: str) -> float:
    """A metric without labels (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(metric + " "):
            return float(line.split()[1])
    return 0.0


class Operator:
    """``flowreg run`` as a child process."""

    def __init__(self, kubeconfig: Path, config: Path, log: Path) -> None:
        self.metrics_port, self.liveness_port = free_port(), free_port()
        self.args = [sys.executable, "-m", "flowreg.cli.main", "run", "--config", str(config),
                     "-A", "--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz",
                     "--metrics-port", str(self.metrics_port), "--log-format", "json"]
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("the operator did not serve metrics in 120 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def peak_rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def counters(self) -> tuple[Counter[str], float, float]:
        """(Qdrant calls by operation, embedded texts, syncs) so far."""
        text = self.metrics()
        ops: Counter[str] = Counter()
        for labels, value in samples(text, "flowreg_store_operations_total").items():
            ops[dict(labels)["operation"]] += int(value)
        syncs = sum(samples(text, "flowreg_syncs_total").values())
        return ops, plain_metric(text, "flowreg_embedded_texts_total"), syncs


def pid_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


class Others:
    """CPU seconds of the processes beside the operator: etcd, kube-apiserver, Qdrant."""

    def __init__(self, plane: Any, qdrant: Any) -> None:
        self.pids = {name: proc.pid for name, proc in plane.processes.items()}
        if qdrant is not None and qdrant.proc is not None:
            self.pids["qdrant"] = qdrant.proc.pid

    def cpu(self) -> dict[str, float]:
        return {name: pid_cpu_seconds(pid) for name, pid in self.pids.items()}

    def since(self, before: dict[str, float]) -> str:
        now = self.cpu()
        return ", ".join(f"{name} {now[name] - before.get(name, 0.0):.1f} s"
                         for name in sorted(now))


def apiserver_requests(api: Any) -> tuple[Counter[str], Counter[str]]:
    """(requests, seconds the apiserver spent answering them) by ``VERB resource[/subresource]``
    (``apiserver_request_total``, ``apiserver_request_duration_seconds_sum``)."""
    method, url, headers, body, _ = api.param_serialize("GET", "/metrics",
                                                        auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=headers, body=body)
    response.read()
    text = response.data.decode()
    counts: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    for metric, into in (("apiserver_request_total", counts),
                         ("apiserver_request_duration_seconds_sum", seconds)):
        for labels, value in samples(text, metric).items():
            d = dict(labels)
            key = f"{d.get('verb')} {d.get('resource')}" + (
                f"/{d['subresource']}" if d.get("subresource") else "")
            into[key] += value
    return Counter({k: int(v) for k, v in counts.items()}), seconds


def apiserver_profile(api: Any, into: Path, seconds: int) -> None:
    """Save kube-apiserver's CPU profile of the next ``seconds`` into ``into``."""
    method, url, headers, body, _ = api.param_serialize(
        "GET", "/debug/pprof/profile", query_params=[("seconds", str(seconds))],
        auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=headers, body=body,
                            _request_timeout=seconds + 60)
    response.read()
    into.write_bytes(response.data)


def registry(i: int, flows: int, interval: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FlowRegistry",
            "metadata": {"name": f"reg-{i:05d}", "namespace": NAMESPACE},
            "spec": {"agentId": f"agent_{i:05d}", "interval": interval, "flows": [
                {"name": f"flow_{j:03d}",
                 "description": f"Handle request kind {j} for registry {i}",
                 "examples": [f"please do thing {j}", f"I want {j} done"],
                 "conditions": ["user is authenticated"]} for j in range(flows)]}}


def all_ready(api: Any, durations: list[float] | None = None) -> tuple[int, int]:
    """(registries Ready at their generation, registries) in the namespace; ``durations``
    gets each one's last sync's engine seconds (``status.lastSync.durationSeconds``)."""
    from kubernetes import client

    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL)["items"]
    ready = 0
    for obj in items:
        status = obj.get("status") or {}
        if durations is not None and "durationSeconds" in (status.get("lastSync") or {}):
            durations.append(float(status["lastSync"]["durationSeconds"]))
        if status.get("observedGeneration") == obj["metadata"]["generation"] and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []):
            ready += 1
    return ready, len(items)


def delta(after: Counter[str], before: Counter[str]) -> Counter[str]:
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registries", type=int, default=2000)
    parser.add_argument("--flows", type=int, default=20)
    parser.add_argument("--store", choices=("server", "edge"), default="server")
    parser.add_argument("--clients", type=int, default=16, help="threads creating objects")
    parser.add_argument("--interval", default="1h", help="spec.interval of every registry")
    parser.add_argument("--drift-check", type=float, default=10.0,
                        help="the operator's driftCheckSeconds (how often its clock looks for "
                             "due re-syncs)")
    parser.add_argument("--concurrent-syncs", type=int, default=None,
                        help="the operator's concurrentSyncs (default: its own default)")
    parser.add_argument("--rest", action="store_true",
                        help="the operator speaks REST to the Qdrant server (default: gRPC, as "
                             "the chart configures it)")
    parser.add_argument("--global-index", action="store_true",
                        help="the collection gets Qdrant's search graph over all points "
                             "(globalIndex; default: a graph per agent)")
    parser.add_argument("--finalizer-policy", action="store_true",
                        help="install the chart's finalizer policy (finalizerPolicy.enabled)")
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="record the operator with py-spy during phase 1 into this file")
    parser.add_argument("--apiserver-profile", type=Path, default=None,
                        help="save kube-apiserver's CPU profile of phase 1 into this file")
    parser.add_argument("--apiserver-profile-seconds", type=int, default=45)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    from kubernetes import client, config

    sys.path.insert(0, str(REPO))
    from tests.support.controlplane import ControlPlane, apply_file, find_testbin

    work = Path(tempfile.mkdtemp(prefix="flowreg-fleet-"))
    keep = False
    plane = ControlPlane(find_testbin()).start()
    qdrant = None
    operator: Operator | None = None
    try:
        if args.store == "server":
            from tests.support.qdrant_server import QdrantServer, server_binary

            binary = server_binary()
            if binary is None:
                raise SystemExit("no Qdrant server binary: run `bash hack/qdrant.sh`")
            qdrant = QdrantServer(binary).start()
            location = qdrant.endpoint.url
            os.environ["QDRANT_API_KEY"] = qdrant.api_key
            store = {"location": location, "apiKeyEnv": "QDRANT_API_KEY"}
            if not args.rest:
                store["grpcPort"] = qdrant.endpoint.grpc_port
            if args.global_index:
                store["cluster"] = {"globalIndex": True}
        else:
            store = {"location": str(work / "store")}
        cfg = work / "operator.yaml"
        settings: dict[str, Any] = {"stores": {"default": store},
                                    "driftCheckSeconds": args.drift_check}
        if args.concurrent_syncs is not None:
            settings["concurrentSyncs"] = args.concurrent_syncs
        cfg.write_text(json.dumps(settings), encoding="utf-8")
        api = config.new_client_from_config(str(plane.kubeconfig))
        apply_file(api, REPO / "crds" / "flowregistry.yaml")
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        if args.finalizer_policy:
            from tests.support import finalizer_policy

            finalizer_policy.install(api, plane.helm, "fleet", NAMESPACE)
        others = Others(plane, qdrant)
        operator = Operator(plane.kubeconfig, cfg, work / "operator.log")
        operator.start()
        print(f"# fleet benchmark: {args.registries} registries x {args.flows} flows, "
              f"store={args.store}, interval={args.interval}, driftCheckSeconds="
              f"{args.drift_check}, concurrentSyncs={args.concurrent_syncs or 'default'}, "
              f"finalizer policy {'yes' if args.finalizer_policy else 'no'}, "
              f"{'global search graph' if args.global_index else 'graphs per agent'}, "
              f"{'REST' if args.rest else 'gRPC'} to a Qdrant server, "
              f"cpus={os.cpu_count()}, load "
              f"{os.getloadavg()[0]:.1f}", flush=True)

        # --- phase 1: the fleet, created at once -----------------------------------------
        bodies = [registry(i, args.flows, args.interval) for i in range(args.registries)]
        (req0, spent0), (ops0, texts0, _) = apiserver_requests(api), operator.counters()
        cpu0, others0 = operator.cpu_seconds(), others.cpu()
        bench_cpu0 = time.process_time()
        lock = threading.Lock()
        last_accepted = [0.0]
        objects = client.CustomObjectsApi(api)

        def create(body: dict[str, Any]) -> None:
            objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
            with lock:
                last_accepted[0] = max(last_accepted[0], time.monotonic())

        spy = None
        if args.py_spy is not None:
            assert operator.proc is not None
            spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            spy = subprocess.Popen([spy_bin, "record", "--format", "raw", "--rate", "50",
                                    "--nonblocking", "-o", str(args.py_spy),
                                    "--pid", str(operator.proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        profiler = None
        if args.apiserver_profile is not None:
            profiler = threading.Thread(target=apiserver_profile, daemon=True, args=(
                api, args.apiserver_profile, args.apiserver_profile_seconds))
            profiler.start()
        started = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(create, bodies))
        created_in = last_accepted[0] - started
        ready_then = operator.counters()[2]
        cpu_accepted, others_accepted = operator.cpu_seconds(), others.cpu()
        cpu_synced, others_synced = cpu_accepted, others_accepted
        lists = 0
        deadline = time.monotonic() + args.timeout
        ready = 0
        synced_at = None
        durations: list[float] = []
        while time.monotonic() < deadline:
            # the operator's syncs counter first (cheap); the list (13 MB at 2,000 x 20) only
            # once it says every registry has been synced
            if operator.counters()[2] >= args.registries:
                if synced_at is None:
                    synced_at = time.monotonic()
                    cpu_synced, others_synced = operator.cpu_seconds(), others.cpu()
                try:
                    durations = []
                    ready, total = all_ready(api, durations)
                except Exception as exc:  # a list cut short by a busy apiserver: again
                    print(f"# list failed ({type(exc).__name__}); again", flush=True)
                    continue
                finally:
                    lists += 1
                if ready == total == args.registries:
                    break
            time.sleep(0.25)
        all_ready_at = time.monotonic()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        if profiler is not None:
            profiler.join()
        if ready != args.registries:
            raise SystemExit(f"only {ready} of {args.registries} Ready in {args.timeout} s")
        time.sleep(2)  # the last status patches and events land
        (req1, spent1), (ops1, texts1, syncs1) = apiserver_requests(api), operator.counters()
        requests = delta(req1, req0)
        requests["POST flowregistries"] -= args.registries  # ours
        requests["LIST flowregistries"] -= lists  # ours
        answered = delta(spent1, spent0)
        requests = Counter({k: v for k, v in requests.items() if v > 0})
        ops = delta(ops1, ops0)
        n = args.registries
        print(f"fleet: {n} objects accepted in {created_in:.1f} s ({ready_then:.0f} synced by "
              f"then); "
              f"all Ready {all_ready_at - last_accepted[0]:.1f} s after the last was accepted "
              f"(all synced {(synced_at or all_ready_at) - last_accepted[0]:.1f} s after it, by "
              f"the operator's counter; the rest is the list that confirms it), "
              f"{all_ready_at - started:.1f} s after the first create")
        print(f"fleet: operator peak RSS {operator.peak_rss_mib():.0f} MiB, CPU "
              f"{operator.cpu_seconds() - cpu0:.1f} s, embedded texts {texts1 - texts0:.0f}, "
              f"syncs {syncs1:.0f}; CPU beside it: {others.since(others0)}, this benchmark's "
              f"clients {time.process_time() - bench_cpu0:.1f} s")
        durations.sort()
        if durations:
            print(f"fleet: each first sync in the engine (lastSync.durationSeconds): median "
                  f"{durations[len(durations) // 2]:.3f} s, 90th percentile "
                  f"{durations[len(durations) * 9 // 10]:.3f} s, max {durations[-1]:.3f} s")
        tail = (synced_at or all_ready_at) - last_accepted[0]
        print(f"fleet: from the last accepted to all synced ({tail:.1f} s): operator CPU "
              f"{cpu_synced - cpu_accepted:.1f} s "
              f"({(cpu_synced - cpu_accepted) / max(tail, 1e-9):.0%} of one core); beside it: "
              + ", ".join(f"{k} {others_synced[k] - others_accepted.get(k, 0):.1f} s"
                          for k in sorted(others_synced)))
        print(f"fleet: apiserver requests per registry {sum(requests.values()) / n:.2f} ("
              + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(requests.items()))
              + "; the benchmark's own creates and lists excluded, kube-apiserver's own "
                "included)")
        print("fleet: the apiserver's own time per request (mean): " + ", ".join(
            f"{k} {answered[k] / v * 1000:.0f} ms" for k, v in sorted(requests.items())
            if v >= n / 2 and k in answered))
        print(f"fleet: Qdrant calls per registry {sum(ops.values()) / n:.2f} ("
              + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(ops.items())) + ")")

        # --- phase 2: steady state (timers only: no interval is due) ----------------------
        (req2, _), (ops2, _, syncs2) = apiserver_requests(api), \
            operator.counters()
        cpu2, others2 = operator.cpu_seconds(), others.cpu()
        time.sleep(args.steady_seconds)
        cpu3 = operator.cpu_seconds()
        (req3, _), (ops3, _, syncs3) = apiserver_requests(api), \
            operator.counters()
        timer_cpu = (cpu3 - cpu2) / args.steady_seconds
        steady_requests = delta(req3, req2)
        steady_ops = delta(ops3, ops2)
        print(f"steady ({args.steady_seconds:.0f} s, interval {args.interval}): operator CPU "
              f"{100 * timer_cpu:.2f} % of one core, syncs {syncs3 - syncs2:.0f} "
              f"({(syncs3 - syncs2) / n:.2f} per registry), Qdrant calls "
              f"{sum(steady_ops.values())} ({sum(steady_ops.values()) / n:.2f} per registry: "
              + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(steady_ops.items()))
              + f"), status patches {steady_requests['PATCH flowregistries/status']}, "
              f"apiserver requests {sum(steady_requests.values())}; CPU beside it: "
              f"{others.since(others2)}")

        # --- phase 3: restart over the existing fleet ------------------------------------
        operator.stop()
        req4 = apiserver_requests(api)[0]
        restarted = time.monotonic()
        operator.start()  # a new process: its counters and CPU start from zero
        ops4: Counter[str] = Counter()
        texts4, syncs = 0.0, 0.0
        cpu4 = operator.cpu_seconds()  # start-up (imports) excluded
        timeline: list[tuple[float, float]] = []
        deadline = time.monotonic() + args.timeout
        ops5, texts5 = ops4, texts4
        while time.monotonic() < deadline:
            ops5, texts5, syncs = operator.counters()
            timeline.append((time.monotonic() - restarted, syncs))
            if syncs >= n:
                break
            time.sleep(0.25)
        resumed_in = time.monotonic() - restarted
        cpu5 = operator.cpu_seconds()
        time.sleep(2)
        req5 = apiserver_requests(api)[0]
        restart_ops = delta(ops5, ops4)
        restart_requests = delta(req5, req4)
        first = next((t for t, s in timeline if s > 0), resumed_in)
        half = next((t for t, s in timeline if s >= n / 2), resumed_in)
        burst = max((s1 - s0 for t0, s0 in timeline for t1, s1 in timeline
                     if 0 < t1 - t0 <= 1.0), default=0.0)
        print(f"restart: {syncs:.0f} re-syncs in {resumed_in:.1f} s after the start (first at "
              f"{first:.1f} s, half at {half:.1f} s, at most {burst:.0f} in one second); CPU "
              f"{cpu5 - cpu4:.1f} s; peak RSS {operator.peak_rss_mib():.0f} MiB; embedded texts "
              f"{texts5 - texts4:.0f}; Qdrant calls per registry "
              f"{sum(restart_ops.values()) / n:.2f} ("
              + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(restart_ops.items()))
              + f"); status patches {restart_requests['PATCH flowregistries/status']}")
        steady_syncs = syncs3 - syncs2
        if steady_syncs >= n / 2:  # phase 2 re-synced the fleet: its own numbers, idle included
            source = "phase 2's re-syncs"
            idle = 0.0
            per_resync_cpu = (cpu3 - cpu2) / steady_syncs
            calls_per_resync = sum(steady_ops.values()) / steady_syncs
        else:  # the first re-syncs after the restart, kopf's start over the fleet included
            source = "the re-syncs after the restart"
            idle = timer_cpu
            per_resync_cpu = (cpu5 - cpu4) / n
            calls_per_resync = sum(restart_ops.values()) / n
        extrapolated = idle + n * per_resync_cpu / 600.0
        print(f"10-minute interval (extrapolated from {source}): CPU = idle {100 * idle:.2f} % + "
              f"{n} x {1000 * per_resync_cpu:.2f} ms per re-sync / 600 s = "
              f"{100 * extrapolated:.2f} % of one core; Qdrant calls per registry per interval "
              f"= {calls_per_resync:.2f} (deep checks aside: one per registry per "
              "deepCheckInterval)")
    except BaseException:
        keep = True
        print(f"fleet: the operator's log and configuration are kept in {work}", file=sys.stderr)
        raise
    finally:
        if operator is not None:
            operator.stop()
        if qdrant is not None:
            qdrant.remove()
        plane.stop()
        if not keep:  # an embedded store takes tens of MB
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
