"""Batch predictions: the splitter, the chunk workers and the dead-letter handler (issue 4)."""
