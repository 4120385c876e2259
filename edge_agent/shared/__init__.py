"""Plumbing that both the box and the command post use and neither owns: the one paho client builder and the one
SQLite write transaction."""
