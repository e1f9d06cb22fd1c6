"""teamindex.index.dists: filename rules, archive inspection, core metadata (pure, table-driven)."""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from builders import claim_zip_directory, make_sdist, make_wheel, metadata_text, tar_bomb
from packaging.version import Version

from teamindex.index.dists import (
    MAX_ARCHIVE_MEMBERS,
    MAX_METADATA_BYTES,
    MIN_INFLATED_ALLOWANCE,
    DistributionError,
    inspect_distribution,
    normalized_filename,
    parse_filename,
    parse_metadata,
    spelling_pattern,
    validate_project_name,
)

# -- parse_filename ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "project", "version", "packagetype", "python_version"),
    [
        ("foo-1.0-py3-none-any.whl", "foo", "1.0", "bdist_wheel", "py3"),
        ("foo_bar-2.0.1-py2.py3-none-any.whl", "foo-bar", "2.0.1", "bdist_wheel", "py2.py3"),
        ("foo_bar-1.0-1abc-py3-none-any.whl", "foo-bar", "1.0", "bdist_wheel", "py3"),
        (
            "foo-1.0+local-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "foo",
            "1.0+local",
            "bdist_wheel",
            "cp311",
        ),
        ("foo-1.0rc1-py3-none-any.whl", "foo", "1.0rc1", "bdist_wheel", "py3"),
        ("foo-1.0.tar.gz", "foo", "1.0", "sdist", "source"),
        ("foo_bar-1.0.zip", "foo-bar", "1.0", "sdist", "source"),
        ("foo_bar-1.0.post1.tar.gz", "foo-bar", "1.0.post1", "sdist", "source"),
        # Legacy sdists may spell the name as the project does (imports of old files).
        ("Foo_Bar-1.0.tar.gz", "foo-bar", "1.0", "sdist", "source"),
        ("Django-3.2.25.tar.gz", "django", "3.2.25", "sdist", "source"),
        ("zope.interface-6.0.tar.gz", "zope-interface", "6.0", "sdist", "source"),
        # So may wheels: the binary distribution format spec says consumers must accept "."
        # and upper case in the name, as written by older producers.
        ("Foo_Bar-1.0-py3-none-any.whl", "foo-bar", "1.0", "bdist_wheel", "py3"),
        ("FOO-1.0-py3-none-any.whl", "foo", "1.0", "bdist_wheel", "py3"),
        ("Django-3.2.25-py3-none-any.whl", "django", "3.2.25", "bdist_wheel", "py3"),
        ("ruamel.yaml-0.17.21-py3-none-any.whl", "ruamel-yaml", "0.17.21", "bdist_wheel", "py3"),
        (
            "backports.tarfile-1.2.0-py3-none-any.whl",
            "backports-tarfile",
            "1.2.0",
            "bdist_wheel",
            "py3",
        ),
        (
            "MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "markupsafe",
            "2.1.5",
            "bdist_wheel",
            "cp311",
        ),
    ],
)
def test_parse_filename_valid(filename, project, version, packagetype, python_version):
    info = parse_filename(filename)
    assert info.filename == filename
    assert info.project == project
    assert info.version == Version(version)
    assert info.packagetype == packagetype
    assert info.python_version == python_version


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        # A legacy spelling must still be a valid name.
        ("_foo-1.0-py3-none-any.whl", "'_foo' is an invalid value for Name."),
        ("foo.-1.0-py3-none-any.whl", "'foo.' is an invalid value for Name."),
        ("foo-bar-1.0-py3-none-any.whl", "Invalid wheel filename"),
        ("foo__bar-1.0-py3-none-any.whl", "Invalid wheel filename"),
        ("foo-1.0-RC1-py3-none-any.whl", "Invalid wheel filename"),
        ("foo-1.0.whl", "Invalid wheel filename"),
        ("foo-notaversion-py3-none-any.whl", "Invalid wheel filename"),
        ("foo.tar.gz", "Invalid source distribution filename: foo.tar.gz"),
        ("foo-1.0-post1.tar.gz", "Invalid source distribution filename"),
        ("foo-x.y.tar.gz", "Invalid source distribution filename"),
        # Extensions (PEP 527).
        ("foo-1.0-py3-none-any.WHL", "Invalid file extension"),
        ("foo-1.0.tar.bz2", "Invalid file extension"),
        ("foo-1.0.egg", "Invalid file extension"),
        ("foo-1.0.exe", "Invalid file extension"),
        ("foo-1.0", "Invalid file extension"),
        # Paths and separators.
        ("a/foo-1.0.tar.gz", "Cannot upload a file with '/' or '\\' in the name."),
        ("a\\foo-1.0.tar.gz", "Cannot upload a file with '/' or '\\' in the name."),
        ("../x.whl", "Cannot upload a file with '/' or '\\' in the name."),
        ("..\\x.whl", "Cannot upload a file with '/' or '\\' in the name."),
        ("/etc/foo-1.0.tar.gz", "Cannot upload a file with '/' or '\\' in the name."),
        # Control characters and DEL.
        ("foo\x00-1.0.tar.gz", "non-printable characters"),
        ("foo-1.0.tar.gz\n", "non-printable characters"),
        ("foo\r-1.0.tar.gz", "non-printable characters"),
        ("foo\x1b-1.0.tar.gz", "non-printable characters"),
        ("foo\x7f-1.0.tar.gz", "non-printable characters"),
        # Hidden files and dot names.
        (".foo-1.0.tar.gz", "Invalid distribution filename: '.foo-1.0.tar.gz'"),
        ("..", "Invalid distribution filename: '..'"),
        ("..whl", "Invalid distribution filename"),
        (".", "Invalid distribution filename"),
        ("", "Invalid distribution filename: ''"),
    ],
)
def test_parse_filename_invalid(filename, message):
    with pytest.raises(DistributionError) as caught:
        parse_filename(filename)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("filename", "normalized"),
    [
        ("foo-1.0-py3-none-any.whl", "foo-1.0-py3-none-any.whl"),
        ("Django-3.2.25-py3-none-any.whl", "django-3.2.25-py3-none-any.whl"),
        ("ruamel.yaml-0.17.21-py3-none-any.whl", "ruamel_yaml-0.17.21-py3-none-any.whl"),
        ("Foo.Bar-1.0RC1-1-py3.py2-none-any.whl", "foo_bar-1.0rc1-1-py2.py3-none-any.whl"),
        (
            "MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "markupsafe-2.1.5-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        ),
        ("Django-3.2.25.tar.gz", "django-3.2.25.tar.gz"),
        ("zope.interface-6.0.zip", "zope_interface-6.0.zip"),
        # A different version string is a different file, even when PEP 440 calls it equal
        # (1.0 and 1.0.0 are one release, but two files, as on PyPI).
        ("foo-1.0.0.tar.gz", "foo-1.0.0.tar.gz"),
    ],
)
def test_normalized_filename(filename, normalized):
    assert normalized_filename(parse_filename(filename)) == normalized
    assert normalized_filename(parse_filename(normalized)) == normalized


