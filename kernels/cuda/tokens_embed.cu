// CUDA patch and token ops: patchify / unpatchify (with an optional token index for masked
// sequences), label-table rows (gather with a label check, deterministic scatter-add), token
// gather / scatter-add, and the decoder-input merge. Each op has the semantics of the CPU op of
// the same name (kernels/cpu/patch.c, embed.c, tokens.c, head.c). These are all copies or
// single adds, so the results equal the CPU's bit for bit.
//
// Token indices are trusted as on the CPU (the callers validate them), except that an index
// outside [0, T) never reads or writes out of bounds here: its row is skipped (left as it was).
#include "cuda_internal.h"

extern "C" {
#include "cpu_ops.h"
#include "error.h"
}

#include <cmath>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

namespace {

constexpr int kThreads = 256;  // threads per block of the grid-stride kernels

#define GRID_STRIDE(i, n)                                                          \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (size_t)gridDim.x * blockDim.x)

// patches (B, T, C*p*p) from x (B, C, H, W): one thread per output element (grid-stride;
// writes coalesced, reads in runs of p).
__global__ void patchify_kernel(float *patches, const float *x, int C, int H, int W, int p,
                                int T, int F, size_t n) {
  const int gw = W / p, pp = p * p;
  GRID_STRIDE(i, n) {
    size_t bt = i / F;
    int f = (int)(i % F);
    size_t b = bt / T;
    int t = (int)(bt % T), gy = t / gw, gx = t % gw;
    int c = f / pp, py = (f % pp) / p, px = f % p;
    patches[i] = x[((b * C + c) * H + gy * p + py) * W + gx * p + px];
  }
}

// One thread per token element (b, k, f) of tok (B, Tk, p*p*C), f = (py*p + px)*C + c
// (grid-stride): to_image copies it to its pixel, else copies the pixel into it.
__global__ void unpatchify_kernel(float *img, float *tok, const int32_t *idx, int Tk, int C,
                                  int H, int W, int p, int T, int F, size_t n, int to_image) {
  const int gw = W / p;
  GRID_STRIDE(i, n) {
    size_t bk = i / F;
    int f = (int)(i % F);
    size_t b = bk / Tk;
    int t = idx ? idx[bk] : (int)(bk % Tk);
    if (t < 0 || t >= T) continue;  // validated by the caller (as the CPU)
    int gy = t / gw, gx = t % gw;
    int c = f % C, q = f / C, py = q / p, px = q % p;
    size_t pix = ((b * C + c) * H + gy * p + py) * W + gx * p + px;
    if (to_image) img[pix] = tok[i];
    else tok[i] = img[pix];
  }
}

// out (B, D) += table[y[b]]: one thread per (b, d), grid-stride (labels checked on the host).
__global__ void embed_rows_fwd_kernel(float *out, const float *table, const int32_t *y, int D,
                                      size_t n) {
  GRID_STRIDE(i, n) {
    size_t b = i / D, d = i % D;
    out[i] += table[(size_t)y[b] * D + d];
  }
}

// dtable[y[b]] += dout[b] in sample order, without atomics: one block per sample b; the block
// of the first sample with a label adds, for each column (threads stride over D), the rows of
// every sample with that label in sample order, starting from the table's value (the CPU's
// order exactly). Blocks of later samples with the same label do nothing.
__global__ void embed_rows_bwd_kernel(float *dtable, const float *dout, const int32_t *y,
                                      int B, int D) {
  int b = blockIdx.x;
  int lab = y[b];
  if (lab < 0) return;  // never valid (the forward rejects it)
  for (int j = 0; j < b; j++)
    if (y[j] == lab) return;  // uniform across the block
  float *row = dtable + (size_t)lab * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = row[d];
    for (int j = b; j < B; j++)
      if (y[j] == lab) acc += dout[(size_t)j * D + d];
    row[d] = acc;
  }
}

