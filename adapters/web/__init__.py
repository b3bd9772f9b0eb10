"""The web inbox: the built-in approval channel, served as plain HTML pages."""

from adapters.web.inbox import WebInbox

__all__ = ["WebInbox"]
