"""The compare grid: several maps of one picture side by side (layers × classes × methods)."""
