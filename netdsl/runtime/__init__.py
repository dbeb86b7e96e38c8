"""The runtime: data loading, training plans and the training loop."""
