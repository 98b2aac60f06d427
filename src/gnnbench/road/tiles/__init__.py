"""Satellite imagery of every intersection: sources, crops, shard storage and image embeddings."""
