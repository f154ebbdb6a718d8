"""Every ```bash and ```python block of README.md and docs/*.md runs as written.

The reader's situation is reproduced, not imitated:

* A real ``appmesh-local serve`` (in memory) runs, and beside it a real
  ``appmesh-local up --example colorapp --endpoint ...``, as the README's first
  steps leave a reader's machine; the tour then works on the colorapp mesh.
* Each block runs in a **fresh shell**: its own ``bash`` (or ``python``) process
  with a clean environment (no ``AWS_*`` or proxy variables inherited, ``HOME`` an
  empty temporary directory), so a block that forgets its credentials fails here as
  it would for a reader in a new terminal. Blocks of one file run in order, so a
  block may use what an earlier block of the same file created on the server. Files
  do not depend on each other (each makes its own resources, with names of its own),
  so they run side by side.
* bash runs with ``-e -o pipefail``, so a failing line anywhere in a block fails it,
  not only the last one. The working directory is the repository root (a reader
  works from a clone), so blocks must not write files there: a file a block leaves
  behind fails the test.

Port: the snippets name the default port, 4567. The test does not take 4567: a
developer running this test may have their own ``serve`` or ``up`` there (the
README tells them to), and tests run in parallel under xdist. It starts its
server on a free port and rewrites ``127.0.0.1:4567`` / ``localhost:4567`` in each
block's text to that port before running it; nothing else in a block is changed.

A block that must not run says why on the line before its fence
(``<!-- snippet: skip (reason) -->``, see ``markdown_snippets``); a marker
without a reason fails ``test_every_skip_says_why``. An unmarked block that runs
pytest fails at once instead of running the suite, and this test, inside itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Server, start_server
from tests.docs.markdown_snippets import Snippet, extract

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENDPOINT = re.compile(r"\b(127\.0\.0\.1|localhost):4567\b")
BLOCK_TIMEOUT = 90.0
README_MAX_LINES = 200
PARALLEL_DOCUMENTS = 3
RUNS_THE_TESTS = re.compile(r"\bpytest\b")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Outcome:
    snippet: Snippet
    returncode: int
    output: str

    def report(self) -> str:
        text = self.snippet.text.rstrip()
        return (
            f"{self.snippet.where()}: the {self.snippet.language} block exited "
            f"{self.returncode}\n--- block ---\n{text}\n--- output ---\n{self.output[-3000:]}"
        )


def fresh_environment(home: Path) -> dict[str, str]:
    """What a new terminal on a machine with appmesh-local installed would have."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT)}
    if "PYENV_ROOT" in os.environ:  # pyenv's shims need it once HOME moves
        env["PYENV_ROOT"] = os.environ["PYENV_ROOT"]
    return env


def run_snippet(snippet: Snippet, port: int, home: Path) -> Outcome:
    text = DEFAULT_ENDPOINT.sub(lambda found: f"{found.group(1)}:{port}", snippet.text)
    if snippet.language == "bash":
        command = ["bash", "-e", "-o", "pipefail", "-c", text]
    else:
        command = [sys.executable, "-c", text]
    try:
        result = subprocess.run(
            command,
            cwd=ROOT,
            env=fresh_environment(home),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace")
        return Outcome(snippet, -1, f"{output}\n(timed out after {BLOCK_TIMEOUT:.0f} s)")
    return Outcome(snippet, result.returncode, result.stdout + result.stderr)


def start_colorapp(server: Server, log_path: Path) -> subprocess.Popen:
    """``appmesh-local up`` against the test's server, returned once traffic flows."""
    command = [sys.executable, "-m", "appmesh_api.cli", "up", "--endpoint", server.endpoint]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + 30
    while "mesh is up" not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"appmesh-local up did not come up:\n{log_path.read_text()}")
        time.sleep(0.1)
    return process


@pytest.fixture(scope="module")
def readers_machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A serve and the colorapp mesh of ``up`` running on it, as after the README's start."""
    tmp = tmp_path_factory.mktemp("snippets")
    server = start_server(tmp)
    try:
        up = start_colorapp(server, tmp / "up.log")
    except RuntimeError:
        server.stop()
        raise
    yield server
    up.send_signal(signal.SIGTERM)
    try:
        up.wait(timeout=20)
    except subprocess.TimeoutExpired:
        up.kill()
    server.stop()


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference to docs/"


def test_every_skip_says_why():
    problems = [problem for path in documents() for problem in extract(path).problems]
    assert not problems, "\n".join(problems)


def run_document(path: Path, port: int, home: Path) -> tuple[int, str | None]:
    """Run a file's blocks in order; stop at the first failure, since later blocks of the
    file may build on it. Returns how many blocks ran and the failure's report."""
    ran = 0
    for snippet in extract(path).snippets:
        if snippet.skip_reason is not None:
            continue
        if RUNS_THE_TESTS.search(snippet.text):
            return ran, f"{snippet.where()}: runs pytest, and so this test again; mark it skip"
        fresh_home = home / f"{path.stem}-{ran}"
        fresh_home.mkdir(parents=True)
        outcome = run_snippet(snippet, port, fresh_home)
        ran += 1
        if outcome.returncode != 0:
            return ran, outcome.report()
    return ran, None


def untracked_files() -> set[str]:
    """Files git does not know in the clone the blocks run in (empty outside a git clone)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return set()
    return set(listed.stdout.split()) if listed.returncode == 0 else set()


def test_every_snippet_runs_as_written(readers_machine: Server, tmp_path: Path):
    before = untracked_files()
    # Files do not depend on each other, so they run side by side (blocks of one file
    # still run in order); most of a block's time is the aws CLI starting up.
    with ThreadPoolExecutor(max_workers=PARALLEL_DOCUMENTS) as pool:
        results = list(
            pool.map(lambda path: run_document(path, readers_machine.port, tmp_path), documents())
        )
    assert sum(ran for ran, _ in results) > 0
    failures = [failure for _, failure in results if failure]
    left = untracked_files() - before
    if left:
        failures.append(f"blocks left files in the repository (write them elsewhere): {left}")
    assert not failures, "\n\n".join(failures) + f"\n--- server log ---\n{readers_machine.log()}"


def test_a_broken_snippet_fails(tmp_path: Path):
    """The runner itself: a failure in the middle of a block is a failure of the block."""
    broken = Snippet(Path("broken.md"), 1, "bash", "false\necho still here\n", None)
    assert run_snippet(broken, 4567, tmp_path).returncode != 0
    raising = Snippet(Path("broken.md"), 5, "python", "raise SystemExit(3)\n", None)
    assert run_snippet(raising, 4567, tmp_path).returncode == 3


def test_a_snippet_inherits_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "123456789012")
    probe = Snippet(Path("probe.md"), 1, "bash", 'test -z "${AWS_ACCESS_KEY_ID:-}"\n', None)
    assert run_snippet(probe, 4567, tmp_path).returncode == 0


def test_a_skip_without_a_reason_is_refused(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- snippet: skip -->\n```bash\nappmesh-local serve\n```\n\n"
        "<!-- snippet: skip (runs until Ctrl-C) -->\n```bash\nappmesh-local up\n```\n\n"
        "```python\nprint(1)\n```\n```console\n$ not run\n```\n"
    )
    extracted = extract(page)
    assert [s.skip_reason for s in extracted.snippets] == [
        "(no reason given)",
        "runs until Ctrl-C",
        None,
    ]
    assert len(extracted.problems) == 1 and "page.md:1" in extracted.problems[0]
