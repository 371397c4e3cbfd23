// Host -> device uploads without a stream synchronisation: a pinned staging ring. An upload of
// up to kUploadMaxBytes is copied into the ring on the host (so the caller may reuse its
// pageable buffer at once) and queued as an async copy from pinned memory on the backend
// stream; an event marks when the copy has read its slice. A slice is reused only after its
// event has completed, which the host waits for only when the ring wraps onto a copy still in
// flight (one lap, 32 MiB, after it was queued). Larger uploads keep the synchronous path in
// backend_cuda.cu. This removes the per-step synchronisations of the small uploads (noise
// levels, labels, token indices, preconditioning scalars).
#include "cuda_internal.h"

#include <stdlib.h>
#include <string.h>

static const size_t kRingBytes = (size_t)32 << 20;
static const size_t kUploadMaxBytes = (size_t)8 << 20;
enum { kMaxPending = 64 };

typedef struct upload_ring {
  char *host;                  // pinned (kRingBytes)
  size_t cursor;               // the next free byte
  int head, count;             // FIFO of copies in flight, oldest at head
  size_t start[kMaxPending], end[kMaxPending];
  cudaEvent_t ev[kMaxPending];
  long staged, waits;          // uploads staged, host waits on a slice still in flight
} upload_ring;

static upload_ring *ring_get(sd_cuda_state *st) {
  if (st->upload_ring) return (upload_ring *)st->upload_ring;
  upload_ring *r = (upload_ring *)calloc(1, sizeof *r);
  if (!r) return NULL;
  if (cudaMallocHost((void **)&r->host, kRingBytes) != cudaSuccess) {
    (void)cudaGetLastError();  // no pinned memory: keep the synchronous path
    free(r);
    return NULL;
  }
  for (int i = 0; i < kMaxPending; i++)
    SD_CUDA_CHECK(cudaEventCreateWithFlags(&r->ev[i], cudaEventDisableTiming));
  st->upload_ring = r;
  return r;
}

// Drops completed copies from the FIFO; waits for those overlapping [a, b) (and for the
// oldest when the FIFO is full).
static void ring_reclaim(upload_ring *r, size_t a, size_t b) {
  for (int k = 0; k < r->count; k++) {
    const int i = (r->head + k) % kMaxPending;
    if (r->start[i] < b && a < r->end[i]) {
      r->waits++;
      SD_CUDA_CHECK(cudaEventSynchronize(r->ev[i]));
    }
  }
  while (r->count > 0 && (r->count == kMaxPending ||
                          cudaEventQuery(r->ev[r->head]) == cudaSuccess)) {
    if (r->count == kMaxPending) SD_CUDA_CHECK(cudaEventSynchronize(r->ev[r->head]));
    r->head = (r->head + 1) % kMaxPending;
    r->count--;
  }
  (void)cudaGetLastError();  // cudaEventQuery's cudaErrorNotReady is not an error
}

extern "C" int sd_cuda_upload_staged(sd_backend *be, void *dst, const void *src, size_t bytes) {
  sd_cuda_state *st = sd_cuda_st(be);
  if (bytes == 0 || bytes > kUploadMaxBytes) return 0;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  SD_CUDA_CHECK(cudaStreamIsCapturing(st->stream, &cap));
  if (cap != cudaStreamCaptureStatusNone) return 0;  // a captured copy would replay stale data
  upload_ring *r = ring_get(st);
  if (!r) return 0;
  const size_t len = (bytes + 255) / 256 * 256;  // slices 256-byte aligned
  if (r->cursor + len > kRingBytes) r->cursor = 0;
  const size_t a = r->cursor, b = a + len;
  ring_reclaim(r, a, b);
  memcpy(r->host + a, src, bytes);
  SD_CUDA_CHECK(cudaMemcpyAsync(dst, r->host + a, bytes, cudaMemcpyHostToDevice, st->stream));
  const int i = (r->head + r->count) % kMaxPending;
  r->start[i] = a;
  r->end[i] = b;
  SD_CUDA_CHECK(cudaEventRecord(r->ev[i], st->stream));
  r->count++;
  r->cursor = b;
  r->staged++;
  return 1;
}

extern "C" void sd_cuda_upload_release(sd_cuda_state *st) {
  upload_ring *r = (upload_ring *)st->upload_ring;
  if (!r) return;
  for (int i = 0; i < kMaxPending; i++) (void)cudaEventDestroy(r->ev[i]);
  (void)cudaFreeHost(r->host);  // after release_state's stream synchronisation
  free(r);
  st->upload_ring = NULL;
}

extern "C" void sd_cuda_upload_counts(sd_backend *be, long *staged, long *waits) {
  const upload_ring *r = (const upload_ring *)sd_cuda_st(be)->upload_ring;
  *staged = r ? r->staged : 0;
  *waits = r ? r->waits : 0;
}
