"""A fork server for the ``zoo`` commands the tests run: each command is still its own process.

Why: the end-to-end tests start ``python -m zoo ...`` about two hundred times. Before a command does
anything, its interpreter imports jax, flax, optax, orbax, tyro and zoo: 3-4 s of CPU on the 2-core CI
machine, often more than the nano run itself once the shared persistent compilation cache has its
programs. This server imports those modules once, then forks a child per command. The child is a new
process with the command's own working directory, environment, stdin/stdout/stderr (the client's file
descriptors, passed over a Unix socket) and exit code; it runs ``zoo/__main__.py`` as ``python -m zoo``
does, then what interpreter exit does (joins threads, runs ``atexit``). JAX's backend is first
initialised in the child: the server checks that importing initialised none (an initialised XLA client
has threads, which a fork does not copy) and that no thread runs, else it refuses to start and the
client runs a plain subprocess.

What a child cannot change: whatever the server's modules read from the environment when they were
imported (JAX's ``JAX_*`` options, ``PYTHONPATH``, ...). :func:`compatible` therefore accepts a command
only when its environment equals the server's apart from variables known to be read later
(:data:`READ_LATER`: ``XLA_FLAGS`` is read when the backend starts, ``ZOO_*`` and ``HF_*`` when a command
runs, as the server imports neither Hugging Face library); anything else runs as a plain subprocess. So do
commands whose test needs the real thing: signals sent to the process (Ctrl-C), ``zoo launch``'s
process tree, and the ``zoo`` entry point itself (``tests/test_pretrain_cli.py`` keeps one plain run).

Protocol, one connection per command: the client sends a JSON request (``args``, ``cwd``, ``env``) with
three file descriptors (stdin, stdout, stderr); the server answers ``{"pid": N}`` once the child runs and
``{"returncode": R}`` when it ends (``-signal`` when a signal ended it, as :mod:`subprocess` does). A client
that closes the connection early (a timeout, a killed test) gets its child killed.

    python tests/zoo_server.py SOCKET_PATH      # prints "ready" once its imports are done
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The XLA flags of the tests and of every process they start: the tests compile hundreds of small
# programs, so compile time dominates the run. Level 0 skips LLVM's optimisation passes; XLA:CPU's
# older elemental emitter (fusion emitters off) compiles the same operations in about half the time;
# one codegen part, instead of several compiled on a thread pool, saves a little more where two test
# workers share two cores. `python benchmarks/compile_flags.py` (the nano train steps of five
# families, each variant in fresh processes, 3 rounds interleaved; idle 2-core EPYC, jaxlib 0.10.2):
# compile 6.26 s with level 0 alone, 3.31 s with the emitter flag, 2.84 s with all three (medians).
# None changes what a program computes beyond rounding order.
WANTED_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false",
                    "--xla_cpu_parallel_codegen_split_count=1")


def _quick_xla_flags() -> str:
    """The flags of WANTED_XLA_FLAGS this jaxlib accepts: XLA aborts a process on a flag it does not know, and
    a later jaxlib may retire one. Probed once per test run (a subprocess starts the CPU backend, about 2 s),
    then inherited by the workers and every process through ``ZOO_TEST_XLA_FLAGS``."""
    if "ZOO_TEST_XLA_FLAGS" not in os.environ:
        def accepted(flags):
            env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": " ".join(flags)}
            return subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env,
                                  capture_output=True, timeout=300).returncode == 0
        flags = list(WANTED_XLA_FLAGS)
        if not accepted(flags):
            flags = [f for f in WANTED_XLA_FLAGS if accepted([f])]
        os.environ["ZOO_TEST_XLA_FLAGS"] = " ".join(flags)
    return os.environ["ZOO_TEST_XLA_FLAGS"]


QUICK_XLA_FLAGS = _quick_xla_flags()

# The collector thresholds of the tests and of the commands they fork (conftest says why).
GC_THRESHOLDS = (50_000, 20, 100)

PRELOAD = ("jax", "jax.numpy", "flax.linen", "optax", "orbax.checkpoint", "tyro", "tokenizers", "zoo", "zoo.cli",
           "zoo.commands.common", "zoo.commands.lm", "zoo.commands.bert", "zoo.commands.seq2seq",
           "zoo.commands.evaluate", "zoo.commands.export", "zoo.train.trainer")

# Environment variables nothing in PRELOAD reads at import time: a command may set them differently.
READ_LATER = {"XLA_FLAGS", "PATH", "PWD", "OLDPWD", "SHLVL", "_", "PYTHONUNBUFFERED", "COLUMNS", "LINES",
              "TOKENIZERS_PARALLELISM", "MPLBACKEND", "MPLCONFIGDIR"}
READ_LATER_PREFIXES = ("ZOO_", "HF_", "PYTEST_")


def compatible(env: dict[str, str], server_env: dict[str, str]) -> bool:
    """Whether a command with environment ``env`` may run in a child of a server started with ``server_env``."""
    def fixed(e):
        return {k: v for k, v in e.items() if k not in READ_LATER and not k.startswith(READ_LATER_PREFIXES)}
    return fixed(env) == fixed(server_env)


# ---------------------------------------------------------------------------------------------------------
# The server.


def _run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the command (``python -m zoo ARGS``) and exit with its code."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has them
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if os.environ.get("PYTHONUNBUFFERED"):
        sys.stdout.reconfigure(write_through=True)
        sys.stderr.reconfigure(write_through=True)
    sys.argv = [str(ROOT / "zoo" / "__main__.py"), *request["args"]]
    sys.path[0] = request["cwd"]  # `python -m` puts the working directory first
    # conftest's collector thresholds (tracing makes many short-lived objects): docs/cli.md took 54.7 and
    # 55.4 s with them, 57.1 and 60.0 s with Python's defaults (interleaved, one worker). The command's
    # results do not depend on when garbage is collected.
    gc.set_threshold(*GC_THRESHOLDS)
    code = 0
    try:
        import runpy

        runpy.run_module("zoo", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, int) and exit_.code is not None:
            print(exit_.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    try:  # interpreter exit: wait for non-daemon threads, then the atexit handlers
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve(path: str) -> None:
    for name in PRELOAD:
        __import__(name)
    from jax._src import xla_bridge

    if xla_bridge._backends or threading.active_count() != 1:
        print(f"not ready: backends {list(xla_bridge._backends)}, threads {threading.active_count()}", flush=True)
        return
    # The preloaded modules' objects go to the collector's permanent generation: a command's collections
    # then neither scan them nor write their headers (which copies each page from the server, copy on
    # write). tests/test_docs.py's docs/cli.md (17 commands) took 62.5 and 51.6 s with this, 72.4 and
    # 64.6 s without (two interleaved rounds, one worker).
    gc.freeze()
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)
    children: dict[int, socket.socket] = {}  # pid -> the client's connection
    while os.getppid() == parent:  # the test process that started this server is gone: stop
        readable, _, _ = select.select([listener, *children.values()], [], [], 0.05)
        for sock in readable:
            if sock is listener:
                conn, _ = listener.accept()
                message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                request = json.loads(message)
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    for sock_ in (listener, conn, *children.values()):
                        sock_.close()
                    _run_child(request, fds)
                for fd in fds:
                    os.close(fd)
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                children[pid] = conn
            else:  # a client's connection: readable only when it closed (clients send nothing more)
                pid = next(p for p, c in children.items() if c is sock)
                os.kill(pid, signal.SIGKILL)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                except OSError:
                    pass
                conn.close()
    for pid in children:
        os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------------------
# The client.


class Server:
    """A running server, started by :func:`get` in this process."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="zoo-server-")
        self.path = os.path.join(self.dir, "socket")
        self.env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, __file__, self.path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, text=True, env=self.env)
        self.ready = self.proc.stdout.readline().strip() == "ready"
        atexit.register(self.close)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


