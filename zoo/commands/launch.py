"""``zoo launch``: N processes of one zoo command on this machine, joined by ``jax.distributed``.

    zoo launch --nproc 2 -- pretrain gpt --preset nano --mesh data=2
    zoo launch --nproc 2 --local-devices 2 -- pretrain gpt --preset nano --mesh fsdp=2,tensor=2
    zoo launch --nproc 2 -- python my_script.py      # a script that calls zoo.train.distributed.initialize()

Each child is ``python -m zoo COMMAND ... --distributed`` (or the script),
with ``ZOO_COORDINATOR=127.0.0.1:PORT`` (a free port), ``ZOO_NUM_PROCESSES``
and ``ZOO_PROCESS_ID`` in its environment, on the CPU (``JAX_PLATFORMS=cpu``;
the processes' collectives go over gloo, TCP on the loopback). It is how to
test a multi-host run on one machine, and a way to use a CPU's cores from
several processes. On a cluster, start ``zoo pretrain ... --distributed`` on
every host instead (Slurm's ``srun`` does; see docs/distributed.md).

Devices per process: one CPU device, or ``--local-devices K``. The parent's
``XLA_FLAGS=--xla_force_host_platform_device_count=...`` (the test suite
sets one) is removed from the children's environment: it would multiply
every process's devices unseen.

The launcher watches its children. When one exits with an error or is
killed, it names it (``process 1 (pid 4242) was killed by SIGKILL``), stops
the others (SIGTERM, then SIGKILL after ``--grace-s``) and exits non-zero
(the failed process's status; 1 for a signal). Ctrl-C is forwarded to every
child: a training run stops at its next sync point with a checkpoint, as
with one process; a second Ctrl-C interrupts at once, a third kills. The
children's output comes through the launcher; a one-line ``zoo ...: error:``
(or note, or warning) that several processes print is printed once.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from zoo.harness.flags import parse_flags

__all__ = ["LaunchArgs", "free_port", "launch", "launch_main"]

_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count(=\S*)?")
_ONCE = re.compile(rb"^zoo [\w -]*: ")  # a zoo command's one-line report: printed once, however many processes print it
_NOISE = (b"[Gloo] ",)
_SETTLE_S = 3.0  # after one process exits with an error: how long the others get to exit on their own  # gloo's connection report, one line per device pair


@dataclasses.dataclass(frozen=True)
class LaunchArgs:
    nproc: int = 2  # how many processes
    local_devices: int | None = None  # CPU devices per process (default: one; sets XLA_FLAGS in the children)
    port: int | None = None  # the coordinator's port on 127.0.0.1 (default: a free one)
    grace_s: float = 10.0  # after a process fails: seconds the others get to stop before they are killed


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV_LAUNCHED_BY = "ZOO_LAUNCHED_BY"  # "zoo launch --nproc N --": what a zoo command's resume hint starts with


def child_env(base: dict[str, str], *, coordinator: str, nproc: int, index: int,
              local_devices: int | None, command: Sequence[str] = ()) -> dict[str, str]:
    """The environment of child ``index``: the ZOO_* join settings, the CPU platform, a device count
    only when asked for (the parent's is removed), and for a zoo ``command`` the launch its resume hint
    repeats (``ZOO_LAUNCHED_BY``)."""
    env = dict(base)
    flags = _DEVICE_COUNT_FLAG.sub("", env.get("XLA_FLAGS", "")).split()
    if local_devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={local_devices}")
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    else:
        env.pop("XLA_FLAGS", None)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    env.update(ZOO_COORDINATOR=coordinator, ZOO_NUM_PROCESSES=str(nproc), ZOO_PROCESS_ID=str(index),
               JAX_PLATFORMS="cpu")
    env.pop(ENV_LAUNCHED_BY, None)
    if command and child_command(command)[1:3] == ["-m", "zoo"]:
        env[ENV_LAUNCHED_BY] = shlex.join(["zoo", "launch", "--nproc", str(nproc), *(
            ["--local-devices", str(local_devices)] if local_devices is not None else []), "--"])
    return env


def child_command(command: Sequence[str]) -> list[str]:
    """``python -m zoo COMMAND ... --distributed`` for a zoo command; ``python SCRIPT ...`` for a script."""
    command = list(command)
    if command[0] in ("python", "python3") or command[0].endswith(".py"):
        return [sys.executable, *(command[1:] if command[0].startswith("python") else command)]
    return [sys.executable, "-m", "zoo", *command, *([] if "--distributed" in command else ["--distributed"])]


class _Output:
    """Copies the children's stdout and stderr to ours: lines in the ``zoo ...: error|note|warning:`` form
    once (every process may print the same one), gloo's connection lines not at all, the rest as it comes
    (a progress bar's carriage returns included)."""

    def __init__(self):
        self.seen: set[bytes] = set()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.stopped = False  # the launcher said why it stopped the processes

    def follow(self, stream, out) -> None:
        thread = threading.Thread(target=self._copy, args=(stream, out), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _copy(self, stream, out) -> None:
        pending = b""
        while chunk := os.read(stream.fileno(), 1 << 16):
            pending += chunk
            *pieces, pending = re.split(rb"(?<=[\r\n])", pending)  # complete lines (or \r segments), the rest
            self._write([p for p in pieces if p], out)
        if pending:
            self._write([pending], out)

    def _write(self, pieces: list[bytes], out) -> None:
        with self.lock:
            for piece in pieces:
                if piece.startswith(_NOISE):
                    continue
                if _ONCE.match(piece):
                    if piece in self.seen:
                        continue
                    self.seen.add(piece)
                out.buffer.write(piece)
            out.buffer.flush()

    def join(self, timeout: float = 5.0) -> None:
        for thread in self.threads:
            thread.join(timeout)


def _failed(code: int | None) -> bool:
    """Whether an exit status is a failure (not still running, not success, not stopped by Ctrl-C)."""
    return code is not None and code not in (0, 130, -signal.SIGINT)


def _describe(index: int, proc: subprocess.Popen) -> str:
    code = proc.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"process {index} (pid {proc.pid}) was killed by {name}"
    return f"process {index} (pid {proc.pid}) exited with status {code}"


def launch(command: Sequence[str], nproc: int, *, local_devices: int | None = None, port: int | None = None,
           grace_s: float = 10.0, prog: str = "zoo launch") -> int:
    """Run ``command`` in ``nproc`` processes joined on 127.0.0.1 (see the module docstring); their exit status."""
    coordinator = f"127.0.0.1:{port or free_port()}"
    output = _Output()
    procs: list[subprocess.Popen] = []
    interrupts = 0

    def on_sigint(signum, frame):
        nonlocal interrupts
        interrupts += 1
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if interrupts < 3 else signal.SIGKILL)

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        for index in range(nproc):
            env = child_env(dict(os.environ), coordinator=coordinator, nproc=nproc, index=index,
                            local_devices=local_devices, command=command)
            # own session: a Ctrl-C in the terminal reaches the launcher only, which forwards it once
            proc = subprocess.Popen(child_command(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
            procs.append(proc)
            output.follow(proc.stdout, sys.stdout)
            output.follow(proc.stderr, sys.stderr)
        failed, failed_at = None, 0.0
        while any(p.poll() is None for p in procs):
            if failed is None:
                failed = next((i for i, p in enumerate(procs) if _failed(p.returncode)), None)
                failed_at = time.monotonic()
            running = [i for i, p in enumerate(procs) if p.poll() is None]
            # A process killed by a signal printed nothing: say so and stop the others at once. One that
            # exited with an error said why; the others usually follow within a moment with the same error
            # (bad input); those still running a few seconds later are stopped, with a line saying why.
            if failed is not None and running and (
                    procs[failed].returncode < 0 or time.monotonic() - failed_at > _SETTLE_S):
                print(f"{prog}: error: {_describe(failed, procs[failed])}; stopping process"
                      f"{'es' if len(running) > 1 else ''} {', '.join(map(str, running))}",
                      file=sys.stderr, flush=True)
                output.stopped = True
                _stop(procs, grace_s)
                break
            time.sleep(0.1)
        for proc in procs:
            proc.wait()
        output.join()
        codes = [p.returncode for p in procs]
        if failed is None:
            failed = next((i for i, c in enumerate(codes) if _failed(c)), None)
        if failed is not None:
            code = codes[failed]
            if code < 0 and not output.stopped:
                print(f"{prog}: error: {_describe(failed, procs[failed])}", file=sys.stderr, flush=True)
            return code if code > 0 else 1
        return 130 if any(c != 0 for c in codes) else 0  # stopped by Ctrl-C
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _stop(procs: list[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM to the running children; SIGKILL to those still running ``grace_s`` later."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.1)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def launch_main(argv: Sequence[str], prog: str = "zoo launch") -> int:
    """``zoo launch [--nproc N] [--local-devices K] -- COMMAND ...``: see the module docstring."""
    argv = list(argv)
    if "--" in argv:
        split = argv.index("--")
        own, command = argv[:split], argv[split + 1:]
    else:
        own, command = argv, []
    args = parse_flags(LaunchArgs, args=own, prog=prog, description=(
        "Run a zoo command (or a Python script) in --nproc processes on this machine, joined by "
        "jax.distributed on 127.0.0.1 (CPU, gloo): zoo launch --nproc 2 -- pretrain gpt --preset nano. "
        "The command comes after --."))
    if not command:
        raise ValueError("the command is missing; expected e.g. zoo launch --nproc 2 -- pretrain gpt --preset nano")
    if args.nproc < 1:
        raise ValueError(f"--nproc {args.nproc}: expected a positive int")
    if args.local_devices is not None and args.local_devices < 1:
        raise ValueError(f"--local-devices {args.local_devices}: expected a positive int")
    if args.port is not None and not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: expected a TCP port in [1, 65535]")
    if args.grace_s < 0:
        raise ValueError(f"--grace-s {args.grace_s}: expected seconds >= 0")
    return launch(command, args.nproc, local_devices=args.local_devices, port=args.port, grace_s=args.grace_s,
                  prog=prog)
