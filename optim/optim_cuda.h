/* GPU kernels behind AdamW and clipping (optim/optim_cuda.cu); f32 parameters and gradients. */
#ifndef LN_OPTIM_CUDA_H
#define LN_OPTIM_CUDA_H

/* clip: NULL, or a device float every gradient is scaled by first (NaN: leave the parameter). */
int ln_adamw_update_cuda(float *w, const float *g, float *m, float *v, long long n, double lr, double beta1,
                         double beta2, double eps, double decay, double bias1, double bias2, const float *clip);
/* Global norm: ln_norm_partials gives a zeroed device buffer, ln_sum_squares_cuda adds each
 * gradient's squares into it, ln_norm_finish sums it on the host (one sync). */
int ln_norm_partials(double **partials);
int ln_sum_squares_cuda(const float *g, long long n, double *partials);
int ln_norm_finish(const double *partials, double *sum);
int ln_scale_cuda(float *g, long long n, double s);
/* From the partials, on the device: the norm (double) and the clip factor (float, see adamw_kernel),
 * in a device buffer of the module's, pointed to by *norm and *clip. */
int ln_norm_clip_cuda(const double *partials, double max_norm, double **norm, float **clip);

#endif
