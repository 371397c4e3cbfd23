# Sourced by the tests of the SD-VAE tools (test_data_prep_imagenet.sh, test_decode_latents.sh):
# the Python environment they need and a tiny randomly initialised AutoencoderKL (2 down blocks:
# factor 2, 4 latent channels, 32 px), all on CPU and offline.
#   require_vae_deps          exit 77 (skip) with the reason unless the system python3 imports
#                             numpy, h5py, torch, Pillow, safetensors and diffusers (.pydeps)
#   make_tiny_vae DIR SEED G  save_pretrained into DIR, weights from torch seed SEED, the
#                             decoder's conv_out weight times G (G > 1 widens its output range)
PY=/usr/bin/python3
export SD_PYDEPS="$ROOT/.pydeps"
export HF_HUB_OFFLINE=1  # everything is local; never reach for the hub

require_vae_deps() {
  local why
  if ! why=$($PY - <<'PYEOF' 2>&1
import os, sys
sys.path.insert(0, os.environ["SD_PYDEPS"])
import numpy, h5py, torch, PIL, safetensors.torch, diffusers
PYEOF
  ); then
    echo "SKIP: numpy/h5py/torch/diffusers/Pillow not importable by $PY with $SD_PYDEPS (run launch/install-deps.sh): ${why##*$'\n'}"
    exit 77
  fi
}

make_tiny_vae() {
  $PY - "$1" "$2" "$3" <<'PYEOF'
import os, sys
sys.path.insert(0, os.environ["SD_PYDEPS"])
import torch, safetensors.torch  # diffusers saves through safetensors.torch
from diffusers import AutoencoderKL
out, seed, gain = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
torch.manual_seed(seed)
vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                    up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                    layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=32)
if gain != 1.0:
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(gain)
vae.save_pretrained(out)
PYEOF
}
