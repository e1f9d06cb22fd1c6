"""What the index lets a browser or an outsider learn (issue 10, low 18): README images from
other hosts load only when the admin allows it, served bytes are never sniffed into pages,
and /healthz names no paths."""

from __future__ import annotations

import re

import pytest
from builders import make_wheel, metadata_text
from conftest import basic
from uploading import upload
from web_support import login

PIXEL = "https://tracker.example.test/pixel.gif?reader=1"
README = (
    f"# Demo\n\n![pixel]({PIXEL})\n\n"
    '<img src="//cdn.example.test/badge.svg" alt="badge">\n\n'
    "![local](/static/logo.png)\n"
)


def _publish_readme(app, tmp_path) -> None:
    metadata = metadata_text("pixel-demo", "1.0", description=README)
    wheel = make_wheel(tmp_path, "pixel-demo", "1.0", metadata=metadata)
    assert upload(app.test_client(), wheel, "alice").status_code == 200


def _img_sources(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\bsrc="([^"]*)"', html)


def test_external_readme_images_become_links_by_default(app, tmp_path):
    _publish_readme(app, tmp_path)
    client = app.test_client()
    login(client)
    response = client.get("/project/pixel-demo/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    sources = _img_sources(html)
    assert not [src for src in sources if "example.test" in src], sources
    assert f'href="{PIXEL.replace("&", "&amp;")}"' in html  # still reachable, as a link
    assert "/static/logo.png" in sources  # images of the index itself stay
    csp = response.headers["Content-Security-Policy"]
    assert "img-src 'self' data:;" in csp and "https:" not in csp


def test_external_readme_images_load_when_allowed(make_app, tmp_path):
    app = make_app(readme_external_images=True)
    _publish_readme(app, tmp_path)
    client = app.test_client()
    login(client)
    response = client.get("/project/pixel-demo/")
    assert PIXEL.replace("&", "&amp;") in _img_sources(response.get_data(as_text=True))
    assert "img-src 'self' data: https:;" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("suffix", ["", ".metadata"])
def test_served_files_are_never_sniffed(app, client, tmp_path, suffix):
    wheel = make_wheel(tmp_path, "sniffy", "1.0")
    assert upload(client, wheel, "alice").status_code == 200
    response = client.get(f"/files/sniffy/{wheel.name}{suffix}", headers=basic("alice"))
    response.get_data()
    response.close()
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_simple_pages_are_never_sniffed(client, tmp_path):
    assert upload(client, make_wheel(tmp_path, "sniffy", "1.0"), "alice").status_code == 200
    for path in ("/simple/", "/simple/sniffy/"):
        response = client.get(path, headers=basic("alice"))
        assert response.headers["X-Content-Type-Options"] == "nosniff", path


def test_healthz_names_no_paths(app, client, settings):
    # The data dir stops taking writes (a file where the temp dir was: works as root too).
    settings.tmp_dir.rename(settings.data_dir / "tmp.moved")
    settings.tmp_dir.write_bytes(b"")
    response = client.get("/healthz")
    body = response.get_data(as_text=True)
    assert response.status_code == 503, body
    assert "not writable" in body
    assert str(settings.data_dir) not in body and "/" not in body, body
