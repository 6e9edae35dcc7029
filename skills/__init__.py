"""The skills dev-sessions installs for Claude Code and Codex (each directory holds a SKILL.md)."""
