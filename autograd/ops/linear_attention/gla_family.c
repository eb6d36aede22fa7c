/* Validation, node layout and the CPU kernels shared by gla, simple_gla and linear_attention. */
#include "gla_family.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"

/* ---- validation ---- */

static bool check_float(const char *op, const ln_tensor *t, const char *role) {
    if (ln_dtype_is_float(t->dtype)) return true;
    char s[96];
    ln_fail("%s: %s %s is %s; it must be floating point (f32, f64, bf16)", op, ln_tensor_label(t, role),
            ln_shape_str(t, s, sizeof s), ln_dtype_name(t->dtype));
    return false;
}

/* cu_seqlens: i32 [N + 1], 0 = cu[0] <= cu[1] <= .. <= cu[N] = T. Returns N, or -1 (message set). */
static int64_t check_cu_seqlens(const char *op, const ln_tensor *cu, const ln_tensor *q) {
    const char *cn = ln_tensor_label(cu, "cu_seqlens");
    char cs[96], qs[96];
    ln_shape_str(cu, cs, sizeof cs);
    ln_shape_str(q, qs, sizeof qs);
    if (cu->dtype != LN_I32 || cu->ndim != 1 || cu->shape[0] < 2) {
        ln_fail("%s: %s %s %s must be i32 [N + 1] with N >= 1 documents", op, cn, cs, ln_dtype_name(cu->dtype));
        return -1;
    }
    if (q->shape[0] != 1) {
        ln_fail("%s: packed documents (%s %s) need batch 1, got %s %s", op, cn, cs, ln_tensor_label(q, "q"), qs);
        return -1;
    }
    int64_t N = cu->shape[0] - 1;
    double prev = 0;
    for (int64_t i = 0; i <= N; i++) {
        double c = ln_item(cu, i);
        if ((i == 0 && c != 0) || c < prev || (i == N && c != (double)q->shape[1]) || isnan(c)) {
            ln_fail("%s: %s %s must rise from 0 to T = %lld (%s %s); entry %lld is %g", op, cn, cs,
                    (long long)q->shape[1], ln_tensor_label(q, "q"), qs, (long long)i, c);
            return -1;
        }
        prev = c;
    }
    return N;
}

static bool check_shapes(const char *op, gla_gate gate, const ln_tensor *q, const ln_tensor *k, const ln_tensor *v,
                         const ln_tensor *g) {
    const char *qn = ln_tensor_label(q, "q"), *kn = ln_tensor_label(k, "k"), *vn = ln_tensor_label(v, "v");
    char qs[96], ks[96], vs[96], gs[96];
    ln_shape_str(q, qs, sizeof qs);
    ln_shape_str(k, ks, sizeof ks);
    ln_shape_str(v, vs, sizeof vs);
    if (q->ndim != 4 || q->shape[2] < 1 || q->shape[3] < 1) {
        ln_fail("%s: %s %s must be [B, T, H, K] with H, K >= 1", op, qn, qs);
        return false;
    }
    if (!ln_same_shape(q, k)) {
        ln_fail("%s: %s %s must have the shape of %s %s", op, kn, ks, qn, qs);
        return false;
    }
    if (v->ndim != 4 || v->shape[0] != q->shape[0] || v->shape[1] != q->shape[1] || v->shape[2] != q->shape[2] ||
        v->shape[3] < 1) {
        ln_fail("%s: %s %s must be [B, T, H, V] matching %s %s", op, vn, vs, qn, qs);
        return false;
    }
    if (gate == GLA_GATE_NONE) return true;
    ln_shape_str(g, gs, sizeof gs);
    bool ok = gate == GLA_GATE_PER_KEY ? ln_same_shape(g, q)
                                       : g->ndim == 3 && g->shape[0] == q->shape[0] && g->shape[1] == q->shape[1] &&
                                             g->shape[2] == q->shape[2];
    if (!ok)
        ln_fail("%s: %s %s must be %s for %s %s", op, ln_tensor_label(g, "g"), gs,
                gate == GLA_GATE_PER_KEY ? "[B, T, H, K] (q's shape)" : "[B, T, H]", qn, qs);
    return ok;
}

