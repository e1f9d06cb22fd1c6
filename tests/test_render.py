"""teamindex.api.render: one dict per page, serialized as PEP 691 JSON or PEP 503 HTML."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser

import pytest

from teamindex.api import render
from teamindex.models import FileRecord

SHA = "a" * 64
META_SHA = "b" * 64


def record(**changes) -> FileRecord:
    base = FileRecord(
        id=1,
        project="foo-bar",
        version="1.0",
        filename="foo_bar-1.0-py3-none-any.whl",
        packagetype="bdist_wheel",
        python_version="py3",
        requires_python="",
        size=1234,
        sha256=SHA,
        blake2_256="c" * 64,
        md5="d" * 32,
        metadata_sha256=None,
        upload_time="2026-11-25T01:47:12.123456Z",
        yanked=False,
        yanked_reason="",
    )
    return dataclasses.replace(base, **changes)


class Anchors(HTMLParser):
    """Collects (attrs, text) of every <a>, keeping valueless attributes as None."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.meta: dict[str, str | None] = {}
        self._current: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._current = dict(attrs)
        elif tag == "meta" and dict(attrs).get("name"):
            self.meta[dict(attrs)["name"]] = dict(attrs).get("content")

    def handle_data(self, data):
        if self._current is not None:
            self.anchors.append((self._current, data))
            self._current = None


def anchors(body: bytes) -> Anchors:
    parser = Anchors()
    parser.feed(body.decode())
    return parser


# -- JSON ----------------------------------------------------------------------------------


def test_project_json_shape_and_types():
    page = json.loads(render.to_json(render.project_page("foo-bar", [record()])))
    assert page == {
        "meta": {"api-version": "1.1"},
        "name": "foo-bar",
        "versions": ["1.0"],
        "files": [
            {
                "filename": "foo_bar-1.0-py3-none-any.whl",
                "url": "../../files/foo-bar/foo_bar-1.0-py3-none-any.whl",
                "hashes": {"sha256": SHA},
                "size": 1234,
                "upload-time": "2026-11-25T01:47:12.123456Z",
                "yanked": False,
            }
        ],
    }
    entry = page["files"][0]
    assert type(entry["size"]) is int
    assert entry["upload-time"].endswith("Z")


@pytest.mark.parametrize(
    ("yanked", "reason", "expected"),
    [
        (False, "", False),
        (False, "stale reason", False),
        (True, "", True),
        (True, "broken on 3.12", "broken on 3.12"),
    ],
)
def test_json_yanked_is_bool_or_nonempty_reason(yanked, reason, expected):
    page = json.loads(
        render.to_json(
            render.project_page("foo-bar", [record(yanked=yanked, yanked_reason=reason)])
        )
    )
    value = page["files"][0]["yanked"]
    assert value == expected
    assert type(value) is type(expected)
    assert value is not None
    assert value != ""


@pytest.mark.parametrize(
    ("metadata_sha256", "expected"),
    [(None, None), (META_SHA, {"sha256": META_SHA})],
)
def test_json_core_metadata_only_when_present(metadata_sha256, expected):
    page = render.project_page("foo-bar", [record(metadata_sha256=metadata_sha256)])
    entry = json.loads(render.to_json(page))["files"][0]
    assert entry.get("core-metadata") == expected
    assert "dist-info-metadata" not in entry


@pytest.mark.parametrize(("requires", "present"), [("", False), (">=3.8,<4", True)])
def test_json_requires_python_omitted_when_empty(requires, present):
    entry = render.project_page("foo-bar", [record(requires_python=requires)])["files"][0]
    assert ("requires-python" in entry) is present
    if present:
        assert entry["requires-python"] == requires


def test_json_hashes_present_for_every_file_and_sha256_only():
    files = [
        record(
            id=n, filename=f"foo_bar-1.{n}-py3-none-any.whl", version=f"1.{n}", sha256=f"{n:064x}"
        )
        for n in range(3)
    ]
    page = render.project_page("foo-bar", files)
    assert [entry["hashes"] for entry in page["files"]] == [
        {"sha256": f"{n:064x}"} for n in range(3)
    ]


def test_versions_are_unique_and_sorted_by_pep440():
    files = [
        record(id=1, version="1.10", filename="foo_bar-1.10.tar.gz"),
        record(id=2, version="1.9", filename="foo_bar-1.9.tar.gz"),
        record(id=3, version="1.9", filename="foo_bar-1.9-py3-none-any.whl"),
        record(id=4, version="1.0rc1", filename="foo_bar-1.0rc1.tar.gz"),
    ]
    assert render.project_page("foo-bar", files)["versions"] == ["1.0rc1", "1.9", "1.10"]


