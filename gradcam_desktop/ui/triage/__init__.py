"""Triage: a labelled folder's predictions as a table and a confusion matrix, maps of the mistakes."""
