"""Exchanges beyond direct routing: fanout over SNS topics."""
