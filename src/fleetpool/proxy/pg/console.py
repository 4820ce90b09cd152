# Strategy: the admin console speaks PostgreSQL: the engine-neutral answers of
# proxy/console.py become RowDescription/DataRow/CommandComplete/ErrorResponse here.
from __future__ import annotations

from ...pg import messages as m
from ..console import VERSION, Answer, Done, Failed, Table

# What a client of the admin database sees at login.
ADMIN_WELCOME = (
    m.auth_ok()
    + m.parameter_status("server_version", f"15.0 ({VERSION})")
    + m.parameter_status("client_encoding", "UTF8")
    + m.parameter_status("DateStyle", "ISO, MDY")
    + m.parameter_status("integer_datetimes", "on")
    + m.parameter_status("standard_conforming_strings", "on")
    + m.backend_key_data(0, 0)
    + m.ready_for_query()
)


def encode_answers(answers: list[Answer]) -> bytes:
    """The answers to one simple Query of the admin console, ReadyForQuery included."""
    out: list[bytes] = []
    for answer in answers:
        if isinstance(answer, Table):
            out.append(m.row_description(answer.columns))
            out.extend(
                m.data_row([None if v is None else str(v) for v in row]) for row in answer.rows
            )
            out.append(m.command_complete(answer.tag))
        elif isinstance(answer, Done):
            out.append(m.command_complete(answer.tag))
        elif isinstance(answer, Failed):
            code = "42501" if answer.denied else "42601"
            out.append(m.error_response(code, answer.message, hint=answer.hint or None))
    if not out:
        out.append(m.EMPTY_QUERY_MSG)
    out.append(m.ready_for_query())
    return b"".join(out)
