"""Rendering: pure functions from model objects to rich tables, JSON-able dicts and text."""
