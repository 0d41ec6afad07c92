"""The StarCoder2 network (starcoder2.py), its checkpoint files and its transformers export (hf.py)."""
