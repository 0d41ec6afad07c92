"""The StarCoder2 decoder in one file: GQA, RoPE, sliding-window attention, LayerNorm with bias,
GELU-tanh MLP, the three dropouts.

Module and parameter names follow transformers' `Starcoder2ForCausalLM`, so a state dict moves
between the two without renaming (see starbuild.model.hf). Attention runs on flash-attn 2 (with its
own sliding window) when it is installed and the tensors are half precision on CUDA, else on
PyTorch's SDPA with an explicit sliding-window mask: the same logits either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

try:  # the `gpu` extra; CUDA only
    from flash_attn import flash_attn_func
except ImportError:  # pragma: no cover - depends on the machine
    flash_attn_func = None

# transformers' name for the MLP's activation (MLP.forward): GELU with the tanh approximation.
HIDDEN_ACT = "gelu_pytorch_tanh"


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network; field names are those of transformers' Starcoder2Config."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rope_theta: float = 100000.0
    norm_epsilon: float = 1e-5
    use_bias: bool = True
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    # Each position attends to itself and the `sliding_window - 1` positions before it (transformers'
    # rule); None: to every earlier position.
    sliding_window: int | None = None
    # Dropout on the attention weights, on each block's two outputs (after o_proj and c_proj), and on
    # the embeddings, as transformers' Starcoder2; only while training.
    attention_dropout: float = 0.0
    residual_dropout: float = 0.0
    embedding_dropout: float = 0.0
    # Not a shape: a local Hugging Face StarCoder2 directory whose weights training starts from
    # (continued pretraining); its shape must be this config's. None: random initialisation.
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"hidden_size / num_attention_heads = {self.head_dim} must be even for RoPE")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"sliding_window must be null or >= 1, got {self.sliding_window}")
        for name in ("attention_dropout", "residual_dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be within [0, 1), got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Build from a `model` config section; `name` (the preset's label) is ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - {"name"})
        if unknown:
            raise ValueError(f"unknown model keys {unknown}; known keys are {sorted(known)}")
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """Plain field values, for JSON."""
        return dataclasses.asdict(self)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Swap the two halves of the last dim and negate the new first half (HF's RoPE layout)."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for rotary position embeddings."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        # Not persistent: derived from the config, and HF's state dict does not carry it either.
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, seq_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of shape (seq_len, head_dim) for positions 0..seq_len-1."""
        positions = torch.arange(seq_len, device=self.inv_freq.device, dtype=torch.float)
        freqs = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout, skipped entirely at p = 0 so it draws no random numbers (training stays bit-identical)."""
    return F.dropout(x, p=p, training=True) if training and p > 0 else x


def sliding_window_mask(seq_len: int, window: int, device: torch.device) -> torch.Tensor:
    """bool (seq_len, seq_len): query i may attend key j when i - window < j <= i."""
    positions = torch.arange(seq_len, device=device)
    distance = positions[:, None] - positions[None, :]
    return (distance >= 0) & (distance < window)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None, dropout_p: float) -> torch.Tensor:
    """Causal attention of (batch, heads, seq, head_dim) q over fewer-headed k, v; output in q's layout."""
    seq_len = q.shape[2]
    if flash_attn_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        # flash-attn wants (batch, seq, heads, head_dim) and handles GQA and the window itself.
        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=dropout_p,
                              causal=True, window_size=(window - 1 if window else -1, 0))
        return out.transpose(1, 2)
    gqa = k.shape[1] != q.shape[1]
    if window is None or seq_len <= window:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, enable_gqa=gqa)
    mask = sliding_window_mask(seq_len, window, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, enable_gqa=gqa)


class Attention(nn.Module):
    """Causal self-attention with grouped key/value heads and an optional sliding window."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.num_attention_heads
        self.n_kv_head = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.window = config.sliding_window
        self.attention_dropout = config.attention_dropout
        self.residual_dropout = config.residual_dropout
        bias = config.use_bias
        self.q_proj = nn.Linear(config.hidden_size, self.n_head * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv_head * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv_head * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, config.hidden_size, bias=bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Attend over the sequence, each position seeing itself and earlier ones (within the window)."""
        batch, seq_len, _ = x.shape
        q = self.q_proj(x).view(batch, seq_len, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq_len, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq_len, self.n_kv_head, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        y = attend(q, k, v, self.window, self.attention_dropout if self.training else 0.0)
        y = self.o_proj(y.transpose(1, 2).reshape(batch, seq_len, self.n_head * self.head_dim))
        return dropout(y, self.residual_dropout, self.training)


class MLP(nn.Module):
    """The plain two-layer feed-forward block (not gated)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.use_bias)
        self.c_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.use_bias)
        self.residual_dropout = config.residual_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """c_fc -> GELU (tanh approximation: HIDDEN_ACT) -> c_proj -> residual dropout."""
        return dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")), self.residual_dropout, self.training)


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.norm_epsilon)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """One transformer block."""
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """Embeddings, the stack of blocks and the final norm (HF's `model.` prefix)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_epsilon)
        self.rotary_emb = RotaryEmbedding(config)
        self.embedding_dropout = config.embedding_dropout

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states of shape (batch, seq_len, hidden_size)."""
        x = dropout(self.embed_tokens(input_ids), self.embedding_dropout, self.training)
        cos, sin = self.rotary_emb(input_ids.shape[1], x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x)


class StarCoder2(nn.Module):
    """The causal language model: token ids in, next-token logits out."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = Decoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def _init_weights(self, module: nn.Module) -> None:
        # The same scheme as HF's Starcoder2PreTrainedModel: N(0, initializer_range), zero bias.
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, seq_len, vocab_size)."""
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence of {input_ids.shape[1]} tokens is longer than "
                f"max_position_embeddings={self.config.max_position_embeddings}"
            )
        return self.lm_head(self.model(input_ids))

    def num_parameters(self) -> int:
        """Trainable parameters, a tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of `logits` against `targets`, in float32."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

