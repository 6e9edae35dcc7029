"""What ``dev-sessions selftest`` needs to run the real agent CLIs offline, shared with the test suite.

``fakes/`` holds the fake model servers, ``offline`` the isolated homes that point the agent CLIs at
them. Standard library only, and imported by no other command.
"""
