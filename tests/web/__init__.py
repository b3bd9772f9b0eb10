"""Tests for the web inbox: HTTP scenarios and headless-browser scenarios."""
