"""Byte-level BPE training (`bpe`) and packing of token ids into fixed-length rows (`pack`)."""
