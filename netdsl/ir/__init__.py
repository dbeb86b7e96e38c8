"""The IR: tensor types and the graph of layer nodes that every target reads."""