def test_spelling_pattern_matches_every_spelling():
    import sqlite3

    conn = sqlite3.connect(":memory:")
    pattern = spelling_pattern(parse_filename("ruamel_yaml-1.0.tar.gz").project)
    for spelling in (
        "Ruamel.Yaml-1.0.tar.gz",
        "ruamel_yaml-1.0-py3-none-any.whl",
        "RUAMEL-YAML-1.0.zip",
    ):
        assert conn.execute("SELECT ? LIKE ?", (spelling, pattern)).fetchone() == (1,)
    for other in ("ruamel-1.0.tar.gz", "yaml-1.0.tar.gz", "ruamel_yaml_extra.tar.gz"):
        assert conn.execute("SELECT ? LIKE ?", (other, pattern)).fetchone() == (0,)
    conn.close()


def test_distribution_error_is_a_value_error():
    # Pure modules raise ValueError subclasses (house style), so generic callers can catch them.
    assert issubclass(DistributionError, ValueError)


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("foo", "foo"),
        ("Foo_Bar", "foo-bar"),
        ("foo.bar", "foo-bar"),
        ("A", "a"),
        ("a1-b2", "a1-b2"),
        ("Team.Demo__x", "team-demo-x"),
    ],
)
def test_validate_project_name_valid(name, normalized):
    assert validate_project_name(name) == normalized


@pytest.mark.parametrize("name", ["", "_foo", "foo_", "-foo", "foo bar", "foo/bar", "föö", "a."])
def test_validate_project_name_invalid(name):
    with pytest.raises(DistributionError, match="is an invalid value for Name"):
        validate_project_name(name)


# -- parse_metadata ------------------------------------------------------------------------


def test_parse_metadata_fields():
    raw = (
        b"Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 1.0\nSummary: Hello\n"
        b"Requires-Python: >=3.8,<4\nRequires-Dist: attrs\nRequires-Dist: six; extra == 'x'\n"
        b"Project-URL: Home, https://example.com\n\nThe description.\n"
    )
    meta = parse_metadata(raw)
    assert (meta.name, meta.version, meta.summary) == ("Foo_Bar", "1.0", "Hello")
    assert meta.requires_python == ">=3.8,<4"
    assert meta.fields["requires_dist"] == ["attrs", "six; extra == 'x'"]
    assert meta.fields["project_urls"] == ["Home, https://example.com"]
    assert meta.fields["description"] == "The description.\n"


