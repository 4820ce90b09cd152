# Strategy: the admin console speaks MySQL: the engine-neutral answers of
# proxy/console.py become result sets, OK and ERR packets here, one result per
# statement (SERVER_MORE_RESULTS_EXISTS between them), as a multi-statement query gets.
from __future__ import annotations

from ...mysql import constants as c
from ...mysql import messages as mm
from ..console import Answer, Done, Failed, Table

# What client tools send right after connecting (the mariadb CLI, drivers): an OK is all
# they need, the console has nothing to say about them.
_TOOL_CHATTER = ("set ", "select @@", "select database()")


def tool_chatter(sql: str) -> bool:
    return sql.strip().lower().startswith(_TOOL_CHATTER)


def encode_answers(answers: list[Answer], caps: int) -> list[bytes]:
    """The payloads answering one query of the admin console (an OK when it had none)."""
    answers = answers or [Done("")]
    payloads: list[bytes] = []
    for i, answer in enumerate(answers):
        more = c.SERVER_MORE_RESULTS_EXISTS if i < len(answers) - 1 else 0
        status = c.SERVER_STATUS_AUTOCOMMIT | more
        if isinstance(answer, Table):
            rows = [[None if v is None else str(v) for v in row] for row in answer.rows]
            payloads += mm.build_result_set(answer.columns, rows, caps, status)
        elif isinstance(answer, Failed):
            payloads.append(mm.build_error(c.ER_UNKNOWN_COM_ERROR, answer.message, caps))
            break
        else:
            payloads.append(mm.OkPacket(status=status, info=answer.tag).build(caps))
    return payloads
