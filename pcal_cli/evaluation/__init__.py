"""Confusion matrices, IoU and the evaluation of a round's model."""
