"""Run a task definition's containers as local processes, in ECS's order.

ECS started a container once every ``dependsOn`` condition held (START: the
dependency runs; HEALTHY: its health check passed; COMPLETE: it exited; SUCCESS: it
exited 0), ran container health checks (``CMD-SHELL`` / ``CMD``, with interval,
timeout, retries and start period), stopped the task when an essential container
exited, and stopped containers in reverse dependency order. ``TaskRunner`` does the
same with processes. The proxy container becomes ``appmesh-proxy`` with the
container's environment; images cannot run here, so every other container runs a
command given on the command line (or its own ``entryPoint`` + ``command`` when that
names a program found on this machine).

Where the processes run, and what their environment says about the network, is the
placement's business (``placement.Explicit`` or ``placement.Awsvpc``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appmesh_api.ecs.logs import LogShipper
from appmesh_api.ecs.network import NetworkError
from appmesh_api.ecs.placement import Placement, is_xray_daemon
from appmesh_api.ecs.taskdef import Container, TaskDefinition, TaskDefinitionError

POLL = 0.1
STOP_TIMEOUT = 10.0


@dataclass
class _Running:
    container: Container
    process: subprocess.Popen
    started: float
    healthy: bool | None = None  # None: no verdict yet (or no health check)
    failures: int = 0
    next_check: float = 0.0
    count_after: float = 0.0  # the next failed probe to count toward retries
    log: Path | None = None
    exit_code: int | None = field(default=None)


class TaskRunner:
    def __init__(
        self,
        task: TaskDefinition,
        commands: dict[str, str],
        placement: Placement,
        say: Callable[[str], None],
        log_dir: Path,
    ) -> None:
        self.task, self.commands, self.placement, self.say = task, commands, placement, say
        self.log_dir = log_dir
        self.on_network: Callable[[str], object] | None = None  # told the placement, once made
        self.logs: LogShipper | None = None  # awslogs, when a container asks for it
        self.running: dict[str, _Running] = {}
        self.exited: dict[str, int] = {}
        self._stopping = False
        self.notes: list[str] = [*task.not_applied, *placement.notes]
        for name in commands:
            task.container(name)  # unknown names fail now, not half-way through
            if name == task.proxy_container:
                raise TaskDefinitionError(
                    f"container {name} is the task's proxy: appmesh-proxy runs in its place, "
                    f"so it takes no --container {name}='COMMAND'"
                )
        self._programs = {c.name: self._program(c) for c in task.containers}
        for container in task.containers:
            _check_limits(container)

    # -- what each container runs -------------------------------------------------------------
    def _program(self, container: Container) -> list[str]:
        if container.name == self.task.proxy_container:
            return [sys.executable, "-m", "proxy.main"]
        if container.name in self.commands:
            return ["/bin/sh", "-c", self.commands[container.name]]
        own = [*container.entry_point, *container.command]
        if own and own[0] not in ("sh", "/bin/sh") and shutil.which(own[0]):
            return own
        if own[:2] in (["sh", "-c"], ["/bin/sh", "-c"]):
            return own
        if is_xray_daemon(container):
            return self._xray_daemon(container)
        raise TaskDefinitionError(
            f"container {container.name}: its image cannot run here (no container engine); "
            f"give the command to run instead: --container {container.name}='COMMAND'"
        )

    def _xray_daemon(self, container: Container) -> list[str]:
        """AWS's X-Ray daemon image: appmesh-local's own daemon on the container's port,
        sending to the control plane's X-Ray; or, when ``serve``'s daemon already holds
        that port where the task runs (explicit mode), that one."""
        port = next((p for p, protocol in container.ports if protocol == "udp"), 2000)
        if self.placement.xray_port_taken(port):
            self.notes.append(
                f"container {container.name} ({container.image}): serve's X-Ray daemon on "
                f"127.0.0.1:{port} stands in for it"
            )
            return ["sleep", "infinity"]
        self.notes.append(
            f"container {container.name} ({container.image}): appmesh-local's X-Ray daemon on "
            f"127.0.0.1:{port} stands in for it, sending to {self.placement.control_plane}"
        )
        return [
            sys.executable, "-m", "appmesh_api.cli", "xray-daemon",
            "--bind", f"127.0.0.1:{port}", "--endpoint", self.placement.control_plane,
        ]  # fmt: skip

    def _environment(self, container: Container) -> dict[str, str]:
        return self.placement.environment(container, {**os.environ, **container.environment})

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop_after: float | None = None) -> int:
        """Run until an essential container exits, Ctrl-C, SIGTERM or ``stop_after``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        deadline = None if stop_after is None else time.monotonic() + stop_after
        previous = signal.signal(signal.SIGTERM, lambda *_: self._request_stop())
        code = 0
        try:
            for note in self.notes:
                self.say(f"  not as on ECS: {note}")
            for line in self.logs.open(self.log_dir) if self.logs else []:
                self.say(f"  {line}")
            self.placement.start()
            self.say(f"  network: {self.placement.description}")
            if self.on_network is not None:
                self.on_network(self.placement.description)
            while not self._stopping and (deadline is None or time.monotonic() < deadline):
                self._start_ready()
                self._check_health()
                done = self._reap()
                if done is not None:
                    code = done
                    break
                time.sleep(POLL)
        except KeyboardInterrupt:
            pass
        except (TaskDefinitionError, NetworkError) as exc:
            self.say(f"appmesh-local ecs: {exc}")
            code = 1
        finally:
            self.stop()
            if self.logs is not None:
                self.logs.close()
            self.placement.close()
            signal.signal(signal.SIGTERM, previous)
        return code

    def _request_stop(self) -> None:
        self._stopping = True

    def _start_ready(self) -> None:
        for container in self.task.containers:
            name = container.name
            if name in self.running or name in self.exited:
                continue
            if all(self._holds(dep, condition, name) for dep, condition in container.depends_on):
                self._start(container)

    def _holds(self, dependency: str, condition: str, waiting: str) -> bool:
        if condition == "START":
            return dependency in self.running or dependency in self.exited
        if condition == "HEALTHY":
            state = self.running.get(dependency)
            if dependency in self.exited or (state and state.healthy is False):
                raise TaskDefinitionError(
                    f"container {waiting} waits for {dependency} to be HEALTHY, but it "
                    f"{'exited' if dependency in self.exited else 'is UNHEALTHY'}"
                )
            return state is not None and state.healthy is True
        if condition in ("COMPLETE", "SUCCESS"):
            if dependency not in self.exited:
                return False
            if condition == "SUCCESS" and self.exited[dependency] != 0:
                raise TaskDefinitionError(
                    f"container {waiting} needs {dependency} to exit 0 (SUCCESS); it exited "
                    f"{self.exited[dependency]}"
                )
            return True
        return False

    def _start(self, container: Container) -> None:
        log = self.log_dir / f"{container.name}.log"
        process = subprocess.Popen(
            self.placement.argv(container, self._programs[container.name]),
            env=self._environment(container),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=container.working_directory or None,
            preexec_fn=_limits(container) if container.ulimits else None,
        )
        now = time.monotonic()
        state = _Running(container, process, now, log=log)
        if container.health_check is not None:
            state.next_check = now + max(container.health_check.start_period, 1.0)
        self.running[container.name] = state
        kind = self._kind(container)
        self.say(f"  started {container.name} ({kind}, pid {process.pid}, log {log})")

    def _kind(self, container: Container) -> str:
        """What runs in place of the image, said plainly."""
        if container.name == self.task.proxy_container:
            return "appmesh-proxy, virtual gateway" if self.task.gateway else "appmesh-proxy"
        program = shlex.join(self._programs[container.name])
        if container.name in self.commands or not container.image:
            return f"command: {program}"
        return f"in place of image {container.image}: {program}"

    def _check_health(self) -> None:
        now = time.monotonic()
        for name, state in self.running.items():
            check = state.container.health_check
            if check is None or now < state.next_check:
                continue
            # Until the first pass, probe every second rather than every interval, so the
            # app starts about when its proxy is LIVE (UNCONFIRMED: Docker's first probe
            # waits one interval); failures still count once per interval, as on ECS.
            state.next_check = now + (check.interval if state.healthy else 1.0)
            passed = _probe(
                check.command,
                check.timeout,
                self._environment(state.container),
                self.placement.inside,
            )
            if passed:
                if state.healthy is not True:
                    self.say(f"  {name} is HEALTHY")
                state.healthy, state.failures = True, 0
                continue
            if now - state.started < check.start_period or now < state.count_after:
                continue  # as on ECS: none in the start period, then one per interval
            state.count_after = now + check.interval
            state.failures += 1
            if state.failures >= check.retries:
                if state.healthy is not False:
                    self.say(f"  {name} is UNHEALTHY ({check.command[-1]})")
                state.healthy = False

    def _reap(self) -> int | None:
        """Record exits; the exit code of the task once an essential container exits."""
        for name, state in list(self.running.items()):
            code = state.process.poll()
            if code is None:
                continue
            del self.running[name]
            self.exited[name] = code
            self.say(f"  {name} exited with {code}")
            if state.container.essential:
                self.say(f"essential container {name} exited: stopping the task")
                return code
        return None

    def stop(self) -> None:
        """ECS's order: containers that depend on others first, the proxy last."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        for name in self._stop_order():
            state = self.running.pop(name, None)
            if state is None:
                continue
            _signal_all(state.process, signal.SIGTERM)
            timeout = state.container.stop_timeout or STOP_TIMEOUT
            try:
                state.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.say(f"  {name} did not stop in {timeout:.0f} s; killing it")
                _signal_all(state.process, signal.SIGKILL)
                state.process.wait()
            self.say(f"  stopped {name}")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def _stop_order(self) -> list[str]:
        """Reverse start order with the proxy container forced last."""
        order = sorted(self.running, key=lambda n: self.running[n].started, reverse=True)
        proxy = self.task.proxy_container
        return [n for n in order if n != proxy] + ([proxy] if proxy in order else [])


def _probe(
    command: list[str],
    timeout: float,
    env: dict[str, str],
    inside: Callable[[list[str]], list[str]],
) -> bool:
    """A container health check, run where the container runs (``inside``)."""
    if command[0] == "CMD-SHELL":
        argv = ["/bin/sh", "-c", " ".join(command[1:])]
    elif command[0] == "CMD":
        argv = command[1:]
    else:
        argv = ["/bin/sh", "-c", shlex.join(command)]
    try:
        finished = subprocess.run(inside(argv), env=env, timeout=timeout, capture_output=True)
        return finished.returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


def _check_limits(container: Container) -> None:
    """A hard limit above this process's own can be set only by root: refuse it now."""
    if os.geteuid() == 0:
        return
    for name, soft, hard in container.ulimits:
        _, ours = resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}"))
        if ours != resource.RLIM_INFINITY and (hard > ours or soft > hard):
            raise TaskDefinitionError(
                f"container {container.name}: ulimit {name} {soft}/{hard} is above this "
                f"user's hard limit {ours}; run as root or lower it"
            )


def _limits(container: Container) -> Callable[[], None]:
    """``ulimits``, set in the child before it runs its program (as Docker's --ulimit)."""
    limits = [(getattr(resource, f"RLIMIT_{n.upper()}"), s, h) for n, s, h in container.ulimits]

    def apply() -> None:
        for which, soft, hard in limits:
            resource.setrlimit(which, (soft, hard))

    return apply


def _signal_all(process: subprocess.Popen, signum: int) -> None:
    """Every process of the container (its session), as stopping a container stops all
    of its processes, not only the first (a ``sh -c`` and what it started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
