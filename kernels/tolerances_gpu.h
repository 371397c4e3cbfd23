// The GPU tolerance table: how far the CUDA backend may be from the CPU backend (per op) and
// from the PyTorch float64 fixture (the whole SD-DiT step), in the style of ggml's
// test-backend-ops. One line per op: `#define GPU_NMSE_<OP> fp32_limit, bf16_limit`, used as
// `double lim[2] = {GPU_NMSE_<OP>};` (index 0 fp32, 1 bf16). The measure is the normalised
// mean squared error
//     nmse = sum_i (a_i - ref_i)^2 / sum_i ref_i^2      (double accumulation, src/device/gpu_check.c)
// of a whole output tensor against the CPU op on the same random inputs; a NaN or inf that the
// CPU did not produce fails outright. Accumulating (+=) outputs are also compared on their
// change alone (out - the random pre-fill): `<OP>_STEP` lines where that needs its own limit,
// else the op's limit. "fp32"/"bf16" is the backend's matmul precision
// (sd_backend_cuda_set_precision): bf16 rounds matmul inputs to bf16 and accumulates in fp32;
// every other op computes in fp32 in both, so its two limits are equal, except attention,
// which a bf16 tensor-core kernel may also run on bf16 inputs.
//
// Where the numbers come from (u = 2^-24, the fp32 unit roundoff; u_bf = 2^-9, bf16's):
// - data movement is bit-exact: limit 0.
// - one rounding apart (an FMA against a multiply and an add): per element at most u of the
//   value, nmse <= u^2 = 3.6e-15 -> 1e-12.
// - transcendental pointwise ops: the CPU's sd_expf has relative error < 2e-7, CUDA's expf,
//   tanhf, sinf, cosf a few ulp; tanh via exp loses digits near the zeros of 1 + tanh, on
//   elements that are small next to the tensor -> 1e-11.
// - fp32 reductions in another order (sums of up to ~10^4 terms): relative error ~sqrt(n) u
//   per sum, 1e-12 and below -> 1e-10; these also catch a kernel that drops or doubles a term
//   (nmse ~1/n >= 1e-5) or a missing +=.
// - matmuls in fp32 against OpenBLAS sgemm: another summation order, nmse ~1e-14 -> 1e-10,
//   which fails TF32 (10 mantissa bits: nmse ~1e-7), so fp32 must really be fp32.
// - matmuls in bf16: each operand rounded once to 8 significant bits (relative error uniform in
//   +-2^-9, variance 2^-18/3) gives nmse ~2 x 2^-18 / 3 = 2.5e-6 on random inputs; measured
//   with the CPU stand-in (test_ops_cuda --simulate matmul: the CPU ops on bf16-rounded
//   inputs, 2026-11-30): 2.6e-6 .. 7.1e-6 on the DiT-S, tail and tiny shapes (the small ones
//   vary most) -> 5e-5, seven times the largest.
// - attention in bf16, if the kernel runs on bf16 q, k, v (--simulate matmul+attention rounds
//   them): measured out 6.8e-6 .. 8.8e-6, lse <= 1.9e-7, dqkv 1.3e-5 .. 1.6e-5; a flash kernel
//   also rounds P and dS, about doubling that -> 5e-4, 1e-5, 1e-3. In fp32: a reduction.
// Run `test_ops_cuda --simulate matmul` (or matmul+attention) to see these numbers on the CPU.
#ifndef SD_TOLERANCES_GPU_H
#define SD_TOLERANCES_GPU_H

// ---- classes (the limits the op lines below are made of) -----------------------------------
#define GPU_NMSE_EXACT 0.0          // copies, gathers, scatters to distinct rows, single adds
#define GPU_NMSE_ROUNDING 1e-12     // a few roundings apart per element (FMA contraction)
#define GPU_NMSE_TRANSCEND 1e-11    // exp, tanh, sin, cos, sqrt, division per element
#define GPU_NMSE_REDUCE 1e-10       // fp32 sums in another order
#define GPU_NMSE_GEMM_FP32 1e-10    // fp32 GEMM (fails TF32)
#define GPU_NMSE_GEMM_BF16 5e-5     // bf16 inputs, fp32 accumulation
#define GPU_NMSE_SOFTMAX 1e-9       // sharpened softmax (tau 0.04: exponents up to 50)

