"""A local Ionworks-compatible server: the Ionworks HTTP API over SQLite, local files and PyBaMM.

Start it with ``ionworks-prefect sandbox`` (or ``python -m ionworks_sandbox``) and point the official
client at it with ``IONWORKS_API_URL``.
"""
