// The one table of numerical tolerances used by the tests. Each entry says what it bounds
// and why it has the value it has. Relative errors are max|a - ref| / max|ref| over a tensor
// ("norm-relative"), unless stated otherwise.
#ifndef SD_TOLERANCES_H
#define SD_TOLERANCES_H

// Finite-difference gradient checks of single ops (fp32 forward, central differences with
// step GRADCHECK_STEP, loss accumulated in double). Truncation error is O(step^2) and fp32
// rounding of the loss O(1e-7 * |loss| / step), so 1e-2 relative is a tight but safe bound.
#define GRADCHECK_STEP 1e-2
#define GRADCHECK_RTOL 1e-2   // per element, relative to |analytic|
#define GRADCHECK_ATOL 1e-3   // per element, times max|analytic| over the tensor

// PyTorch parity (issue requirement): C fp32 against the float64 reference on the tiny
// fixture. Outputs and the loss to 1e-4, every parameter gradient tensor to 1e-3.
#define PARITY_OUT_RTOL 1e-4
#define PARITY_LOSS_RTOL 1e-4
#define PARITY_GRAD_RTOL 1e-3

// SD-DiT objective parity (issue requirement): losses and parameters after 5 optimizer steps
// to 1e-4, gradients to 1e-3. Parameter *changes* (final - initial) are compared too, at 1e-2:
// AdamW normalises each gradient element, so fp32 rounding in near-zero gradients moves an
// element's update by a fraction of lr; 1e-2 of the change is still far below any real bug.
#define PARITY_PARAM_RTOL 1e-4
#define PARITY_DELTA_RTOL 1e-2
#define PARITY_MOMENT_RTOL 1e-3

// Data parallelism (issue requirement): 1, 2 and 4 ranks over 5 steps of the tiny SD-DiT.
// Each rank's loss is a mean over its share and the mean of the means is taken over ranks, so
// losses differ from one rank's only by summation order (measured 1e-7). Weights after 5 AdamW
// steps: norm-relative 1.1e-6 measured (Adam divides tiny gradient differences by sqrt(v));
// 1e-5 bounds it with room and is still far below a real error (one skipped bucket: 1e-2).
// Shell tests read these two lines.
#define DP_LOSS_RTOL 1e-6
#define DP_WEIGHT_RTOL 1e-5
// The bf16 gradient all-reduce (dist.grad_dtype = bf16) against the fp32 one, 2 ranks, the
// same 5 steps: gradients rounded to 8 significant bits (relative 2^-9 = 2e-3 per value)
// move AdamW's update direction a little. Measured: losses 3.8e-5, weights 3.7e-4 (norm-
// relative); about 10x room, still below a real error such as a skipped bucket (1e-2).
#define DP_BF16_LOSS_RTOL 1e-3
#define DP_BF16_WEIGHT_RTOL 5e-3
// The progress line's time parts in metrics.jsonl (data, compute, exposed comm, optim, other)
// add up to ms_step by construction; each is printed with 6 significant digits (relative
// 5e-6 of itself, at most of ms_step), so 5 of them round to within 2.5e-5 of ms_step.
// Shell tests read this line.
#define STEP_TIME_SUM_RTOL 1e-4

// bf16 activation storage on the CPU (test_bf16_activations): the tiny DiT's output and
// gradients with the saved activations in bf16 against fp32 storage (norm-relative). Each
// stored activation carries a relative rounding of at most 2^-9 = 2e-3; measured: output
// 1.7e-3, gradients 1.6e-3 (all tokens and a token subset alike) -> about 6x room. A lost or
// doubled term is far larger.
#define ACT_BF16_OUT_RTOL 1e-2
#define ACT_BF16_GRAD_RTOL 1e-2
// The arena with bf16 storage against fp32, DiT-XL/2 training: the block activations halve,
// the residual stream, statistics and gradient scratch stay fp32 (expected 0.57).
#define ACT_BF16_ARENA_RATIO 0.6

// Random-number sanity: sample mean/std of 2^20 draws within 5 standard errors.
#define RNG_SIGMAS 5.0

// EDM sampler and denoiser (tests/test_sampler.c, tests/test_sample_cli.sh).
// Sigma schedule vs the formula in long double: both round the same real number to float,
// so they may differ by the last ulp (1.2e-7 relative); 3e-7 allows two ulps.
#define SAMPLER_SIGMA_RTOL 3e-7
// Sample mean and std of 20000 draws per element vs the exact ODE result: within 5 standard
// errors (mean: std/sqrt(B); std: std/sqrt(2(B-1))); a false alarm has odds below 1e-6.
#define SAMPLER_MOMENT_SES 5.0
// Worst |x - exact PF-ODE map| / s over 20000 samples x 4 elements (s = 0.1 .. 2, |x_T| up to
// 4.4 sigma_0), Gaussian data with the ideal denoiser: the discretisation error, measured
// 6.1e-2 for Heun with 40 steps (second order: 1.4e-2 at 80 steps) and 1.5e-2 for Euler with
// 1000 steps (first order); the bounds leave about 30% on top. A wrong step formula gives > 1.
#define SAMPLER_HEUN40_ODE_TOL 8e-2
#define SAMPLER_EULER1000_ODE_TOL 2e-2
// One step from sigma_0 to 0 returns D_u + s (D_c - D_u) up to the double arithmetic of the
// step (x + (0 - t)(x - D)/t) and one float rounding: norm-relative 1e-6.
#define SAMPLER_CFG_STEP_RTOL 1e-6
// Denoiser in chunks vs one pass (BLAS may round rows differently with a different M), and vs
// c_skip x + c_out F written out in double in the test (c_skip, c_out, c_in rounded to float
// in the code): fp32 rounding of the same computation.
#define DENOISER_CHUNK_RTOL 1e-5
#define DENOISER_FORMULA_RTOL 1e-5
// `sddit denoise` vs the training step's D on a checkpoint, and a one-step Euler `sddit sample`
// vs `sddit denoise` on the same x (different batch composition): fp32 rounding only.
// Shell tests read this line.
#define SAMPLE_CLI_RTOL 1e-5

#endif