def test_parse_metadata_optional_fields_default_to_empty():
    meta = parse_metadata(b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n")
    assert (meta.summary, meta.requires_python) == ("", "")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"Metadata-Version: 2.1\nVersion: 1.0\n", "Metadata has no Name."),
        (b"Metadata-Version: 2.1\nName: foo\n", "Metadata has no Version."),
        (b"Metadata-Version: 2.1\nName: foo\nVersion: \n", "Metadata has no Version."),
        (b"Metadata-Version: 2.1\nName: _foo\nVersion: 1.0\n", "invalid value for Name"),
        (b"Metadata-Version: 2.1\nName: foo\nVersion: one\n", "Invalid version in metadata"),
        (b"", "Metadata has no Name."),
    ],
)
def test_parse_metadata_invalid(raw, message):
    with pytest.raises(DistributionError) as caught:
        parse_metadata(raw)
    assert message in str(caught.value)


# -- inspect_distribution ------------------------------------------------------------------


def _inspect(path: Path):
    """Inspect the file, and check the import's in-memory reading of its bytes (issue 14)
    gives the same inspection or the same refusal."""
    info = parse_filename(path.name)
    try:
        from_file = inspect_distribution(path, info)
    except DistributionError as exc:
        refusal = str(exc)
    else:
        assert inspect_distribution(path, info, path.read_bytes()) == from_file
        return from_file
    with pytest.raises(DistributionError) as caught:
        inspect_distribution(path, info, path.read_bytes())
    assert str(caught.value) == refusal
    raise DistributionError(refusal)


def _zip_sdist(directory: Path, filename: str, members: dict[str, bytes]) -> Path:
    path = directory / filename
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


def _tar_sdist(directory: Path, filename: str, members: dict[str, bytes]) -> Path:
    path = directory / filename
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_inspect_wheel_returns_exact_metadata_bytes(tmp_path):
    path = make_wheel(tmp_path, "Foo_Bar", "1.0", requires_python=">=3.9")
    inspection = _inspect(path)
    with zipfile.ZipFile(path) as archive:
        expected = archive.read("foo_bar-1.0.dist-info/METADATA")
    assert inspection.metadata_bytes == expected
    assert inspection.metadata.name == "Foo_Bar"
    assert inspection.metadata.version == "1.0"
    assert inspection.metadata.requires_python == ">=3.9"
    assert inspection.metadata.summary == "A test package"


def test_inspect_tar_sdist_has_no_metadata_file(tmp_path):
    inspection = _inspect(make_sdist(tmp_path, "foo-bar", "2.0", requires_python=">=3.10"))
    assert inspection.metadata_bytes is None
    assert (inspection.metadata.name, inspection.metadata.version) == ("foo-bar", "2.0")
    assert inspection.metadata.requires_python == ">=3.10"


def test_inspect_zip_sdist(tmp_path):
    path = _zip_sdist(
        tmp_path,
        "foo-1.0.zip",
        {"foo-1.0/PKG-INFO": metadata_text("foo", "1.0").encode(), "foo-1.0/setup.py": b""},
    )
    inspection = _inspect(path)
    assert inspection.metadata_bytes is None
    assert inspection.metadata.version == "1.0"


def test_inspect_accepts_equal_but_differently_spelled_version(tmp_path):
    # PEP 440 equality: 1.0.0 in the filename is the 1.0 in METADATA.
    path = make_wheel(tmp_path, "foo", "1.0.0", metadata=metadata_text("foo", "1.0"), filename=None)
    assert _inspect(path).metadata.version == "1.0"


@pytest.mark.parametrize("missing", ["METADATA", "WHEEL", "RECORD"])
def test_inspect_wheel_missing_required_file(tmp_path, missing):
    path = make_wheel(tmp_path, "foo", "1.0", omit=[missing])
    with pytest.raises(DistributionError) as caught:
        _inspect(path)
    assert str(caught.value) == (
        f"Wheel 'foo-1.0-py3-none-any.whl' does not contain the required {missing} file: "
        f"foo-1.0.dist-info/{missing}"
    )


