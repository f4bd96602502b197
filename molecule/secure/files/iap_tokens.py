#!/usr/bin/env python3
"""Mint IAP-style assertions for the probes (test keys only).

    iap_tokens.py KEYS_DIR AUDIENCE EMAIL   prints {"valid", "expired", "wrong_audience", "forged", "wrong_issuer"}
"""

import json
import sys
import time

from google.auth import crypt, jwt

ISSUER = "https://cloud.google.com/iap"


def mint(key_file: str, audience: str, email: str, issued: int, issuer: str = ISSUER) -> str:
    with open(key_file, encoding="utf-8") as handle:
        signer = crypt.ES256Signer.from_string(handle.read(), key_id="test-iap")
    claims = {"iss": issuer, "aud": audience, "sub": "accounts.google.com:1234", "email": email,
              "iat": issued, "exp": issued + 600}
    return jwt.encode(signer, claims).decode()


def main() -> None:
    keys_dir, audience, email = sys.argv[1:4]
    now = int(time.time())
    iap, stranger = f"{keys_dir}/iap.pem", f"{keys_dir}/stranger.pem"
    print(json.dumps({
        "valid": mint(iap, audience, email, now),
        "expired": mint(iap, audience, email, now - 7200),
        "wrong_audience": mint(iap, "/projects/1/global/backendServices/2", email, now),
        "forged": mint(stranger, audience, email, now),
        "wrong_issuer": mint(iap, audience, email, now, issuer="https://evil.example"),
    }))


if __name__ == "__main__":
    main()
