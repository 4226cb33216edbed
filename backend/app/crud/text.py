def contains_pattern(text: str) -> str:
    """A case-insensitive LIKE pattern that matches `text` literally (escape "\\")."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
