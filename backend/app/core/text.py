"""Text from outside (a provider's answer) made storable on every engine."""


def storable(text: str) -> str:
    """Without NUL characters (PostgreSQL refuses them in text) and with unpaired
    surrogates (which no UTF-8 column holds) replaced."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
