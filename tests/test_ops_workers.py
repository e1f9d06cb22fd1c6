"""`serve --workers N` as real processes: one port, N forked workers, one parent.

What must hold across workers lives in the database (the throttle's counters) or is summed
(/metrics); the parent replaces a worker that dies, drains all on SIGTERM and leaves no
child behind, also when it is killed itself. Which worker answered is read from the
request log, whose lines carry the process id under --workers.

Each test is bounded: every HTTP call has a timeout, every wait a deadline, and the parent
and its workers are killed in teardown whatever happened.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_support import (
    ServerProcess,
    add_users,
    big_wheel,
    get,
    start_half_upload,
    start_server,
    visible_files,
)
from prometheus_client.parser import text_string_to_metric_families

from teamindex.ops.workers import default_workers, resolve_workers

ACCESS_PID = re.compile(r"teamindex\.access\[(\d+)\]")
WORKER_STARTED = re.compile(r"worker \d+ started \(pid (\d+)\)")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    add_users(path)
    return path


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        pids = worker_pids(server)
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(10)
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def serve(servers: list[ServerProcess], data_dir: Path, tmp_path: Path) -> ServerProcess:
    server = start_server(data_dir, tmp_path / "server.log", threads=4, workers=2)
    servers.append(server)
    assert wait_for(lambda: server.log_text().count("worker ready") >= 2, 20)
    return server


def worker_pids(server: ServerProcess) -> list[int]:
    return [int(pid) for pid in WORKER_STARTED.findall(server.log_text())]


def served_by(server: ServerProcess) -> set[int]:
    return {int(pid) for pid in ACCESS_PID.findall(server.log_text())}


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone: only its parent can reap it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(predicate, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def requests_until_both_served(server: ServerProcess, path: str, user: str, limit: int) -> int:
    """GET `path` on a new connection each time until both workers answered; how many."""
    for sent in range(1, limit + 1):
        assert get(server.url, path, user)[0] == 200
        if len(served_by(server)) >= 2:
            return sent
    raise AssertionError(f"one worker answered all {limit} requests: {served_by(server)}")


def test_workers_default_to_one_per_core_and_refuse_negative_numbers():
    assert default_workers() == len(os.sched_getaffinity(0))
    assert resolve_workers(0) == default_workers()
    assert resolve_workers(3) == 3
    with pytest.raises(ValueError, match="workers"):
        resolve_workers(-1)


def test_the_throttle_counts_failures_of_all_workers(data_dir, servers, tmp_path):
    """20 wrong passwords from one address block it, however the workers shared them."""
    server = serve(servers, data_dir, tmp_path)
    statuses = [get(server.url, "/simple/", "alice", password="wrong-password")[0]]
    assert wait_for(lambda: len(served_by(server)) == 1, 5)
    # The kernel may hand every new connection to the same worker (about one run in ten
    # did): with that one stopped, only the other can accept the next failure.
    (first,) = served_by(server)
    os.kill(first, signal.SIGSTOP)
    try:
        statuses.append(get(server.url, "/simple/", "alice", password="wrong-password")[0])
    finally:
        os.kill(first, signal.SIGCONT)
    assert wait_for(lambda: len(served_by(server)) == 2, 5), "both workers must count failures"
    while len(statuses) < 20:
        statuses.append(get(server.url, "/simple/", "alice", password="wrong-password")[0])
    assert statuses == [401] * 20
    blocked = [get(server.url, "/simple/", "alice", password="wrong-password")[0] for _ in range(6)]
    assert blocked == [429] * 6
    assert served_by(server) == set(worker_pids(server))


def test_metrics_sum_the_counters_of_all_workers(data_dir, servers, tmp_path):
    server = serve(servers, data_dir, tmp_path)
    sent = requests_until_both_served(server, "/simple/", "alice", 60)
    sent += sum(get(server.url, "/simple/", "alice")[0] == 200 for _ in range(4))
    status, body = get(server.url, "/metrics", "root")
    assert status == 200
    counted = sum(
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "teamindex_http_requests_total"
        and sample.labels.get("route") == "/simple/"
        and sample.labels.get("status") == "200"
    )
    assert counted == sent
    assert b"teamindex_storage_files" in body  # the database collectors are still there


def test_a_killed_worker_is_replaced(data_dir, servers, tmp_path):
    server = serve(servers, data_dir, tmp_path)
    first, second = worker_pids(server)
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: len(worker_pids(server)) == 3, 15), server.log_text()
    assert f"worker pid {first} died (signal 9)" in server.log_text()
    replacement = worker_pids(server)[2]
    assert alive(replacement) and alive(second)
    statuses = [get(server.url, "/simple/", "alice")[0] for _ in range(20)]
    assert statuses == [200] * 20
    assert server.process.poll() is None


def test_sigterm_drains_an_upload_and_leaves_no_worker(data_dir, servers, tmp_path):
    """SIGTERM to the parent while an upload's body is arriving: it completes, the port
    closes, every worker exits and the parent exits 0."""
    wheel = big_wheel(tmp_path, "inflight", "1.0", 2 << 20)
    data = wheel.read_bytes()
    server = serve(servers, data_dir, tmp_path)
    pids = worker_pids(server)
    upload = start_half_upload(server.url, wheel)
    time.sleep(0.5)  # a worker has accepted the connection and parsed the headers
    server.process.send_signal(signal.SIGTERM)
    assert wait_for(lambda: "waiting for 1 request(s)" in server.log_text(), 10)
    with pytest.raises(ConnectionRefusedError):  # every copy of the listener is closed
        get(server.url, "/healthz")
    assert upload.finish() == 200
    assert server.process.wait(15) == 0
    assert "all workers stopped" in server.log_text()
    assert not [pid for pid in pids if alive(pid)]

    restarted = serve(servers, data_dir, tmp_path)
    assert visible_files(restarted.url) == {wheel.name: hashlib.sha256(data).hexdigest()}


def test_workers_die_with_a_killed_parent(data_dir, servers, tmp_path):
    server = serve(servers, data_dir, tmp_path)
    pids = worker_pids(server)
    server.process.kill()
    server.process.wait(10)
    assert wait_for(lambda: not [pid for pid in pids if alive(pid)], 15)
    with pytest.raises(ConnectionRefusedError):
        get(server.url, "/healthz")


def test_workers_that_keep_dying_stop_the_parent_with_exit_1(monkeypatch):
    """A worker that cannot start (a broken data dir, say) is not restarted forever: after
    MAX_CRASHES within CRASH_WINDOW the parent gives up, for systemd's Restart= to act."""
    from teamindex.ops import workers

    monkeypatch.setattr(workers, "FIRST_BACKOFF", 0.01)
    gone: list[int] = []
    supervisor = workers.Supervisor(2, serve=lambda: 3, on_exit=gone.append)
    started = time.monotonic()
    assert supervisor.run([]) == 1
    assert time.monotonic() - started < 10
    assert workers.MAX_CRASHES + 1 <= len(gone) <= workers.MAX_CRASHES + 2
    assert not supervisor.children
    assert not [pid for pid in gone if alive(pid)]


def test_metrics_dirs_of_dead_parents_are_swept_and_live_ones_kept(tmp_path):
    """A parent killed with -9 leaves its metrics directory; the next start removes it,
    never the directory of a server still running, nor anything it did not make."""
    import fcntl

    from teamindex.ops.workers import METRICS_LOCK, METRICS_PREFIX, metrics_dir

    dead = tmp_path / f"{METRICS_PREFIX}dead"
    dead.mkdir()
    (dead / METRICS_LOCK).touch()
    (dead / "counter_1.db").touch()
    other = tmp_path / f"{METRICS_PREFIX}other"  # no lock file: not made by a parent
    other.mkdir()
    with metrics_dir(tmp_path) as live:
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == live
        assert not dead.exists() and other.exists()
        with metrics_dir(tmp_path) as second:  # a second server's start keeps the first's
            assert Path(live).exists() and second != live
        probe = os.open(Path(live) / METRICS_LOCK, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
    assert not Path(live).exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
