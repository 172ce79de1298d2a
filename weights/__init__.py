"""Shipped model weights (package data: ``facemark.weights``). See MODEL_CARD.md."""
