"""The Redis backend's Lua code, read from the package's ``lua/`` files and assembled.

Strategy: the Lua lives in ``.lua`` files (shipped as package data) so it can
be linted, highlighted and diffed as code. ``prelude.lua`` and ``admit.lua``
hold the helpers every operation shares; each other file is the body of one
operation, a function of ``(KEYS, ARGV)``. They are assembled two ways: one
Redis Functions library (Redis >= 7: ``FUNCTION LOAD`` once, then ``FCALL``
runs only the operation) and, for older servers, one standalone script per
operation (``EVALSHA``). The library's name carries a hash of the whole text,
so code from another fleetpool version on the same server never stands in for
this one.
"""

from __future__ import annotations

import hashlib
from importlib import resources


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


PRELUDE = _read("prelude")
#: fleetpool.budget._policy.admit, transcribed (tests/integration/budget holds them equal).
ADMIT = _read("admit")

#: Operation name -> Lua body, run with KEYS and ARGV bound.
OPERATIONS = {
    op: _read(op)
    for op in (
        "acquire",
        "renew",
        "release",
        "annotate",
        "cancel_wait",
        "configure",
        "leases",
        "snapshot",
        "offer",
        "connect_slot",
    )
}

#: How many ARGV each operation takes (the packed command header counts them).
SCRIPT_ARGS = {
    "acquire": 9,
    "renew": 2,
    "release": 3,
    "annotate": 2,
    "cancel_wait": 2,
    "configure": 2,
    "leases": 0,
    "snapshot": 0,
    "offer": 2,
    "connect_slot": 3,
}


def _operation(op: str) -> str:
    return f"local function op_{op}(KEYS, ARGV)\n  bind(KEYS)\n{OPERATIONS[op]}end\n"


#: The version of the whole Lua text.
LUA_VERSION = hashlib.sha1((PRELUDE + ADMIT + "".join(OPERATIONS.values())).encode()).hexdigest()[
    :12
]
LIBRARY_NAME = f"fleetpool_{LUA_VERSION}"


def function_name(op: str) -> str:
    return f"{LIBRARY_NAME}_{op}"


#: Every operation as one Redis Functions library (FUNCTION LOAD, then FCALL).
LIBRARY = (
    f"#!lua name={LIBRARY_NAME}\n"
    + PRELUDE
    + ADMIT
    + "".join(_operation(op) for op in OPERATIONS)
    + "".join(f"redis.register_function('{function_name(op)}', op_{op})\n" for op in OPERATIONS)
)

#: Each operation as a standalone script for servers without Functions (< 7).
#: Redis 5 and 6 replicate a script's effects only when asked, and TIME before
#: a write needs that.
SCRIPTS = {
    op: (
        "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
        + PRELUDE
        + ADMIT
        + _operation(op)
        + f"return op_{op}(KEYS, ARGV)\n"
    )
    for op in OPERATIONS
}

__all__ = [
    "ADMIT",
    "LIBRARY",
    "LIBRARY_NAME",
    "LUA_VERSION",
    "OPERATIONS",
    "PRELUDE",
    "SCRIPTS",
    "SCRIPT_ARGS",
    "function_name",
]
