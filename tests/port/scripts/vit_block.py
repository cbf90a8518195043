"""A Vision Transformer in miniature, in PyTorch's words: patches embedded by a Conv2d whose
stride is the patch size, a class token and learnt position embeddings, pre-norm blocks of
LayerNorm, nn.MultiheadAttention and a GELU MLP with residual connections, trained with AdamW
and a cosine schedule.

The attention is given masks of each kind: a key_padding_mask that hides the patches of an
image's blank border (bool, (N, S)), and an attn_mask that biases each token towards its
neighbours (float, (N * num_heads, S, S)), or, for a causal variant, forbids later tokens
(bool, (S, S), from torch.triu).
"""

import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

IMAGE, PATCH, DIM, HEADS, DEPTH = 16, 4, 32, 4, 2


class PatchEmbedding(nn.Module):
    def __init__(self, in_channels=1, patch_size=PATCH, embed_dim=DIM):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (N, num_patches, embed_dim)


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x, key_padding_mask=None, attn_mask=None):
        h = self.norm1(x)
        attended, weights = self.attn(h, h, h, key_padding_mask=key_padding_mask, attn_mask=attn_mask)
        x = x + attended
        x = x + self.mlp(self.norm2(x))
        return x, weights


class TinyViT(nn.Module):
    def __init__(self, num_classes=2):
        super().__init__()
        self.patch_embed = PatchEmbedding()
        num_patches = (IMAGE // PATCH) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, DIM))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList([Block(DIM, HEADS) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, num_classes)

    def forward(self, x, key_padding_mask=None, attn_mask=None):
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        for block in self.blocks:
            x, weights = block(x, key_padding_mask, attn_mask)
        return self.head(self.norm(x[:, 0])), weights


def build():
    return TinyViT()


def border_padding_mask(images):
    """True for the patches that are blank (all zero): keys no token should attend to."""
    patches = F.avg_pool2d(images.abs(), PATCH).flatten(1)  # (N, num_patches)
    blank = patches == 0
    return torch.cat((torch.zeros(images.shape[0], 1, dtype=torch.bool), blank), dim=1)


def neighbour_bias(batch, tokens):
    """-0.1 per step of distance between two tokens, for each image and head."""
    positions = torch.arange(tokens).float()
    bias = -0.1 * (positions.unsqueeze(0) - positions.unsqueeze(1)).abs()
    return bias.expand(batch * HEADS, tokens, tokens)


def run(model, workdir, epochs=2):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((24, 1, IMAGE, IMAGE)).astype(np.float32)
    images[12:, :, :, -PATCH:] = 0  # half the images have a blank right-hand column of patches
    labels = (images[:, 0, 4:12, 4:12].mean(axis=(1, 2)) > 0).astype(np.int64)
    loader = DataLoader(TensorDataset(torch.from_numpy(images), torch.from_numpy(labels)), batch_size=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))

    seen = {"loss": [], "lr": []}
    model.train()
    for epoch in range(epochs):
        for x, y in loader:
            tokens = x.shape[-1] // PATCH * (x.shape[-2] // PATCH) + 1
            # PyTorch asks for masks of one type together: the padding mask as -inf where True.
            padding = torch.zeros(x.shape[0], tokens).masked_fill(border_padding_mask(x), float("-inf"))
            logits, _ = model(x, key_padding_mask=padding, attn_mask=neighbour_bias(len(x), tokens))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen["loss"].append(loss.item())
            seen["lr"].append(scheduler.get_last_lr()[0])
        print(f"epoch {epoch}: loss {seen['loss'][-1]:.4f}")

    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(images[10:14])  # two images with a blank border, two without
        padding = border_padding_mask(x)
        logits, weights = model(x, key_padding_mask=padding)
        seen["logits"] = logits.tolist()
        seen["weight_on_blank_patches"] = weights.masked_fill(~padding.unsqueeze(1), 0.0).sum().item()
        tokens = (IMAGE // PATCH) ** 2 + 1
        causal = torch.triu(torch.ones(tokens, tokens, dtype=torch.bool), diagonal=1)
        _, weights = model(x, attn_mask=causal)
        seen["causal_last_token_weights"] = weights[:, -1].tolist()
        seen["causal_weight_above_diagonal"] = weights.masked_fill(~causal, 0.0).sum().item()
    return seen


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as workdir:
        print(run(build(), workdir))