@pytest.mark.parametrize(
    ("name", "filename"),
    [
        # As older producers wrote them: filename and dist-info spell the name alike.
        ("Legacy.Name", None),
        # Renamed by hand: the dist-info keeps the normalized spelling (found as pip finds it).
        ("legacy_name", "Legacy.Name-1.0-py3-none-any.whl"),
    ],
)
def test_inspect_legacy_wheel(tmp_path, name, filename):
    path = make_wheel(tmp_path, name, "1.0", legacy=True, filename=filename)
    inspection = _inspect(path)
    assert inspection.metadata.name == name
    assert inspection.metadata_bytes is not None


def test_inspect_wheel_dist_info_must_match_filename(tmp_path):
    # A dist-info directory for another version does not count.
    path = make_wheel(tmp_path, "foo", "2.0", filename="foo-1.0-py3-none-any.whl")
    with pytest.raises(DistributionError, match="does not contain the required METADATA"):
        _inspect(path)


@pytest.mark.parametrize(
    ("kind", "metadata", "message"),
    [
        ("wheel", metadata_text("bar", "1.0"), "Name in metadata 'bar' does not match"),
        ("wheel", metadata_text("foo", "1.1"), "Version in filename should be '1.1' not '1.0'."),
        ("sdist", metadata_text("bar", "1.0"), "Name in metadata 'bar' does not match"),
        ("sdist", metadata_text("foo", "2.0"), "Version in filename should be '2.0' not '1.0'."),
        ("wheel", "Metadata-Version: 2.1\nVersion: 1.0\n", "Metadata has no Name."),
    ],
)
def test_inspect_metadata_must_match_filename(tmp_path, kind, metadata, message):
    maker = make_wheel if kind == "wheel" else make_sdist
    path = maker(tmp_path, "foo", "1.0", metadata=metadata)
    with pytest.raises(DistributionError) as caught:
        _inspect(path)
    assert message in str(caught.value)


# For sdists the gzip trailer (CRC and length) is checked, so even the last byte missing is
# caught.
@pytest.mark.parametrize(
    ("build", "filename"),
    [(make_wheel, "foo-1.0-py3-none-any.whl"), (make_sdist, "foo-1.0.tar.gz")],
)
def test_inspect_truncated_at_every_length(tmp_path, build, filename):
    data = build(tmp_path, "foo", "1.0").read_bytes()
    target = tmp_path / "cut" / filename
    target.parent.mkdir()
    for cut in range(len(data)):
        target.write_bytes(data[:cut])
        with pytest.raises(DistributionError, match=r"^Invalid distribution file\."):
            _inspect(target)


def test_inspect_wheel_with_corrupted_bytes_is_refused_cleanly(tmp_path):
    # Flipping any single byte must give a DistributionError (a 400), never a zlib.error or
    # other exception that would become a 500.
    data = make_wheel(tmp_path, "foo", "1.0").read_bytes()
    target = tmp_path / "flip" / "foo-1.0-py3-none-any.whl"
    target.parent.mkdir()
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        target.write_bytes(bytes(damaged))
        with contextlib.suppress(DistributionError):
            _inspect(target)


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("foo-1.0-py3-none-any.whl", b"not a zip at all", "File is not a zipfile"),
        ("foo-1.0-py3-none-any.whl", b"", "File is not a zipfile"),
        ("foo-1.0.zip", b"PK\x03\x04 nope", "File is not a zipfile"),
        ("foo-1.0.tar.gz", b"not a tarball", "File is not a tarfile"),
        ("foo-1.0.tar.gz", b"\x1f\x8b\x08\x00garbage", "File is not a tarfile"),
    ],
)
def test_inspect_not_an_archive(tmp_path, filename, content, message):
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(DistributionError) as caught:
        _inspect(path)
    assert str(caught.value).startswith("Invalid distribution file.")
    assert message in str(caught.value)


def test_inspect_tar_two_top_level_dirs(tmp_path):
    pkg_info = metadata_text("foo", "1.0").encode()
    path = _tar_sdist(
        tmp_path, "foo-1.0.tar.gz", {"foo-1.0/PKG-INFO": pkg_info, "other/PKG-INFO": pkg_info}
    )
    with pytest.raises(DistributionError) as caught:
        _inspect(path)
    assert str(caught.value) == (
        "Invalid distribution file. Incorrect number of top-level directories in foo-1.0.tar.gz"
    )


@pytest.mark.parametrize("builder", [_tar_sdist, _zip_sdist])
def test_inspect_messages_name_the_distribution_not_the_temp_file(tmp_path, builder):
    # Uploads are inspected from a temp file; the message must name the uploaded file.
    suffix = ".tar.gz" if builder is _tar_sdist else ".zip"
    pkg_info = metadata_text("foo", "1.0").encode()
    path = builder(tmp_path, "upload-x.part", {"foo-1.0/PKG-INFO": pkg_info, "b/c": b""})
    with pytest.raises(DistributionError) as caught:
        inspect_distribution(path, parse_filename(f"foo-1.0{suffix}"))
    assert str(caught.value).endswith(f"top-level directories in foo-1.0{suffix}")


