"""sentence-transformers' `encode` interface over a space, so code written for a
`SentenceTransformer` takes an omnibind space unchanged (issue 19, interoperability).

The return types follow sentence-transformers: one input (a string, a Path) gives a 1-D vector,
a list gives a 2-D array; `convert_to_tensor=True` gives a torch tensor, `convert_to_numpy=False`
a list of 1-D tensors. Vectors are the space's: L2-normalised (so `normalize_embeddings` changes
nothing), any modality, `truncate_dim` keeps a Matryoshka prefix. omnibind has no query or
document prompts, so `encode_query` and `encode_document` are `encode`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def encode(space: Any, sentences: Any, single: bool, prompt_name: str | None = None, prompt: str | None = None,
           batch_size: int = 32, show_progress_bar: bool | None = None,
           output_value: str | None = "sentence_embedding", precision: str = "float32",
           convert_to_numpy: bool = True, convert_to_tensor: bool = False, device: str | None = None,
           normalize_embeddings: bool = False, truncate_dim: int | None = None, **kwargs: Any) -> Any:
    """`SentenceTransformer.encode` semantics over `space.embed` (a Space; `single`: whether
    `sentences` is one input, by the space's own rule). See the module docstring."""
    unsupported = {"prompt_name": prompt_name, "prompt": prompt, "device": device, **kwargs}
    if any(v is not None for v in unsupported.values()):
        names = ", ".join(k for k, v in unsupported.items() if v is not None)
        raise TypeError(f"omnibind spaces do not take {names} (no prompts; the device is chosen per "
                        f"process: omnibind.device.configure)")
    if output_value != "sentence_embedding" or precision != "float32":
        raise ValueError("omnibind spaces give float32 sentence embeddings only "
                         f"(output_value={output_value!r}, precision={precision!r})")
    items = [sentences] if single else list(sentences)
    vectors = space.embed(items, batch_size=batch_size, dim=truncate_dim, show_progress=bool(show_progress_bar))
    vectors = np.asarray(vectors, dtype=np.float32)
    out = vectors[0] if single else vectors
    if convert_to_tensor:
        import torch

        return torch.from_numpy(np.ascontiguousarray(out))
    if not convert_to_numpy:
        import torch

        return torch.from_numpy(out.copy()) if single else [torch.from_numpy(v.copy()) for v in out]
    return out
