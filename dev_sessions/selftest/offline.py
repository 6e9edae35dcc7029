"""The isolated homes that let the real agent CLIs run offline against the fake model servers.

Claude Code gets a ``HOME`` whose ``.claude.json`` skips every first-run screen and an environment
that sends it to the fake Anthropic server and nowhere else; Codex gets a ``CODEX_HOME`` whose
``config.toml`` makes the fake Responses server its model provider. Nothing here reads or writes the
user's own files: every path is the caller's.
"""

from __future__ import annotations

import json
from pathlib import Path

API_KEY = "sk-ant-fake-0123456789abcdefghijklmnop"


def prepare_claude_home(home: Path, trusted: Path) -> None:
    """Write the files that skip every first-run screen of Claude Code for a home directory.

    Onboarding done, our fake key approved, ``trusted`` (and everything under it) trusted, and the
    bypass-permissions warning accepted.
    """
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    state = {
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [API_KEY[-20:]], "rejected": []},
        "projects": {str(trusted.resolve()): {"hasTrustDialogAccepted": True}},
    }
    (home / ".claude.json").write_text(json.dumps(state))
    (home / ".claude" / "settings.json").write_text(json.dumps({"skipDangerousModePermissionPrompt": True}))


def claude_env(home: Path, model_url: str) -> dict[str, str]:
    """Environment variables that send Claude Code to the fake model server and nowhere else."""
    return {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": model_url,
        "ANTHROPIC_API_KEY": API_KEY,
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }


CODEX_CONFIG = """\
model = "fake-model"
model_provider = "fake"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[features]
plugins = false
apps = false

[analytics]
enabled = false

[model_providers.fake]
name = "fake"
base_url = "{url}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
supports_websockets = false
"""


def prepare_codex_home(codex_home: Path, model_url: str) -> dict[str, str]:
    """A CODEX_HOME whose config sends Codex to the fake Responses server; returns the env to use it.

    The fake is a custom provider: the built-in openai one wastes seconds trying WebSockets first.
    """
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(url=model_url))
    return {"CODEX_HOME": str(codex_home), "OPENAI_API_KEY": "sk-fake"}