// ---- one line per op (and per output where outputs differ): fp32, bf16 ---------------------
#define GPU_NMSE_MATMUL_FWD GPU_NMSE_GEMM_FP32, GPU_NMSE_GEMM_BF16  // out = inp w^T + bias
#define GPU_NMSE_MATMUL_BWD GPU_NMSE_GEMM_FP32, GPU_NMSE_GEMM_BF16  // dinp, dw +=, dbias +=
#define GPU_NMSE_MATMUL_FP32_ALWAYS GPU_NMSE_GEMM_FP32, GPU_NMSE_GEMM_FP32  // matmul_*_fp32
// The GELU/DGELU epilogues evaluate tanh their own way (cuBLASLt's, not tanhf): an fp32 GEMM
// plus a transcendental per element, with room for a fast tanh.
#define GPU_NMSE_MATMUL_GELU_FWD 1e-9, GPU_NMSE_GEMM_BF16         // pre, out = gelu(pre)
#define GPU_NMSE_MATMUL_BWD_DGELU 1e-9, GPU_NMSE_GEMM_BF16        // dinp (x gelu'), dw +=, dbias +=
#define GPU_NMSE_LNMOD_FWD GPU_NMSE_REDUCE, GPU_NMSE_REDUCE         // out, mean, rstd: row sums of D
#define GPU_NMSE_LNMOD_BWD GPU_NMSE_REDUCE, GPU_NMSE_REDUCE         // dx +=, dshift/dscale += (sums over T)
#define GPU_NMSE_ATTENTION_FWD 1e-10, 5e-4                          // out: fp32 sums; bf16 kernel allowed
#define GPU_NMSE_ATTENTION_LSE 1e-12, 1e-5                          // lse ~ log T + max: well conditioned
#define GPU_NMSE_ATTENTION_BWD 1e-9, 1e-3                           // dqkv: P (dP - delta) cancels
// cuDNN's fused SDPA against the hand-written kernels, once per shape on the call's own data
// (kernels/cuda/attention_cudnn.cu; a norm-relative difference ||a - b|| / ||b||, not an
// nmse): both compute on bf16 q, k, v with fp32 sums and round P (and dS) to bf16 their own
// way; out is stored in bf16 (2^-9 relative per element) and cuDNN's dq, dk, dv are bf16
// before they are widened, so about 4e-3 is explained; a wrong layout, scale or binding is
// O(1). A disagreement sets cuDNN aside for that shape.
#define GPU_CROSS_CHECK_CUDNN_ATTENTION 1e-2
#define GPU_NMSE_GELU_FWD GPU_NMSE_TRANSCEND, GPU_NMSE_TRANSCEND    // tanh form
#define GPU_NMSE_GELU_BWD GPU_NMSE_TRANSCEND, GPU_NMSE_TRANSCEND
#define GPU_NMSE_SILU_FWD GPU_NMSE_TRANSCEND, GPU_NMSE_TRANSCEND
#define GPU_NMSE_SILU_BWD GPU_NMSE_TRANSCEND, GPU_NMSE_TRANSCEND
#define GPU_NMSE_GATED_RESIDUAL_FWD GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING  // x + gate y (FMA)
#define GPU_NMSE_GATED_RESIDUAL_BWD GPU_NMSE_REDUCE, GPU_NMSE_REDUCE      // dy; dgate += sum_t
#define GPU_NMSE_PATCHIFY GPU_NMSE_EXACT, GPU_NMSE_EXACT                  // a permutation
#define GPU_NMSE_UNPATCHIFY_FWD GPU_NMSE_EXACT, GPU_NMSE_EXACT            // permutation + zeros
#define GPU_NMSE_UNPATCHIFY_BWD GPU_NMSE_EXACT, GPU_NMSE_EXACT
#define GPU_NMSE_ADD_ROWS GPU_NMSE_EXACT, GPU_NMSE_EXACT                  // one add per element
#define GPU_NMSE_TIMESTEP_FEATURES GPU_NMSE_TRANSCEND, GPU_NMSE_TRANSCEND // cos, sin of t f_k
#define GPU_NMSE_EMBED_ROWS_FWD GPU_NMSE_EXACT, GPU_NMSE_EXACT            // one add per element
#define GPU_NMSE_EMBED_ROWS_BWD GPU_NMSE_REDUCE, GPU_NMSE_REDUCE          // repeated labels sum
#define GPU_NMSE_GATHER_TOKENS GPU_NMSE_EXACT, GPU_NMSE_EXACT
#define GPU_NMSE_SCATTER_ADD_TOKENS GPU_NMSE_EXACT, GPU_NMSE_EXACT        // distinct rows: one add
#define GPU_NMSE_MSE_FWD GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING             // double sums
#define GPU_NMSE_MSE_BWD GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING
#define GPU_NMSE_SUM_SQUARES GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING         // double sums
#define GPU_NMSE_L2NORM_ROWS_FWD GPU_NMSE_TRANSCEND, GPU_NMSE_TRANSCEND   // out, norms (sqrt)
#define GPU_NMSE_L2NORM_ROWS_BWD GPU_NMSE_REDUCE, GPU_NMSE_REDUCE         // <dout, out> row sums
#define GPU_NMSE_DINO_LOSS_FWD GPU_NMSE_SOFTMAX, GPU_NMSE_SOFTMAX         // loss; pt
#define GPU_NMSE_DINO_LOSS_BWD GPU_NMSE_SOFTMAX, GPU_NMSE_SOFTMAX         // softmax(z_s/tau_s) - pt
#define GPU_NMSE_SUM_ROWS GPU_NMSE_REDUCE, GPU_NMSE_REDUCE                // column sums over N
#define GPU_NMSE_MERGE_TOKENS_FWD GPU_NMSE_EXACT, GPU_NMSE_EXACT
#define GPU_NMSE_MERGE_TOKENS_BWD GPU_NMSE_EXACT, GPU_NMSE_EXACT          // dsub =; dbase += once
#define GPU_NMSE_ADD_SCALED_ROWS GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING     // x0 + sigma eps (FMA)
#define GPU_NMSE_SCALE_ROWS GPU_NMSE_EXACT, GPU_NMSE_EXACT                // one multiply
#define GPU_NMSE_EDM_LOSS_FWD GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING        // D (FMA); loss (double)
#define GPU_NMSE_EDM_LOSS_BWD GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING
#define GPU_NMSE_ADAMW GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING               // p, m, v values
#define GPU_NMSE_ADAMW_STEP 1e-6, 1e-6      // change of p: one ulp of p is 6e-5 of an lr 1e-3 step
#define GPU_NMSE_EMA GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING
#define GPU_NMSE_EMA_STEP 1e-5, 1e-5        // change of dst at decay .9999: an FMA or lerp form is 1e-7 off
#define GPU_NMSE_AXPY GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING
#define GPU_NMSE_MEMORY GPU_NMSE_EXACT, GPU_NMSE_EXACT  // memset, copy, to_device, to_host
#define GPU_NMSE_STEP_GATE GPU_NMSE_TRANSCEND, GPU_NMSE_TRANSCEND  // sqrt, clip / norm; counters exact
#define GPU_NMSE_POISON GPU_NMSE_EXACT, GPU_NMSE_EXACT          // x[0] = NaN (same bits) or untouched
#define GPU_NMSE_CENTER_UPDATE GPU_NMSE_ROUNDING, GPU_NMSE_ROUNDING  // m c + (1 - m) s / N (FMA)

