"""Remote hosts: dev-sessions on another machine, driven through its own command line.

``ssh.py`` is the transport (issue 12). Nothing here is imported by a command that does not use a
remote host.
"""
