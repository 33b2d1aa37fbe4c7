"""The ``apiward`` command as a user runs it: --version, check, run with bad input, demo."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from apiward import __version__
from support.proxy_fixtures import RawClient

BIN = Path(sys.executable).parent / "apiward"
# Rich sizes its output from COLUMNS: leave it unset, as under CI or a pipe.
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}

BAD_CONFIG = """\
listen: "127.0.0.1:0"
workers: 0
colour: red
limits:
  body_size: lots
apis:
  - name: one
    upstream:
      url: ftp://x
"""
# (key path, line) of each problem in BAD_CONFIG
BAD_PROBLEMS = [("workers", 2), ("colour", 3), ("limits.body_size", 5),
                ("apis[0].upstream.url", 9)]


def apiward(*args: str, timeout: float = 30, module: bool = False, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "apiward"] if module else [str(BIN)]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV, cwd=cwd)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0",
        "apis": [{"name": "shop", "upstream": {"url": "http://127.0.0.1:9"},
                  "checks": {"methods": {"allow": ["GET"]}}}],
    }))
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CONFIG)
    return path


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


# -- --version -------------------------------------------------------------------------------
def test_version() -> None:
    result = apiward("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout
    assert "apiward" in result.stdout


def test_version_as_module() -> None:
    result = apiward("--version", module=True)
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_help_lists_the_commands() -> None:
    result = apiward("--help")
    assert result.returncode == 0
    for command in ("run", "check", "demo"):
        assert command in result.stdout


# -- check -------------------------------------------------------------------------------------
def test_check_good_config(good: Path) -> None:
    result = apiward("check", "--config", str(good))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert "shop" in result.stdout


def test_check_good_config_json(good: Path) -> None:
    result = apiward("check", "--config", str(good), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert [a["name"] for a in summary["apis"]] == ["shop"]
    assert summary["apis"][0]["checks"] == ["methods"]


def test_check_bad_config_lists_every_problem(bad: Path) -> None:
    # As a user in the config's directory runs it: the file is named as given.
    result = apiward("check", "--config", bad.name, cwd=bad.parent)
    assert result.returncode == 2
    assert_no_traceback(result)
    output = result.stdout + result.stderr
    for key, line in BAD_PROBLEMS:
        pattern = rf"^\s*{re.escape(key)} \({re.escape(bad.name)}:{line}\): \S"
        assert re.search(pattern, output, re.MULTILINE), f"no line for {key} at line {line}"
    assert 'expected a size like "1MiB"' in output


@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_config_one_line_per_problem(bad: Path, command: str) -> None:
    problems = json.loads(apiward("check", "--config", str(bad), "--json").stdout)["problems"]
    assert problems
    result = apiward(command, "--config", str(bad))  # a long absolute path, as CI gives
    lines = [line.strip() for line in result.stderr.splitlines()]
    for problem in problems:
        assert problem in lines, f"problem not on one line: {problem!r}"


def test_check_bad_config_json(bad: Path) -> None:
    result = apiward("check", "--config", str(bad), "--json")
    assert result.returncode == 2
    assert_no_traceback(result)
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert len(report["problems"]) == len(BAD_PROBLEMS)
    for (key, line), problem in zip(BAD_PROBLEMS, report["problems"], strict=True):
        assert problem.startswith(f"{key} ({bad}:{line}): ")


@pytest.mark.parametrize(("name", "text"), [
    ("syntax.yaml", "apis: [\n  {unclosed\n"),
    ("empty.yaml", ""),
    ("list.yaml", "- 1\n- 2\n"),
    ("tabs.yaml", "apis:\n\t- upstream: x\n"),
    ("binary.yaml", "\x00\x01\x02"),
])
def test_check_unparseable_files(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = apiward("check", "--config", str(path))
    assert result.returncode == 2
    assert_no_traceback(result)
    assert name in result.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    result = apiward("check", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "nope.yaml" in result.stderr


# -- run with bad input ------------------------------------------------------------------------
def test_run_bad_config_exits_2(bad: Path) -> None:
    result = apiward("run", "--config", bad.name, cwd=bad.parent)
    assert result.returncode == 2
    assert_no_traceback(result)
    assert f"limits.body_size ({bad.name}:5)" in result.stderr
    assert "apiward listening" not in result.stdout


def test_run_unwritable_event_log_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "apiward.yaml"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0",
        "events": {"file": str(tmp_path)},  # a directory: it cannot be opened for writing
        "apis": [{"upstream": {"url": "http://127.0.0.1:9"}}],
    }))
    result = apiward("run", "--config", str(config))
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "events.file: cannot open" in result.stderr
    assert "apiward listening" not in result.stdout


def test_run_upstream_not_http_exits_2() -> None:
    result = apiward("run", "--upstream", "ftp://x", "--listen", "127.0.0.1:0")
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "--upstream" in result.stderr


@pytest.mark.parametrize("args", [
    ("run",),                                                  # neither --config nor --upstream
    ("run", "--upstream", "http://127.0.0.1:9", "--listen", "nonsense"),
    ("run", "--upstream", "http://127.0.0.1:9", "--workers", "0"),
    ("run", "--upstream", "http://127.0.0.1:9", "--mode", "maybe"),
])
def test_run_bad_flags_exit_2(args: tuple[str, ...]) -> None:
    result = apiward(*args)
    assert result.returncode == 2
    assert_no_traceback(result)
    assert result.stderr.strip()


def test_run_config_with_upstream_flag_exits_2(good: Path) -> None:
    result = apiward("run", "--config", str(good), "--upstream", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert_no_traceback(result)


def test_run_on_a_taken_port_fails_cleanly(good: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = apiward("run", "--upstream", "http://127.0.0.1:9", "--listen",
                         f"127.0.0.1:{port}")
    assert result.returncode != 0
    assert_no_traceback(result)
    assert "listen" in result.stderr


# -- demo --------------------------------------------------------------------------------------
def read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    output = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in output:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(remaining):
            raise AssertionError(f"no {marker!r} in {timeout}s; got {output.decode()!r}")
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            raise AssertionError(f"demo exited ({proc.wait()}) before {marker!r}: "
                                 f"{output.decode()!r}")
        output += chunk
    return output.decode()


def test_demo_prints_six_calls_and_serves_until_sigint() -> None:
    proc = subprocess.Popen([str(BIN), "demo", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV, start_new_session=True)
    try:
        output = read_until(proc, "Serving until Ctrl-C")
        curls = re.findall(r"^curl .*?(http://127\.0\.0\.1:(\d+)(\S*))$", output, re.MULTILINE)
        assert len(curls) == 6, output
        statuses = re.findall(r"^\s*HTTP/1\.1 (\d{3})", output, re.MULTILINE)
        assert statuses == ["200", "405", "400", "404", "400", "429"], output
        problems = [json.loads(line) for line in output.splitlines()
                    if line.strip().startswith('{"type"')]
        assert [p["status"] for p in problems] == [405, 400, 404, 400, 429]
        assert [p["check"] for p in problems] == ["methods", "http", "route", "schema",
                                                  "ratelimit"]
        assert problems[3]["errors"][0]["location"] == "query.limit"
        assert all(p["request_id"] and p["check"] for p in problems)
        assert "-X PUT" in output

        # It really serves, at the port it printed, and answers as it showed.
        port = int(curls[0][1])
        methods = ("GET", "PUT", "GET", "GET", "GET", "GET")
        for (_, _, path), method, status in zip(curls, methods,
                                                (200, 405, 400, 404, 400, 429), strict=True):
            with RawClient(port) as conn:
                conn.request(method, path, host=f"127.0.0.1:{port}")
                assert conn.read_response(method).status == status

        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert proc.stderr is not None
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_check_builds_what_run_builds(tmp_path: Path) -> None:
    """A config that parses but cannot run (a missing JWKS file) fails check too, naming
    the key, so `check` passing means `run` starts."""
    config = tmp_path / "apiward.yaml"
    config.write_text(
        "apis:\n  - upstream: {url: 'http://127.0.0.1:9'}\n    checks:\n      identity:\n"
        "        schemes: {bearer: {jwt: {jwks_file: missing.json, algorithms: [RS256]}}}\n")
    result = subprocess.run([str(BIN), "check", "--config", str(config)], env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "checks.identity.schemes.bearer.jwt" in result.stderr
    assert str(tmp_path / "missing.json") in result.stderr
    assert "Traceback" not in result.stderr
