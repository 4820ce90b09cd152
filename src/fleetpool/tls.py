# Strategy: every TLS decision fleetpool makes, in one engine-neutral place. The proxy's
# plug-ins (PostgreSQL, MySQL) and the client library ask this module for their SSL
# contexts, so "verify-full" means the same thing everywhere: the server's chain is
# checked against a CA file (the RDS/Aurora bundle, say) and its name against the host
# dialled. The modes are libpq's sslmode names, which operators already know:
#
#   disable      never TLS
#   allow        TLS only if the server insists (the proxy treats it like disable)
#   prefer       TLS if the server offers it, unverified
#   require      TLS or nothing, unverified (encrypted, but a man in the middle can
#                present any certificate)
#   verify-ca    TLS, the chain must lead to a CA of ``ca_file``
#   verify-full  verify-ca, and the certificate must name the host dialled
#
# Contexts are built once (loading a CA bundle costs milliseconds) and shared by every
# connection. A verification failure becomes one clear sentence naming the host and
# the reason, never a bare OpenSSL code.
from __future__ import annotations

import hashlib
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

TlsMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
MODES: tuple[str, ...] = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING = ("verify-ca", "verify-full")
# Where RDS and Aurora publish the CA bundle their certificates chain to.
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


def check_mode(name: str, mode: object, ca_file: str = "", ca_name: str = "") -> None:
    """Raise ConfigError unless ``mode`` is a TLS mode and the CA file fits it.

    ``ca_name`` is the setting that holds ``ca_file`` (for the message).
    """
    if mode not in MODES:
        raise ConfigError(f"{name} must be one of {', '.join(MODES)}; got {mode!r}")
    ca_name = ca_name or "the CA file"
    if mode in VERIFYING and not ca_file:
        raise ConfigError(
            f"{name} = {mode!r} needs {ca_name} (a PEM file of the CA certificates to "
            f"trust; for RDS and Aurora the bundle at {RDS_CA_BUNDLE_URL})"
        )
    if ca_file and mode not in VERIFYING:
        raise ConfigError(
            f"{ca_name} is used only with {name} = 'verify-ca' or 'verify-full' "
            f"(got {mode!r}): set {name} = 'verify-full' to check the server's certificate"
        )
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(f"{ca_name} {ca_file!r} is not a readable file")


def client_context(
    mode: str, ca_file: str = "", cert_file: str = "", key_file: str = ""
) -> ssl.SSLContext | None:
    """The context for connecting to a server in ``mode`` (None for disable/allow).

    ``cert_file``/``key_file``: a client certificate to present, if the server asks.
    """
    check_mode("server_tls", mode, ca_file, "server_ca_file")
    if mode in ("disable", "allow"):
        return None
    if mode in VERIFYING:
        try:
            ctx = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load CA certificates from {ca_file!r}: {exc}") from exc
        ctx.check_hostname = mode == "verify-full"
    else:
        # prefer/require: encrypted, not verified (libpq's semantics).
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the client certificate {cert_file!r}: {exc}") from exc
    return ctx


class ContextCache:
    """The client context for the current (mode, CA file), rebuilt only when a reload
    changed them: each plug-in keeps one and asks it per connect."""

    __slots__ = ("_context", "_key")

    def __init__(self) -> None:
        self._key: tuple[str, str] | None = None
        self._context: ssl.SSLContext | None = None

    def get(self, mode: str, ca_file: str = "") -> ssl.SSLContext | None:
        key = (mode, ca_file)
        if key != self._key:
            self._context = client_context(mode, ca_file)
            self._key = key
        return self._context


def libpq_params(mode: str, ca_file: str = "") -> dict[str, Any]:
    """The same verification for a libpq connection (psycopg): sslmode, sslrootcert."""
    out: dict[str, Any] = {"sslmode": mode}
    if ca_file:
        out["sslrootcert"] = ca_file
    return out


