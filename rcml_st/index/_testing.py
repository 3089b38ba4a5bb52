"""Starts a throwaway local Qdrant server from a ``qdrant`` binary (tests and benchmarks only).

Shared by the tests' conftests and ``benchmarks/index_throughput.py`` so both start the
server the same way: loopback only, free ports, a temporary storage folder, telemetry off.
The binary comes from ``QDRANT_BINARY``, the ``PATH``, or ``.qdrant-bin/qdrant`` in the
repository (put there by ``.ci/qdrant.sh``). Nothing here is used by the library proper.

Example:
    >>> from rcml_st.index._testing import QdrantServer, find_qdrant_binary
    >>> binary = find_qdrant_binary()
    >>> if binary is not None:  # doctest: +SKIP
    ...     with QdrantServer(binary, storage_dir="/tmp/qd") as server:
    ...         print(server.url)
    http://127.0.0.1:...
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_BINARY = REPO_ROOT / ".qdrant-bin" / "qdrant"


def find_qdrant_binary() -> Path | None:
    """Finds a ``qdrant`` executable: ``QDRANT_BINARY``, then ``PATH``, then ``.qdrant-bin/``.

    Returns:
        The path of an executable file, or ``None`` when there is none.

    Raises:
        FileNotFoundError: ``QDRANT_BINARY`` is set but does not name an executable file (a
            set variable that points nowhere is a mistake worth reporting, not skipping).
    """
    env = os.environ.get("QDRANT_BINARY")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(f"QDRANT_BINARY={env} is not an executable file")
        return path
    on_path = shutil.which("qdrant")
    if on_path:
        return Path(on_path)
    if REPO_BINARY.is_file() and os.access(REPO_BINARY, os.X_OK):
        return REPO_BINARY
    return None


def in_ci() -> bool:
    """Whether the ``CI`` environment variable is set (to anything but empty, 0, false or no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skips the calling test with ``reason``, or fails it when :func:`in_ci`: CI must run it for real."""
    import pytest

    if in_ci():
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)


def qdrant_binary_or_unavailable() -> Path:
    """:func:`find_qdrant_binary`, or :func:`unavailable` when there is none."""
    try:
        binary = find_qdrant_binary()
    except FileNotFoundError as exc:
        unavailable(str(exc))
    if binary is None:
        unavailable("no qdrant binary (set QDRANT_BINARY, put qdrant on PATH, or run .ci/qdrant.sh)")
    return binary  # type: ignore[return-value]


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class QdrantServer:
    """A ``qdrant`` server process on loopback that this process owns.

    It keeps its ports and storage folder across :meth:`stop`/:meth:`kill` and :meth:`start`,
    so a restart looks to a client like the same server coming back.

    Args:
        binary: path of the ``qdrant`` executable.
        storage_dir: folder for the server's data (created if missing).
        http_port: REST port; a free one when ``None``.
        grpc_port: gRPC port; a free one when ``None``.
        log_path: file for the server's output; ``<storage_dir>-<port>.log`` when ``None``.
        env: extra environment variables for the server, e.g. ``{"QDRANT__SERVICE__API_KEY": "k"}``.
        args: extra command-line arguments (``--uri``, ``--bootstrap`` for a cluster peer).

    Example:
        >>> server = QdrantServer(find_qdrant_binary(), "/tmp/qd").start()  # doctest: +SKIP
        >>> server.kill(); server.start()  # doctest: +SKIP
        >>> server.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        binary: str | Path,
        storage_dir: str | Path,
        http_port: int | None = None,
        grpc_port: int | None = None,
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.binary = Path(binary)
        self.storage_dir = Path(storage_dir)
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        while self.grpc_port == self.http_port:
            self.grpc_port = free_port()
        self.log_path = (
            Path(log_path)
            if log_path
            else self.storage_dir.parent / f"{self.storage_dir.name}-{self.http_port}.log"
        )
        self.extra_env = dict(env or {})
        self.args = list(args or [])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The REST URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "QDRANT__SERVICE__HOST": "127.0.0.1",
                "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
                "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
                "QDRANT__STORAGE__STORAGE_PATH": str(self.storage_dir / "storage"),
                "QDRANT__STORAGE__SNAPSHOTS_PATH": str(self.storage_dir / "snapshots"),
                "QDRANT__TELEMETRY_DISABLED": "true",
                "QDRANT__LOG_LEVEL": "WARN",
            }
        )
        # A stray API key in the environment would lock our own tests out of the server.
        env.pop("QDRANT__SERVICE__API_KEY", None)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> QdrantServer:
        """Starts the process (if not running) and waits until both ports answer.

        Args:
            timeout: seconds to wait for readiness.

        Returns:
            ``self``, for chaining.

        Raises:
            RuntimeError: the process exited or did not become ready in time (the message
                carries the end of its log).
        """
        if self.running:
            return self
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        # The server runs in the storage folder: it writes a relative ./config and the like there,
        # never into the caller's working directory.
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), *self.args],
                cwd=self.storage_dir,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"qdrant exited during start-up:\n{self.log_tail()}")
            if self._http_ready() and _port_open(self.grpc_port):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"qdrant not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def _http_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """Stops the server gracefully (SIGTERM), killing it if it does not exit in time."""
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kills the server at once (SIGKILL), as a crash would."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def restart(self, down_for: float = 0.0, timeout: float = 30.0) -> None:
        """Kills the server, waits ``down_for`` seconds, and starts it again on the same ports."""
        self.kill()
        time.sleep(down_for)
        self.start(timeout)

    def log_tail(self, chars: int = 2000) -> str:
        """The last ``chars`` characters of the server's log (for error messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> QdrantServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class QdrantCluster:
    """Qdrant peers in distributed mode on loopback (tests and benchmarks only).

    The first peer starts a new deployment (``--uri`` its own p2p address), the others join it
    (``--bootstrap`` the first's); each has its own storage folder and ports. :meth:`start`
    returns once every peer answers and the first one sees them all.

    Args:
        binary: path of the ``qdrant`` executable.
        root: folder for the peers' storage folders and logs.
        peers: how many peers.

    Example:
        >>> with QdrantCluster(find_qdrant_binary(), "/tmp/qc", peers=3) as cluster:  # doctest: +SKIP
        ...     cluster.nodes[2].kill()
    """

    def __init__(self, binary: str | Path, root: str | Path, peers: int = 3) -> None:
        if peers < 1:
            raise ValueError(f"peers must be >= 1, got {peers}")
        root = Path(root)
        self.p2p_ports = [free_port() for _ in range(peers)]
        self.nodes: list[QdrantServer] = []
        for n, p2p in enumerate(self.p2p_ports):
            args = ["--uri", f"http://127.0.0.1:{p2p}"]
            if n > 0:
                args += ["--bootstrap", f"http://127.0.0.1:{self.p2p_ports[0]}"]
            env = {"QDRANT__CLUSTER__ENABLED": "true", "QDRANT__CLUSTER__P2P__PORT": str(p2p)}
            self.nodes.append(QdrantServer(binary, root / f"peer{n}", env=env, args=args))

    def start(self, timeout: float = 60.0) -> QdrantCluster:
        """Starts every peer (the first one first) and waits until the first one sees all of them."""
        for node in self.nodes:
            node.start(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.peer_count() == len(self.nodes):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"the cluster did not form in {timeout:.0f} s:\n{self.nodes[-1].log_tail()}")

    def peer_count(self) -> int:
        """How many peers the first peer knows (0 when it does not answer)."""
        import json

        try:
            with urllib.request.urlopen(f"{self.nodes[0].url}/cluster", timeout=2) as response:
                return len(json.load(response)["result"]["peers"])
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return 0

    def kill(self) -> None:
        """Kills every peer."""
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> QdrantCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