ln_tensor *gla_family_record(const ln_op *op, gla_gate gate, ln_tensor *q, ln_tensor *k, ln_tensor *v,
                             ln_tensor *g, const ln_gla_opts *opts, ln_tensor **ht) {
    static const ln_gla_opts defaults = {0};
    if (!opts) opts = &defaults;
    if (ht) *ht = NULL;
    if (!q || !k || !v || (gate != GLA_GATE_NONE && !g)) return NULL; /* an earlier op failed */
    const char *on = op->name;
    if (!check_float(on, q, "q") || !check_float(on, k, "k") || !check_float(on, v, "v") ||
        (g && !check_float(on, g, "g")) || (opts->h0 && !check_float(on, opts->h0, "h0")))
        return NULL;
    if (!check_shapes(on, gate, q, k, v, g)) return NULL;
    const int64_t B = q->shape[0], H = q->shape[2], K = q->shape[3], V = v->shape[3];
    char qs[96], hs[96];
    ln_shape_str(q, qs, sizeof qs);
    int64_t n_seq = B;
    if (opts->cu_seqlens && (n_seq = check_cu_seqlens(on, opts->cu_seqlens, q)) < 0) return NULL;
    if (opts->h0) {
        const ln_tensor *h0 = opts->h0;
        if (h0->ndim != 4 || h0->shape[0] != n_seq || h0->shape[1] != H || h0->shape[2] != K || h0->shape[3] != V) {
            ln_fail("%s: %s %s must be [%s, H, K, V] = [%lld, %lld, %lld, %lld] for %s %s", on,
                    ln_tensor_label(h0, "h0"), ln_shape_str(h0, hs, sizeof hs), opts->cu_seqlens ? "N" : "B",
                    (long long)n_seq, (long long)H, (long long)K, (long long)V, ln_tensor_label(q, "q"), qs);
            return NULL;
        }
    }
    if (!isfinite(opts->scale)) {
        ln_fail("%s: scale %g is not finite (%s %s)", on, opts->scale, ln_tensor_label(q, "q"), qs);
        return NULL;
    }
    if (opts->chunk_size < 0) {
        ln_fail("%s: chunk_size %d must be >= 0 (%s %s)", on, opts->chunk_size, ln_tensor_label(q, "q"), qs);
        return NULL;
    }
    if (opts->want_final_state && !ht) {
        ln_fail("%s: want_final_state needs somewhere to put ht (%s %s)", on, ln_tensor_label(q, "q"), qs);
        return NULL;
    }
    ln_tensor *in[6] = {q, k, v};
    int n_in = 3, gi = -1, hi = -1, ci = -1;
    if (gate != GLA_GATE_NONE) in[gi = n_in++] = g;
    if (opts->h0) in[hi = n_in++] = opts->h0;
    if (opts->cu_seqlens) in[ci = n_in++] = opts->cu_seqlens;
    ln_node *n = ln_node_begin(op, n_in, in);
    ln_tensor *o = ln_node_output(n, q->dtype, 4, v->shape);
    ln_tensor *h = NULL;
    if (o && opts->want_final_state)
        h = ln_node_output(n, q->dtype == LN_F64 ? LN_F64 : LN_F32, 4, (int64_t[]){n_seq, H, K, V});
    if (!o || (opts->want_final_state && !h)) return NULL;
    n->iarg[0] = gate;
    n->iarg[1] = gi;
    n->iarg[2] = hi;
    n->iarg[3] = ci;
    n->iarg[4] = opts->chunk_size;
    n->iarg[5] = opts->want_final_state;
    n->farg[0] = opts->scale != 0 ? opts->scale : 1.0 / sqrt((double)K);
    if (ln_node_run(n) != LN_OK) return NULL;
    if (ht) *ht = h;
    return o;
}

/* ---- reading a node ---- */

/* A node's inputs as doubles; g is expanded to [tokens, H, K] (log decay 0 for no gate). */
typedef struct {
    gla_problem p;
    int64_t tokens;
    int64_t *starts;
    double *q, *k, *v, *g, *h0; /* h0 NULL when absent */
} gla_io;

static void gla_io_free(gla_io *io) {
    free(io->starts);
    free(io->q);
    free(io->k);
    free(io->v);
    free(io->g);
    free(io->h0);
    memset(io, 0, sizeof *io);
}

/* g as [tokens, H, K] log decays: per-head gates repeat over K, no gate is 0. */
static double *read_gate(ln_node *n, const gla_io *io) {
    const int64_t H = io->p.H, K = io->p.K, rows = io->tokens * H;
    if (n->iarg[0] == GLA_GATE_PER_KEY) return ln_f64_read(n->in[n->iarg[1]]);
    double *g = ln_f64_zeros(rows * K);
    if (!g || n->iarg[0] == GLA_GATE_NONE) return g;
    double *gh = ln_f64_read(n->in[n->iarg[1]]);
    if (!gh) {
        free(g);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t d = 0; d < K; d++) g[r * K + d] = gh[r];
    free(gh);
    return g;
}

