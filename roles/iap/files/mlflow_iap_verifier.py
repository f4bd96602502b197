#!/usr/bin/env python3
"""Verify Google IAP's signed header for nginx's auth_request, on loopback.

nginx sends every request's ``x-goog-iap-jwt-assertion`` header here first.
The JWT must be ES256-signed by a key from IAP_KEYS_URL (cached, refreshed
every IAP_KEYS_TTL seconds and when an unknown key id shows up), carry the
audience IAP_AUDIENCE (/projects/NUM/global/backendServices/ID) and the issuer
https://cloud.google.com/iap, and not be expired. Answers 200 with the
identity in ``X-Iap-User``, or 401. Run with the MLflow venv's Python
(google-auth and cryptography). Configuration comes from the environment.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.auth import exceptions as google_exceptions
from google.auth import jwt

ISSUER = "https://cloud.google.com/iap"
LOG = logging.getLogger("mlflow-iap-verifier")


def _b64_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def jwks_to_pem(jwks: dict) -> dict[str, bytes]:
    """{kid: PEM public key} for the P-256 keys of a JWK set."""
    keys = {}
    for key in jwks.get("keys", []):
        if key.get("kty") != "EC" or key.get("crv") != "P-256" or "kid" not in key:
            continue
        public = ec.EllipticCurvePublicNumbers(_b64_int(key["x"]), _b64_int(key["y"]), ec.SECP256R1()).public_key()
        keys[key["kid"]] = public.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return keys


class KeyCache:
    def __init__(self, url: str, ttl: float):
        self.url, self.ttl = url, ttl
        self.keys: dict[str, bytes] = {}
        self.fetched = 0.0
        self.lock = threading.Lock()

    def _fetch(self) -> None:
        with urllib.request.urlopen(self.url, timeout=10) as resp:  # noqa: S310 - configured key URL
            self.keys = jwks_to_pem(json.load(resp))
        self.fetched = time.monotonic()

    def get(self, kid: str | None) -> dict[str, bytes]:
        with self.lock:
            stale = time.monotonic() - self.fetched > self.ttl
            unknown = kid is not None and kid not in self.keys and time.monotonic() - self.fetched > 30
            if not self.keys or stale or unknown:
                try:
                    self._fetch()
                except OSError as exc:
                    LOG.warning("cannot fetch IAP keys from %s: %s", self.url, exc)
            return self.keys


class Verifier:
    def __init__(self, audience: str, keys: KeyCache, mapping: str):
        self.audience, self.keys, self.mapping = audience, keys, mapping

    def identity(self, assertion: str | None) -> str:
        """The mapped user of a valid assertion; raises ValueError otherwise."""
        if not assertion:
            raise ValueError("no x-goog-iap-jwt-assertion header")
        header = json.loads(base64.urlsafe_b64decode(assertion.split(".")[0] + "==="))
        if header.get("alg") != "ES256":
            raise ValueError(f"algorithm {header.get('alg')!r} is not ES256")
        certs = self.keys.get(header.get("kid"))
        try:
            claims = jwt.decode(assertion, certs=certs, audience=self.audience)
        except (google_exceptions.GoogleAuthError, ValueError) as exc:
            raise ValueError(str(exc)) from exc
        if claims.get("iss") != ISSUER:
            raise ValueError(f"issuer {claims.get('iss')!r} is not {ISSUER}")
        email = claims.get("email", "")
        if not email:
            raise ValueError("no email claim")
        return email.split("@", 1)[0] if self.mapping == "local_part" else email


def handler_for(verifier: Verifier):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server naming
            try:
                user = verifier.identity(self.headers.get("x-goog-iap-jwt-assertion"))
            except ValueError as exc:
                LOG.info("rejected %s: %s", self.headers.get("x-original-uri", "?"), exc)
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("X-Iap-User", user)
            self.end_headers()

        def log_message(self, *args):  # access logs stay in nginx
            return

    return Handler


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    keys = KeyCache(os.environ["IAP_KEYS_URL"], float(os.environ.get("IAP_KEYS_TTL", "3600")))
    verifier = Verifier(os.environ["IAP_AUDIENCE"], keys, os.environ.get("IAP_USER_MAPPING", "email"))
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("IAP_PORT", "5100"))), handler_for(verifier))
    LOG.info("verifying IAP assertions for %s with keys from %s", verifier.audience, keys.url)
    server.serve_forever()


if __name__ == "__main__":
    main()
