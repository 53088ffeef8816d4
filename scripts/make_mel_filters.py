"""Regenerate omnibind/data/aisfx_mel_filters.npy with librosa (the aisfx training front end).

aisfx computes 96 HTK mel bands over 0-22050 Hz from a 2048-point STFT at 44.1 kHz, with
L1-normalised filters. Shipping the matrix lets omnibind compute the same spectrogram with
torch.stft and skip librosa's multi-second import; tests/test_backbones.py checks the two agree.
"""

from pathlib import Path

import librosa
import numpy as np

out = Path(__file__).resolve().parents[1] / "omnibind" / "data" / "aisfx_mel_filters.npy"
mel = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=96, fmin=0.0, fmax=22050.0, htk=True, norm=1.0)
np.save(out, mel.astype(np.float32))
print(out, mel.shape)
