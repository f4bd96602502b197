#!/usr/bin/env python3
"""The OpenID Connect provider stand-in's material, and the tokens the probes send (test keys only).

    oidc_material.py DIR            writes DIR/config.json (users, clients), the provider's TLS certificate and CA,
                                    its RS256 signing key (jwks.json, and signing.pem for the tokens below) and a
                                    stranger's key; keeps what exists
    oidc_material.py DIR tokens AUDIENCE SUBJECT   prints bearer tokens signed with those keys:
                                    {"valid", "expired", "wrong_audience", "wrong_issuer", "forged"}
"""

import base64
import json
import secrets
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from tls_material import write_ca_and_server_certificate  # noqa: E402

ISSUER = "https://idp.test"
KEY_ID = "idp-test-1"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _write_key(pem: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o644)  # read by the provider's container
    return key


def _jwk(key: rsa.RSAPrivateKey) -> dict:
    private, public = key.private_numbers(), key.private_numbers().public_numbers
    return {"kty": "RSA", "kid": KEY_ID, "alg": "RS256", "use": "sig", "n": _b64(public.n), "e": _b64(public.e),
            "d": _b64(private.d), "p": _b64(private.p), "q": _b64(private.q), "dp": _b64(private.dmp1),
            "dq": _b64(private.dmq1), "qi": _b64(private.iqmp)}


def _user(name: str, groups: list[str]) -> dict:
    return {"username": name, "password": f"{name}-Pa55word-{secrets.token_hex(4)}", "email": f"{name}@example.test",
            "name": name.capitalize(), "groups": groups}


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "config.json").exists():
        return
    write_ca_and_server_certificate(directory, ["idp.test", "idp"], ca_name="mlflow-ansible test IdP CA")
    (directory / "jwks.json").write_text(json.dumps({"keys": [_jwk(_write_key(directory / "signing.pem"))]}))
    _write_key(directory / "stranger.pem")
    config = {
        "issuer": ISSUER, "port": 443,
        "tls": {"cert": "/etc/oidc-provider/server.crt", "key": "/etc/oidc-provider/server.key"},
        "jwksFile": "/etc/oidc-provider/jwks.json", "cookieKeys": [secrets.token_hex(16)],
        "users": [
            _user("alice", ["mlflow-admin"]),  # an MLflow admin
            _user("bob", ["mlflow", "analysts"]),  # analysts may read secure-probe
            _user("carol", ["mlflow"]),  # a basic-auth user of the same name may edit secure-probe
            _user("olga", ["finance"]),  # in no group that may log in
        ],
        "clients": [
            {"client_id": "mlflow", "client_secret": secrets.token_urlsafe(24), "client_name": "MLflow",
             "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
             "token_endpoint_auth_method": "client_secret_basic",
             "redirect_uris": ["https://mlflow.test/callback"],
             # The plugin returns the browser to its own page after the logout.
             "post_logout_redirect_uris": ["https://mlflow.test/oidc/ui/auth", "https://mlflow.test/"]},
            # A CI job: client credentials, JWT access tokens for MLflow's audience, in ml-team (EDIT on ci-runs).
            {"client_id": "ci-runner", "client_secret": secrets.token_urlsafe(24), "client_name": "CI runner",
             "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic",
             "audience": "mlflow", "resource": "https://mlflow.test/api",
             "tokenClaims": {"preferred_username": "ci-bot", "email": "ci-bot@example.test",
                             "groups": ["mlflow", "ml-team"]}},
        ],
    }
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    (directory / "config.json").chmod(0o644)


def tokens(directory: Path, audience: str, subject: str) -> dict:
    now = int(time.time())

    def mint(pem: str, aud: str = audience, iss: str = ISSUER, issued: int = now) -> str:
        signer = crypt.RSASigner.from_string((directory / pem).read_text(), key_id=KEY_ID)
        claims = {"iss": iss, "aud": aud, "sub": subject, "email": subject, "preferred_username": subject,
                  "groups": ["mlflow", "ml-team"], "iat": issued, "exp": issued + 600}
        return jwt.encode(signer, claims).decode()

    return {"valid": mint("signing.pem"), "expired": mint("signing.pem", issued=now - 7200),
            "wrong_audience": mint("signing.pem", aud="someone-else"),
            "wrong_issuer": mint("signing.pem", iss="https://evil.example"), "forged": mint("stranger.pem")}


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "tokens":
        print(json.dumps(tokens(Path(sys.argv[1]), sys.argv[3], sys.argv[4])))
    else:
        write(Path(sys.argv[1]))
