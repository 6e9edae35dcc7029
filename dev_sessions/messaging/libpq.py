"""libpq, PostgreSQL's own client library, through ctypes: the PostgreSQL store's only way to its server.

Why not a driver: importing psycopg costs about 150 ms (its type adapters, ``asyncio`` through its
errors, ``importlib.metadata``), more than a whole ``msg send`` may take; ctypes imports in 2-3 ms and
libpq loads in a few more. The library is the one psycopg's binary wheel carries (the extra
``dev-sessions[postgres]`` installs ``psycopg[binary]``: ``psycopg_binary.libs/libpq-*.so*``, found
without importing anything of it), else the system's (``libpq.so.5``: Debian's ``libpq5``, looked up by
name, not with ``ctypes.util.find_library``, which runs a subprocess); neither is a one-line
:class:`~dev_sessions.errors.ToolMissing`.

What is wrapped is what the store needs, no more:

* :func:`connect`: a connection from a ``postgresql://`` URL, which libpq reads itself (``expand_dbname``),
  so its conventions hold: ``sslmode``, ``PGPASSFILE`` / ``~/.pgpass``, ``service=`` and
  ``PGSERVICEFILE``, the ``PG*`` variables. The server's notices (``NOTICE: ... skipping``) go to the
  debug log, not to stderr as libpq's default would print them.
* :meth:`Connection.execute`: one statement with text parameters (``$1``..``$n``, :func:`text_of`), its
  rows as tuples of Python values by column type (:func:`converter`) and its row count; a statement
  run again on a connection is prepared there (:data:`PREPARE_AFTER`); :meth:`Connection.run` several
  statements without parameters, in one round trip.
* A failure as an exception by its SQLSTATE (:func:`error_for`): :class:`RolledBack` (a serialization
  failure or a deadlock: nothing of it was done, try again), :class:`Unavailable` (the server cannot
  serve, or the connection is lost: then ``sent`` says whether the statement had been handed over, so
  whether it may have been done), a few named ones the store catches, :class:`ServerError` for the rest.
* LISTEN's notifications: :meth:`Connection.fileno`, :meth:`Connection.consume`,
  :meth:`Connection.notifications`.

The conversions are pure functions, tested without a server. Every foreign function has its argtypes
and restype declared (:data:`_SIGNATURES`): a pointer returned as ctypes' default C int would be cut to
32 bits. A :class:`Connection` runs one statement at a time, whichever thread asks.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import threading
from collections.abc import Callable, Iterator, Sequence
from ctypes import CFUNCTYPE, POINTER, Structure, c_char_p, c_int, c_uint, c_void_p
from typing import Any

from dev_sessions.errors import ToolMissing

log = logging.getLogger(__name__)

SYSTEM_NAMES = ("libpq.so.5", "libpq.5.dylib", "/opt/homebrew/opt/libpq/lib/libpq.5.dylib")
"""The system's libpq, by the names the dynamic loader finds it under (tried in order)."""

APPLICATION_NAME = "dev-sessions"
PREPARE_AFTER = 2
"""A statement run this many times on a connection is prepared there (planned once: the send's
statement is planned in about as long as it runs), as psycopg does after 5."""
MAX_PREPARED = 200
"""Prepared statements per connection, at most (the statements are the code's, so few)."""

# libpq-fe.h
CONNECTION_OK = 0
PGRES_EMPTY_QUERY, PGRES_COMMAND_OK, PGRES_TUPLES_OK = 0, 1, 2
PG_DIAG_SQLSTATE, PG_DIAG_MESSAGE_PRIMARY = ord("C"), ord("M")

# pg_type.dat: the column types turned into something else than str.
BOOL, INT8, INT2, INT4, OID, FLOAT4, FLOAT8, NUMERIC, VOID = 16, 20, 21, 23, 26, 700, 701, 1700, 2278


# -- errors ----------------------------------------------------------------------------------------------


