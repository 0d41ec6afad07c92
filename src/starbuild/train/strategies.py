"""Distributed strategies built from conf/trainer/ (Lightning's own, set up for StarCoder2)."""

from __future__ import annotations

from lightning.pytorch.strategies import FSDPStrategy

from starbuild.model.starcoder2 import DecoderLayer


def fsdp(sharding_strategy: str = "FULL_SHARD", activation_checkpointing: bool = False,
         state_dict_type: str = "full") -> FSDPStrategy:
    """Lightning's FSDPStrategy sharding (and optionally recomputing) the network one decoder layer at a time."""
    layer = {DecoderLayer}
    return FSDPStrategy(auto_wrap_policy=layer, sharding_strategy=sharding_strategy, state_dict_type=state_dict_type,
                        activation_checkpointing_policy=layer if activation_checkpointing else None)