static int gla_io_read(ln_node *n, gla_io *io) {
    memset(io, 0, sizeof *io);
    const ln_tensor *q = n->in[0], *v = n->in[2];
    const int64_t B = q->shape[0], T = q->shape[1];
    const ln_tensor *cu = n->iarg[3] >= 0 ? n->in[n->iarg[3]] : NULL;
    io->tokens = B * T;
    io->p = (gla_problem){.n_seq = cu ? cu->shape[0] - 1 : B, .H = q->shape[2], .K = q->shape[3],
                          .V = v->shape[3], .scale = n->farg[0], .chunk = n->iarg[4]};
    io->starts = malloc((size_t)(io->p.n_seq + 1) * sizeof *io->starts);
    if (!io->starts) return ln_fail("%s: out of host memory", n->op->name);
    for (int64_t i = 0; i <= io->p.n_seq; i++) io->starts[i] = cu ? (int64_t)ln_get(cu, i) : i * T;
    io->p.starts = io->starts;
    io->q = ln_f64_read(n->in[0]);
    io->k = ln_f64_read(n->in[1]);
    io->v = ln_f64_read(n->in[2]);
    io->g = read_gate(n, io);
    if (n->iarg[2] >= 0) io->h0 = ln_f64_read(n->in[n->iarg[2]]);
    if (!io->q || !io->k || !io->v || !io->g || (n->iarg[2] >= 0 && !io->h0)) {
        gla_io_free(io);
        return LN_ERR;
    }
    return LN_OK;
}

/* Writes ht (when the node has it). */
static int gla_io_write_ht(ln_node *n, const double *ht) { return n->iarg[5] ? ln_f64_write(n->out[1], ht) : LN_OK; }

/* The gradient reaching ht, or NULL when ht is absent or unused (caller frees). */
static double *gla_io_read_dht(ln_node *n, bool *failed) {
    *failed = false;
    if (!n->iarg[5] || !n->out[1]->grad) return NULL;
    double *d = ln_f64_read(n->out[1]->grad);
    *failed = d == NULL;
    return d;
}

/* Accumulates dq, dk, dv, dg ([tokens, H, K], reduced over K for a per-head gate) and dh0 into
 * the inputs that require gradients. */
static int gla_io_accum_grads(ln_node *n, const gla_io *io, const double *dq, const double *dk, const double *dv,
                              const double *dg, const double *dh0) {
    if (ln_f64_accum_grad(n->in[0], dq) || ln_f64_accum_grad(n->in[1], dk) || ln_f64_accum_grad(n->in[2], dv))
        return LN_ERR;
    if (n->iarg[2] >= 0 && ln_f64_accum_grad(n->in[n->iarg[2]], dh0)) return LN_ERR;
    if (n->iarg[0] == GLA_GATE_PER_KEY) return ln_f64_accum_grad(n->in[n->iarg[1]], dg);
    if (n->iarg[0] == GLA_GATE_NONE) return LN_OK;
    /* a per-head gate reaches every key channel: its gradient is the sum over them */
    const int64_t K = io->p.K, rows = io->tokens * io->p.H;
    double *dgh = ln_f64_zeros(rows);
    if (!dgh) return LN_ERR;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t d = 0; d < K; d++) dgh[r] += dg[r * K + d];
    int status = ln_f64_accum_grad(n->in[n->iarg[1]], dgh);
    free(dgh);
    return status;
}

/* ---- the CPU kernels ---- */

int gla_family_forward_cpu(ln_node *n) {
    gla_io io;
    if (gla_io_read(n, &io)) return LN_ERR;
    const gla_problem *p = &io.p;
    double *o = ln_f64_zeros(io.tokens * p->H * p->V);
    double *ht = n->iarg[5] ? ln_f64_zeros(p->n_seq * p->H * p->K * p->V) : NULL;
    int status = LN_ERR;
    if (o && (ht || !n->iarg[5]) && gla_forward(p, io.q, io.k, io.v, io.g, io.h0, o, ht) == LN_OK &&
        ln_f64_write(n->out[0], o) == LN_OK)
        status = gla_io_write_ht(n, ht);
    free(o);
    free(ht);
    gla_io_free(&io);
    return status;
}

int gla_family_backward_cpu(ln_node *n) {
    gla_io io;
    if (gla_io_read(n, &io)) return LN_ERR;
    const gla_problem *p = &io.p;
    const int64_t nk = io.tokens * p->H * p->K, nv = io.tokens * p->H * p->V;
    bool failed;
    double *dht = gla_io_read_dht(n, &failed), *dout = ln_f64_read_grad(n->out[0]);
    double *dq = ln_f64_zeros(nk), *dk = ln_f64_zeros(nk), *dg = ln_f64_zeros(nk), *dv = ln_f64_zeros(nv);
    double *dh0 = io.h0 ? ln_f64_zeros(p->n_seq * p->H * p->K * p->V) : NULL;
    int status = LN_ERR;
    if (!failed && dout && dq && dk && dg && dv && (dh0 || !io.h0) &&
        gla_backward(p, io.q, io.k, io.v, io.g, io.h0, dout, dht, dq, dk, dv, dg, dh0) == LN_OK)
        status = gla_io_accum_grads(n, &io, dq, dk, dv, dg, dh0);
    free(dht);
    free(dout);
    free(dq);
    free(dk);
    free(dg);
    free(dv);
    free(dh0);
    gla_io_free(&io);
    return status;
}
