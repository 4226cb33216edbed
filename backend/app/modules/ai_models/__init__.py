"""The model catalog: which models exist, who serves them and what they cost."""
