/* Device memory: one entry point per action, dispatched on the device. The CUDA side lives in
 * cuda/cuda_memory.cu and is compiled whenever nvcc is present. */
#ifndef LN_MEMORY_H
#define LN_MEMORY_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor.h"

void *ln_device_alloc_zeroed(ln_device device, size_t bytes); /* NULL + message on failure */
void ln_device_free(ln_device device, void *ptr);
void ln_device_memset0(ln_device device, void *ptr, size_t bytes);
int ln_device_copy(ln_device dst_device, void *dst, ln_device src_device, const void *src, size_t bytes);

/* Whether this build has the CUDA backend and a GPU is visible now (name filled when so). */
bool ln_cuda_available(char *name, size_t name_len);

#endif