// ---- activations stored in bf16 (checks "+bf16act", run at precision bf16 only) ------------
// Both backends get the same bf16 inputs and round each bf16-stored output once from their own
// fp32 value. Where the two fp32 values straddle a rounding boundary the stored values are one
// bf16 ulp (at most 2^-8 relative) apart, so even if every element did, the rounding adds at
// most nmse 2^-16 = 1.5e-5 to the op's own difference -> 2e-5. Outputs kept in fp32 (lse,
// mean, rstd, gradients, the residual) keep the op's limit. The fp32 slot is never used.
#define GPU_NMSE_BF16_STORED 2e-5
#define GPU_NMSE_ACT_MATMUL 0.0, GPU_NMSE_GEMM_BF16 + GPU_NMSE_BF16_STORED   // bf16 out
#define GPU_NMSE_ACT_LNMOD 0.0, GPU_NMSE_REDUCE + GPU_NMSE_BF16_STORED      // bf16 out
#define GPU_NMSE_ACT_ATTENTION 0.0, 5e-4 + GPU_NMSE_BF16_STORED             // bf16 out

// ---- the SD-DiT step against the PyTorch fixture (tests/fixtures/sddit_tiny.h5) ------------
// fp32: the CPU parity requirement of tests/tolerances.h (PARITY_LOSS_RTOL, PARITY_GRAD_RTOL,
// PARITY_PARAM_RTOL, PARITY_DELTA_RTOL, PARITY_MOMENT_RTOL: norm-relative), unchanged.
// bf16: losses to 5e-3 relative, every step-0 gradient tensor and every tensor of the student
// after 5 steps to nmse 1e-3. Measured with the CPU stand-in (test_sddit_cuda --simulate
// matmul, every matmul on bf16-rounded inputs): L_gen 8e-5, gradients 6.1e-5, student 3.5e-5,
// teacher 4.7e-6, ema 5.9e-6, center 2.9e-7 (with attention on bf16 inputs too: the same
// within 20%). L_dis is the tight one: the teacher softmax at tau_t 0.04 multiplies the error
// of the prototype logits by 25, so that one product (u . weff, bottleneck x prototypes, <0.5%
// of the FLOPs) takes fp32 inputs in every precision (ops.h matmul_fwd_fp32): L_dis 5.8e-4,
// against 6.8e-3 with bf16 inputs there. With the saved activations stored in bf16 as well (the
// stand-in at bf16 stores them as the CUDA backend does, 2026-11-30): losses 6.3e-4 (L_dis),
// gradients 4.4e-5, student 2.6e-5, teacher 3.5e-6, ema 4.4e-6, center 4.6e-9; the denoiser
// below 3.3e-4, the 50-step run L_gen 5.8e-6, L_dis 4.1e-3: inside the same limits.
#define GPU_SDDIT_BF16_LOSS_RTOL 5e-3
#define GPU_SDDIT_BF16_GRAD_NMSE 1e-3
#define GPU_SDDIT_BF16_PARAM_NMSE 1e-3
// The teacher and generation EMA follow the student; the center is an EMA of teacher outputs.
#define GPU_SDDIT_BF16_EMA_NMSE 1e-3