def test_inspect_zip_sdist_two_top_level_dirs(tmp_path):
    pkg_info = metadata_text("foo", "1.0").encode()
    path = _zip_sdist(tmp_path, "foo-1.0.zip", {"foo-1.0/PKG-INFO": pkg_info, "x": b""})
    with pytest.raises(DistributionError, match="Incorrect number of top-level directories"):
        _inspect(path)


@pytest.mark.parametrize("builder", [_tar_sdist, _zip_sdist])
def test_inspect_sdist_without_pkg_info(tmp_path, builder):
    suffix = ".tar.gz" if builder is _tar_sdist else ".zip"
    path = builder(tmp_path, f"foo-1.0{suffix}", {"foo-1.0/setup.py": b"", "foo-1.0/x.txt": b""})
    with pytest.raises(DistributionError) as caught:
        _inspect(path)
    assert str(caught.value) == "Invalid distribution file. PKG-INFO not found at foo-1.0/PKG-INFO"


def test_inspect_sdist_pkg_info_deeper_does_not_count(tmp_path):
    pkg_info = metadata_text("foo", "1.0").encode()
    path = _tar_sdist(tmp_path, "foo-1.0.tar.gz", {"foo-1.0/sub/PKG-INFO": pkg_info})
    with pytest.raises(DistributionError, match=r"PKG-INFO not found at foo-1\.0/PKG-INFO"):
        _inspect(path)


def test_inspect_huge_metadata_refused(tmp_path):
    huge = metadata_text("foo", "1.0") + "\n" + "x" * MAX_METADATA_BYTES
    path = make_wheel(tmp_path, "foo", "1.0", metadata=huge)
    with pytest.raises(DistributionError) as caught:
        _inspect(path)
    assert str(caught.value) == "Invalid distribution file. METADATA is too large."


def test_inspect_huge_pkg_info_refused(tmp_path):
    huge = (metadata_text("foo", "1.0") + "\n" + "x" * MAX_METADATA_BYTES).encode()
    path = _tar_sdist(tmp_path, "foo-1.0.tar.gz", {"foo-1.0/PKG-INFO": huge})
    with pytest.raises(DistributionError, match="PKG-INFO is too large"):
        _inspect(path)


# -- archive bombs (issue 10, medium 7) ------------------------------------------------------


def _timed_refusal(path: Path, match: str) -> float:
    started = time.monotonic()
    with pytest.raises(DistributionError, match=match) as caught:
        _inspect(path)
    assert str(caught.value).startswith("Invalid distribution file.")
    assert "\n" not in str(caught.value)
    return time.monotonic() - started


def test_sdist_inflating_to_2_gb_is_refused_quickly(tmp_path):
    bomb = tar_bomb(tmp_path, "foo", "1.0", inflated=2 << 30)
    assert bomb.stat().st_size < 3 << 20
    assert _timed_refusal(bomb, "inflates to more than .* bytes") < 2


def test_sdist_with_too_many_members_is_refused(tmp_path):
    bomb = tar_bomb(tmp_path, "foo", "1.0", members=MAX_ARCHIVE_MEMBERS + 1000)
    assert _timed_refusal(bomb, f"More than {MAX_ARCHIVE_MEMBERS} members") < 10


def test_sdist_inflation_allowance_scales_with_size(tmp_path):
    """An sdist whose data compresses well (below the allowance) is still accepted."""
    path = tar_bomb(tmp_path, "foo", "1.0", inflated=MIN_INFLATED_ALLOWANCE // 2)
    assert _inspect(path).metadata.name == "foo"


@pytest.mark.parametrize(
    ("build", "filename"),
    [
        (make_wheel, "foo-1.0-py3-none-any.whl"),
        (lambda d, n, v: _zip_sdist(d, "foo-1.0.zip", {"foo-1.0/PKG-INFO": b"x"}), "foo-1.0.zip"),
    ],
)
@pytest.mark.parametrize(
    ("claim", "match"),
    [
        ({"entries": 1_000_000}, "1000000 members; the limit is"),
        ({"entries": 3, "size": 500 << 20}, "Zip central directory of 524288000 bytes"),
    ],
)
def test_zip_whose_directory_claims_a_million_entries_is_refused_unread(
    tmp_path, build, filename, claim, match
):
    path = claim_zip_directory(build(tmp_path, "foo", "1.0"), **claim)
    assert _timed_refusal(path, match) < 1
