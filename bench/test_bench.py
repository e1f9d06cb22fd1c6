"""Fast checks of the harness's pure parts: `python -m pytest bench/test_bench.py`."""

from __future__ import annotations

import email.parser
import tarfile
import zipfile
from pathlib import Path

import corpus
import load
import peers
import pytest

WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:41000/simple/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.80ms    5.10ms  60.00ms   80.00%
    Req/Sec   740.00     80.00     0.90k    70.00%
  Latency Distribution
     50%    9.80ms
     75%   12.00ms
     90%   15.00ms
     99%    1.20s
  4421 requests in 3.00s, 10.00MB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   1473.40
Transfer/sec:      3.33MB
"""


def test_parse_wrk() -> None:
    res = load.parse_wrk(WRK_OUTPUT)
    assert res == load.LoadResult(1473.40, 9.80, 1200.0, 4421, 5, "wrk")


@pytest.mark.parametrize(
    ("text", "ms"), [("850.00us", 0.85), ("9.80ms", 9.8), ("1.20s", 1200.0), ("1.00m", 60000.0)]
)
def test_wrk_units(text: str, ms: float) -> None:
    assert load._to_ms(text) == pytest.approx(ms)


def test_wheel_is_valid(tmp_path: Path) -> None:
    dist = corpus.Dist("chain-3", "1.0.0", "wheel", ("chain-4>=1.0",), payload_bytes=1000)
    path = corpus.build_wheel(dist, tmp_path)
    assert path.name == "chain_3-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path) as zf:
        record = zf.read("chain_3-1.0.0.dist-info/RECORD").decode().splitlines()
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            if name.endswith("RECORD"):
                continue
            data = zf.read(name)
            assert digest == corpus.record_hash(data)
            assert int(size) == len(data)
        meta = email.parser.Parser().parsestr(zf.read("chain_3-1.0.0.dist-info/METADATA").decode())
    assert meta["Name"] == "chain-3"
    assert meta.get_all("Requires-Dist") == ["chain-4>=1.0"]


def test_sdist_has_one_top_level_dir(tmp_path: Path) -> None:
    path = corpus.build_sdist(corpus.Dist("proj-00001", "1.2.0", "sdist"), tmp_path)
    assert path.name == "proj_00001-1.2.0.tar.gz"
    with tarfile.open(path) as tf:
        names = tf.getnames()
    assert {n.split("/", 1)[0] for n in names} == {"proj_00001-1.2.0"}
    assert "proj_00001-1.2.0/PKG-INFO" in names


def test_generation_is_deterministic(tmp_path: Path) -> None:
    dist = corpus.Dist("large-wheel", "1.0.0", "wheel", payload_bytes=5000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = corpus.build_wheel(dist, tmp_path / "a")
    second = corpus.build_wheel(dist, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()


def test_special_projects() -> None:
    dists = corpus.special_dists()
    assert sum(d.name == corpus.BIG_PROJECT for d in dists) == 300
    chain = [d for d in dists if d.name.startswith(corpus.CHAIN_PREFIX)]
    assert [d.requires for d in chain][-1] == ()
    assert chain[0].requires == ("chain-1>=1.0",)


@pytest.mark.parametrize(
    ("fname", "expected"),
    [
        (
            "proj_00001-1.2.0-py3-none-any.whl",
            peers.DistInfo("proj-00001", "1.2.0", "bdist_wheel", "py3"),
        ),
        ("big_project-1.40.0.tar.gz", peers.DistInfo("big-project", "1.40.0", "sdist", "source")),
    ],
)
def test_dist_info(fname: str, expected: peers.DistInfo) -> None:
    assert peers.dist_info(Path(fname)) == expected


def test_proxy_upstream_pages_in_both_formats() -> None:
    import proxypeers

    page = {
        "name": "demo",
        "files": [
            {
                "filename": "demo-1.0-py3-none-any.whl",
                "url": "../../files/demo-1.0-py3-none-any.whl",
                "hashes": {"sha256": "ab" * 32},
                "requires-python": ">=3.9",
                "core-metadata": {"sha256": "cd" * 32},
            }
        ],
    }
    text = proxypeers.render_html(page)
    assert 'data-requires-python="&gt;=3.9"' in text
    assert f'data-core-metadata="sha256={"cd" * 32}"' in text
    url = "http://127.0.0.1:1/simple/demo/"
    want = "http://127.0.0.1:1/files/demo-1.0-py3-none-any.whl"
    assert proxypeers.first_file_url(url, "text/html", text.encode()) == want
    body = proxypeers.json.dumps(page).encode()
    assert proxypeers.first_file_url(url, proxypeers.JSON_TYPE, body) == want
    assert proxypeers.wants_json(f"{proxypeers.JSON_TYPE}, text/html; q=0.01")
    assert not proxypeers.wants_json(f"text/html, {proxypeers.JSON_TYPE}; q=0")
    assert not proxypeers.wants_json("text/html")


def test_proxy_targets() -> None:
    import proxymode

    def res(rps: float) -> load.LoadResult:
        return load.LoadResult(rps, 1.0, 2.0, 100, 0, "wrk")

    team = proxymode.ServerResult(
        cold_page_ms=10.0, warm_page=res(900), local_page=res(1000),
        warm_file=res(500), local_file=res(1000),
    )  # fmt: skip
    rows = proxymode.targets(
        {"teamindex": team, "devpi": proxymode.ServerResult(warm_page=res(200))}, 1.0
    )
    assert [met for _, _, met in rows] == [True, True, False, True]
    assert rows[1][1] == "900 / 200 = 4.5x"
