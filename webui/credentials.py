"""The admin password (scrypt hash in `webui.password_file`) and the session secret key.

The password file holds one line in a PHC-like format that carries its own cost
parameters, `$scrypt$ln=17,r=8,p=1$<salt>$<hash>` (base64 without padding), so the
cost can be raised later without breaking existing files.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

# OWASP's minimum for scrypt: N=2^17 (128 MiB), r=8, p=1; about half a second here.
DEFAULT_LOG2_N = 17
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32

# A corrupt or hostile file must not make a login allocate gigabytes.
MAX_LOG2_N = 20
MAX_R = 32
MAX_P = 16

MIN_PASSWORD_CHARS = 8
SECRET_KEY_BYTES = 32

_FORMAT = re.compile(r"^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$")


class CredentialError(Exception):
    """A password or key file that cannot be read, written or understood."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int, length: int) -> bytes:
    n = 1 << log2_n
    # OpenSSL needs 128*r*n*p bytes plus a little; its default cap is 32 MiB.
    maxmem = 128 * r * n * p + (1 << 20)
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


@dataclass(frozen=True)
class PasswordHash:
    log2_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        return f"$scrypt$ln={self.log2_n},r={self.r},p={self.p}${_b64(self.salt)}${_b64(self.digest)}"

    @classmethod
    def decode(cls, line: str, where: str = "password file") -> PasswordHash:
        match = _FORMAT.match(line.strip())
        if not match:
            raise CredentialError(f"{where}: not a scrypt hash written by `anabranch-webui set-password`; "
                                  "set the password again")
        log2_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
        if not (1 <= log2_n <= MAX_LOG2_N and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
            raise CredentialError(f"{where}: scrypt parameters ln={log2_n},r={r},p={p} are out of range "
                                  f"(ln<={MAX_LOG2_N}, r<={MAX_R}, p<={MAX_P}); set the password again")
        return cls(log2_n, r, p, _unb64(match.group(4)), _unb64(match.group(5)))

    def verify(self, password: str) -> bool:
        candidate = _scrypt(password, self.salt, self.log2_n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(candidate, self.digest)


def hash_password(password: str, log2_n: int = DEFAULT_LOG2_N, r: int = DEFAULT_R,
                  p: int = DEFAULT_P) -> PasswordHash:
    salt = secrets.token_bytes(SALT_BYTES)
    return PasswordHash(log2_n, r, p, salt, _scrypt(password, salt, log2_n, r, p, HASH_BYTES))


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise CredentialError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if password != password.strip():
        raise CredentialError("the password must not start or end with white space")


def read_password_hash(path: str | Path) -> PasswordHash | None:
    """The stored hash, or None when no password has been set yet."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialError(f"{path}: cannot read: {exc.strerror}") from None
    return PasswordHash.decode(text, str(path))


def _write_private(path: Path, content: bytes, keep_owner: bool) -> None:
    """Write `content` to `path` atomically with mode 0600."""
    try:
        existing = path.stat() if keep_owner else None
    except FileNotFoundError:
        existing = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        if existing is not None and os.geteuid() == 0:
            # Replacing the file as root must not take it away from the web UI's user.
            os.fchown(fd, existing.st_uid, existing.st_gid)
        os.write(fd, content)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise


def write_password_hash(path: str | Path, stored: PasswordHash) -> None:
    path = Path(path)
    try:
        _write_private(path, (stored.encode() + "\n").encode(), keep_owner=True)
    except OSError as exc:
        raise CredentialError(f"{path}: cannot write: {exc.strerror}") from None


def load_secret_key(path: str | Path) -> bytes:
    """The key that signs session cookies; created (mode 0600) on first use."""
    path = Path(path)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    except OSError as exc:
        raise CredentialError(f"{path}: cannot read: {exc.strerror}") from None
    if len(key) >= SECRET_KEY_BYTES:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialError(f"{path}: readable by others (mode {stat.S_IMODE(mode):04o}); "
                                  f"run `chmod 600 {path}`")
        return key
    if key:
        raise CredentialError(f"{path}: too short to be a secret key ({len(key)} bytes); "
                              "delete it and a new one is made")
    key = secrets.token_bytes(SECRET_KEY_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CredentialError(f"{path}: cannot create its folder: {exc.strerror or exc}") from None
    try:
        # O_EXCL: never overwrite a key another process created in the meantime.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_secret_key(path)
    except OSError as exc:
        raise CredentialError(f"{path}: cannot create the session secret key: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key
