"""Clip shard format, WebDataset DataModules, dataset converters and synthetic scenes."""
