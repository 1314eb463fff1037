"""Scenes, readers and writers, dataset importers, class tables, synthetic scenes."""