class Error(Exception):
    """A statement or a connection failed; ``str()`` is libpq's message on one line."""

    sqlstate: str | None = None

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(" ".join(message.split()) or "unknown error")
        self.sqlstate = sqlstate


class ServerError(Error):
    """The server refused the statement (the connection is fine, the statement did nothing)."""


class UndefinedTable(ServerError):
    """42P01."""


class ForeignKeyViolation(ServerError):
    """23503."""


class UniqueViolation(ServerError):
    """23505."""


class RolledBack(ServerError):
    """The server undid the statement's transaction for another one's sake (40001 a serialization
    failure, 40P01 a deadlock): nothing of it was done, and trying it again may well succeed."""


class Unavailable(Error):
    """The server cannot serve: it cannot be reached, it is shutting down or out of resources, or the
    connection was lost (``lost``). ``sent``: the statement had been handed over before the connection
    was lost, so it may have been done (its COMMIT, or a statement outside a transaction)."""

    def __init__(self, message: str, sqlstate: str | None = None, *, lost: bool, sent: bool) -> None:
        super().__init__(message, sqlstate)
        self.lost = lost
        self.sent = sent


_NAMED: dict[str, type[ServerError]] = {
    "42P01": UndefinedTable,
    "23503": ForeignKeyViolation,
    "23505": UniqueViolation,
    "40001": RolledBack,
    "40P01": RolledBack,
}
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
"""SQLSTATE classes of a server that cannot serve: connection exception, insufficient resources,
operator intervention (shutdown, a terminated backend, a cancelled statement), system error."""


def error_for(message: str, sqlstate: str | None, *, connected: bool, sent: bool = True) -> Error:
    """The exception for a failure: libpq's ``message``, the server's ``sqlstate`` (None when libpq
    itself failed), whether the connection is still good afterwards and whether the statement had been
    sent."""
    if not connected:
        return Unavailable(message, sqlstate, lost=True, sent=sent)
    if sqlstate is None or sqlstate.startswith(_UNAVAILABLE_CLASSES):
        return Unavailable(message, sqlstate, lost=False, sent=sent)
    return _NAMED.get(sqlstate, ServerError)(message, sqlstate)


# -- values ----------------------------------------------------------------------------------------------


def text_of(value: object) -> bytes | None:
    """A parameter in PostgreSQL's text format (None: NULL); a list or tuple is an array literal."""
    if value is None:
        return None
    if isinstance(value, str):
        data = value.encode()
        if b"\0" in data:
            raise ValueError("PostgreSQL cannot store a NUL character (\\0) in text")
        return data
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, int | float):
        return repr(value).encode()
    if isinstance(value, list | tuple):
        return b"{" + b",".join(_element(item) for item in value) + b"}"
    raise TypeError(f"cannot send a {type(value).__name__} to PostgreSQL")


def type_of(value: object) -> int:
    """The type a parameter is sent as: bool, bigint and double precision for Python's, else 0 (let
    the server infer it from the statement, as it does for a literal: text, arrays, NULL)."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT8
    if isinstance(value, float):
        return FLOAT8
    return 0


def _element(value: object) -> bytes:
    text = text_of(value)
    if text is None:
        return b"NULL"
    if isinstance(value, list | tuple):
        return text
    return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _text(data: bytes) -> str:
    return data.decode()


def _bool(data: bytes) -> bool:
    return data == b"t"


def _void(data: bytes) -> None:
    return None


def _numeric(data: bytes) -> int | float:
    return float(data) if b"." in data or data.isalpha() else int(data)


_CONVERTERS: dict[int, Callable[[bytes], Any]] = {
    BOOL: _bool,
    INT2: int,
    INT4: int,
    INT8: int,
    OID: int,
    FLOAT4: float,
    FLOAT8: float,
    NUMERIC: _numeric,
    VOID: _void,
}


def converter(oid: int) -> Callable[[bytes], Any]:
    """How a value of column type ``oid`` in text format becomes Python's: int, bool, float, None for
    void; str for text, varchar, name and every other type."""
    return _CONVERTERS.get(oid, _text)


def numbered(sql: str) -> str:
    """SQLite's ``?`` placeholders as PostgreSQL's ``$1``..``$n`` (not inside quotes)."""
    out: list[str] = []
    quote = ""
    number = 0
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "?":
            number += 1
            out.append(f"${number}")
            continue
        out.append(char)
    return "".join(out)


class Rows:
    """A statement's result: its rows (tuples) and ``rowcount``, read as from a DB-API cursor."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self._next = 0

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self.rows):
            return None
        self._next += 1
        return self.rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest = self.rows[self._next :]
        self._next = len(self.rows)
        return rest

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


