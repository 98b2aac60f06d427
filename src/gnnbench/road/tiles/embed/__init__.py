"""Image embeddings of the crops: models, weights, the batched run and the stored arrays."""
