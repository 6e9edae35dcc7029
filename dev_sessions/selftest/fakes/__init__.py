"""Fake model servers (pure standard library) that the real agent CLIs can run offline against.

``anthropic`` serves the Messages API for Claude Code, ``openai_responses`` the Responses API for
Codex; both echo the prompt unless a marker in it picks another behaviour. ``dev-sessions selftest``
and the test suite use the same code.
"""
