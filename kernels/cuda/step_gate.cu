// CUDA versions of a step's decisions kept on the device (kernels/cpu/step_gate.c is the
// reference, ops.h the contract): the update gate from the global gradient norm, the
// poisoning of the gradient by a non-finite local loss, and the gated DINO center update.
// Each is one tiny launch on the backend stream and nothing is read back to the host.
#include "cuda_internal.h"

#include <math.h>

// One thread: gate (2) and count (3) from sumsq (1).
__global__ void step_gate_kernel(float *gate, float *count, const float *sumsq, float clip,
                                 float step) {
  const float norm = sqrtf(sumsq[0]);
  const bool skip = !isfinite(norm);
  float factor = 1.0f;
  if (skip) factor = 0.0f;
  else if (clip > 0.0f && norm > clip) factor = clip / norm;
  gate[0] = factor;
  gate[1] = norm;
  if (skip) {
    count[0] += 1.0f;
    count[1] += 1.0f;
    count[2] = step;
  } else {
    count[1] = 0.0f;
  }
}

// One thread: x[0] = NaN when any of v (n) is not finite.
__global__ void poison_nonfinite_kernel(float *x, const float *v, int n) {
  for (int i = 0; i < n; i++)
    if (!isfinite(v[i])) x[0] = __int_as_float(0x7fc00000);
}

// center (P) = momentum * center + (1 - momentum) * sum * inv_count, when gate[0] > 0.
__global__ void center_update_kernel(float *center, const float *sum, float inv_count,
                                     float momentum, const float *gate, int P) {
  if (!(gate[0] > 0.0f)) return;
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= P) return;
  const float mean = sum[k] * inv_count;
  center[k] = momentum * center[k] + (1.0f - momentum) * mean;
}

void sd_cuda_step_gate(sd_backend *be, float *gate, float *count, const float *sumsq,
                       float clip, long step) {
  step_gate_kernel<<<1, 1, 0, sd_cuda_st(be)->stream>>>(gate, count, sumsq, clip, (float)step);
  SD_CUDA_LAUNCHED("step_gate_kernel");
}

void sd_cuda_poison_nonfinite(sd_backend *be, float *x, const float *v, int n) {
  if (n <= 0) return;
  poison_nonfinite_kernel<<<1, 1, 0, sd_cuda_st(be)->stream>>>(x, v, n);
  SD_CUDA_LAUNCHED("poison_nonfinite_kernel");
}

void sd_cuda_center_update(sd_backend *be, float *center, const float *sum, float inv_count,
                           float momentum, const float *gate, int P) {
  if (P <= 0) return;
  const unsigned threads = 256, blocks = (unsigned)((P + 255) / 256);
  center_update_kernel<<<blocks, threads, 0, sd_cuda_st(be)->stream>>>(center, sum, inv_count,
                                                                       momentum, gate, P);
  SD_CUDA_LAUNCHED("center_update_kernel");
}
