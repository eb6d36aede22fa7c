/* AdamW with decoupled weight decay (Loshchilov & Hutter): moments in f32, one per parameter. */
#ifndef LN_ADAMW_H
#define LN_ADAMW_H

#include "layers/params.h"
#include "recipes/config.h"

typedef struct ln_adamw {
    ln_optim_config cfg;
    ln_params *params;
    ln_tensor **m, **v; /* first and second moments, shaped like each parameter */
    int64_t step;       /* updates applied so far (for bias correction) */
} ln_adamw;

int ln_adamw_create(ln_adamw *opt, ln_params *params, const ln_optim_config *cfg);
/* One update of every parameter from its gradient, at learning rate lr. */
int ln_adamw_step(ln_adamw *opt, double lr);
/* ln_clip_grad_norm then ln_adamw_step, the same numbers, with the norm before clipping in *norm.
 * On the GPU the norm and the clip factor stay on the device, queued with the update behind the
 * backward, and the copy of the norm back is the step's one sync (the trainer's GPU then never
 * waits for the host between backward and update). A norm that is not finite leaves every
 * parameter (and the step count) as it was: the caller reports it. */
int ln_adamw_clip_step(ln_adamw *opt, double lr, double max_norm, double *norm);
/* Whether weight decay applies to parameter i (not norms; embeddings only if configured). */
bool ln_adamw_decays(const ln_adamw *opt, int i);
void ln_adamw_free(ln_adamw *opt);

/* Learning rate at optimizer step `step` (0-based): linear warmup to lr over `warmup` steps, then
 * cosine decay to min_lr at `total` steps. */
double ln_lr_at(const ln_optim_config *cfg, int64_t step, int64_t total);

/* Global L2 norm of all gradients (in double); when max_norm > 0 and the norm exceeds it, scales
 * every gradient by max_norm / norm. Returns the norm before clipping. */
double ln_clip_grad_norm(ln_params *params, double max_norm);

#endif
