"""Claude Code sessions: the real ``claude`` CLI in tmux, read through its JSONL transcript."""
