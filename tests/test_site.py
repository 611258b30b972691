"""The documentation site: built by mkdocs in strict mode (a broken link or anchor fails),
its reference pages the ones the code makes, its picture the one the report code draws."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import doc_blocks, need_binary
from PIL import Image

from exporter.devtools import reference

ROOT = Path(__file__).parent.parent


def test_the_reference_pages_are_the_ones_the_code_makes():
    for name, make in reference.PAGES.items():
        assert (ROOT / "docs" / name).read_text() == make(), \
            f"docs/{name} is stale: run python -m exporter.devtools.reference"


def test_the_site_builds_in_strict_mode(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    pages = {p.relative_to(tmp_path / "site").as_posix()
             for p in (tmp_path / "site").rglob("index.html")}
    assert {"index.html", "troubleshooting/index.html",
            "reference/metrics/index.html"} <= pages


def test_the_picture_is_page_one_of_a_report(tmp_path):
    need_binary("pdftoppm")
    done = subprocess.run([sys.executable, "-m", "exporter.devtools.picture",
                           str(tmp_path / "report.png")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    made, committed = Image.open(tmp_path / "report.png"), Image.open(
        ROOT / "docs" / "images" / "report.png")
    assert made.size == committed.size == (702, 497)  # A4 landscape at 60 dpi


# Commands the docs show that cannot run in this suite, and why.
NOT_HERE = {"make": "sets the machine up: this suite runs under `make test`",
            "pipx": "installs into the user's own environment",
            "docker": "no Docker engine here (docker-compose.yml is checked structurally)",
            "helm": "no helm binary here (the chart is rendered through Helm's library)",
            "kubectl": "no Kubernetes cluster here"}
SERVERS = ("serve", "demo")  # run until stopped: started, asked /healthz, stopped
BIN = Path(sys.executable).parent


def healthy(port: int, proc: subprocess.Popen, seconds: float = 30) -> None:
    """Wait until 127.0.0.1:`port`/healthz answers 200; fail if the process ends first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)  # not listening yet: polled, with a deadline
    raise AssertionError(f"nothing answered on {port} within {seconds} s")


def test_every_shell_and_python_block_of_the_docs_runs(tmp_path, unused_tcp_port_factory):
    """Against a demo gateway on free ports (the docs' 8080 and 9464 replaced by them):
    each Python block, each command of each shell block; `serve` and `demo` lines are
    started and must answer /healthz; what needs Docker, Helm or the machine's setup is
    left out, by name (NOT_HERE)."""
    need_binary("curl")
    proxy, admin = unused_tcp_port_factory(), unused_tcp_port_factory()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "TMPDIR": str(tmp_path),
           "OPENAI_API_KEY": "sk-demo-unnamed", "ANTHROPIC_API_KEY": "sk-demo-unnamed",
           "GEMINI_API_KEY": "demo"}

    def local(text: str) -> str:
        return text.replace("127.0.0.1:8080", f"127.0.0.1:{proxy}").replace(
            "127.0.0.1:9464", f"127.0.0.1:{admin}")

    demo = subprocess.Popen([sys.executable, "-m", "exporter", "demo", "--rate", "0.5",
                             "--listen", f"127.0.0.1:{proxy}", "--admin-listen",
                             f"127.0.0.1:{admin}"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ran, left_out = [], set()
    try:
        healthy(admin, demo)
        for page, body in doc_blocks("python"):
            done = subprocess.run([sys.executable, "-c", local(body)], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (page, body, done.stderr)
            ran.append(page)
        for page, body in doc_blocks("sh"):
            for line in body.splitlines():
                words = shlex.split(line, comments=True)
                if not words:
                    continue
                program = next(w for w in words if "=" not in w)  # after VAR=value
                if program in NOT_HERE:
                    left_out.add(program)
                elif program == "llm-usage-exporter" and words[1] in SERVERS:
                    serves(words, tmp_path, env, unused_tcp_port_factory)
                else:
                    if program == "curl":  # an HTTP error is a failure, not a page of it
                        line = line.replace("curl ", "curl --fail --silent --show-error ", 1)
                    done = subprocess.run(local(line), shell=True, cwd=tmp_path, env=env,
                                          capture_output=True, text=True, timeout=120)
                    assert done.returncode == 0, (page, line, done.stderr)
                ran.append(page)
    finally:
        demo.terminate()
        demo.wait(timeout=60)
    assert len(ran) >= 8 and left_out <= set(NOT_HERE)


def serves(words: list[str], cwd: Path, env: dict, port) -> None:
    """Start a `serve` or `demo` line of the docs on free ports, see it answer, stop it."""
    proxy, admin = port(), port()
    args = [a if a != "deploy/local.yaml" else str(ROOT / a) for a in words[1:]]
    proc = subprocess.Popen([sys.executable, "-m", "exporter", *args, "--listen",
                             f"127.0.0.1:{proxy}", "--admin-listen", f"127.0.0.1:{admin}"],
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        healthy(admin, proc)
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0, proc.communicate()
