"""The admin HTTP API (aiohttp): its routes (``app``), the Prometheus metrics and the
OpenAPI document.
"""
