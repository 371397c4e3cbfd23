// The few cuDNN functions the fused attention uses, as a table of function pointers filled
// at run time by dlopen of libcudnn.so.9: the build and the shipped programs carry no link-time
// cuDNN dependency (a machine without cuDNN runs the hand-written attention kernels), and the
// tests fill the same table with a mock (tests/cudnn_mock.c) to check the graphs built here
// without a GPU. Plain C: only cuDNN's and CUDA's headers are needed to compile it.
#ifndef SD_CUDNN_API_H
#define SD_CUDNN_API_H

#include <cudnn_graph.h>
#include <stddef.h>

typedef struct sd_cudnn_api {
  size_t (*GetVersion)(void);
  const char *(*GetErrorString)(cudnnStatus_t);
  cudnnStatus_t (*Create)(cudnnHandle_t *);
  cudnnStatus_t (*Destroy)(cudnnHandle_t);
  cudnnStatus_t (*SetStream)(cudnnHandle_t, cudaStream_t);
  cudnnStatus_t (*BackendCreateDescriptor)(cudnnBackendDescriptorType_t,
                                           cudnnBackendDescriptor_t *);
  cudnnStatus_t (*BackendDestroyDescriptor)(cudnnBackendDescriptor_t);
  cudnnStatus_t (*BackendSetAttribute)(cudnnBackendDescriptor_t, cudnnBackendAttributeName_t,
                                       cudnnBackendAttributeType_t, int64_t, const void *);
  cudnnStatus_t (*BackendGetAttribute)(cudnnBackendDescriptor_t const,
                                       cudnnBackendAttributeName_t,
                                       cudnnBackendAttributeType_t, int64_t, int64_t *, void *);
  cudnnStatus_t (*BackendFinalize)(cudnnBackendDescriptor_t);
  cudnnStatus_t (*BackendExecute)(cudnnHandle_t, cudnnBackendDescriptor_t,
                                  cudnnBackendDescriptor_t);
  void *lib;  // the dlopen handle (NULL for a mock)
} sd_cudnn_api;

// Loads libcudnn.so.9 (then libcudnn.so) and every function above. 0, or -1 with the reason
// in err (not found, a missing symbol, SD_CUDNN=off). Safe to call again after a failure.
int sd_cudnn_api_load(sd_cudnn_api *api, char *err, size_t errlen);
void sd_cudnn_api_unload(sd_cudnn_api *api);
// "9.19.0" from cudnnGetVersion's number (major*10000 + minor*100 + patch since cuDNN 9);
// "?" for a table without GetVersion. Returns buf.
const char *sd_cudnn_version_string(const sd_cudnn_api *api, char *buf, size_t len);

#endif
