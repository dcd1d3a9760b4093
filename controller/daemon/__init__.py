"""The controller daemon: its loop and its control API on a Unix socket. Imports services,
gateway, store and config.
"""