// The row ops over (B, Tk, D), one thread per element (b, k, d) (grid-stride; coalesced along
// d), the row of sample b at token idx[b, k] on the (B, T, D) side:
//   mode 0: sub[i] = big[row]  (gather; merge backward's dsub)
//   mode 1: big[row] += sub[i] (scatter-add; idx distinct within a sample, so no conflicts)
//   mode 2: big[row] = sub[i]  (merge forward)
__global__ void token_rows_kernel(float *big, float *sub, const int32_t *idx, int T, int Tk,
                                  int D, size_t n, int mode) {
  GRID_STRIDE(i, n) {
    size_t bk = i / D, d = i % D;
    size_t b = bk / Tk;
    int t = idx[bk];
    if (t < 0 || t >= T) continue;
    size_t j = (b * T + t) * D + d;
    if (mode == 0) sub[i] = big[j];
    else if (mode == 1) big[j] += sub[i];
    else big[j] = sub[i];
  }
}

// listed (B, T) = 1 at the rows idx: one thread per (b, k), grid-stride (duplicate indices
// store the same byte).
__global__ void mark_listed_kernel(unsigned char *listed, const int32_t *idx, int T, int Tk,
                                   size_t n) {
  GRID_STRIDE(i, n) {
    size_t b = i / Tk;
    int t = idx[i];
    if (t >= 0 && t < T) listed[b * T + t] = 1;
  }
}

// dbase (B, T, D) += dout on the rows not listed: one thread per element, grid-stride.
__global__ void add_unlisted_kernel(float *dbase, const float *dout,
                                    const unsigned char *listed, int D, size_t n) {
  GRID_STRIDE(i, n) {
    if (!listed[i / D]) dbase[i] += dout[i];
  }
}

}  // namespace

// ---- the ops ---------------------------------------------------------------------------------

void sd_cuda_patchify(sd_backend *be, float *patches, const float *x, int B, int C, int H,
                      int W, int p) {
  const int T = (H / p) * (W / p), F = C * p * p;
  size_t n = (size_t)B * T * F;
  if (n == 0) return;
  patchify_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, sd_cuda_st(be)->stream>>>(
      patches, x, C, H, W, p, T, F, n);
  SD_CUDA_LAUNCHED("patchify_kernel");
}

void sd_cuda_unpatchify_fwd(sd_backend *be, float *img, const float *tok, const int32_t *idx,
                            int Tk, int B, int C, int H, int W, int p) {
  const int T = (H / p) * (W / p), F = C * p * p;
  cudaStream_t st = sd_cuda_st(be)->stream;
  // positions not listed are 0: clear, then scatter (with idx NULL every position is written)
  if (idx)
    SD_CUDA_CHECK(cudaMemsetAsync(img, 0, (size_t)B * C * H * W * sizeof(float), st));
  size_t n = (size_t)B * Tk * F;
  if (n == 0) return;
  unpatchify_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, st>>>(
      img, (float *)tok, idx, Tk, C, H, W, p, T, F, n, 1);
  SD_CUDA_LAUNCHED("unpatchify_kernel");
}

void sd_cuda_unpatchify_bwd(sd_backend *be, float *dtok, const float *dimg, const int32_t *idx,
                            int Tk, int B, int C, int H, int W, int p) {
  const int T = (H / p) * (W / p), F = C * p * p;
  size_t n = (size_t)B * Tk * F;
  if (n == 0) return;
  unpatchify_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, sd_cuda_st(be)->stream>>>(
      (float *)dimg, dtok, idx, Tk, C, H, W, p, T, F, n, 0);
  SD_CUDA_LAUNCHED("unpatchify_kernel");
}

void sd_cuda_embed_rows_fwd(sd_backend *be, float *out, const float *table, const int32_t *y,
                            int B, int D, int rows) {
  if (B <= 0) return;
  cudaStream_t st = sd_cuda_st(be)->stream;
  // Labels are checked on the device (label_check.cu): the lookup reads them clamped, and a
  // bad one stops the program at the next synchronisation, with no read back here.
  y = sd_cuda_checked_labels(be, y, B, rows);
  size_t n = (size_t)B * D;
  if (n == 0) return;
  embed_rows_fwd_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, st>>>(out, table, y, D, n);
  SD_CUDA_LAUNCHED("embed_rows_fwd_kernel");
}

