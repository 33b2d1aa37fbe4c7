"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.redis_server import (
    INSTALL_HINT,
    RedisClusterServers,
    RedisServer,
    executable,
    required,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "movable_clock: the test moves the store's clock (a backend that keeps "
        "its own time, Redis, runs it on real time, scaled down)")
    config.addinivalue_line(
        "markers", "exact_clock: the test stops time just before a deadline, which only a "
        "clock the test moves can do")


def _need_redis_server() -> None:
    """Skip without redis-server, except under CI, where that fails the run."""
    if executable() is None:
        message = f"redis-server is not installed; {INSTALL_HINT}"
        if required():
            pytest.fail(f"{message} (CI must not skip the Redis tests)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session: ``.url``, ``.port``, ``.stop()``, ``.start()``
    (back on the same port). Skipped when redis-server is not installed, except under CI,
    where that fails the run."""
    _need_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's redis-server, running (a test that stopped it left it
    restarted) and emptied by FLUSHALL."""
    redis_server.start()
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A real three-node Redis Cluster for the session: ``.url`` (redis+cluster://),
    ``.nodes`` (RedisServer each). Skipped or failed like redis_server."""
    _need_redis_server()
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    """The redis+cluster:// URL of the session's cluster, emptied on every node."""
    redis_cluster.flushall()
    return redis_cluster.url
