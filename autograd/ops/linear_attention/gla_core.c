/* The gated linear attention driver: splits the problem into (sequence, head) pieces, gathers
 * each into contiguous arrays, runs the recurrent or chunked form on it and scatters results
 * back. The sequence routines never see strides, batch entries or documents. */
#include "gla_core.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"

/* rows [t0, t0 + L) of head h of a [tokens, H, D] array <-> a contiguous [L, D] array */
static void gather(const double *src, int64_t t0, int64_t L, int64_t H, int64_t h, int64_t D, double *dst) {
    for (int64_t t = 0; t < L; t++) memcpy(dst + t * D, src + ((t0 + t) * H + h) * D, (size_t)D * sizeof *dst);
}
static void scatter(const double *src, int64_t t0, int64_t L, int64_t H, int64_t h, int64_t D, double *dst) {
    for (int64_t t = 0; t < L; t++) memcpy(dst + ((t0 + t) * H + h) * D, src + t * D, (size_t)D * sizeof *dst);
}

static int64_t longest(const gla_problem *p) {
    int64_t m = 1;
    for (int64_t n = 0; n < p->n_seq; n++)
        if (p->starts[n + 1] - p->starts[n] > m) m = p->starts[n + 1] - p->starts[n];
    return m;
}

/* Per-piece scratch: the gathered inputs and results of one (sequence, head). */
typedef struct {
    double *q, *k, *v, *g, *o, *dq, *dk, *dv, *dg, *S, *dS, *h0;
} piece;

static void piece_free(piece *s) {
    double **f[] = {&s->q, &s->k, &s->v, &s->g, &s->o, &s->dq, &s->dk, &s->dv, &s->dg, &s->S, &s->dS, &s->h0};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) free(*f[i]);
}

static int piece_alloc(piece *s, int64_t L, int64_t K, int64_t V, bool backward) {
    memset(s, 0, sizeof *s);
    s->q = malloc((size_t)(L * K) * sizeof(double));
    s->k = malloc((size_t)(L * K) * sizeof(double));
    s->g = malloc((size_t)(L * K) * sizeof(double));
    s->v = malloc((size_t)(L * V) * sizeof(double));
    s->o = malloc((size_t)(L * V) * sizeof(double)); /* forward: o; backward: dout */
    s->S = malloc((size_t)(K * V) * sizeof(double));
    bool ok = s->q && s->k && s->g && s->v && s->o && s->S;
    if (backward) {
        s->dq = malloc((size_t)(L * K) * sizeof(double));
        s->dk = malloc((size_t)(L * K) * sizeof(double));
        s->dg = malloc((size_t)(L * K) * sizeof(double));
        s->dv = malloc((size_t)(L * V) * sizeof(double));
        s->dS = malloc((size_t)(K * V) * sizeof(double));
        ok = ok && s->dq && s->dk && s->dg && s->dv && s->dS;
    }
    if (!ok) {
        piece_free(s);
        return ln_fail("gla: out of host memory for a %lld-token sequence", (long long)L);
    }
    return LN_OK;
}

static void load_state(const double *src, int64_t n, int64_t H, int64_t h, int64_t KV, double *dst) {
    if (src)
        memcpy(dst, src + (n * H + h) * KV, (size_t)KV * sizeof *dst);
    else
        memset(dst, 0, (size_t)KV * sizeof *dst);
}

int gla_forward(const gla_problem *p, const double *q, const double *k, const double *v, const double *g,
                const double *h0, double *o, double *ht) {
    const int64_t H = p->H, K = p->K, V = p->V, KV = K * V;
    piece s;
    if (piece_alloc(&s, longest(p), K, V, false)) return LN_ERR;
    int status = LN_OK;
    for (int64_t n = 0; n < p->n_seq && status == LN_OK; n++) {
        int64_t t0 = p->starts[n], L = p->starts[n + 1] - t0;
        for (int64_t h = 0; h < H && status == LN_OK; h++) {
            gather(q, t0, L, H, h, K, s.q);
            gather(k, t0, L, H, h, K, s.k);
            gather(g, t0, L, H, h, K, s.g);
            gather(v, t0, L, H, h, V, s.v);
            load_state(h0, n, H, h, KV, s.S);
            if (p->chunk > 0)
                status = gla_seq_forward_chunked(L, K, V, p->chunk, p->scale, s.q, s.k, s.v, s.g, s.S, s.o);
            else
                gla_seq_forward_recurrent(L, K, V, p->scale, s.q, s.k, s.v, s.g, s.S, s.o);
            scatter(s.o, t0, L, H, h, V, o);
            if (ht) memcpy(ht + (n * H + h) * KV, s.S, (size_t)KV * sizeof *ht);
        }
    }
    piece_free(&s);
    return status;
}

int gla_backward(const gla_problem *p, const double *q, const double *k, const double *v, const double *g,
                 const double *h0, const double *dout, const double *dht, double *dq, double *dk, double *dv,
                 double *dg, double *dh0) {
    const int64_t H = p->H, K = p->K, V = p->V, KV = K * V;
    piece s;
    if (piece_alloc(&s, longest(p), K, V, true)) return LN_ERR;
    int status = LN_OK;
    for (int64_t n = 0; n < p->n_seq && status == LN_OK; n++) {
        int64_t t0 = p->starts[n], L = p->starts[n + 1] - t0;
        for (int64_t h = 0; h < H && status == LN_OK; h++) {
            gather(q, t0, L, H, h, K, s.q);
            gather(k, t0, L, H, h, K, s.k);
            gather(g, t0, L, H, h, K, s.g);
            gather(v, t0, L, H, h, V, s.v);
            gather(dout, t0, L, H, h, V, s.o);
            load_state(h0, n, H, h, KV, s.S);
            load_state(dht, n, H, h, KV, s.dS);
            if (p->chunk > 0)
                status = gla_seq_backward_chunked(L, K, V, p->chunk, p->scale, s.q, s.k, s.v, s.g, s.S, s.o, s.dS,
                                                  s.dq, s.dk, s.dv, s.dg);
            else
                status = gla_seq_backward_recurrent(L, K, V, p->scale, s.q, s.k, s.v, s.g, s.S, s.o, s.dS, s.dq,
                                                    s.dk, s.dv, s.dg);
            scatter(s.dq, t0, L, H, h, K, dq);
            scatter(s.dk, t0, L, H, h, K, dk);
            scatter(s.dg, t0, L, H, h, K, dg);
            scatter(s.dv, t0, L, H, h, V, dv);
            if (dh0) memcpy(dh0 + (n * H + h) * KV, s.dS, (size_t)KV * sizeof *dh0);
        }
    }
    piece_free(&s);
    return status;
}
