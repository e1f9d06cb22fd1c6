"""Running the server: waitress and its hardening, metrics, the request log, health."""
