/* GPU kernels behind AdamW and clipping (optim/optim_cuda.cu); f32 parameters and gradients. */
#ifndef LN_OPTIM_CUDA_H
#define LN_OPTIM_CUDA_H

/* One parameter for the multi-tensor AdamW: weights, gradient, moments (f32, n each) and its
 * decoupled decay (lr * weight decay, or 0). */
typedef struct {
    float *w;
    const float *g;
    float *m, *v;
    long long n;
    double decay;
} ln_adamw_item;

/* AdamW over all the items in a few launches. clip: NULL, or a device float every gradient is
 * scaled by first (NaN: leave every parameter as it was). */
int ln_adamw_update_many_cuda(const ln_adamw_item *items, int count, double lr, double beta1, double beta2,
                              double eps, double bias1, double bias2, const float *clip);
/* The global L2 norm of the gradients (double, summed in a fixed order) and the clip factor
 * (float: max_norm / norm when max_norm > 0 and the norm exceeds it, else 1; NaN when the norm is
 * not finite), both computed on the device into a buffer of the module's: *norm and *clip point
 * into it. Nothing waits for the host. */
int ln_grad_norm_cuda(const float *const *grads, const long long *n, int count, double max_norm, double **norm,
                      float **clip);
/* g *= *s on the device. */
int ln_scale_cuda(float *g, long long n, const float *s);

#endif
