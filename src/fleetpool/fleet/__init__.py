"""fleet: a faithful local model of the serverless container lifecycle, and a report.

Strategy: real processes, a real database, real signals. Containers are OS
processes that import a handler once and serve invocations one at a time, are
frozen with SIGSTOP while idle and killed when reclaimed; traffic follows Poisson
profiles; an observer samples the database's own view; each connection strategy
is a plain handler module. ``fleetpool demo`` runs them all on an embedded
PostgreSQL and writes a self-contained HTML report.

Modules: :mod:`.runtime` (inside a container), :mod:`.container` (a process),
:mod:`.scheduler` (pure decisions), :mod:`.emulator` (the platform),
:mod:`.traffic`, :mod:`.observer`, :mod:`.results`, :mod:`.report`, :mod:`.svg`,
:mod:`.scenario`, :mod:`.target` (the database), :mod:`.services` (proxy and
Data API processes), :mod:`.setups`, :mod:`.run`, :mod:`.embedded`, :mod:`.cli`.
"""

from __future__ import annotations

__all__: list[str] = []
