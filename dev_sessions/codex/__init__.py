"""Codex sessions: threads on one shared codex app-server, reached through the Codex bridge."""
