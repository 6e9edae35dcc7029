"""What a request may do, given who it acts for: the gateway's rules, apart from its sockets.

The owner's token acts as anyone, as the user at the host's shell would; an identity it leaves out is
``user``, never the gateway's own environment. A scoped token acts as its one name:

* every identity argument (who sends, reads, joins, creates) is its name: left out, it is filled in;
  another name is refused;
* it reaches only the sessions it created (their parent is its name) and the session of its name;
  listing and killing in bulk see only those;
* it reads only messages it sent or received (threads, status, search, feed are filtered);
* its paths lie under its own roots as well as the gateway's;
* it neither prunes the messages of everyone nor reads the store's counts (``prune``, ``stats``).

No token creates a session on a remote host (``create --host``): that would log in with the owner's
ssh keys, to a path no served root covers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dev_sessions.api import Call
from dev_sessions.errors import Forbidden
from dev_sessions.gateway.tokens import Principal

USER = "user"
OWNER_ONLY = frozenset({"messages.prune", "messages.stats"})
"""Calls about everyone's messages, which a scoped token may not make."""


def admit(
    principal: Principal,
    call: str,
    spec: Call,
    args: Mapping[str, Any],
    parent_of: Callable[[str], str | None],
) -> dict[str, Any]:
    """The arguments to run ``call`` with for ``principal``, or :class:`Forbidden`.

    ``parent_of`` gives the recorded parent of a session id (None for an unknown id, which the call
    itself will then report as not found).
    """
    admitted = dict(args)
    if call == "sessions.create" and admitted.get("host") is not None:
        # The gateway would log in to that host with the owner's ssh keys, on a path no root here covers.
        raise Forbidden("create --host: not through the gateway; run it on the host itself")
    name = principal.name
    if spec.identity is not None:
        given = admitted.get(spec.identity)
        if given is None:
            admitted[spec.identity] = USER if name is None else name
        elif name is not None and given != name:
            raise Forbidden(f"{call}: this token acts as {name} only, not as {given}")
    if name is None:
        return admitted
    if call == "messages.register" and admitted.get("name") != name:
        raise Forbidden(f"{call}: this token acts as {name} only")
    if call in OWNER_ONLY:
        raise Forbidden(f"{call}: only with the owner's token")
    if spec.owns is not None:
        wanted = admitted.get(spec.owns)
        ids: Sequence[Any] = wanted if isinstance(wanted, list) else [wanted]
        for session_id in ids:
            if isinstance(session_id, str) and session_id != name:
                parent = parent_of(session_id)
                if parent is not None and parent != name:
                    raise Forbidden(
                        f"{session_id}: not a session of {name} (this token reaches only its own)"
                    )
    for private in spec.scope:
        admitted[private] = name
    return admitted
