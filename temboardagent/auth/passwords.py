"""Password hashing: salted scrypt for new hashes, upstream's legacy SHA-512 still verifies.

New hashes look like ``$scrypt$n=16384,r=8,p=1$<salt b64>$<hash b64>``. Legacy
upstream hashes are ``base64(sha512(hex(password) + sha512(username)))``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new self-describing scrypt hash of ``password``."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=DKLEN, maxmem=2**26
    )
    return f"$scrypt$n={n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def legacy_hash(username: str, password: str) -> str:
    """Upstream temboard-agent's hash, kept so that old users files still work."""
    hex_password = binascii.hexlify(password.encode("utf-8"))
    sha_username = hashlib.sha512(username.encode("utf-8")).digest()
    return base64.b64encode(hashlib.sha512(hex_password + sha_username).digest()).decode()


def verify_password(username: str, password: str, stored: str) -> bool:
    """Check ``password`` against ``stored`` in constant time."""
    if stored.startswith("$scrypt$"):
        try:
            _, _, params, salt, digest = stored.split("$")
            opts = dict(item.split("=") for item in params.split(","))
            expected = _unb64(digest)
            actual = hashlib.scrypt(
                password.encode("utf-8"),
                salt=_unb64(salt),
                n=int(opts["n"]),
                r=int(opts["r"]),
                p=int(opts["p"]),
                dklen=len(expected),
                maxmem=2**26,
            )
        except (ValueError, KeyError, binascii.Error):
            return False
        return hmac.compare_digest(actual, expected)
    return hmac.compare_digest(legacy_hash(username, password).encode(), stored.encode())


#: verified against when the user is unknown, so both cases cost the same
DUMMY_HASH = hash_password("not a password")