_server: Server | None = None


def get() -> Server | None:
    """This process's server, started on first use; None where fork servers cannot run."""
    global _server
    if _server is None and sys.platform.startswith("linux") and os.environ.get("ZOO_TEST_NO_FORK_SERVER") != "1":
        _server = Server()
    return _server if _server is not None and _server.ready else None


def run(args: list[str], cwd: os.PathLike | str, env: dict[str, str], timeout: float,
        stdin: int | None = None, stdout: int | None = None, stderr: int | None = None) -> int:
    """Run ``zoo ARGS`` in a child of this process's server with these file descriptors; its return code.

    Raises ``subprocess.TimeoutExpired`` (after killing the command) past ``timeout`` seconds.
    """
    server = get()
    assert server is not None and compatible(env, server.env)
    devnull = os.open(os.devnull, os.O_RDONLY)
    fds = [devnull if stdin is None else stdin, 1 if stdout is None else stdout, 2 if stderr is None else stderr]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(server.path)
        request = json.dumps({"args": list(args), "cwd": str(Path(cwd).resolve()), "env": env}).encode()
        socket.send_fds(sock, [request], fds)
        os.close(devnull)
        sock.settimeout(timeout)
        reader = sock.makefile("rb")
        try:
            pid = json.loads(reader.readline())["pid"]
            line = reader.readline()
        except TimeoutError:
            raise subprocess.TimeoutExpired(["zoo", *args], timeout) from None  # closing the socket kills it
        if not line:
            raise RuntimeError(f"zoo fork server: no exit status for pid {pid}")
        return json.loads(line)["returncode"]


