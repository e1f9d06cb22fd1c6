"""A local OIDC issuer for trusted-publishing tests: an RSA and an EC key made here, the
OpenID configuration and JWKS served over https on loopback (a throwaway CA from trustme),
and GitHub's ACTIONS_ID_TOKEN_REQUEST_URL endpoint, so uv can fetch its token as in CI.

Claims are shaped like GitHub's and GitLab's documented example tokens."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import trustme
from cryptography.hazmat.primitives.asymmetric import ec, rsa

REQUEST_TOKEN = "actions-request-token-for-tests"  # the runner's bearer for the token URL


@dataclass
class Issuer:
    url: str  # https://127.0.0.1:PORT
    ca: trustme.CA
    ca_file: Path
    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    token_claims: dict[str, Any] = field(default_factory=dict)  # for the CI token endpoint
    requests: list[str] = field(default_factory=list)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key, alg in (("rsa-1", self.rsa_key, "RS256"), ("ec-1", self.ec_key, "ES256")):
            jwk = json.loads(_public_jwk(key))
            jwk.update(kid=kid, alg=alg, use="sig")
            keys.append(jwk)
        return {"keys": keys}

    def sign(self, claims: dict[str, Any], *, alg: str = "RS256", kid: str | None = None) -> str:
        key = self.rsa_key if alg == "RS256" else self.ec_key
        kid = kid or ("rsa-1" if alg == "RS256" else "ec-1")
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def _public_jwk(key: Any) -> str:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else None
    if algorithm is None:
        return jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())
    return algorithm.to_jwk(key.public_key())


def github_claims(issuer: str, audience: str, **changes: Any) -> dict[str, Any]:
    """A token like GitHub's documented example (a release workflow on a tag)."""
    now = int(time.time())
    claims = {
        "jti": str(uuid.uuid4()),
        "sub": "repo:octo-org/octo-repo:environment:pypi",
        "environment": "pypi",
        "aud": audience,
        "ref": "refs/tags/v1.0.0",
        "sha": "example-sha-d6b0ce8e3ee4f1ed8e9b9b1c6b6e3e7a1a2a3a4",
        "repository": "octo-org/octo-repo",
        "repository_owner": "octo-org",
        "repository_owner_id": "1234567",
        "repository_id": "74",
        "repository_visibility": "private",
        "actor_id": "12",
        "actor": "octocat",
        "workflow": "release",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/release.yml@refs/tags/v1.0.0",
        "workflow_sha": "example-sha-d6b0ce8e3ee4f1ed8e9b9b1c6b6e3e7a1a2a3a4",
        "job_workflow_ref": "octo-org/octo-repo/.github/workflows/release.yml@refs/tags/v1.0.0",
        "job_workflow_sha": "example-sha-d6b0ce8e3ee4f1ed8e9b9b1c6b6e3e7a1a2a3a4",
        "head_ref": "",
        "base_ref": "",
        "event_name": "push",
        "ref_type": "tag",
        "ref_protected": "false",
        "runner_environment": "github-hosted",
        "run_id": "2069436016",
        "run_number": "5",
        "run_attempt": "1",
        "iss": issuer,
        "nbf": now - 5,
        "exp": now + 300,
        "iat": now - 5,
    }
    return claims | changes


def gitlab_claims(issuer: str, audience: str, **changes: Any) -> dict[str, Any]:
    """A token like GitLab's documented ID token example (a tag pipeline)."""
    now = int(time.time())
    claims = {
        "namespace_id": "72",
        "namespace_path": "my-group",
        "project_id": "20",
        "project_path": "my-group/my-project",
        "user_id": "1",
        "user_login": "sample-user",
        "user_email": "sample-user@example.com",
        "user_access_level": "developer",
        "pipeline_id": "574",
        "pipeline_source": "push",
        "job_id": "302",
        "ref": "v1.0.0",
        "ref_type": "tag",
        "ref_path": "refs/tags/v1.0.0",
        "ref_protected": "true",
        "environment": "pypi",
        "environment_protected": "true",
        "runner_id": 1,
        "runner_environment": "self-hosted",
        "sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
        "project_visibility": "private",
        "ci_config_ref_uri": (
            "gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/tags/v1.0.0"
        ),
        "ci_config_sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
        "jti": str(uuid.uuid4()),
        "iss": issuer,
        "iat": now - 5,
        "nbf": now - 10,
        "exp": now + 300,
        "sub": "project_path:my-group/my-project:ref_type:tag:ref:v1.0.0",
        "aud": audience,
    }
    return claims | changes


class _Handler(BaseHTTPRequestHandler):
    issuer: Issuer

    def do_GET(self) -> None:
        issuer = self.server.issuer  # type: ignore[attr-defined]
        issuer.requests.append(self.path)
        parts = urlsplit(self.path)
        if parts.path == "/.well-known/openid-configuration":
            self._json({"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"})
        elif parts.path == "/jwks":
            self._json(issuer.jwks())
        elif parts.path == "/ci-token":
            # GitHub's runner: bearer ACTIONS_ID_TOKEN_REQUEST_TOKEN, `&audience=` appended.
            if self.headers.get("Authorization", "").lower() != f"bearer {REQUEST_TOKEN}":
                self._json({"message": "bad request token"}, 401)
                return
            audience = parse_qs(parts.query).get("audience", [""])[0]
            claims = github_claims(issuer.url, audience) | issuer.token_claims
            self._json({"value": issuer.sign(claims)})
        else:
            self._json({"message": "not found"}, 404)

    def _json(self, document: Any, status: int = 200) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def running_issuer(tmp_path: Path, ca: trustme.CA | None = None) -> Iterator[Issuer]:
    """The issuer on a free loopback port over https; its CA's PEM is in `ca_file`."""
    ca = ca or trustme.CA()
    ca_file = tmp_path / "issuer-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    issuer = Issuer(
        url=f"https://127.0.0.1:{server.server_address[1]}",
        ca=ca,
        ca_file=ca_file,
        rsa_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec_key=ec.generate_private_key(ec.SECP256R1()),
    )
    server.issuer = issuer  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def tls_proxy(ca: trustme.CA, backend_port: int) -> Iterator[str]:
    """https://127.0.0.1:PORT in front of a plain-http server on `backend_port`: waitress
    has no TLS, and uv's trusted publishing only ever speaks https (it builds
    https://HOST/_/oidc/... itself). One thread per connection, bytes pumped both ways."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve(raw: socket.socket) -> None:
        try:
            client = context.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        client.settimeout(60)
        with client, socket.create_connection(("127.0.0.1", backend_port), timeout=60) as up:
            back = threading.Thread(target=pump, args=(up, client), daemon=True)
            back.start()
            pump(client, up)
            back.join(timeout=60)

    def accept() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(60)
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
