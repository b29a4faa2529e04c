"""A long-running child process with a pid file, a log file and a readiness probe.

Knows nothing of which program it runs. The pid file lets ``fraud down`` or ``fraud status``,
run from another shell, find the process again; the command line recorded beside the pid
guards against signalling an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.stack.errors import StackError

LOG_TAIL_LINES = 25


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports of 127.0.0.1 nothing listens on now: held open together
    while chosen (:func:`free_port` called twice may give the same port twice)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (mode 0600, also when the file
    existed with a wider mode): for configuration files that hold credentials."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a text file, or a note that it is empty or missing."""
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:]) or f"({path} is empty)"


@dataclass
class ManagedProcess:
    """One service started by the stack.

    Attributes:
        name: short name, used for ``var/run/<name>.pid`` and ``var/log/<name>.log``.
        argv: the command line.
        host, port: where the service listens; a port held by a process not ours is an error.
        port_setting: the environment variable that moves the port, named in errors.
        ready: a probe that returns True once the service serves requests.
        run_dir, log_dir: where pid and log files go.
        prepare: writes what the command needs (folders, configuration) just before it
            starts: describing a process (``fraud status``) writes nothing.
    """

    name: str
    argv: Sequence[str]
    host: str
    port: int
    port_setting: str
    ready: Callable[[], bool]
    run_dir: Path
    log_dir: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    prepare: Callable[[], None] | None = None
    _started_at: float = field(default=0.0, init=False)

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def died_file(self) -> Path:
        """Left where the pid file was when the process is found gone without :meth:`stop`:
        ``fraud status`` keeps showing the service, down, until it is started or stopped."""
        return self.run_dir / f"{self.name}.died"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of our running process, or None.

        A pid file whose process is gone is removed. One whose process lives but runs other
        arguments is kept: it may be this service started from another checkout sharing the
        state folder (its paths differ), and removing the file would orphan that process.
        """
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        if _is_our_process(pid, self.argv):
            return pid
        if not _alive(pid):
            self.pid_file.replace(self.died_file)
        return None

    def is_ready(self) -> bool:
        try:
            return self.ready()
        except Exception:
            return False

    def start(self, timeout_s: float) -> str:
        """Start the process unless ours already runs, then wait until it is ready.

        Returns:
            "running" when ours was already up and ready, "started" otherwise.

        Raises:
            StackError: the port is taken by another process, the program exits, or it is
                not ready within ``timeout_s`` seconds (the message has its log's last lines).
        """
        outcome, proc = self.launch()
        self._wait_ready(timeout_s, proc)
        return outcome

    def launch(self) -> tuple[str, subprocess.Popen[bytes] | None]:
        """Start the process unless ours already runs; do not wait for it (the nodes of a
        cluster are only ready once enough of them run). Finish with :meth:`wait_ready`.

        Returns:
            ("running", None) when ours already runs, ("started", the new process) otherwise.

        Raises:
            StackError: the port is taken by another process.
        """
        if self.pid() is not None:
            return "running", None
        if port_open(self.host, self.port):
            raise StackError(
                f"{self.name}: port {self.port} on {self.host} is taken by a process that is "
                f"not ours. Stop it, or move {self.name} with {self.port_setting}."
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.prepare is not None:
            self.prepare()
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,  # survives the CLI that started it
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        self.died_file.unlink(missing_ok=True)
        self._started_at = time.monotonic()
        return "started", proc

    def wait_ready(self, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Wait until the service is ready (see :meth:`start` for what is raised)."""
        self._wait_ready(timeout_s, proc)

    def _wait_ready(self, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.is_ready():
                return
            if proc is not None and proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise StackError(
                    f"{self.name} exited with status {proc.returncode} before it was ready. "
                    f"Last lines of {self.log_file}:\n{tail(self.log_file)}"
                )
            time.sleep(0.2)
        if proc is not None:  # ours and hopeless: do not leave it holding the port
            self.stop()
        raise StackError(
            f"{self.name} did not become ready within {timeout_s:.0f} s "
            f"(raise FRAUD_SERVICE_TIMEOUT_S if the machine is slow). "
            f"Last lines of {self.log_file}:\n{tail(self.log_file)}"
        )

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop our process: SIGTERM to its process group, SIGKILL after ``timeout_s``.

        Returns:
            True when a process was stopped, False when none of ours was running.
        """
        pid = self.pid()
        self.died_file.unlink(missing_ok=True)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), sig)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _is_our_process(pid: int, argv: Sequence[str]) -> bool:
    """True when ``pid`` runs the same executable (symlinks resolved) with the same arguments.

    Some servers rewrite their title ("redis-server 127.0.0.1:6379"), leaving one argument;
    for those the executable alone decides.
    """
    if not _alive(pid):
        return False
    try:
        exe = os.path.realpath(f"/proc/{pid}/exe")
        cmdline = [os.fsdecode(a) for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except (FileNotFoundError, PermissionError):
        return False
    program = shutil.which(argv[0]) or argv[0]
    if exe != os.path.realpath(program):
        return False
    args = cmdline[1:-1] if cmdline and cmdline[-1] == "" else cmdline[1:]
    return args == list(argv[1:]) or not any(args)
