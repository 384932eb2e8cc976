"""Many images at once: collections, the top-k index over a collection, patches, embeddings."""
