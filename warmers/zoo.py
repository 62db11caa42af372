"""Model factories for the example fleet and the GPU benchmark, importable as ``warmers.zoo:function``.

Every factory builds its module from code, so it can run under ``torch.device("meta")`` and receive its
weights by assignment (``load_state_dict(..., assign=True)``). No module keeps non-persistent buffers or
tied parameters: everything it needs is in its state dict, and nothing stays on the meta device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Module):
    """A pre-norm transformer block; ``causal`` selects decoder (masked) or encoder attention."""

    def __init__(self, d_model: int, n_heads: int, *, causal: bool) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.causal = causal
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.out = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(width, dim=2)
        heads = (batch, seq, self.n_heads, width // self.n_heads)
        q, k, v = (t.view(heads).transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        x = x + self.proj(att.transpose(1, 2).reshape(batch, seq, width))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CausalLM(nn.Module):
    """A GPT-style decoder returning the next-token logits of the last position, ``[batch, vocab]``.

    The output projection reuses the token embedding in ``forward`` (GPT-2's tying) rather than
    sharing a parameter, so weight assignment cannot break the tie.
    """

    def __init__(self, *, vocab: int, d_model: int, n_layers: int, n_heads: int, max_seq: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_seq, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, causal=True) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tok(tokens) + self.pos(positions)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x[:, -1, :]) @ self.tok.weight.T


class Encoder(nn.Module):
    """A bidirectional encoder returning L2-normalised mean-pooled embeddings, ``[batch, d_out]``."""

    def __init__(self, *, vocab: int, d_model: int, n_layers: int, n_heads: int, max_seq: int, d_out: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_seq, d_model)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, causal=False) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, d_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tok(tokens) + self.pos(positions)
        for block in self.blocks:
            x = block(x)
        return F.normalize(self.head(self.ln_f(x).mean(dim=1)), dim=-1)


class Reranker(nn.Module):
    """Scores query/document embedding pairs: ``query [batch, d]``, ``document [batch, d]`` -> ``[batch]``."""

    def __init__(self, *, d_in: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(3 * d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1)
        )

    def forward(self, query: torch.Tensor, document: torch.Tensor) -> torch.Tensor:
        features = torch.cat([query, document, query * document], dim=-1)
        return self.mlp(features).squeeze(-1)


class LineRecognizer(nn.Module):
    """A small CRNN-style OCR head: image ``[batch, 3, 32, W]`` -> per-column logits ``[batch, W/4, classes]``."""

    def __init__(self, *, classes: int, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.classifier = nn.Linear(2 * width, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        columns = self.features(image).mean(dim=2).transpose(1, 2)  # [batch, W/4, channels]
        return self.classifier(columns)


def chat_small(
    vocab: int = 512, d_model: int = 128, n_layers: int = 2, n_heads: int = 4, max_seq: int = 128
) -> CausalLM:
    """The example fleet's ``chat-small``: a 0.5M-parameter causal transformer."""
    return CausalLM(vocab=vocab, d_model=d_model, n_layers=n_layers, n_heads=n_heads, max_seq=max_seq)


def gpt2_medium(vocab: int = 50257, max_seq: int = 1024) -> CausalLM:
    """A GPT-2-medium-shaped decoder (24 layers, width 1024, 16 heads; 355M parameters), built from code."""
    return CausalLM(vocab=vocab, d_model=1024, n_layers=24, n_heads=16, max_seq=max_seq)


def embedder(
    vocab: int = 1000, d_model: int = 64, n_layers: int = 2, n_heads: int = 4, max_seq: int = 64, d_out: int = 64
) -> Encoder:
    """The example fleet's ``embedder``: a small bidirectional encoder over token ids."""
    return Encoder(vocab=vocab, d_model=d_model, n_layers=n_layers, n_heads=n_heads, max_seq=max_seq, d_out=d_out)


def reranker(d_in: int = 64, hidden: int = 128) -> Reranker:
    """The example fleet's ``reranker``: an MLP over query/document embedding pairs."""
    return Reranker(d_in=d_in, hidden=hidden)


def ocr_longtail(classes: int = 40, width: int = 16) -> LineRecognizer:
    """The example fleet's ``ocr-longtail``: a small conv net over text-line images."""
    return LineRecognizer(classes=classes, width=width)
