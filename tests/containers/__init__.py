"""The container tier (testcontainers): see conftest.py."""
