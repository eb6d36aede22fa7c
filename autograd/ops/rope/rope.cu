// Rotary position embedding on the GPU: x [B, T, H, D] f32 or bf16, fp32 arithmetic. Same math as
// rope.c (the CPU reference): the pairs (i, i + D/2) turn by (pos_offset + t) theta^(-2i/D);
// backward turns dy back (the inverse rotation) and adds it into dx. Nothing is saved.
//
// The angles are computed in double, as on the CPU, once per (t, i) into a table of (cos, sin)
// rounded to f32: in f32 an angle near 6e4 rad is off by up to ~4e-3, which sin and cos keep.
// The table is T * D/2 entries, recomputed by each call (it is cheap next to x).
#include "autograd/cuda/cuda_check.cuh"

// cs[t * half + i] = (cos, sin) of (pos_offset + t) * theta^(-2i/D)
__global__ void rope_table_kernel(float2 *cs, long long steps, long long half, long long pos_offset, double theta) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < steps * half;
         e += (long long)gridDim.x * blockDim.x) {
        long long t = e / half, i = e % half;
        double angle = (double)(pos_offset + t) * pow(theta, -2.0 * (double)i / (double)(2 * half));
        double s, c;
        sincos(angle, &s, &c);
        cs[e] = make_float2((float)c, (float)s);
    }
}

// One block per (b, t) row of H * D elements: threadIdx.x runs over i < D/2, threadIdx.y over heads.
// out = rotate(in) by sign * angle; with accumulate, out += it instead (the backward's dx).
template <typename T>
__global__ void rope_kernel(const T *in, T *out, const float2 *cs, long long rows, long long steps, long long H,
                            long long half, float sign, bool accumulate) {
    for (long long bt = blockIdx.x; bt < rows; bt += gridDim.x) {
        const float2 *row_cs = cs + (bt % steps) * half;
        for (long long h = threadIdx.y; h < H; h += blockDim.y) {
            long long base = (bt * H + h) * 2 * half;
            for (long long i = threadIdx.x; i < half; i += blockDim.x) {
                float2 a = row_cs[i];
                float c = a.x, s = sign * a.y;
                float u = ln_load(in, base + i), v = ln_load(in, base + i + half);
                float y0 = u * c - v * s, y1 = v * c + u * s;
                if (accumulate) {
                    y0 += ln_load(out, base + i);
                    y1 += ln_load(out, base + i + half);
                }
                ln_store(out, base + i, y0);
                ln_store(out, base + i + half, y1);
            }
        }
    }
}

// out (=, or += with accumulate) in rotated by sign * the node's angles; in and out have its shape.
static int rope_run(ln_node *n, const ln_tensor *in, ln_tensor *out, float sign, bool accumulate) {
    const ln_tensor *shape_of = n->out[0];
    // steps is T (the name T is the storage type in the dispatch below)
    long long B = shape_of->shape[0], steps = shape_of->shape[1], H = shape_of->shape[2];
    long long half = shape_of->shape[3] / 2;
    if (shape_of->numel == 0) return LN_OK;
    if (in->dtype != LN_F32 && in->dtype != LN_BF16)
        return ln_fail("rope: the CUDA kernel takes f32 or bf16, not %s", ln_dtype_name(in->dtype));
    float2 *cs = NULL;
    LN_CUDA_TRY(cudaMallocAsync((void **)&cs, (size_t)(steps * half) * sizeof(float2), ln_stream()));
    rope_table_kernel<<<ln_grid(steps * half, 256), 256, 0, ln_stream()>>>(cs, steps, half,
                                                                            (long long)n->iarg[0], n->farg[0]);
    cudaError_t status = cudaPeekAtLastError();
    if (status == cudaSuccess) {
        // ~128 threads: a warp or more over i, the rest over heads
        unsigned bx = half >= 128 ? 128 : (unsigned)((half + 31) / 32 * 32), by = 128 / bx;
        if (by > H) by = (unsigned)H;
        long long rows = B * steps;
        unsigned grid = rows < (1LL << 20) ? (unsigned)rows : (1u << 20);
        LN_DISPATCH_FLOAT(in->dtype, "rope", {
            rope_kernel<T><<<grid, dim3(bx, by), 0, ln_stream()>>>((const T *)in->data, (T *)out->data, cs, rows,
                                                                  steps, H, half, sign, accumulate);
        });
        status = cudaPeekAtLastError();
    }
    LN_CUDA_TRY(cudaFreeAsync(cs, ln_stream())); // stream-ordered: after the kernels
    LN_CUDA_TRY(status);
    return LN_OK;
}

extern "C" int ln_rope_forward_cuda(ln_node *n) { return rope_run(n, n->in[0], n->out[0], 1.0f, false); }

extern "C" int ln_rope_backward_cuda(ln_node *n) {
    ln_tensor *x = n->in[0], *out = n->out[0];
    if (!out->grad || !x->requires_grad) return LN_OK;
    ln_tensor *dx = ln_grad_of(x);
    if (!dx) return LN_ERR;
    return rope_run(n, out->grad, dx, -1.0f, true); // the inverse rotation, added into dx
}
