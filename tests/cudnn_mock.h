// A mock cuDNN behind the function table of kernels/cuda/cudnn_api.h: it keeps every
// descriptor and attribute and checks what the real library checks at finalize (required
// attributes, attribute types, tensor dims and strides, data types, the SDPA operations'
// tensors against each other, unique ids, a variant pack naming every tensor of the plan's
// graph), and records the last execution's pointers by uid. Each stage can be told to refuse.
#ifndef SD_CUDNN_MOCK_H
#define SD_CUDNN_MOCK_H

#include "cudnn_api.h"

typedef struct cudnn_mock_opts {
  int configs;            // engine configs the heuristic returns (mode A)
  int fallback_configs;   // ... in fallback mode
  int plan_refusals;      // configs ranked below this refuse to finalize their plan (mode A's
                          // ranks are 0, 1, ..., the fallback mode's 100, 101, ...)
  int refuse_op;          // SDPA operation finalize refuses (as some cuDNN versions do)
  int refuse_execute;
  int nondeterministic;   // configs ranked below this carry the NONDETERMINISTIC note
} cudnn_mock_opts;

// Fills api with the mock; resets its state.
void cudnn_mock_install(sd_cudnn_api *api, const cudnn_mock_opts *o);
// Descriptors created and not destroyed (a leak check), and problems found (each printed
// with "mock:" when it happens).
int cudnn_mock_live(void);
int cudnn_mock_errors(void);
// The last execution: the pointer bound to uid (NULL when absent), and the workspace.
void *cudnn_mock_exec_ptr(int64_t uid);
void *cudnn_mock_exec_workspace(void);
float cudnn_mock_exec_scale(void);
int cudnn_mock_executions(void);

#endif
