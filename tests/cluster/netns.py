"""Test hosts made of Linux network namespaces: one namespace per host on one bridge.

Every name this module makes starts with ``pc<pid>-`` (the driver's pid): the namespaces
``pc<pid>-db1`` …, their veth links (same names, in the root namespace), the bridge
``pc<pid>-br`` and the work directory ``/tmp/pc<pid>-*``. ``Cluster`` removes them on exit;
``sweep()`` removes those of drivers that died without exiting (SIGKILL, a lost terminal),
so nothing outlives the next run. The hosts share the machine's filesystem (the project, its
venv, the corpus), not its network: each has ``lo`` and one address on the bridge's /24,
where the driver in the root namespace is ``.1``. Needs root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

# pc<pid>-<host>: a bridge or veth name must fit IFNAMSIZ (15 characters), so host names are
# at most 5 characters (pids have at most 7 digits).
NAME = re.compile(r"^pc(\d{1,7})-([a-z0-9]{1,5})$")
SUBNETS = [f"10.231.{third}" for third in range(1, 255)]
COMMAND_SECONDS = 60


def run(*argv: str, timeout: float = COMMAND_SECONDS, check: bool = True) -> str:
    """Run a command to its end (bounded); its stdout. Fails with its stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class Process:
    """A process started on a host (or a daemon that started itself: no popen): its log."""

    name: str
    log: Path
    popen: subprocess.Popen | None = None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Host:
    name: str
    netns: str
    address: str
    veth: str  # the root namespace's end of the host's link
    logs: Path
    processes: list[Process] = field(default_factory=list)

    def command(self, argv: list[str], hostname: str | None = None) -> list[str]:
        """``argv`` run in this host's namespace; with ``hostname``, in a UTS namespace of its
        own too, where ``socket.gethostname()`` answers that name instead of the machine's."""
        if hostname:
            argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *argv]
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, argv: list[str], timeout: float = COMMAND_SECONDS, **kwargs) -> str:
        return run(*self.command(argv), timeout=timeout, **kwargs)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        hostname: str | None = None,
    ) -> Process:
        """Start a long-running process on this host; its output goes to ``<host>-<name>.log``."""
        log = self.logs / f"{self.name}-{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                self.command(argv, hostname),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self.add_log(name, log, popen)

    def add_log(self, name: str, log: Path, popen: subprocess.Popen | None = None) -> Process:
        """Record a process of this host, whose log is shown when the cluster test fails."""
        process = Process(f"{self.name}/{name}", log, popen)
        self.processes.append(process)
        return process

    def pids(self) -> list[int]:
        return [int(pid) for pid in run("ip", "netns", "pids", self.netns, check=False).split()]

    def lose(self, *, link_down: bool = True) -> None:
        """The host is lost: its link goes down first (with ``link_down``: no FIN or RST leaves
        it, as when a machine loses power), then every process in it is SIGKILLed."""
        if link_down:
            run("ip", "link", "set", self.veth, "down")
        kill_all(self.netns)
        for process in self.processes:
            if process.popen is not None:
                with suppress(subprocess.TimeoutExpired):
                    process.popen.wait(timeout=5)


def kill_all(netns: str, timeout: float = 10) -> None:
    """SIGKILL every process in ``netns`` until none is left (a dying process may fork)."""
    deadline = time.monotonic() + timeout
    while pids := run("ip", "netns", "pids", netns, check=False).split():
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of {netns} outlived SIGKILL: {pids}")
        time.sleep(0.05)


@dataclass
class Cluster:
    """Hosts on one bridge; the driver (this process) is ``gateway`` on it."""

    prefix: str
    subnet: str  # the first three octets
    workdir: Path
    hosts: dict[str, Host] = field(default_factory=dict)
    driven: list[Process] = field(default_factory=list)  # the driver's own children

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.1"

    def add_host(self, name: str) -> Host:
        netns = f"{self.prefix}-{name}"
        assert NAME.match(netns), f"host name too long for a link name: {name}"
        address = f"{self.subnet}.{len(self.hosts) + 10}"
        run("ip", "netns", "add", netns)
        run("ip", "link", "add", netns, "type", "veth", "peer", "name", "eth0", "netns", netns)
        run("ip", "link", "set", netns, "master", self.bridge, "up")
        run("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        host = Host(name, netns, address, netns, self.workdir / "logs")
        self.hosts[name] = host
        return host

    def logs_of_every_process(self, lines: int = 30) -> str:
        processes = [p for host in self.hosts.values() for p in host.processes] + self.driven
        return "\n".join(f"--- {p.name} ({p.log}) ---\n{p.tail(lines)}" for p in processes)


@contextmanager
def cluster() -> Iterator[Cluster]:
    """A bridge on a free /24 and a work directory; everything removed on exit."""
    sweep()
    prefix = f"pc{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    workdir.chmod(0o755)  # the PostgreSQL servers run as another user, and log here too
    (workdir / "logs").mkdir(mode=0o777)
    (workdir / "logs").chmod(0o777)
    made = Cluster(prefix, _free_subnet(), workdir)
    try:
        run("ip", "link", "add", made.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{made.gateway}/24", "dev", made.bridge)
        run("ip", "link", "set", made.bridge, "up")
        yield made
    finally:
        remove(prefix)


def _free_subnet() -> str:
    """A 10.231.x /24 no interface of the root namespace uses (another run's bridge)."""
    used = run("ip", "-4", "-o", "addr", "show")
    for subnet in SUBNETS:
        if f" {subnet}." not in used:
            return subnet
    raise RuntimeError("every 10.231.x.0/24 is in use")


def remove(prefix: str) -> None:
    """Kill the processes of, and delete, every namespace, link and directory of ``prefix``."""
    for netns in _names(run("ip", "netns", "list", check=False)):
        if netns.startswith(f"{prefix}-"):
            kill_all(netns)
            run("ip", "netns", "delete", netns, check=False)
    for link in _names(run("ip", "-o", "link", "show", check=False), field_index=1):
        if link.startswith(f"{prefix}-"):
            run("ip", "link", "delete", link, check=False)
    for directory in Path(tempfile.gettempdir()).glob(f"{prefix}-*"):
        shutil.rmtree(directory, ignore_errors=True)


def sweep() -> list[str]:
    """Remove what drivers that are no longer running left behind; their prefixes."""
    names = _names(run("ip", "netns", "list", check=False))
    names += _names(run("ip", "-o", "link", "show", check=False), field_index=1)
    names += [path.name for path in Path(tempfile.gettempdir()).glob("pc*-*")]
    stale = set()
    for name in names:
        found = re.match(r"^pc(\d{1,7})-", name)
        if found and not Path(f"/proc/{found[1]}").exists():
            stale.add(f"pc{found[1]}")
    for prefix in sorted(stale):
        remove(prefix)
    return sorted(stale)


def _names(listing: str, field_index: int = 0) -> list[str]:
    """Names in ``ip netns list`` (first field) or ``ip -o link`` (second, ``name@peer:``)."""
    names = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) > field_index:
            name = fields[field_index].rstrip(":").split("@")[0]
            if NAME.match(name):
                names.append(name)
    return names


def available() -> str | None:
    """Why this machine cannot make test hosts, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "iproute2 (ip) and util-linux (unshare) are needed"
    return None
