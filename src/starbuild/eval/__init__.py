"""Evaluation of the exported model: validation loss and bits per byte on the val split."""
