"""The HTTP registry: OCI Distribution Spec v1.1 routes on aiohttp."""
