"""Bad input: hypothesis over filenames and versions (dists.parse_filename answers with a
FilenameInfo or a DistributionError, nothing else), and a fuzz run over the upload endpoint
with malformed multipart bodies (never a 500, never a file left in tmp/ or packages/)."""

from __future__ import annotations

import hashlib

import pytest
from builders import dist_name, make_wheel
from conftest import basic
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name
from packaging.version import Version
from uploading import stored_files, temp_files, upload

from teamindex.index.dists import DistributionError, FilenameInfo, parse_filename

# -- parse_filename ---------------------------------------------------------------------------

NAME_CHARS = "abcXYZ019._-"
VERSION_CHARS = "0123456789.!+abcdeilnoprstv-_"
SUFFIXES = [".whl", ".tar.gz", ".zip", ".tar", ".egg", ".tar.bz2", ""]

names = st.text(NAME_CHARS, min_size=0, max_size=12)
versions = st.text(VERSION_CHARS, min_size=0, max_size=12)
tags = st.lists(
    st.sampled_from(["py3", "cp311", "none", "any", "abi3", "x", "py2.py3"]), max_size=4
)
structured = st.builds(
    lambda name, version, tag_parts, suffix: "-".join([name, version, *tag_parts]) + suffix,
    names,
    versions,
    tags,
    st.sampled_from(SUFFIXES),
)


def assert_well_behaved(filename: str) -> None:
    try:
        info = parse_filename(filename)
    except DistributionError as exc:
        message = str(exc)
    else:
        message = None
    if message is not None:
        assert message  # every refusal says why
        return
    assert isinstance(info, FilenameInfo)
    assert info.filename == filename
    assert info.project == canonicalize_name(info.project)
    assert info.packagetype in {"bdist_wheel", "sdist"}
    assert isinstance(info.version, Version)
    assert info.canonical_version
    assert "/" not in filename and "\\" not in filename and not filename.startswith(".")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
@example("")
@example("../../etc/passwd.whl")
@example("foo-1.0-py3-none-any.whl\x00")
@example("foo-1.0.tar.gz/..")
@example("foo-" + "1" * 5000 + ".tar.gz")
def test_parse_filename_on_any_text(filename):
    assert_well_behaved(filename)


@settings(max_examples=600, deadline=None)
@given(structured)
@example("foo-1.0-py3-none-any.whl")
@example("foo-1.0-1-py3-none-any.whl")
@example("foo-1.0-x-py3-none-any.whl")
@example("Foo-1.0.tar.gz")
@example("foo--1.0.tar.gz")
@example("foo-1!2.0+local.1-py3-none-any.whl")
def test_parse_filename_on_near_miss_names(filename):
    assert_well_behaved(filename)


valid_names = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?\Z")
valid_versions = st.builds(
    lambda epoch, release, pre, post, dev: (
        (f"{epoch}!" if epoch else "")
        + ".".join(map(str, release))
        + (f"{pre[0]}{pre[1]}" if pre else "")
        + (f".post{post}" if post is not None else "")
        + (f".dev{dev}" if dev is not None else "")
    ),
    st.integers(0, 3),
    st.lists(st.integers(0, 2000), min_size=1, max_size=4),
    st.none() | st.tuples(st.sampled_from(["a", "b", "rc"]), st.integers(0, 9)),
    st.none() | st.integers(0, 9),
    st.none() | st.integers(0, 9),
)


@settings(max_examples=300, deadline=None)
@given(valid_names, valid_versions, st.sampled_from(["wheel", "sdist"]))
def test_valid_filenames_parse_to_their_parts(name, version, kind):
    text = str(Version(version))
    if kind == "wheel":
        filename = f"{dist_name(name)}-{text}-py3-none-any.whl"
    else:
        filename = f"{dist_name(name)}-{text}.tar.gz"
    info = parse_filename(filename)
    assert info.project == canonicalize_name(name)
    assert info.version == Version(version)
    assert info.packagetype == ("bdist_wheel" if kind == "wheel" else "sdist")


# -- the upload endpoint -------------------------------------------------------------------------

BOUNDARY = "fuzzboundary"


