"""The web UI: an unprivileged Flask app that relays the daemon's state stream."""
