"""Sandboxes: the backend interface, and the Docker backend behind it."""
