"""Test service-account keys and the server side of Google's JWT-bearer grant (RFC 7523), with `cryptography` (a
google-auth dependency). Keys are generated at test time: no private key is ever committed."""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# google-auth always puts Google's token URL in `aud`, whatever the key file's token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"
DEFAULT_CLIENT_EMAIL = "room-desk@room-desk-test.iam.gserviceaccount.com"


@dataclass(frozen=True)
class TestKey:
    """An RSA key pair standing in for a service account's key."""

    __test__ = False  # not a pytest test class

    key_id: str
    private_pem: str
    public_pem: str


@lru_cache(maxsize=8)
def generate_key(name: str = "primary") -> TestKey:
    """A 2048-bit RSA key pair, generated once per process and name (key generation is the slow part)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    key_id = binascii.hexlify(name.encode()).decode().ljust(40, "0")[:40]
    return TestKey(key_id=key_id, private_pem=private_pem, public_pem=public_pem)


def write_key_file(
    path: Path, *, key: TestKey, token_uri: str, client_email: str = DEFAULT_CLIENT_EMAIL, project_id: str = "test"
) -> Path:
    """Write a service-account key JSON shaped like the one the Cloud console downloads."""
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": key.key_id,
        "private_key": key.private_pem,
        "client_email": client_email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }
    path.write_text(json.dumps(info, indent=2))
    path.chmod(0o600)
    return path


class GrantRefused(Exception):
    """The token endpoint refuses the grant: (HTTP status, OAuth error code, description), as Google answers."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description


def verify_assertion(assertion: str, public_keys: dict[str, str], *, leeway: int = 300) -> dict[str, Any]:
    """Check an RS256 JWT-bearer assertion against the registered public key of its issuer; return its claims.

    `public_keys` maps client_email → public key PEM. Raises GrantRefused with Google's error codes."""
    try:
        header_b64, payload_b64, signature_b64 = assertion.split(".")
        header = json.loads(_b64decode(header_b64))
        claims = json.loads(_b64decode(payload_b64))
        signature = _b64decode(signature_b64)
    except (ValueError, binascii.Error) as exc:
        raise GrantRefused(400, "invalid_grant", "Invalid JWT: malformed assertion") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise GrantRefused(400, "invalid_grant", "Invalid JWT: malformed assertion")
    if header.get("alg") != "RS256":
        raise GrantRefused(400, "invalid_grant", "Invalid JWT: unsupported signing algorithm")
    issuer = claims.get("iss")
    public_pem = public_keys.get(str(issuer))
    if public_pem is None:
        raise GrantRefused(400, "invalid_grant", "Invalid grant: account not found")
    public_key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(public_key, rsa.RSAPublicKey)
    try:
        public_key.verify(signature, f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise GrantRefused(400, "invalid_grant", "Invalid JWT Signature.") from exc
    if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
        raise GrantRefused(
            400, "invalid_grant", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"
        )
    now = time.time()
    iat, exp = claims.get("iat"), claims.get("exp")
    if (
        not isinstance(iat, int)
        or not isinstance(exp, int)
        or iat > now + leeway
        or exp < now - leeway
        or exp - iat > 3600
    ):
        raise GrantRefused(
            400, "invalid_grant", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"
        )
    if CALENDAR_SCOPE not in str(claims.get("scope", "")).split():
        raise GrantRefused(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    return claims


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
