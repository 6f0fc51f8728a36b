/*
 * A test double of libnvidia-ml.so.1 (NVML): just the calls src/gpu/nvml.ts makes, with the
 * numbers taken from the environment at every call:
 *
 *   FAKE_NVML_DEVICES      number of GPUs (default 1)
 *   FAKE_NVML_TOTAL_BYTES  memory of each GPU (default 80 GiB)
 *   FAKE_NVML_FREE_BYTES   free memory of each GPU (default: all of it)
 *   FAKE_NVML_PROCS        "pid:bytes[,pid:bytes]": compute processes on GPU 0 and their usage;
 *                          bytes "na" reports NVML_VALUE_NOT_AVAILABLE, as some drivers do
 *   FAKE_NVML_FAIL         "init" (nvmlInit_v2 returns 9, driver not loaded), "procs" (the
 *                          process query returns 3, not supported) or "memory" (999)
 *
 * The process query follows NVML's protocol: with *infoCount too small it returns
 * NVML_ERROR_INSUFFICIENT_SIZE (7) and sets *infoCount to the number needed.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_UNINITIALIZED = 1,
  NVML_ERROR_INVALID_ARGUMENT = 2,
  NVML_ERROR_NOT_SUPPORTED = 3,
  NVML_ERROR_INSUFFICIENT_SIZE = 7,
  NVML_ERROR_DRIVER_NOT_LOADED = 9,
  NVML_ERROR_UNKNOWN = 999,
};
#define MAX_DEVICES 16
#define MAX_PROCS 64
#define NOT_AVAILABLE 0xFFFFFFFFFFFFFFFFULL

typedef struct {
  unsigned long long total, free, used;
} nvmlMemory_t;

/* nvmlProcessInfo_t as the _v3 query fills it: 24 bytes, usedGpuMemory at offset 8. */
typedef struct {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

/* Device handles are opaque pointers to the caller: here, addresses inside this array. */
static char devices[MAX_DEVICES];
static int initialized;

static unsigned long long env_u64(const char *name, unsigned long long fallback) {
  const char *v = getenv(name);
  return v && *v ? strtoull(v, NULL, 10) : fallback;
}

static int failing(const char *what) {
  const char *v = getenv("FAKE_NVML_FAIL");
  return v && strstr(v, what) != NULL;
}

static unsigned device_count(void) {
  unsigned long long n = env_u64("FAKE_NVML_DEVICES", 1);
  return n > MAX_DEVICES ? MAX_DEVICES : (unsigned)n;
}

static int device_index(const void *device) {
  const char *d = device;
  if (d < devices || d >= devices + device_count()) return -1;
  return (int)(d - devices);
}

int nvmlInit_v2(void) {
  if (failing("init")) return NVML_ERROR_DRIVER_NOT_LOADED;
  initialized = 1;
  return NVML_SUCCESS;
}

int nvmlShutdown(void) {
  initialized = 0;
  return NVML_SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  if (!count) return NVML_ERROR_INVALID_ARGUMENT;
  *count = device_count();
  return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  if (!device || index >= device_count()) return NVML_ERROR_INVALID_ARGUMENT;
  *device = &devices[index];
  return NVML_SUCCESS;
}

int nvmlDeviceGetMemoryInfo(void *device, nvmlMemory_t *memory) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  if (!memory || device_index(device) < 0) return NVML_ERROR_INVALID_ARGUMENT;
  if (failing("memory")) return NVML_ERROR_UNKNOWN;
  memory->total = env_u64("FAKE_NVML_TOTAL_BYTES", 80ULL << 30);
  memory->free = env_u64("FAKE_NVML_FREE_BYTES", memory->total);
  if (memory->free > memory->total) memory->free = memory->total;
  memory->used = memory->total - memory->free;
  return NVML_SUCCESS;
}

int nvmlDeviceGetComputeRunningProcesses_v3(void *device, unsigned int *infoCount, nvmlProcessInfo_t *infos) {
  if (!initialized) return NVML_ERROR_UNINITIALIZED;
  int index = device_index(device);
  if (!infoCount || index < 0) return NVML_ERROR_INVALID_ARGUMENT;
  if (failing("procs")) return NVML_ERROR_NOT_SUPPORTED;
  nvmlProcessInfo_t found[MAX_PROCS];
  unsigned n = 0;
  const char *spec = getenv("FAKE_NVML_PROCS");
  if (index == 0 && spec) {
    const char *p = spec;
    while (*p && n < MAX_PROCS) {
      char *end;
      unsigned long pid = strtoul(p, &end, 10);
      if (end == p || *end != ':') break;
      p = end + 1;
      unsigned long long bytes = NOT_AVAILABLE;
      if (strncmp(p, "na", 2) == 0) end = (char *)p + 2;
      else bytes = strtoull(p, &end, 10);
      found[n++] = (nvmlProcessInfo_t){.pid = (unsigned)pid, .usedGpuMemory = bytes};
      p = *end == ',' ? end + 1 : end;
      if (*end != ',') break;
    }
  }
  if (*infoCount < n) {
    *infoCount = n;
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  if (n && !infos) return NVML_ERROR_INVALID_ARGUMENT;
  if (n) memcpy(infos, found, n * sizeof found[0]);
  *infoCount = n;
  return NVML_SUCCESS;
}

const char *nvmlErrorString(int result) {
  switch (result) {
  case NVML_SUCCESS: return "Success";
  case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
  case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
  case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
  case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
  case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
  default: return "Unknown Error";
  }
}
