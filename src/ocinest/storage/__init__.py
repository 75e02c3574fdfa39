"""Storage: BlobStore (content) and MetaStore (metadata) behind small protocols.

All durability and atomicity lives here.
"""