// ---- the sampler's denoiser D(x; sigma, y): CUDA against CPU --------------------------------
// Norm-relative over a batch spanning sigma 0.002 .. 80 (test_sddit_cuda check_denoiser). fp32:
// summation order only. bf16: D = c_skip x + c_out F, where the network output F carries the
// bf16 input rounding. Measured with the CPU stand-in (--simulate matmul): fp32 3.7e-8 (outputs
// moved by an ulp), bf16 3.2e-4; the limits leave 15x or more for the device's own order.
#define GPU_DENOISER_FP32_RTOL 1e-5
#define GPU_DENOISER_BF16_RTOL 5e-3

// ---- 50 training steps on synthetic data: CUDA against CPU ----------------------------------
// max over steps of |L_cuda - L_cpu| / L_cpu for L_gen and L_dis (tiny preset, train.c's
// synthetic source and sd_step_random, lr 1e-4). Measured with the CPU stand-in: fp32 with
// every matmul output moved by an ulp 1.2e-7; bf16 L_gen 5.5e-6, L_dis 3.8e-3.
#define GPU_TRACK50_FP32_LOSS_RTOL 1e-4
#define GPU_TRACK50_BF16_LOSS_RTOL 5e-2

// ---- one SD-DiT step at a model's own shape: device against CPU (sddit selftest --step) ----
// DiT initialisation plus N(0, 0.02) noise on every parameter (so the zero-initialised adaLN
// and final layers carry signal), 2 samples of N(0, 1) latents with the keyed step randomness.
// Losses relative; gradients nmse per tensor (every tensor of the DiT and the head), and of
// the whole flat gradient. fp32: summation order only (the tiny preset on the stand-in, every
// matmul output moved by an ulp: losses 1e-7, gradients 1e-12) -> 1e-5 and 1e-8. bf16: the
// fixture limits above (a deeper model adds rounding per block: measured on the stand-in at
// S/2, 12 blocks, in sddit selftest's own output).
#define GPU_STEP_LOSS_RTOL 1e-5, 5e-3
#define GPU_STEP_GRAD_NMSE 1e-8, 1e-3

#endif