def part(name: str, value: bytes, filename: str | None = None, extra: str = "") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return (
        f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n".encode()
        + value
        + b"\r\n"
    )


@pytest.fixture(scope="module")
def valid_body(tmp_path_factory) -> bytes:
    wheel = make_wheel(tmp_path_factory.mktemp("fuzz"), "fuzzed", "1.0")
    data = wheel.read_bytes()
    return (
        part(":action", b"file_upload")
        + part("protocol_version", b"1")
        + part("sha256_digest", hashlib.sha256(data).hexdigest().encode())
        + part("content", data, wheel.name, "Content-Type: application/octet-stream\r\n")
        + f"--{BOUNDARY}--\r\n".encode()
    )


def mutations(valid: bytes) -> st.SearchStrategy[tuple[bytes, str]]:
    closing = len(f"--{BOUNDARY}--\r\n")
    multipart = f"multipart/form-data; boundary={BOUNDARY}"
    truncated = st.integers(0, len(valid) - closing - 1).map(lambda n: (valid[:n], multipart))
    random_bytes = st.binary(max_size=2048).map(lambda b: (b, multipart))
    spliced = st.tuples(
        st.integers(0, len(valid) - closing - 1), st.binary(min_size=1, max_size=64)
    ).map(lambda t: (valid[: t[0]] + t[1] + valid[t[0] + len(t[1]) :][: -closing - 1], multipart))
    wrong_boundary = st.text("abcxyz-", min_size=1, max_size=70).map(
        lambda b: (valid, f"multipart/form-data; boundary={b}")
    )
    odd_types = st.sampled_from(
        [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            'multipart/form-data; boundary="unterminated',
            "multipart/mixed; boundary=" + BOUNDARY,
            "application/x-www-form-urlencoded",
            "text/plain",
            "",
        ]
    ).map(lambda t: (valid, t))
    huge_header = st.integers(1_000, 300_000).map(
        lambda n: (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; '
            f'filename="{"a" * n}.whl"\r\nX: {"b" * n}\r\n\r\nxx\r\n--{BOUNDARY}--\r\n'.encode(),
            multipart,
        )
    )
    odd_parts = st.lists(
        st.tuples(
            st.text(max_size=20),
            st.binary(max_size=100),
            st.none() | st.text(max_size=40),
        ),
        max_size=8,
    ).map(
        lambda parts: (
            b"".join(
                part(name.replace('"', ""), value, None if f is None else f.replace('"', ""))
                for name, value, f in parts
            )
            + f"--{BOUNDARY}--\r\n".encode(),
            multipart,
        )
    )
    return st.one_of(
        truncated, random_bytes, spliced, wrong_boundary, odd_types, huge_header, odd_parts
    )


HUGE_VERSION = "1" * 5000  # past Python's int-parsing limit; once a 500


@pytest.mark.parametrize(
    ("filename", "fields", "message"),
    [
        (f"foo-{HUGE_VERSION}.tar.gz", {}, "400 Invalid source distribution filename"),
        (f"foo-{HUGE_VERSION}-py3-none-any.whl", {}, "400 Invalid wheel filename"),
        ("foo-1.0.tar.gz", {"version": HUGE_VERSION}, "400 Invalid version '1111"),
    ],
)
def test_absurd_versions_are_400(client, settings, filename, fields, message):
    response = upload(client, None, data=b"x", filename=filename, **fields)
    assert response.status.startswith(message)
    assert stored_files(settings.data_dir) == []
    assert temp_files(settings.data_dir) == []


def test_upload_endpoint_survives_malformed_multipart(app, client, settings, valid_body):
    @settings_fuzz
    @given(mutations(valid_body))
    def run(case):
        body, content_type = case
        response = client.post(
            "/legacy/", data=body, headers={**basic("alice"), "Content-Type": content_type}
        )
        assert response.status_code < 500, (response.status, body[:200], content_type)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code != 200 or stored_files(settings.data_dir)
        if response.status_code != 200:
            assert stored_files(settings.data_dir) == []
        assert temp_files(settings.data_dir) == []

    seen: dict[int, int] = {}
    run()
    assert sum(seen.values()) >= 100
    assert set(seen) <= {400, 413}, seen


settings_fuzz = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