# -- the library -------------------------------------------------------------------------------------------


class _Notify(Structure):
    _fields_ = [("relname", c_char_p), ("be_pid", c_int), ("extra", c_char_p), ("next", c_void_p)]


_NoticeProcessor = CFUNCTYPE(None, c_void_p, c_char_p)

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "PQconnectdbParams": (c_void_p, [POINTER(c_char_p), POINTER(c_char_p), c_int]),
    "PQstatus": (c_int, [c_void_p]),
    "PQerrorMessage": (c_char_p, [c_void_p]),
    "PQfinish": (None, [c_void_p]),
    "PQsocket": (c_int, [c_void_p]),
    "PQbackendPID": (c_int, [c_void_p]),
    "PQsetNoticeProcessor": (c_void_p, [c_void_p, _NoticeProcessor, c_void_p]),
    "PQsendQuery": (c_int, [c_void_p, c_char_p]),
    "PQsendQueryParams": (
        c_int,
        [c_void_p, c_char_p, c_int, c_void_p, POINTER(c_char_p), c_void_p, c_void_p, c_int],
    ),
    "PQsendPrepare": (c_int, [c_void_p, c_char_p, c_char_p, c_int, c_void_p]),
    "PQsendQueryPrepared": (
        c_int,
        [c_void_p, c_char_p, c_int, POINTER(c_char_p), c_void_p, c_void_p, c_int],
    ),
    "PQgetResult": (c_void_p, [c_void_p]),
    "PQresultStatus": (c_int, [c_void_p]),
    "PQresultErrorMessage": (c_char_p, [c_void_p]),
    "PQresultErrorField": (c_char_p, [c_void_p, c_int]),
    "PQntuples": (c_int, [c_void_p]),
    "PQnfields": (c_int, [c_void_p]),
    "PQftype": (c_uint, [c_void_p, c_int]),
    "PQgetvalue": (c_char_p, [c_void_p, c_int, c_int]),
    "PQgetisnull": (c_int, [c_void_p, c_int, c_int]),
    "PQcmdTuples": (c_char_p, [c_void_p]),
    "PQclear": (None, [c_void_p]),
    "PQconsumeInput": (c_int, [c_void_p]),
    "PQnotifies": (c_void_p, [c_void_p]),
    "PQfreemem": (None, [c_void_p]),
}

_lib: ctypes.CDLL | None = None


