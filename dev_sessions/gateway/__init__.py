"""The gateway: dev-sessions over HTTP for agents in sandboxes (server, client, service install)."""