# MySQL's ssl-mode names, in libpq's terms.
_MYSQL_MODES = {
    "disabled": "disable",
    "preferred": "prefer",
    "required": "require",
    "verify_ca": "verify-ca",
    "verify_identity": "verify-full",
}


def bearer_verification(engine: str, params: Mapping[str, str]) -> tuple[str, str]:
    """(mode, CA file) for a client connection whose password is a bearer token (RDS
    IAM): ``verify-full`` unless the URL names another mode -- never one that could send
    the token in clear -- with the CA file from the URL (``sslrootcert`` for PostgreSQL,
    ``ssl_ca`` for MySQL). ``sslmode=require`` in the URL is the explicit opt-out of
    verification."""
    if engine == "postgresql":
        mode, ca, mode_key, ca_key = (
            params.get("sslmode", ""),
            params.get("sslrootcert", ""),
            ("sslmode"),
            "sslrootcert",
        )
    else:
        raw = (params.get("ssl_mode") or params.get("sslmode") or "").lower()
        mode, ca, mode_key, ca_key = (
            _MYSQL_MODES.get(raw, raw),
            params.get("ssl_ca", ""),
            ("ssl_mode"),
            "ssl_ca",
        )
    mode = mode or "verify-full"
    if mode not in ("require", *VERIFYING):
        raise ConfigError(
            f"iam_auth=True sends a token as the password, so TLS is required: {mode_key}="
            f"{mode!r} is not allowed (use verify-full, the default, or verify-ca)"
        )
    if mode in VERIFYING and not ca:
        raise ConfigError(
            f"iam_auth=True verifies the server's certificate ({mode}): give the CA bundle "
            f"as {ca_key}=/path/to/bundle.pem in the URL (RDS and Aurora: {RDS_CA_BUNDLE_URL})"
            f"{', or sslrootcert=system for the system store' if engine == 'postgresql' else ''}"
            f"; {mode_key}=require encrypts without verifying"
        )
    if ca and ca != "system" and not Path(ca).is_file():
        raise ConfigError(f"{ca_key}={ca!r} is not a readable file")
    return mode, ca


def server_context(cert_file: str, key_file: str, client_ca_file: str = "") -> ssl.SSLContext:
    """The context for accepting clients; with ``client_ca_file`` clients may present a
    certificate signed by one of its CAs (``auth_method = "cert"`` then requires one)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load tls_cert/tls_key ({cert_file!r}): {exc}") from exc
    if client_ca_file:
        try:
            ctx.load_verify_locations(cafile=client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load client_ca_file {client_ca_file!r}: {exc}") from exc
        # Optional at the handshake: whether a certificate is needed is the login's
        # decision (auth_method), and the refusal is then a proper protocol error.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def verify_failure(host: str, port: int, exc: BaseException) -> str | None:
    """A sentence naming the server and why its certificate was refused, or None when
    ``exc`` is not a certificate verification failure."""
    if not isinstance(exc, ssl.SSLCertVerificationError):
        return None
    reason = exc.verify_message or exc.reason or str(exc)
    return f"the certificate of {host}:{port} was refused: {reason}"


def peer_common_name(ssl_object: Any) -> str | None:
    """The subject CN of a verified client certificate (None without one)."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:  # no certificate, or not verified (CERT_NONE)
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def certificate_hash(cert_file: str) -> bytes | None:
    """The ``tls-server-end-point`` channel binding data of the first certificate of a
    PEM file (RFC 5929): its DER form hashed with the hash of its signature algorithm,
    SHA-256 instead of MD5 or SHA-1. None when the algorithm has no such hash
    (Ed25519, say): channel binding is then not offered."""
    try:
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
    except ImportError:  # pragma: no cover - the proxy extra brings it
        return None
    pem = Path(cert_file).read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if algorithm is None:
        return None
    name = algorithm.name.lower()
    if name in ("md5", "sha1"):
        name = "sha256"
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.new(name, cert.public_bytes(Encoding.DER)).digest()
