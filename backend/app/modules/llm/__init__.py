"""Calling language models: an OpenAI-compatible client and fitting a conversation into
a model's context window."""
