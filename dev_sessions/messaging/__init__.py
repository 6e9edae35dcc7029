"""Messaging between agents: direct messages, threads, spaces, read state, delivery into sessions."""