void sd_cuda_embed_rows_bwd(sd_backend *be, float *dtable, const float *dout, const int32_t *y,
                            int B, int D) {
  if (B <= 0 || D <= 0) return;
  embed_rows_bwd_kernel<<<(unsigned)B, kThreads, 0, sd_cuda_st(be)->stream>>>(dtable, dout, y,
                                                                              B, D);
  SD_CUDA_LAUNCHED("embed_rows_bwd_kernel");
}

void sd_cuda_gather_tokens(sd_backend *be, float *out, const float *x, const int32_t *idx,
                           int B, int T, int Tk, int D) {
  size_t n = (size_t)B * Tk * D;
  if (n == 0) return;
  token_rows_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, sd_cuda_st(be)->stream>>>(
      (float *)x, out, idx, T, Tk, D, n, 0);
  SD_CUDA_LAUNCHED("token_rows_kernel(gather)");
}

void sd_cuda_scatter_add_tokens(sd_backend *be, float *x, const float *sub, const int32_t *idx,
                                int B, int T, int Tk, int D) {
  size_t n = (size_t)B * Tk * D;
  if (n == 0) return;
  token_rows_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, sd_cuda_st(be)->stream>>>(
      x, (float *)sub, idx, T, Tk, D, n, 1);
  SD_CUDA_LAUNCHED("token_rows_kernel(scatter_add)");
}

void sd_cuda_merge_tokens_fwd(sd_backend *be, float *out, const float *base, const float *sub,
                              const int32_t *idx, int B, int T, int Tk, int D) {
  cudaStream_t st = sd_cuda_st(be)->stream;
  if (out != base)
    SD_CUDA_CHECK(cudaMemcpyAsync(out, base, (size_t)B * T * D * sizeof(float),
                                  cudaMemcpyDeviceToDevice, st));
  size_t n = (size_t)B * Tk * D;
  if (n == 0) return;
  token_rows_kernel<<<sd_cuda_blocks(n, kThreads), kThreads, 0, st>>>(out, (float *)sub, idx, T,
                                                                      Tk, D, n, 2);
  SD_CUDA_LAUNCHED("token_rows_kernel(merge)");
}

void sd_cuda_merge_tokens_bwd(sd_backend *be, float *dbase, float *dsub, const float *dout,
                              const int32_t *idx, int B, int T, int Tk, int D) {
  cudaStream_t st = sd_cuda_st(be)->stream;
  size_t nsub = (size_t)B * Tk * D, nbase = (size_t)B * T * D;
  if (dsub && nsub) {
    token_rows_kernel<<<sd_cuda_blocks(nsub, kThreads), kThreads, 0, st>>>(
        (float *)dout, dsub, idx, T, Tk, D, nsub, 0);
    SD_CUDA_LAUNCHED("token_rows_kernel(merge_bwd)");
  }
  if (dbase && nbase) {
    size_t rows = (size_t)B * T;
    unsigned char *listed = (unsigned char *)sd_cuda_scratch(be, rows);
    SD_CUDA_CHECK(cudaMemsetAsync(listed, 0, rows, st));
    size_t nk = (size_t)B * Tk;
    if (nk) {
      mark_listed_kernel<<<sd_cuda_blocks(nk, kThreads), kThreads, 0, st>>>(listed, idx, T, Tk,
                                                                            nk);
      SD_CUDA_LAUNCHED("mark_listed_kernel");
    }
    add_unlisted_kernel<<<sd_cuda_blocks(nbase, kThreads), kThreads, 0, st>>>(dbase, dout,
                                                                              listed, D, nbase);
    SD_CUDA_LAUNCHED("add_unlisted_kernel");
  }
}

