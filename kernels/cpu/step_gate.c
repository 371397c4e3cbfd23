// CPU ops that keep a training step's decisions on the backend, so that a step needs no read
// back to the host: the update gate (skip and clipping factor from the global gradient norm),
// the poisoning of the gradient by a non-finite local loss, and the gated update of the
// DINO center. The CUDA versions (kernels/cuda/step_gate.cu) do the same arithmetic.
#include "cpu_ops.h"

#include <math.h>

void sd_cpu_step_gate(sd_backend *be, float *gate, float *count, const float *sumsq, float clip,
                      long step) {
  (void)be;
  const float norm = sqrtf(sumsq[0]);
  const int skip = !isfinite(norm);
  float factor = 1.0f;
  if (skip) factor = 0.0f;
  else if (clip > 0.0f && norm > clip) factor = clip / norm;
  gate[0] = factor;
  gate[1] = norm;
  if (skip) {
    count[0] += 1.0f;
    count[1] += 1.0f;
    count[2] = (float)step;
  } else {
    count[1] = 0.0f;
  }
}

void sd_cpu_poison_nonfinite(sd_backend *be, float *x, const float *v, int n) {
  (void)be;
  for (int i = 0; i < n; i++)
    if (!isfinite(v[i])) x[0] = NAN;
}

// The CPU multiplies the fp32 weights: no copies to keep.
void sd_cpu_weights_register(sd_backend *be, const float *w, size_t n) {
  (void)be, (void)w, (void)n;
}
void sd_cpu_weights_changed(sd_backend *be, const float *w, size_t n) {
  (void)be, (void)w, (void)n;
}

void sd_cpu_center_update(sd_backend *be, float *center, const float *sum, float inv_count,
                          float momentum, const float *gate, int P) {
  (void)be;
  if (!(gate[0] > 0.0f)) return;
  for (int k = 0; k < P; k++) {
    const float mean = sum[k] * inv_count;
    center[k] = momentum * center[k] + (1.0f - momentum) * mean;
  }
}