@pytest.mark.parametrize(
    ("filename", "url"),
    [
        ("foo_bar-1.0-py3-none-any.whl", "../../files/foo-bar/foo_bar-1.0-py3-none-any.whl"),
        # Local versions contain "+", which must be percent-encoded (PROTOCOL.md 4).
        (
            "foo_bar-1.0+cu118-py3-none-any.whl",
            "../../files/foo-bar/foo_bar-1.0%2Bcu118-py3-none-any.whl",
        ),
    ],
)
def test_file_url_is_relative_and_quoted(filename, url):
    assert render.file_url(record(filename=filename)) == url
    assert "?" not in url


def test_empty_project_page():
    page = render.project_page("foo-bar", [])
    assert page["files"] == []
    assert page["versions"] == []
    assert json.loads(render.to_json(page))["name"] == "foo-bar"


def test_root_page_json():
    page = render.root_page([("foo-bar", "Foo_Bar"), ("baz", "baz")])
    assert json.loads(render.to_json(page)) == {
        "meta": {"api-version": "1.1"},
        "projects": [
            {"name": "Foo_Bar", "_normalized": "foo-bar"},
            {"name": "baz", "_normalized": "baz"},
        ],
    }


def test_json_keeps_non_ascii_as_utf8():
    body = render.to_json(
        render.project_page("foo-bar", [record(yanked=True, yanked_reason="größe")])
    )
    assert "größe".encode() in body
    assert json.loads(body)["files"][0]["yanked"] == "größe"


# -- HTML ----------------------------------------------------------------------------------


def test_project_html_anchor():
    page = render.project_page(
        "foo-bar", [record(requires_python=">=3.8,<4", metadata_sha256=META_SHA)]
    )
    body = render.project_html(page)
    parsed = anchors(body)
    assert parsed.meta == {"pypi:repository-version": "1.1"}
    assert b"<title>Links for foo-bar</title>" in body
    [(attrs, text)] = parsed.anchors
    assert text == "foo_bar-1.0-py3-none-any.whl"
    assert attrs == {
        "href": f"../../files/foo-bar/foo_bar-1.0-py3-none-any.whl#sha256={SHA}",
        "data-requires-python": ">=3.8,<4",
        "data-core-metadata": f"sha256={META_SHA}",
        "data-dist-info-metadata": f"sha256={META_SHA}",
        "data-size": "1234",
        "data-upload-time": "2026-11-25T01:47:12.123456Z",
    }


def test_html_escapes_requires_python():
    body = render.project_html(
        render.project_page("foo-bar", [record(requires_python='<4,>=3.8,!="x"')])
    )
    assert b'data-requires-python="&lt;4,&gt;=3.8,!=&#34;x&#34;"' in body
    assert anchors(body).anchors[0][0]["data-requires-python"] == '<4,>=3.8,!="x"'


@pytest.mark.parametrize(
    ("yanked", "reason", "raw", "parsed"),
    [
        (True, "", b'data-yanked=""', ""),
        (True, 'bad <b>build</b> & "quotes"', None, 'bad <b>build</b> & "quotes"'),
        (True, "plain reason", b'data-yanked="plain reason"', "plain reason"),
    ],
)
def test_html_data_yanked_always_has_an_escaped_value(yanked, reason, raw, parsed):
    body = render.project_html(
        render.project_page("foo-bar", [record(yanked=yanked, yanked_reason=reason)])
    )
    if raw is not None:
        assert raw in body
    # The value is never bare (pip ignores a valueless data-yanked) and never raw markup.
    assert re.search(rb"data-yanked(?!=)", body) is None
    assert b"<b>" not in body
    attrs = anchors(body).anchors[0][0]
    assert attrs["data-yanked"] == parsed


def test_html_not_yanked_has_no_attribute():
    body = render.project_html(render.project_page("foo-bar", [record()]))
    assert b"data-yanked" not in body
    assert b"data-core-metadata" not in body
    assert b"data-requires-python" not in body


def test_html_escapes_project_name_and_filename():
    page = render.project_page("<x>", [record(filename="a<b>&.whl")])
    body = render.project_html(page)
    assert b"<x>" not in body
    assert b"a<b>" not in body
    assert b"Links for &lt;x&gt;" in body
    assert anchors(body).anchors[0][1] == "a<b>&.whl"


def test_root_html_links_normalized_name_with_display_text():
    body = render.root_html(render.root_page([("foo-bar", "Foo_Bar"), ("x", "<X>")]))
    parsed = anchors(body)
    assert parsed.anchors == [({"href": "foo-bar/"}, "Foo_Bar"), ({"href": "x/"}, "<X>")]
    assert parsed.meta == {"pypi:repository-version": "1.1"}
    assert body.startswith(b"<!DOCTYPE html>")


def test_one_anchor_per_file_in_html():
    files = [record(id=n, filename=f"foo_bar-1.{n}.tar.gz", version=f"1.{n}") for n in range(5)]
    parsed = anchors(render.project_html(render.project_page("foo-bar", files)))
    assert [text for _attrs, text in parsed.anchors] == [f"foo_bar-1.{n}.tar.gz" for n in range(5)]
