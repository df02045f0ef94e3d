"""A fake Analytics API (API.md) on loopback, for tests, the demo and benchmarks."""

from fake_api.server import FakeAPI, serve

__all__ = ["FakeAPI", "serve"]
