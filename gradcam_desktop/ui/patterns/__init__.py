"""The Patterns view: strategy clusters of a labelled folder (issue 19)."""
