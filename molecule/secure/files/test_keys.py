#!/usr/bin/env python3
"""Test keys for the secure scenario (never used outside tests).

    test_keys.py KEYS_DIR SA_KEY_FILE

KEYS_DIR/iap.pem        EC P-256 private key standing in for Google IAP's signing key
KEYS_DIR/stranger.pem   another P-256 key (for forged assertions)
KEYS_DIR/jwks.json      the public JWK set served to the VM, kid "test-iap"
SA_KEY_FILE             a service-account JSON key with a real RSA private key
"""

import base64
import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64(number: int) -> str:
    return base64.urlsafe_b64encode(number.to_bytes(32, "big")).rstrip(b"=").decode()


def pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def main() -> None:
    keys_dir, sa_file = sys.argv[1:3]
    os.makedirs(keys_dir, exist_ok=True)
    iap, stranger = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    for name, key in (("iap.pem", iap), ("stranger.pem", stranger)):
        with open(os.path.join(keys_dir, name), "wb") as handle:
            handle.write(pem(key))
    numbers = iap.public_key().public_numbers()
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "test-iap",
                      "x": b64(numbers.x), "y": b64(numbers.y)}]}
    with open(os.path.join(keys_dir, "jwks.json"), "w", encoding="utf-8") as handle:
        json.dump(jwks, handle)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(sa_file, "w", encoding="utf-8") as handle:
        json.dump({"type": "service_account", "project_id": "test-project", "private_key_id": "0123456789abcdef",
                   "private_key": pem(sa_key).decode(), "client_email": "mlflow@test-project.iam.gserviceaccount.com",
                   "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}, handle)


if __name__ == "__main__":
    main()
