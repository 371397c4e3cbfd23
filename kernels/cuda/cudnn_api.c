// Run-time loading of cuDNN (see cudnn_api.h).
#include "cudnn_api.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int sym(sd_cudnn_api *api, void **slot, const char *name, char *err, size_t errlen) {
  *slot = dlsym(api->lib, name);
  if (*slot) return 0;
  snprintf(err, errlen, "libcudnn has no %s (cuDNN 9 or newer is needed)", name);
  return -1;
}

int sd_cudnn_api_load(sd_cudnn_api *api, char *err, size_t errlen) {
  memset(api, 0, sizeof *api);
  const char *env = getenv("SD_CUDNN");
  if (env && (!strcmp(env, "off") || !strcmp(env, "0"))) {
    snprintf(err, errlen, "SD_CUDNN=%s", env);
    return -1;
  }
  api->lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
  if (!api->lib) api->lib = dlopen("libcudnn.so", RTLD_NOW | RTLD_LOCAL);
  if (!api->lib) {
    const char *why = dlerror();
    snprintf(err, errlen, "libcudnn.so.9 not found (%s); put cuDNN 9's lib directory on "
             "LD_LIBRARY_PATH", why ? why : "dlopen failed");
    return -1;
  }
  struct { void **slot; const char *name; } t[] = {
      {(void **)&api->GetVersion, "cudnnGetVersion"},
      {(void **)&api->GetErrorString, "cudnnGetErrorString"},
      {(void **)&api->Create, "cudnnCreate"},
      {(void **)&api->Destroy, "cudnnDestroy"},
      {(void **)&api->SetStream, "cudnnSetStream"},
      {(void **)&api->BackendCreateDescriptor, "cudnnBackendCreateDescriptor"},
      {(void **)&api->BackendDestroyDescriptor, "cudnnBackendDestroyDescriptor"},
      {(void **)&api->BackendSetAttribute, "cudnnBackendSetAttribute"},
      {(void **)&api->BackendGetAttribute, "cudnnBackendGetAttribute"},
      {(void **)&api->BackendFinalize, "cudnnBackendFinalize"},
      {(void **)&api->BackendExecute, "cudnnBackendExecute"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (sym(api, t[i].slot, t[i].name, err, errlen) != 0) {
      sd_cudnn_api_unload(api);
      return -1;
    }
  return 0;
}

void sd_cudnn_api_unload(sd_cudnn_api *api) {
  if (api->lib) dlclose(api->lib);
  memset(api, 0, sizeof *api);
}

const char *sd_cudnn_version_string(const sd_cudnn_api *api, char *buf, size_t len) {
  if (!api->GetVersion) {
    snprintf(buf, len, "?");
    return buf;
  }
  const size_t v = api->GetVersion();
  snprintf(buf, len, "%zu.%zu.%zu", v / 10000, v / 100 % 100, v % 100);
  return buf;
}
