/* The CUDA half of the op profiler (profile.h): event pairs on the stream. */
#ifndef LN_CUDA_PROFILE_H
#define LN_CUDA_PROFILE_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Records an event on the stream: the start (end = false) or the end of one op call. */
void ln_cuda_profile_mark(const char *name, bool backward, bool end);
/* Waits for the recorded pairs and adds each elapsed time to the totals (ln_profile_add). */
void ln_cuda_profile_flush(void);
void ln_profile_add(const char *name, bool backward, double ms);

#ifdef __cplusplus
}
#endif

#endif