def bundled() -> list[str]:
    """The libpq psycopg's binary wheel carries, if it is installed (found, not imported)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("psycopg_binary")
    except (ImportError, ValueError):
        return []
    found: list[str] = []
    for package in (spec.submodule_search_locations or []) if spec is not None else []:
        # auditwheel puts the libraries next to the package (Linux), delocate inside it (macOS).
        for folder in (package + ".libs", os.path.join(package, ".dylibs")):
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                continue
            found += [os.path.join(folder, name) for name in names if name.startswith("libpq")]
    return found


def library() -> ctypes.CDLL:
    """libpq, loaded and declared once (:class:`ToolMissing` when there is none)."""
    global _lib
    if _lib is None:
        for candidate in (*bundled(), *SYSTEM_NAMES):
            try:
                lib = ctypes.CDLL(candidate)
            except OSError:
                continue
            log.debug("libpq: %s", candidate)
            for name, (restype, argtypes) in _SIGNATURES.items():
                function = getattr(lib, name)
                function.restype, function.argtypes = restype, argtypes
            _lib = lib
            break
        else:
            raise ToolMissing(
                tool="libpq",
                hint="DEV_SESSIONS_MESSAGES_URL names a PostgreSQL server; install its client library "
                "with `pip install 'dev-sessions[postgres]'` (or `scripts/install --postgres`, or the "
                "system's libpq5)",
            )
    return _lib


def _log_notice(_arg: int | None, message: bytes | None) -> None:
    log.debug("server: %s", (message or b"").decode(errors="replace").strip())


_notice = _NoticeProcessor(_log_notice)
"""The server's notices to the log (libpq's default prints them to stderr); kept alive here for libpq."""


def connect(url: str) -> Connection:
    """A connection to the server ``url`` names (:class:`Unavailable` when none can be made)."""
    lib = library()
    keywords = (c_char_p * 4)(b"dbname", b"application_name", b"client_encoding", None)
    values = (c_char_p * 4)(url.encode(), APPLICATION_NAME.encode(), b"UTF8", None)
    handle = lib.PQconnectdbParams(keywords, values, 1)
    if not handle:
        raise MemoryError("libpq could not allocate a connection")
    if lib.PQstatus(handle) != CONNECTION_OK:
        message = (lib.PQerrorMessage(handle) or b"").decode(errors="replace")
        lib.PQfinish(handle)
        raise Unavailable(message, lost=True, sent=False)
    lib.PQsetNoticeProcessor(handle, _notice, None)
    return Connection(lib, handle)


class Connection:
    """One connection to the server (see :func:`connect`)."""

    def __init__(self, lib: ctypes.CDLL, handle: int) -> None:
        self._lib = lib
        self._handle: int | None = handle
        self._runs: dict[tuple[str, tuple[int, ...]], int] = {}
        self._prepared: dict[tuple[str, tuple[int, ...]], bytes] = {}
        # One statement at a time: threads that share a store (msg status asks hosts at once) take
        # turns, as they did on psycopg's connection; libpq's would mix their results.
        self._turn = threading.Lock()

    def __del__(self) -> None:
        # A store dropped without close() (a library object per gateway call) leaves no connection open.
        self.close()

    @property
    def ok(self) -> bool:
        """Whether the connection is still good (as far as libpq has read)."""
        return self._handle is not None and self._lib.PQstatus(self._handle) == CONNECTION_OK

    def alive(self) -> bool:
        """Whether the connection is still good, having read what came without a request (the farewell
        of a server that ended it, or end of file): no round trip."""
        with self._turn:
            if not self.ok:
                return False
            try:
                readable, _, _ = select.select([self.fileno()], [], [], 0)
            except (OSError, ValueError):
                return False
            return not readable or (self.consume() and self.ok)

    @property
    def backend_pid(self) -> int:
        return int(self._lib.PQbackendPID(self._handle)) if self._handle is not None else 0

    def error_message(self) -> str:
        if self._handle is None:
            return "the connection is closed"
        return " ".join((self._lib.PQerrorMessage(self._handle) or b"").decode(errors="replace").split())

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        """Run one statement, with ``params`` for its ``$1``..``$n``; its rows."""
        with self._turn:
            return self._execute(sql, params)

    def _execute(self, sql: str, params: Sequence[object]) -> Rows:
        handle = self._open()
        count = len(params)
        oids = tuple(type_of(param) for param in params)
        types = (c_uint * max(count, 1))(*oids)
        values = (c_char_p * max(count, 1))(*[text_of(param) for param in params])
        name = self._prepared.get((sql, oids)) or self._prepare(sql, oids, types)
        if name:
            sent = self._lib.PQsendQueryPrepared(handle, name, count, values, None, None, 0)
        else:
            sent = self._lib.PQsendQueryParams(handle, sql.encode(), count, types, values, None, None, 0)
        if not sent:
            raise error_for(self.error_message(), None, connected=self.ok, sent=False)
        return self._results()

    def _prepare(self, sql: str, oids: tuple[int, ...], types: Any) -> bytes | None:
        """The name of the statement prepared, when it is run often enough to be worth it (else None).
        The parameters' types are part of what is prepared: the same SQL with other ones is another."""
        key = (sql, oids)
        runs = self._runs[key] = self._runs.get(key, 0) + 1
        if runs < PREPARE_AFTER or len(self._prepared) >= MAX_PREPARED:
            if len(self._runs) > 10 * MAX_PREPARED:
                self._runs.clear()
            return None
        name = f"ds_{len(self._prepared)}".encode()
        if not self._lib.PQsendPrepare(self._handle, name, sql.encode(), len(oids), types):
            raise error_for(self.error_message(), None, connected=self.ok, sent=False)
        try:
            self._results()
        except Unavailable as err:
            err.sent = False  # only the statement's preparation went out
            raise
        self._prepared[key] = name
        return name

    def run(self, sql: str) -> Rows:
        """Run statements without parameters (``;`` between them) in one round trip; the last one's rows."""
        with self._turn:
            handle = self._open()
            if not self._lib.PQsendQuery(handle, sql.encode()):
                raise error_for(self.error_message(), None, connected=self.ok, sent=False)
            return self._results()

    def _open(self) -> int:
        if self._handle is None:
            raise Unavailable("the connection is closed", lost=True, sent=False)
        return self._handle

    def _results(self) -> Rows:
        """Every result of what was sent, read to the end (libpq's rule); the last one's rows, or the
        first failure."""
        lib, handle = self._lib, self._handle
        rows: Rows | None = None
        failed: tuple[str, str | None] | None = None
        while result := lib.PQgetResult(handle):
            try:
                status = lib.PQresultStatus(result)
                if failed is not None:
                    continue
                if status in (PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY):
                    rows = self._rows(result)
                else:
                    text = lib.PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY)
                    text = text or lib.PQresultErrorMessage(result) or b""  # libpq's own: no fields
                    message = text.decode(errors="replace")
                    sqlstate = lib.PQresultErrorField(result, PG_DIAG_SQLSTATE)
                    failed = (message, sqlstate.decode() if sqlstate else None)
            finally:
                lib.PQclear(result)
        if failed is not None:
            raise error_for(failed[0], failed[1], connected=self.ok)
        if rows is None:  # no result at all: the connection went
            raise error_for(self.error_message(), None, connected=False)
        return rows

    def _rows(self, result: int) -> Rows:
        lib = self._lib
        count = lib.PQntuples(result)
        columns = range(lib.PQnfields(result))
        converters = [converter(lib.PQftype(result, column)) for column in columns]
        getvalue, isnull = lib.PQgetvalue, lib.PQgetisnull
        rows = [
            tuple(
                None if isnull(result, row, column) else converters[column](getvalue(result, row, column))
                for column in columns
            )
            for row in range(count)
        ]
        affected = lib.PQcmdTuples(result)
        return Rows(rows, int(affected) if affected else -1)

    # -- notifications (LISTEN) ----------------------------------------------------------------------

    def fileno(self) -> int:
        """The connection's socket (-1 when there is none)."""
        return int(self._lib.PQsocket(self._handle)) if self._handle is not None else -1

    def consume(self) -> bool:
        """Read what the server sent (call when the socket is readable); False when the connection failed."""
        return self._handle is not None and bool(self._lib.PQconsumeInput(self._handle))

    def notifications(self) -> list[tuple[str, str]]:
        """The notifications read so far: (channel, payload) each."""
        lib, found = self._lib, []
        while self._handle is not None and (pointer := lib.PQnotifies(self._handle)):
            try:
                notify = _Notify.from_address(pointer)
                found.append(((notify.relname or b"").decode(), (notify.extra or b"").decode()))
            finally:
                lib.PQfreemem(pointer)
        return found

    def close(self) -> None:
        with self._turn:  # not under another thread's statement
            handle, self._handle = self._handle, None
        if handle is not None:
            self._lib.PQfinish(handle)
