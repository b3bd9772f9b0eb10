"""Approval hooks that agent tools run as commands: each gates a tool call on signoff.

``python -m signoff_client.hooks claude_code`` is Claude Code's PreToolUse hook
(:mod:`signoff_client.hooks.claude_code`); it needs nothing but this client package.
"""