def zoo_cmd(args: list[str], cwd: os.PathLike | str, env: dict[str, str], timeout: float
            ) -> subprocess.CompletedProcess:
    """Like ``subprocess.run([python, -m, zoo, *args], capture_output=True, text=True)``: in a forked child
    where the environment allows (:func:`compatible`), else in a plain subprocess."""
    server = get()
    if server is None or not compatible(env, server.env):
        return subprocess.run([sys.executable, "-m", "zoo", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        code = run(args, cwd, env, timeout, stdout=out.fileno(), stderr=err.fileno())
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(["zoo", *args], code, out.read().decode(), err.read().decode())


_peak_flops_json: str | None = None


def seed_cache(cache: os.PathLike | str) -> None:
    """Give a test's fresh zoo cache folder (``ZOO_CACHE_DIR``) this machine's peak FLOP/s, measured once per
    test process (:func:`zoo.train.peak_flops`), as a user's cache folder has it after their first run.

    Every ``zoo pretrain`` reads the figure for its MFU; in an empty cache folder it measures it again, which
    took 0.66 s of both cores per command (best of up to 50 1024 x 1024 matmuls, in a cProfile of a nano run).
    """
    global _peak_flops_json
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    if (cache / "peak_flops.json").exists():
        return
    if _peak_flops_json is None:
        from unittest import mock  # here, not at the top: the docs' `zoo` shim imports this file too

        from zoo.train import metrics  # and conftest imports it before jax

        with mock.patch.dict(os.environ, {"ZOO_CACHE_DIR": str(cache)}):  # peak_flops writes it there
            metrics.peak_flops()
        _peak_flops_json = (cache / "peak_flops.json").read_text()
    else:
        (cache / "peak_flops.json").write_text(_peak_flops_json)


def shim() -> int:
    """The ``zoo`` executable of the docs tests (``ZOO_FORK_SERVER`` names the socket): this process's own
    stdin/stdout/stderr, working directory and environment, run by the server."""
    env = dict(os.environ)
    path = env.get("ZOO_FORK_SERVER", "")
    if not path:
        os.execv(sys.executable, [sys.executable, "-m", "zoo", *sys.argv[1:]])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        request = json.dumps({"args": sys.argv[1:], "cwd": os.getcwd(), "env": env}).encode()
        socket.send_fds(sock, [request], [0, 1, 2])
        reader = sock.makefile("rb")
        reader.readline()
        line = reader.readline()
    code = json.loads(line)["returncode"] if line else 1
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    serve(sys.argv[1])
