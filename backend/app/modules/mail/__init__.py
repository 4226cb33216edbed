"""Outgoing mail: SMTP when configured, the log in development."""
