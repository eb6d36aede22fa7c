/* Device memory: one entry point per action, dispatched on the device. The CUDA side lives in
 * cuda/cuda_memory.cu and is compiled whenever nvcc is present. */
#ifndef LN_MEMORY_H
#define LN_MEMORY_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor.h"

void *ln_device_alloc_zeroed(ln_device device, size_t bytes); /* NULL + message on failure */
/* Contents undefined on the GPU (zero on the host): for buffers a kernel writes in full. */
void *ln_device_alloc(ln_device device, size_t bytes);
void ln_device_free(ln_device device, void *ptr);
void ln_device_memset0(ln_device device, void *ptr, size_t bytes);
int ln_device_copy(ln_device dst_device, void *dst, ln_device src_device, const void *src, size_t bytes);

/* Sets every byte to 0xFF: NaN in f32, f64 and bf16. Tests poison op outputs this way so an
 * element a kernel forgets to write can never pass. */
int ln_device_poison(ln_device device, void *ptr, size_t bytes);
/* While on, ln_node_output poisons every output it makes, and ln_grad_for_write every gradient it
 * leaves unfilled (ln_grad_of's gradients still start at zero). */
void ln_set_poison_outputs(bool on);
bool ln_poison_outputs(void);

/* Whether this build has the CUDA backend and a GPU is visible now (name filled when so). */
bool ln_cuda_available(char *name, size_t name_len);

#endif
