"""An example function: fleetpool.Database with the DynamoDB budget and Secrets Manager.

Everything comes from the environment the SAM template sets:

* ``DATABASE_URL``   postgresql://app@host:5432/db or mysql://app@host:3306/db
  (no password: it comes from the secret);
* ``BUDGET_URL``     dynamodb://<table>?create=false (the template creates the table);
* ``BUDGET_NAME``    the budget shared by every function using this database;
* ``DB_SECRET_ARN``  a Secrets Manager secret with ``username`` and ``password``,
  or ``FLEETPOOL_IAM_AUTH=true`` for RDS IAM tokens instead. A token goes only to a
  server whose certificate is verified: put the RDS CA bundle next to this file
  (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem, saved as
  ``rds-global-bundle.pem``) or name it in ``DATABASE_CA_BUNDLE``.

The Database is built in the global section (no I/O until the first invocation);
``@db.handler`` checks the connection in after every invocation and writes the
budget's metrics as one EMF blob (through Powertools when it is installed).
"""

from __future__ import annotations

import os
from typing import Any

import fleetpool

IAM = os.environ.get("FLEETPOOL_IAM_AUTH") == "true"
URL = os.environ["DATABASE_URL"]
if IAM and "sslrootcert=" not in URL and "ssl_ca=" not in URL:
    bundle = os.environ.get("DATABASE_CA_BUNDLE") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "rds-global-bundle.pem"
    )
    key = "sslrootcert" if URL.startswith("postgres") else "ssl_ca"
    URL += ("&" if "?" in URL else "?") + f"{key}={bundle}"

db = fleetpool.Database(
    URL,
    budget=os.environ["BUDGET_URL"],
    budget_name=os.environ.get("BUDGET_NAME") or None,
    secret=os.environ.get("DB_SECRET_ARN") or None,
    iam_auth=IAM,
    lease_ttl=float(os.environ.get("FLEETPOOL_LEASE_TTL", "120")),
    max_wait=float(os.environ.get("FLEETPOOL_MAX_WAIT", "5")),
)


@db.handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    # The driver's own connection (psycopg 3 or PyMySQL): plain DB-API here.
    with db.transaction() as conn:
        cur = conn.cursor()
        try:
            cur.execute("SELECT 1 + 1")
            row = cur.fetchone()
        finally:
            cur.close()
    return {"engine": db.engine, "answer": row[0] if row else None}
