// GPU checkpoint/restore support: the CUDA driver's process checkpoint API (cuda.ts) and GPU
// memory figures from NVML (nvml.ts). Both load their library lazily, on first use.
export {
  CUDA_LIB_ENV,
  CudaDriver,
  CudaError,
  cudaLibPath,
  type CudaOp,
  type CudaProcessState,
  CUresult,
  cuResultName,
  findCudaPids,
  gpuAvailable,
  GpuUnavailable,
  usesCuda,
} from "./cuda.ts";
export {
  freeGpuMemory,
  type GpuMemory,
  gpuMemory,
  Nvml,
  NVML_LIB_ENV,
  nvmlLibPath,
  processGpuMemory,
} from "./nvml.ts";
