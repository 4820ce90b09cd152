"""Where the password comes from, evaluated at connect time, never at import.

Strategy: a Lambda's password may rotate under it (Secrets Manager) or be a
15-minute token (RDS IAM), so the client asks for credentials on every
connect, not once. Sources, first match wins:

1. ``password=``: a string, or a callable returning one (called per connect);
2. ``secret=``: an AWS Secrets Manager secret id/ARN; the JSON form written by
   RDS (``username``, ``password``) or a plain string. Cached in the process.
   After an authentication failure -- what a rotation looks like from the
   client -- the ``AWSPENDING`` version is tried (a rotation sets the database's
   password to it before it becomes ``AWSCURRENT``), then ``AWSCURRENT`` fetched
   again, once each;
3. ``iam_auth=True``: an RDS IAM token from ``generate_db_auth_token`` per
   connect (computed locally by botocore, no API call); TLS is forced;
4. the password in the URL;
5. ``FLEETPOOL_DB_PASSWORD``, then the driver's own variable (``PGPASSWORD`` is
   read by libpq itself; ``MYSQL_PWD`` here for PyMySQL).

boto3 is imported only when 2 or 3 is used (the ``aws`` extra).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import ConfigError, DatabaseUnavailable
from .dsn import Target

PasswordSource = str | Callable[[], str]

#: The secret's versions a login tries, in order: the cached current one, after a
#: refused login the pending one, then the current one read again.
ROTATION_STAGES = ("AWSCURRENT", "AWSPENDING", "AWSCURRENT")


class Login(NamedTuple):
    user: str | None
    password: str | None
    #: The source demands TLS (IAM tokens travel in clear text otherwise).
    require_tls: bool = False

    def __repr__(self) -> str:  # never the password
        return f"Login(user={self.user!r}, require_tls={self.require_tls!r})"


class Credentials:
    """Resolves a :class:`Login` per connect. Thread-safe."""

    def __init__(
        self,
        target: Target,
        *,
        password: PasswordSource | None = None,
        secret: str | None = None,
        iam_auth: bool = False,
        region: str | None = None,
        aws_client_factory: Callable[[str], Any] | None = None,
    ) -> None:
        chosen = [n for n, v in (("password", password), ("secret", secret)) if v is not None]
        if iam_auth:
            chosen.append("iam_auth")
        if len(chosen) > 1:
            raise ConfigError(f"give at most one of password=, secret=, iam_auth=; got {chosen}")
        if password is not None and not (isinstance(password, str) or callable(password)):
            raise ConfigError("password= must be a string or a callable returning one")
        if iam_auth and not (target.host and target.user):
            raise ConfigError("iam_auth=True needs a host and a user in the database URL")
        self.target = target
        self.password = password
        self.secret = secret
        self.iam_auth = iam_auth
        self.region = region
        self._client_factory = aws_client_factory or _boto3_client
        self._cached: Login | None = None
        #: Which version the next fetch reads: an index into :data:`ROTATION_STAGES`.
        self._stage = 0
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    @property
    def refreshable(self) -> bool:
        """Whether fetching again could fix an authentication failure."""
        return self.secret is not None or callable(self.password) or self.iam_auth

    @property
    def refreshes(self) -> int:
        """How many times in a row fetching again may help: a secret has two versions
        to try (pending, then current again), other sources one."""
        return len(ROTATION_STAGES) - 1 if self.secret is not None else 1

    def resolve(self) -> Login:
        t = self.target
        if self.password is not None:
            value = self.password() if callable(self.password) else self.password
            if not isinstance(value, str):
                raise ConfigError("the password callable must return a string")
            return Login(t.user, value)
        if self.secret is not None:
            with self._lock:
                if self._cached is None:
                    self._cached = self._fetch_secret()
                return self._cached
        if self.iam_auth:
            return Login(t.user, self._iam_token(), require_tls=True)
        if t.password is not None:
            return Login(t.user, t.password)
        env = os.environ.get("FLEETPOOL_DB_PASSWORD")
        if env is None and t.engine == "mysql":
            env = os.environ.get("MYSQL_PWD")
        return Login(t.user, env)

    def invalidate(self) -> None:
        """Forget the cached secret after a refused login: the next :meth:`resolve`
        reads the next version of :data:`ROTATION_STAGES` (pending, then current)."""
        with self._lock:
            self._cached = None
            self._stage = min(self._stage + 1, len(ROTATION_STAGES) - 1)

    def confirm(self) -> None:
        """A login worked: keep its credentials; a later failure starts from pending again."""
        with self._lock:
            self._stage = 0

    # -- AWS ----------------------------------------------------------------

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._client_factory(service, **_region(self.region))
        return self._clients[service]

    def _fetch_secret(self) -> Login:
        client = self._client("secretsmanager")
        stage = ROTATION_STAGES[self._stage]
        reply = None
        if stage != "AWSCURRENT":
            try:
                reply = client.get_secret_value(SecretId=self.secret, VersionStage=stage)
            except Exception:  # no such version (no rotation under way): read current
                reply = None
        if reply is None:
            try:
                reply = client.get_secret_value(SecretId=self.secret)
            except Exception as exc:  # botocore errors: no import of botocore here
                raise DatabaseUnavailable(
                    f"could not read secret {self.secret!r} from Secrets Manager: {exc}"
                ) from exc
        text = reply.get("SecretString")
        if text is None:
            raise ConfigError(f"secret {self.secret!r} has no SecretString")
        try:
            data = json.loads(text)
        except ValueError:
            return Login(self.target.user, text)
        if not isinstance(data, dict) or "password" not in data:
            raise ConfigError(f"secret {self.secret!r} is JSON without a 'password' key")
        return Login(data.get("username") or self.target.user, str(data["password"]))

    def _iam_token(self) -> str:
        t = self.target
        region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        token: str = self._client("rds").generate_db_auth_token(
            DBHostname=t.host, Port=t.port, DBUsername=t.user, Region=region
        )
        return token


def _region(region: str | None) -> dict[str, str]:
    return {"region_name": region} if region else {}


def _boto3_client(service: str, **kwargs: Any) -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise ConfigError(
            "secret= and iam_auth=True need boto3: pip install 'fleetpool[aws]'"
        ) from exc
    return boto3.client(service, **kwargs)  # type: ignore[call-overload]


__all__ = ["Credentials", "Login", "PasswordSource"]
