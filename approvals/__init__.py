"""The signoff core: requests, policies, decisions, deadlines, audit and outbox.

This package knows no chat platform and no web framework. Adapters and the application
build on it; it never imports them.
"""
