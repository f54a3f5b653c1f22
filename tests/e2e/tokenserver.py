"""A small OAuth 2.0 authorization server for the end-to-end tests: it
serves its public key as a JWKS and issues RS256-signed JWT access tokens
for the client-credentials grant (RFC 6749 section 4.4), which is what
librdkafka's `sasl.oauthbearer.method=oidc` asks an identity provider for
and what Kafka's OAuthBearerValidatorCallbackHandler checks.

    GET  /jwks    {"keys": [the signing key]}
    POST /token   grant_type=client_credentials[&scope=S], the client's id
                  and secret in HTTP Basic authorization -> 200
                  {"access_token", "token_type", "expires_in"}; an unknown
                  client or a wrong secret -> 401 invalid_client

It runs on a thread of the test process, on a free 127.0.0.1 port, so that
it ends with the test run whatever happens, and it counts what it issued
and refused, per client.

Every token's payload is a whole number of base64 quanta (no padding
needed): the case in which librdkafka up to at least 2.8.0 reads past the
decoded payload (scripts/patches/librdkafka/oidc-jwt-payload-nul.patch), so
that a librdkafka without the fix fails every test under AddressSanitizer,
not one client id length in three."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class Client:
    """A registered client: tokens issued to it live `lifetime` seconds."""

    id: str
    secret: str
    lifetime: int


@dataclass(frozen=True)
class Issued:
    """One access token handed out: to whom, when (time.time()), until when
    (its `exp`), with which scope, and the token itself."""

    client: str
    at: float
    exp: int
    scope: str | None
    token: str


class TokenServer:
    """The server; `start()` before use, `stop()` when done (both return
    at once). Tokens carry iss = `issuer`, aud = `audience`, sub = the
    client id, iat, exp, jti and the scope asked for."""

    def __init__(self, audience: str = "kjb-kafka"):
        self.audience = audience
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = uuid.uuid4().hex[:16]
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        self._issued: list[Issued] = []
        self._refused: list[str] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----

    def start(self) -> "TokenServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/jwks":
                    self._json(200, server.jwks())
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:  # noqa: N802
                if self.path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
                status, answer = server._token(self.headers.get("Authorization"), parse_qs(body))
                self._json(status, answer, {"WWW-Authenticate": 'Basic realm="kjb-tests"'} if status == 401 else {})

            def _json(self, status: int, obj: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="token-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "token server not started"
        return self._httpd.server_address[1]

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    # ---- clients and what they got ----

    def add_client(self, client_id: str, secret: str, lifetime: int = 600) -> Client:
        client = Client(client_id, secret, lifetime)
        with self._lock:
            self._clients[client_id] = client
        return client

    def revoke(self, client_id: str) -> None:
        """From now on the client gets 401; tokens it holds stay valid."""
        with self._lock:
            del self._clients[client_id]

    def issued(self, client_id: str) -> list[Issued]:
        with self._lock:
            return [t for t in self._issued if t.client == client_id]

    def refused(self, client_id: str) -> int:
        """How many token requests naming this client got a 401."""
        with self._lock:
            return self._refused.count(client_id)

    def jwks(self) -> dict:
        pub = self._key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self._kid,
                          "n": _uint(pub.n), "e": _uint(pub.e)}]}

    def sign(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self._kid}
        payload = json.dumps(claims).encode()
        # Spaces a JSON parser skips, up to a multiple of 3 bytes.
        payload = payload[:-1] + b" " * (-len(payload) % 3) + b"}"
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(payload)}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def _token(self, authorization: str | None, form: dict[str, list[str]]) -> tuple[int, dict]:
        if form.get("grant_type") != ["client_credentials"]:
            return 400, {"error": "unsupported_grant_type"}
        client_id, secret = None, None
        if authorization and authorization.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
            except ValueError:
                pass
        now = time.time()
        with self._lock:
            client = self._clients.get(client_id or "")
            if client is None or secret != client.secret:
                self._refused.append(client_id or "")
                return 401, {"error": "invalid_client", "error_description": "client authentication failed"}
            scope = form.get("scope", [None])[0]
            iat = int(now)
            claims = {"iss": self.issuer, "sub": client.id, "aud": self.audience, "iat": iat,
                      "exp": iat + client.lifetime, "jti": uuid.uuid4().hex}
            if scope:
                claims["scope"] = scope
        token = self.sign(claims)
        with self._lock:
            self._issued.append(Issued(client.id, now, claims["exp"], scope, token))
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": client.lifetime}
