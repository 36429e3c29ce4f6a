"""The fetcher service."""
