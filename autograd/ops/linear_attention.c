/* linear_attention: no decay (gla with g = 0), optionally normalized as in Katharopoulos et al.:
 *   num_t = scale q_t S_t,   den_t = scale q_t . z_t + eps,   z_t = sum_{s<=t} k_s,   o_t = num_t / den_t
 * (flash-linear-attention's normalize_output(q * scale, k, o), eps = LN_LINEAR_ATTN_EPS; z restarts
 * with every sequence or document). Backward of the normalization, with r_t = 1 / den_t:
 *   dnum_t = r_t do_t,   dden_t = -r_t (do_t . o_t),
 *   dq_t += scale dden_t z_t,   dk_s += sum_{t>=s} scale dden_t q_t
 * and dnum goes through the unnormalized backward. */
#include <stdlib.h>

#include "../error.h"
#include "gla_family.h"

/* den [tokens, H] and z [tokens, H, K] (the running key sum of each sequence) */
static void normalizer(const gla_io *io, double *z, double *den) {
    const int64_t H = io->p.H, K = io->p.K;
    for (int64_t n = 0; n < io->p.n_seq; n++)
        for (int64_t t = io->starts[n]; t < io->starts[n + 1]; t++)
            for (int64_t h = 0; h < H; h++) {
                int64_t r = t * H + h;
                double s = 0;
                for (int64_t d = 0; d < K; d++) {
                    z[r * K + d] = io->k[r * K + d] + (t > io->starts[n] ? z[(r - H) * K + d] : 0.0);
                    s += io->q[r * K + d] * z[r * K + d];
                }
                den[r] = io->p.scale * s + LN_LINEAR_ATTN_EPS;
            }
}

static int normalized_forward_cpu(ln_node *n) {
    gla_io io;
    if (gla_io_read(n, &io)) return LN_ERR;
    const gla_problem *p = &io.p;
    const int64_t rows = io.tokens * p->H;
    double *o = ln_f64_zeros(rows * p->V), *z = ln_f64_zeros(rows * p->K), *den = ln_f64_zeros(rows);
    double *ht = n->iarg[5] ? ln_f64_zeros(p->n_seq * p->H * p->K * p->V) : NULL;
    int status = LN_ERR;
    if (o && z && den && (ht || !n->iarg[5]) && gla_forward(p, io.q, io.k, io.v, io.g, io.h0, o, ht) == LN_OK) {
        normalizer(&io, z, den);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t e = 0; e < p->V; e++) o[r * p->V + e] /= den[r];
        status = ln_f64_write(n->out[0], o);
        if (status == LN_OK) status = gla_io_write_ht(n, ht);
    }
    free(o), free(z), free(den), free(ht);
    gla_io_free(&io);
    return status;
}

static int normalized_backward_cpu(ln_node *n) {
    gla_io io;
    if (gla_io_read(n, &io)) return LN_ERR;
    const gla_problem *p = &io.p;
    const int64_t H = p->H, K = p->K, V = p->V, rows = io.tokens * H;
    bool failed;
    double *dht = gla_io_read_dht(n, &failed), *dout = ln_f64_read_grad(n->out[0]);
    double *num = ln_f64_zeros(rows * V), *z = ln_f64_zeros(rows * K), *den = ln_f64_zeros(rows);
    double *dq = ln_f64_zeros(rows * K), *dk = ln_f64_zeros(rows * K), *dg = ln_f64_zeros(rows * K);
    double *dv = ln_f64_zeros(rows * V), *dh0 = io.h0 ? ln_f64_zeros(p->n_seq * H * K * V) : NULL;
    double *dz = ln_f64_zeros(K);
    int status = LN_ERR;
    if (failed || !dout || !num || !z || !den || !dq || !dk || !dg || !dv || (io.h0 && !dh0) || !dz ||
        gla_forward(p, io.q, io.k, io.v, io.g, io.h0, num, NULL))
        goto done;
    normalizer(&io, z, den);
    double *dden = den; /* den's slots become dden once read */
    for (int64_t r = 0; r < rows; r++) {
        double inv = 1.0 / den[r], dot = 0;
        for (int64_t e = 0; e < V; e++) {
            dot += dout[r * V + e] * num[r * V + e] * inv; /* do . o */
            dout[r * V + e] *= inv;                          /* dnum */
        }
        dden[r] = -inv * dot;
    }
    if (gla_backward(p, io.q, io.k, io.v, io.g, io.h0, dout, dht, dq, dk, dv, dg, dh0)) goto done;
    for (int64_t s = 0; s < p->n_seq; s++)
        for (int64_t h = 0; h < H; h++) { /* dk_s = reverse running sum of dz_t = scale dden_t q_t */
            for (int64_t d = 0; d < K; d++) dz[d] = 0;
            for (int64_t t = io.starts[s + 1] - 1; t >= io.starts[s]; t--) {
                int64_t r = t * H + h;
                for (int64_t d = 0; d < K; d++) {
                    dq[r * K + d] += p->scale * dden[r] * z[r * K + d];
                    dz[d] += p->scale * dden[r] * io.q[r * K + d];
                    dk[r * K + d] += dz[d];
                }
            }
        }
    status = gla_io_accum_grads(n, &io, dq, dk, dv, dg, dh0);
done:
    free(dht), free(dout), free(num), free(z), free(den), free(dq), free(dk), free(dg), free(dv), free(dh0), free(dz);
    gla_io_free(&io);
    return status;
}

static int linear_attention_forward_cpu(ln_node *n) {
    return n->iarg[6] ? normalized_forward_cpu(n) : gla_family_forward_cpu(n);
}
static int linear_attention_backward_cpu(ln_node *n) {
    return n->iarg[6] ? normalized_backward_cpu(n) : gla_family_backward_cpu(n);
}

static const ln_op linear_attention_op = {
    .name = "linear_attention",
    .forward = {[LN_CPU] = linear_attention_forward_cpu LN_ON_CUDA(gla_family_forward_cuda)},
    .backward = {[LN_CPU] = linear_attention_backward_cpu LN_ON_CUDA(gla_family_backward_cuda)},
};

ln_tensor *ln_linear_attention(ln_tensor *q, ln_tensor *k, ln_tensor *v, bool normalize, const ln_gla_opts *opts,
                               ln_tensor **ht) {
    return gla_family_record(&linear_attention_op, GLA_GATE_NONE, q, k, v, NULL, opts, normalize, ht);
}
