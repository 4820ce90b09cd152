#!/bin/sh
# Start the proxy from the task's environment (proxy.yaml): ECS puts the secret's
# password in UPSTREAM_PASSWORD; it is URL-quoted into the upstream URL here.
set -eu
password=$(python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["UPSTREAM_PASSWORD"], safe=""))')
exec fleetpool proxy \
    --listen 0.0.0.0:6432 \
    --upstream "postgresql://${UPSTREAM_USER}:${password}@${UPSTREAM_HOST}/${UPSTREAM_DB}" \
    --pool-size "${POOL_SIZE:-20}" \
    --log-format json "$@"