// ---- self-test: every op above against the CPU op on random inputs ----------------------------

#include "selftest_util.h"

extern "C" int sd_cuda_tokens_selftest(sd_backend *be, char *err, size_t len) {
  sd_backend cpu;
  if (sd_backend_cpu_init(&cpu, 0) != 0) {
    snprintf(err, len, "CPU backend did not start");
    return -1;
  }
  cudaStream_t st = sd_cuda_st(be)->stream;
  Worst w;
  Rng rng(777);
  {
    DevPool pool(st);
    // patchify / unpatchify (non-square image, C not a power of 2)
    {
      int B = 2, C = 3, H = 12, W = 8, p = 2, T = (H / p) * (W / p), F = C * p * p, Tk = 10;
      size_t nimg = (size_t)B * C * H * W;
      auto x = rng.vec(nimg, -1.0f, 1.0f);
      std::vector<float> pat((size_t)B * T * F);
      float *gx = pool.up(x), *gpat = pool.up(pat);
      sd_cpu_patchify(&cpu, pat.data(), x.data(), B, C, H, W, p);
      sd_cuda_patchify(be, gpat, gx, B, C, H, W, p);
      w.compare("patchify", pool.down(gpat, pat.size()), pat);

      auto tok = rng.vec((size_t)B * T * F, -1.0f, 1.0f);
      auto junk = rng.vec(nimg, 5.0f, 6.0f);  // whatever the image held before
      auto idx = rng.subset(B, T, Tk);
      float *gtok = pool.up(tok);
      int32_t *gidx = pool.up(idx);
      for (int masked = 0; masked < 2; masked++) {
        int tk = masked ? Tk : T;
        std::vector<float> img = junk;
        float *gimg = pool.up(junk);
        sd_cpu_unpatchify_fwd(&cpu, img.data(), tok.data(), masked ? idx.data() : NULL, tk, B,
                              C, H, W, p);
        sd_cuda_unpatchify_fwd(be, gimg, gtok, masked ? gidx : NULL, tk, B, C, H, W, p);
        w.compare(masked ? "unpatchify_fwd(idx)" : "unpatchify_fwd", pool.down(gimg, nimg),
                  img);
        auto dtok0 = rng.vec((size_t)B * tk * F, 5.0f, 6.0f);
        std::vector<float> dtok = dtok0;
        float *gdtok = pool.up(dtok0);
        sd_cpu_unpatchify_bwd(&cpu, dtok.data(), x.data(), masked ? idx.data() : NULL, tk, B,
                              C, H, W, p);
        sd_cuda_unpatchify_bwd(be, gdtok, gx, masked ? gidx : NULL, tk, B, C, H, W, p);
        w.compare(masked ? "unpatchify_bwd(idx)" : "unpatchify_bwd",
                  pool.down(gdtok, dtok.size()), dtok);
      }
    }
    // label-table rows, with repeated labels
    {
      int B = 9, D = 130, rows = 5;
      std::vector<int32_t> y(B);
      for (int b = 0; b < B; b++) y[b] = (int32_t)(rng.next() % (uint32_t)rows);
      y[0] = y[4] = y[8] = 2;
      auto table = rng.vec((size_t)rows * D, -1.0f, 1.0f);
      auto out = rng.vec((size_t)B * D, -1.0f, 1.0f), dout = rng.vec((size_t)B * D, -1.0f, 1.0f);
      auto dtable = rng.vec((size_t)rows * D, -1.0f, 1.0f);
      float *gtable = pool.up(table), *gout = pool.up(out), *gdout = pool.up(dout),
            *gdtable = pool.up(dtable);
      int32_t *gy = pool.up(y);
      sd_cpu_embed_rows_fwd(&cpu, out.data(), table.data(), y.data(), B, D, rows);
      sd_cuda_embed_rows_fwd(be, gout, gtable, gy, B, D, rows);
      w.compare("embed_rows_fwd", pool.down(gout, out.size()), out);
      sd_cpu_embed_rows_bwd(&cpu, dtable.data(), dout.data(), y.data(), B, D);
      sd_cuda_embed_rows_bwd(be, gdtable, gdout, gy, B, D);
      w.compare("embed_rows_bwd", pool.down(gdtable, dtable.size()), dtable);
    }
    // token gather / scatter-add / merge
    {
      int B = 3, T = 40, Tk = 13, D = 72;
      size_t nb = (size_t)B * T * D, ns = (size_t)B * Tk * D;
      auto idx = rng.subset(B, T, Tk);
      auto x = rng.vec(nb, -1.0f, 1.0f), sub = rng.vec(ns, -1.0f, 1.0f);
      int32_t *gidx = pool.up(idx);
      float *gx = pool.up(x), *gsub = pool.up(sub);
      std::vector<float> out(ns);
      float *gout = pool.up(out);
      sd_cpu_gather_tokens(&cpu, out.data(), x.data(), idx.data(), B, T, Tk, D);
      sd_cuda_gather_tokens(be, gout, gx, gidx, B, T, Tk, D);
      w.compare("gather_tokens", pool.down(gout, ns), out);

      std::vector<float> xs = x;
      float *gxs = pool.up(x);
      sd_cpu_scatter_add_tokens(&cpu, xs.data(), sub.data(), idx.data(), B, T, Tk, D);
      sd_cuda_scatter_add_tokens(be, gxs, gsub, gidx, B, T, Tk, D);
      w.compare("scatter_add_tokens", pool.down(gxs, nb), xs);

      std::vector<float> merged(nb);
      float *gmerged = pool.up(merged);
      sd_cpu_merge_tokens_fwd(&cpu, merged.data(), x.data(), sub.data(), idx.data(), B, T, Tk,
                              D);
      sd_cuda_merge_tokens_fwd(be, gmerged, gx, gsub, gidx, B, T, Tk, D);
      w.compare("merge_tokens_fwd", pool.down(gmerged, nb), merged);
      float *gbase = pool.up(x);
      sd_cuda_merge_tokens_fwd(be, gbase, gbase, gsub, gidx, B, T, Tk, D);
      w.compare("merge_tokens_fwd(in place)", pool.down(gbase, nb), merged);

      auto dout = rng.vec(nb, -1.0f, 1.0f), dbase0 = rng.vec(nb, -1.0f, 1.0f);
      auto dsub0 = rng.vec(ns, -1.0f, 1.0f);
      std::vector<float> dbase = dbase0, dsub = dsub0;
      float *gdout = pool.up(dout), *gdbase = pool.up(dbase0), *gdsub = pool.up(dsub0);
      sd_cpu_merge_tokens_bwd(&cpu, dbase.data(), dsub.data(), dout.data(), idx.data(), B, T,
                              Tk, D);
      sd_cuda_merge_tokens_bwd(be, gdbase, gdsub, gdout, gidx, B, T, Tk, D);
      w.compare("merge_tokens_bwd.dbase", pool.down(gdbase, nb), dbase);
      w.compare("merge_tokens_bwd.dsub", pool.down(gdsub, ns), dsub);
      std::vector<float> dbase2 = dbase0;
      float *gdbase2 = pool.up(dbase0);
      sd_cpu_merge_tokens_bwd(&cpu, dbase2.data(), NULL, dout.data(), idx.data(), B, T, Tk, D);
      sd_cuda_merge_tokens_bwd(be, gdbase2, NULL, gdout, gidx, B, T, Tk, D);
      w.compare("merge_tokens_bwd.dbase(no dsub)", pool.down(gdbase2, nb), dbase2);
    }
    SD_CUDA_CHECK(cudaStreamSynchronize(st));
  }
  sd_backend_cpu_destroy(&cpu);
  const double tol = 1e-5;
  snprintf(err, len, "%s: worst %s", w.err <= tol ? "ok" : "FAILED", w.what);
  return w.err <= tol ? 0 : -1;
}
