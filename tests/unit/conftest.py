"""The unit tests: pure and fast, no daemon, no node host, no server.

They need nothing beyond `home` (tests/fixtures/env.py), a private
SKYTUI_HOME for the modules that read paths; this file only says so.
"""
