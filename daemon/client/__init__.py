"""Client side of the ZeroMQ API: the message schema, a typed client and the CLI.

The web UI and scripts import only this package, never the daemon.
"""
