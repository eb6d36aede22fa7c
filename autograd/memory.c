#include "memory.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

#ifdef LINNET_CUDA
void *ln_cuda_alloc(size_t bytes);
void *ln_cuda_alloc_zeroed(size_t bytes);
void ln_cuda_free(void *ptr);
void ln_cuda_memset0(void *ptr, size_t bytes);
int ln_cuda_fill_bytes(void *ptr, int byte, size_t bytes);
int ln_cuda_copy(void *dst, bool dst_on_gpu, const void *src, bool src_on_gpu, size_t bytes);
bool ln_cuda_probe(char *name, size_t name_len);
#endif

void *ln_device_alloc_zeroed(ln_device device, size_t bytes) {
    if (device == LN_CPU) {
        void *p = calloc(1, bytes);
        if (!p) ln_fail("out of host memory (%zu bytes)", bytes);
        return p;
    }
#ifdef LINNET_CUDA
    return ln_cuda_alloc_zeroed(bytes);
#else
    ln_fail("this build of linnet has no CUDA backend (nvcc was not found at build time)");
    return NULL;
#endif
}

void *ln_device_alloc(ln_device device, size_t bytes) {
#ifdef LINNET_CUDA
    if (device == LN_CUDA) return ln_cuda_alloc(bytes);
#endif
    return ln_device_alloc_zeroed(device, bytes); /* host memory: calloc costs next to nothing */
}

void ln_device_free(ln_device device, void *ptr) {
    if (device == LN_CPU) {
        free(ptr);
        return;
    }
#ifdef LINNET_CUDA
    ln_cuda_free(ptr);
#endif
}

void ln_device_memset0(ln_device device, void *ptr, size_t bytes) {
    if (device == LN_CPU) {
        memset(ptr, 0, bytes);
        return;
    }
#ifdef LINNET_CUDA
    ln_cuda_memset0(ptr, bytes);
#endif
}

int ln_device_copy(ln_device dst_device, void *dst, ln_device src_device, const void *src, size_t bytes) {
    if (dst_device == LN_CPU && src_device == LN_CPU) {
        memcpy(dst, src, bytes);
        return LN_OK;
    }
#ifdef LINNET_CUDA
    return ln_cuda_copy(dst, dst_device == LN_CUDA, src, src_device == LN_CUDA, bytes);
#else
    return ln_fail("this build of linnet has no CUDA backend");
#endif
}

bool ln_cuda_available(char *name, size_t name_len) {
#ifdef LINNET_CUDA
    return ln_cuda_probe(name, name_len);
#else
    (void)name;
    (void)name_len;
    return false;
#endif
}

int ln_device_poison(ln_device device, void *ptr, size_t bytes) {
    if (device == LN_CPU) {
        memset(ptr, 0xFF, bytes);
        return LN_OK;
    }
#ifdef LINNET_CUDA
    return ln_cuda_fill_bytes(ptr, 0xFF, bytes);
#else
    return ln_fail("this build of linnet has no CUDA backend");
#endif
}

static bool poison_outputs;

void ln_set_poison_outputs(bool on) { poison_outputs = on; }

bool ln_poison_outputs(void) { return poison_outputs; }
