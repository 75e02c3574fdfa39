"""The pure OCI model: digests, names, media types, descriptors, manifests, errors. No I/O."""
