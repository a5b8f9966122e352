#!/usr/bin/env bash
# The figures owed for a machine with an NVIDIA GPU, in one run of at most 8 minutes (each step
# has its own timeout; they add up to 480 s):
#
#   1. scan at 16 chunks and at every chunk against the decode limit (goal ≥ 90 %), with the
#      GPU's busy share                                         (benchmarks/scan.py --device cuda)
#   2. fp16 against fp32 on real tracks: top-5 shared, max |Δp|  (scan.py --precision fp16 --vs-torch)
#   3. two models in one scan, if `tagger scan` takes several models (issue 20)
#   4. the training loop's loader wait at batch 16               (benchmarks/train.py)
#
#   bash benchmarks/gpu_check.sh [--dry-run] [CORPUS]
#
# CORPUS: a folder of real music (default: the three --small packages of
# ../shared/corpus/fetch-real-music.sh under ~/.cache/tagger-corpus/real-music; without them, 62
# generated tracks, and the figures say so). --dry-run runs every step on the CPU with a few
# tracks and tiny settings: it checks that the script runs end to end, its figures mean nothing.
# Record the figures in benchmarks/RESULTS.md with the GPU's name (nvidia-smi -L).
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
if [[ ${1:-} == --dry-run ]]; then dry=1; shift; fi
corpus=${1:-}
real=$HOME/.cache/tagger-corpus/real-music
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ -z $corpus ]]; then
  if [[ -d $real/wesnoth-1.16-music && -d $real/hyperrogue-music && -d $real/asc-music ]]; then
    mkdir "$work/small"
    for p in wesnoth-1.16-music hyperrogue-music asc-music; do ln -s "$real/$p" "$work/small/$p"; done
    corpus=$work/small
  else
    echo "== no real corpus here: generating 62 music-like tracks of 90 s (figures on generated audio)"
    corpus=$work/generated
    python - "$corpus" <<'EOF'
import sys
from pathlib import Path
import numpy as np, soundfile as sf
sys.path.insert(0, "tests")
from conftest import music_like
out = Path(sys.argv[1]); out.mkdir()
for i in range(62):
    sf.write(out / f"t{i:02d}.ogg", music_like(90.0, 44100, i), 44100, subtype="VORBIS")
EOF
  fi
fi

if ((dry)); then
  mkdir -p "$work/few"
  find -L "$corpus" -type f \( -name '*.ogg' -o -name '*.mp3' -o -name '*.flac' \) | sort | head -4 |
    while read -r f; do ln -s "$f" "$work/few/$(basename "$f")"; done
  corpus=$work/few
  device=cpu fp16=fp32 train=(--device cpu --clips 64 --unique 8 --steps 2 --warmup 1 --batch-sizes 16 --workers 2
                              --valid-clips 8)
  echo "== DRY RUN on the CPU: the steps run end to end, the figures mean nothing"
else
  nvidia-smi -L
  device=cuda fp16=fp16 train=(--device cuda --batch-sizes 16 --steps 40 --warmup 10)
fi
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== 1. scan, 16 chunks, against the decode limit; device busy share"
timeout 100 python benchmarks/scan.py "$corpus" --device "$device" --chunks 16
echo "== 1. scan, every chunk"
timeout 100 python benchmarks/scan.py "$corpus" --device "$device" --chunks all
echo "== 2. $fp16 against PyTorch fp32 on the CPU, per track (16 chunks)"
timeout 120 python benchmarks/scan.py "$corpus" --device "$device" --precision "$fp16" --vs-torch --skip-decode
echo "== 3. two models in one scan"
if python -m tagger scan --help | grep -q -- "--models\|several models\|comma-separated models"; then
  timeout 60 python -m tagger scan "$corpus" --db "$work/two.db" --device "$device" \
    --model musicnn-vgg-mtt,musicnn-mtt | tail -3
else
  echo "not measured: tagger scan takes one model (issue 20 has not landed)"
fi
echo "== 4. training loop, loader wait at batch 16"
timeout 100 python benchmarks/train.py "${train[@]}" | tail -6
