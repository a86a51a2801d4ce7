"""A Ray cluster of several nodes on this one machine, bound to 127.0.0.1.

For trying `rlhf-stack submit` without a cloud, and for the tests of jobs, submission and fault tolerance: each
node is a real `ray start --block` process of its own, so one node can be stopped while the others go on.

    python -m ray_cluster.launch.local --workers 1 --cpus-per-node 1     # prints the addresses; Ctrl-C stops it

Every port is picked free, so several such clusters (and other Ray instances) can share the machine, and stopping
one touches only its own processes: never `ray stop`, which ends every Ray process of the user.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from rlhf_stack.core.errors import ClusterError

_BIN = Path(sys.executable).parent
_STARTED = "Ray runtime started"
# `ray start` for a worker node, except that a loopback address stays loopback (see LocalCluster._start_node).
_LOOPBACK_RAY_START = """
import sys
import ray._private.services as services
from ray.scripts.scripts import main
services.resolve_ip_for_localhost = lambda host: host
sys.argv[0] = "ray"
main()
"""


@dataclass
class Node:
    """One `ray start --block` process and everything it started."""

    name: str
    process: subprocess.Popen
    temp_dir: Path  # Ray's socket paths live below it: it must stay short
    log_path: Path
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM lets `ray start --block` end its raylet, GCS, dashboard and workers; SIGKILL what remains."""
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL to every process of the node at once, as when a machine dies."""
        # `ray start` leads a session of its own (start_new_session in _start_node). Ray puts each worker in a
        # process group of its own inside that session, so the whole session is signalled, not just the group.
        for _ in range(3):  # again, for a process forked while the others were being killed
            pids = _session_pids(self.process.pid)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not pids:
                break
        self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class LocalCluster:
    """A head node with the dashboard, plus worker nodes joined to it, all on 127.0.0.1.

    Args:
        num_workers: Worker nodes started with the head.
        cpus_per_node: CPUs each node offers to Ray (may exceed the cores: Ray only counts them).
        object_store_bytes: Object store of each node (Ray's default takes 30% of RAM per node).
        worker_resources: Custom resources of every worker node, e.g. {"worker": 1} to pin work to workers.
        system_config: Ray settings of the head, e.g. {"health_check_period_ms": 500} to find a lost node sooner.
        root: Folder for the nodes' temp dirs and logs; a new short one under /tmp when None (removed on stop).

    Example:
        with LocalCluster(num_workers=1) as cluster:
            submit_and_wait(cluster.dashboard_url, "python -c 'import ray; ray.init()'")
    """

    def __init__(self, num_workers: int = 1, cpus_per_node: int = 1, object_store_bytes: int = 200_000_000,
                 worker_resources: dict[str, float] | None = None, system_config: dict | None = None,
                 root: Path | None = None):
        self.num_workers = num_workers
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = object_store_bytes
        self.worker_resources = dict(worker_resources or {})
        self.system_config = dict(system_config or {})
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="rs-"))  # Ray's Unix socket paths must stay short
        self.gcs_port = _free_port()
        self.dashboard_port = _free_port()
        self.head: Node | None = None
        self.workers: list[Node] = []

    @property
    def address(self) -> str:
        """The GCS address, for `ray.init(address=...)` and the recipe's cluster.address."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        """The job server, for `rlhf-stack submit --address` and `ray_cluster.jobs`."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self) -> "LocalCluster":
        try:
            self.head = self._start_node("head", head=True)
            self._wait_for_dashboard()
            for _ in range(self.num_workers):
                self.add_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, resources: dict[str, float] | None = None) -> Node:
        """Starts one more worker node and waits until the head counts it as alive."""
        node = self._start_node(f"worker{len(self.workers) + 1}", head=False,
                                resources={**self.worker_resources, **(resources or {})})
        self.workers.append(node)
        self._wait_for_nodes(1 + sum(w.alive for w in self.workers))
        return node

    def node_id(self, node: Node) -> str:
        """The Ray node id of one of this cluster's nodes, alive or dead."""
        return self._node_state(node).node_id

    def wait_until_dead(self, node: Node, timeout_s: float = 120.0) -> None:
        """Waits until the head has declared a stopped node dead (once its health checks have failed)."""
        deadline = time.monotonic() + timeout_s
        while self._node_state(node).state != "DEAD":
            if time.monotonic() > deadline:
                raise ClusterError(f"the head still counts node {node.name} as alive after {timeout_s:.0f} s")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stops every node (workers first) and what outlived them, then removes the temp folder if it made it."""
        for node in [*reversed(self.workers), *([self.head] if self.head else [])]:
            node.stop()
        for process in self.leftover_processes():
            process.kill()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def leftover_processes(self) -> list:
        """Processes of this cluster still running outside the nodes' sessions (e.g. orphaned workers).

        They are recognised by this cluster's temp folder in their command line or its GCS address in their
        environment, both unique to it.
        """
        import psutil

        own, this = [], psutil.Process()
        for process in psutil.process_iter(["cmdline", "environ"]):
            if process.pid in (this.pid, *(p.pid for p in this.parents())):
                continue
            try:
                cmdline = " ".join(process.info["cmdline"] or ())
                environ = process.info["environ"] or {}
            except psutil.Error:
                continue
            if str(self.root) in cmdline or environ.get("RAY_ADDRESS") == self.address:
                own.append(process)
        return own

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start_node(self, name: str, *, head: bool, resources: dict[str, float] | None = None) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        args = ["start", "--block", f"--temp-dir={temp_dir}", f"--node-name={name}", f"--num-cpus={self.cpus_per_node}",
                "--num-gpus=0",
                f"--object-store-memory={self.object_store_bytes}", "--disable-usage-stats",
                # Every port free and explicit: defaults (52365, 10001, ...) collide with other Ray instances here.
                f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
                f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
                f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}"]
        env = {**os.environ, "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # jobs find our CLI
        env.pop("RAY_ADDRESS", None)
        if head:
            command = [str(_BIN / "ray"), *args, "--head", f"--port={self.gcs_port}", "--include-dashboard=true",
                       "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                       f"--ray-client-server-port={_free_port()}"]
            if self.system_config:
                command.append(f"--system-config={json.dumps(self.system_config)}")
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # single-machine mode: every address is 127.0.0.1
        else:
            # Single-machine mode refuses worker nodes, and multi-node mode turns 127.0.0.1 into the machine's
            # network address (then binds every interface); this launcher keeps the loopback address as given.
            command = [sys.executable, "-c", _LOOPBACK_RAY_START, *args, f"--address={self.address}",
                       "--node-ip-address=127.0.0.1"]
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
        if resources:
            command.append(f"--resources={json.dumps(resources)}")
        log_path = self.root / f"{name}.log"
        with log_path.open("w") as log_file:
            process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        node = Node(name, process, temp_dir, log_path, dict(resources or {}))
        deadline = time.monotonic() + 120
        while _STARTED not in log_path.read_text(errors="replace"):
            if not node.alive or time.monotonic() > deadline:
                node.stop()
                raise ClusterError(f"Ray node {name} did not start:\n{node.log_tail()}")
            time.sleep(0.2)
        return node

    def _node_state(self, node: Node):
        from ray.util.state import list_nodes

        states = list_nodes(address=self.dashboard_url, filters=[("node_name", "=", node.name)], detail=True,
                            raise_on_missing_output=False)
        if not states:
            raise ClusterError(f"the head does not know node {node.name}")
        return max(states, key=lambda state: state.start_time_ms or 0)

    def _wait_for_dashboard(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answers: 401 until a request carries the cluster's token
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"the dashboard of the local cluster did not answer at {self.dashboard_url}:\n"
                                   f"{self.head.log_tail() if self.head else ''}")
            time.sleep(0.3)

    def _wait_for_nodes(self, count: int, timeout_s: float = 60.0) -> None:
        from ray.util.state import list_nodes

        deadline = time.monotonic() + timeout_s
        while True:
            alive = list_nodes(address=self.dashboard_url, filters=[("state", "=", "ALIVE")],
                               raise_on_missing_output=False)
            if len(alive) >= count:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"the local cluster has {len(alive)} alive node(s), expected {count}")
            time.sleep(0.3)


def _session_pids(session_id: int) -> list[int]:
    """The live processes of a session (a node's `ray start` and everything it started)."""
    import psutil

    pids = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getsid(process.pid) == session_id and process.info["status"] != psutil.STATUS_ZOMBIE:
                pids.append(process.pid)
        except OSError:  # it ended meanwhile
            pass
    return pids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ray_cluster.launch.local", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="worker nodes beside the head")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    args = parser.parse_args(argv)
    # Ctrl-C or a plain `kill` stops the nodes too (a shell may have started us with SIGINT ignored).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    with LocalCluster(num_workers=args.workers, cpus_per_node=args.cpus_per_node) as cluster:
        print(f"Ray cluster on 127.0.0.1: {1 + args.workers} node(s)\n"
              f"  GCS address (cluster.address): {cluster.address}\n"
              f"  job server (rlhf-stack submit --address): {cluster.dashboard_url}\n"
              "Ctrl-C stops it.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
