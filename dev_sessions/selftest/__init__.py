"""``dev-sessions selftest``, and what it shares with the test suite to run the real agent CLIs offline.

``fakes/`` holds the fake model servers, ``offline`` the isolated homes that point the agent CLIs at
them. The command itself is ``runner`` (its entry point), ``sandbox`` (the isolated world it makes and
removes), ``checks`` (the capabilities checked in it) and ``report`` (what comes back). Imported by no
other command (the runner only when ``selftest`` runs); the fakes and homes use the standard library
only.
"""
