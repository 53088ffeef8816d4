"""Tiny hub checkpoints built in a folder, for tests: a sentence-transformers model, a CLIP and a
CLAP, each with random weights and a tokenizer written by hand, saved with the libraries' own
`save` / `save_pretrained`, so omnibind loads them through its registry exactly as a downloaded
model. Shared by tests/test_hub_backbones.py and tests/test_compose.py. Nothing touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

PROJ = 16  # projection_dim of the tiny CLIP and CLAP
ST_DIM = 32  # hidden size of the tiny BERT behind the sentence-transformers model
CLAP_RATE = 16_000  # the tiny CLAP's feature extractor: 16 kHz, windows of 1 s


# --------------------------------------------------------------------------------------------
# Tiny tokenizers


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins that byte-level BPE uses for raw bytes (GPT-2's table)."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _write_bpe(folder: Path, vocab: list[str], merges: list[tuple[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _clip_tokenizer(folder: Path):
    """CLIP's byte-level BPE: every byte alone and word-final (`</w>`), a few merges, specials."""
    from transformers import CLIPTokenizer

    chars = _byte_alphabet()
    merges = [("r", "e"), ("re", "d</w>"), ("c", "i"), ("ci", "r"), ("o", "n</w>")]
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer.from_pretrained(str(_write_bpe(folder, vocab, merges)))


def _roberta_tokenizer(folder: Path):
    """RoBERTa's byte-level BPE (spaces become `Ġ`), as CLAP's text tower uses."""
    from transformers import RobertaTokenizer

    merges = [("Ġ", "t"), ("Ġt", "o"), ("Ġto", "n"), ("Ġton", "e"), ("Ġ", "a")]
    vocab = ["<s>", "<pad>", "</s>", "<unk>"] + _byte_alphabet() + ["".join(m) for m in merges] + ["<mask>"]
    return RobertaTokenizer.from_pretrained(str(_write_bpe(folder, vocab, merges)))


# --------------------------------------------------------------------------------------------
# Tiny models


def build_st(root: Path) -> str:
    """A tiny sentence-transformers model (BERT + mean pooling) saved under `root`; its path."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer

    bert = root / "bert"
    bert.mkdir(parents=True)
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] a the red blue circle square on white page dog cat and ##s ##ing".split()
    (bert / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast.from_pretrained(str(bert))
    assert tokenizer("red circles")["input_ids"] == [2, 7, 9, 17, 3]  # the hand-written vocab is in use
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words), hidden_size=ST_DIM, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(bert)
    tokenizer.save_pretrained(bert)
    transformer = Transformer(str(bert), max_seq_length=48)
    pooling = Pooling(ST_DIM, "mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cpu")
    out = root / "model"
    model.save(str(out))
    return str(out)


def build_clip(root: Path) -> str:
    """A tiny CLIP (random weights, hand-written tokenizer) saved under `root`; its path."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = _clip_tokenizer(root / "tokenizer")
    n = len(tokenizer)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=24, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8,
        ),
        projection_dim=PROJ,
    )
    out = root / "model"
    CLIPModel(config).save_pretrained(out)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return str(out)


def build_clap(root: Path, fused: bool = False) -> str:
    """A tiny CLAP (HTSAT audio tower, RoBERTa text tower) saved under `root`; its path."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    tokenizer = _roberta_tokenizer(root / "tokenizer")
    torch.manual_seed(0)
    config = ClapConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=26,
        ),
        # HTSAT audio tower: 16 mel bins folded into a 64x64 "image", 4x4 patches, 2 Swin stages.
        audio_config=dict(
            num_mel_bins=16, spec_size=64, patch_size=4, patch_stride=(4, 4), window_size=4, depths=(1, 1),
            num_attention_heads=(2, 4), patch_embeds_hidden_size=16, hidden_size=32, enable_fusion=fused,
        ),
        projection_dim=PROJ,
    )
    out = root / "model"
    ClapModel(config).save_pretrained(out)
    features = ClapFeatureExtractor(
        feature_size=16, sampling_rate=CLAP_RATE, hop_length=160, max_length_s=1, fft_window_size=400,
        frequency_max=8000, truncation="fusion" if fused else "rand_trunc", padding="repeatpad",
    )
    ClapProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)
    return str(out)
