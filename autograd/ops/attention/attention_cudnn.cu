// cuDNN fused flash attention (forward and backward) through the cuDNN 9 backend graph API.
//
// The fused SDPA engines are found by pattern: we describe attention as the operation graph the
// engines recognise (the one cudnn-frontend's composite SDPA nodes emit for cuDNN 9.x before the
// unified SDPA operations), and cuDNN's heuristics return the fused engine for it. The graphs are
// written out op by op in docs/attention-cudnn.md; build_forward_graph / build_backward_graph below
// follow that document line by line.
//
// Layout: our q is [B, T, Hq, D] contiguous; cuDNN wants dims [B, H, T, D], which is the same
// memory with strides (T*Hq*D, D, Hq*D, 1). K enters the forward matmul transposed ([B, Hkv, D, S],
// strides (S*Hkv*D, D, 1, Hkv*D)): again a stride swap, never a copy.
//
// Every backend call is checked; a failure names the graph and shape, the descriptor or op, the
// attribute, cuDNN's status and cuDNN's last error string, so one GPU run diagnoses it.
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/cuda_check.cuh"

extern "C" {
#include "autograd/ops/attention/attention_cudnn.h"
}

static char unsupported_reason[1024];

extern "C" const char *ln_attention_cudnn_unsupported_reason(void) { return unsupported_reason; }

#ifndef LINNET_CUDNN

extern "C" int ln_attention_cudnn_supported(const ln_node *n) {
    snprintf(unsupported_reason, sizeof unsupported_reason, "linnet was built without cuDNN");
    return 0;
}
extern "C" int ln_attention_cudnn_forward(ln_node *n) {
    return ln_fail("attention: cuDNN forward requested but linnet was built without cuDNN");
}
extern "C" int ln_attention_cudnn_backward(ln_node *n) {
    return ln_fail("attention: cuDNN backward requested but linnet was built without cuDNN");
}
extern "C" size_t ln_attention_cudnn_version(void) { return 0; }
extern "C" void ln_attention_cudnn_clear_cache(void) {}
extern "C" int ln_attention_cudnn_check_graph(int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                                              int causal, int backward, const char *device_json,
                                              int64_t *engine_index) {
    return ln_fail("attention: linnet was built without cuDNN");
}

#else // LINNET_CUDNN

#include <cudnn.h>

#if CUDNN_MAJOR < 9
#error "attention_cudnn.cu needs the cuDNN 9 headers"
#endif

// A failed cuDNN call (outside graph building) becomes a linnet error naming the call, cuDNN's
// status string and its last error message.
static int cudnn_failure(cudnnStatus_t status, const char *call, const char *file, int line) {
    char detail[512] = "";
    cudnnGetLastErrorString(detail, sizeof detail);
    return ln_fail("%s failed: %s (%d)%s%s (%s:%d)", call, cudnnGetErrorString(status), (int)status,
                   detail[0] ? ": " : "", detail, file, line);
}

#define LN_CUDNN_TRY(call)                                                                         \
    do {                                                                                           \
        cudnnStatus_t cudnn_status_ = (call);                                                      \
        if (cudnn_status_ != CUDNN_STATUS_SUCCESS) return cudnn_failure(cudnn_status_, #call, __FILE__, __LINE__); \
    } while (0)

typedef cudnnBackendDescriptor_t cdesc;

// ---------------------------------------------------------------------------------------------
// The library: one handle on ln_stream(), made on first use.

static struct {
    bool ready;
    cudnnHandle_t handle;
    size_t version; // cudnnGetVersion(), e.g. 91900
    int sm;         // compute capability, major * 10 + minor
} lib;

static int cudnn_ready(void) {
    if (lib.ready) return LN_OK;
    if (ln_cuda_init(0)) return LN_ERR;
    lib.version = cudnnGetVersion();
    if (lib.version < 90000)
        return ln_fail("attention: cuDNN %zu is loaded, the cuDNN attention path needs 9.0 or newer "
                       "(built against %d.%d.%d)", lib.version, CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
    int dev = 0, major = 0, minor = 0;
    LN_CUDA_TRY(cudaGetDevice(&dev));
    LN_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    LN_CUDA_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    lib.sm = major * 10 + minor;
    LN_CUDNN_TRY(cudnnCreate(&lib.handle));
    LN_CUDNN_TRY(cudnnSetStream(lib.handle, ln_stream()));
    lib.ready = true;
    return LN_OK;
}

extern "C" size_t ln_attention_cudnn_version(void) { return cudnnGetVersion(); }

// ---------------------------------------------------------------------------------------------
// Shapes.

typedef struct {
    int64_t B, T, S, Hq, Hkv, D;
    int causal;
    int dtype; // ln_dtype of q/k/v/o (bf16 today)
} attn_key;

// Bottom-right causal alignment (query t sees keys s <= t + S - T) differs from top-left only when S != T.
static bool bottom_right(const attn_key *k) { return k->causal && k->S != k->T; }

static void key_of(const ln_node *n, attn_key *k) {
    const ln_tensor *q = n->in[0], *kt = n->in[1];
    memset(k, 0, sizeof *k);
    k->B = q->shape[0];
    k->T = q->shape[1];
    k->Hq = q->shape[2];
    k->D = q->shape[3];
    k->S = kt->shape[1];
    k->Hkv = kt->shape[2];
    k->causal = n->iarg[0] != 0;
    k->dtype = (int)q->dtype;
}

static bool key_equal(const attn_key *a, const attn_key *b) {
    return a->B == b->B && a->T == b->T && a->S == b->S && a->Hq == b->Hq && a->Hkv == b->Hkv && a->D == b->D &&
           a->causal == b->causal && a->dtype == b->dtype;
}

static const char *shape_str(const attn_key *k, char *buf, size_t len) {
    snprintf(buf, len, "B=%lld T=%lld S=%lld Hq=%lld Hkv=%lld D=%lld %s", (long long)k->B, (long long)k->T,
             (long long)k->S, (long long)k->Hq, (long long)k->Hkv, (long long)k->D,
             k->causal ? (bottom_right(k) ? "causal (bottom-right)" : "causal") : "non-causal");
    return buf;
}

static bool empty_shape(const attn_key *k) { return k->B == 0 || k->T == 0 || k->Hq == 0; }

// ---------------------------------------------------------------------------------------------
// Graph building. Every descriptor made for a graph goes into its bag, which the plan cache owns
// (a plan keeps referring to its graph's descriptors, so they live as long as the plan).

typedef struct {
    cdesc *d;
    int n, cap;
} desc_bag;

static void bag_destroy(desc_bag *b) {
    for (int i = b->n - 1; i >= 0; i--) cudnnBackendDestroyDescriptor(b->d[i]);
    free(b->d);
    memset(b, 0, sizeof *b);
}

#define MAX_GRAPH_OPS 48

typedef struct {
    desc_bag *bag;
    const char *graph; // "forward" or "backward"
    const attn_key *key;
    cdesc ops[MAX_GRAPH_OPS];
    int n_ops;
    int64_t next_virtual_uid;
    bool failed; // the first failure's message stands; later calls are no-ops
} graph_b;

// Records the first failure, prefixed with the graph and shape.
static void gfail(graph_b *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gfail(graph_b *g, const char *fmt, ...) {
    if (g->failed) return;
    g->failed = true;
    char msg[768], shape[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ln_fail("cuDNN attention %s graph (%s): %s", g->graph, shape_str(g->key, shape, sizeof shape), msg);
}

static void gfail_status(graph_b *g, cudnnStatus_t status, const char *what) {
    char detail[512] = "";
    cudnnGetLastErrorString(detail, sizeof detail);
    gfail(g, "%s: %s (%d)%s%s", what, cudnnGetErrorString(status), (int)status, detail[0] ? "; cuDNN says: " : "",
          detail);
}

static cdesc gnew(graph_b *g, cudnnBackendDescriptorType_t type, const char *type_name, const char *owner) {
    if (g->failed) return NULL;
    desc_bag *b = g->bag;
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        cdesc *d = (cdesc *)realloc(b->d, (size_t)cap * sizeof *d);
        if (!d) {
            gfail(g, "out of host memory");
            return NULL;
        }
        b->d = d;
        b->cap = cap;
    }
    cdesc d = NULL;
    cudnnStatus_t s = cudnnBackendCreateDescriptor(type, &d);
    if (s != CUDNN_STATUS_SUCCESS) {
        char what[160];
        snprintf(what, sizeof what, "'%s': cudnnBackendCreateDescriptor(%s)", owner, type_name);
        gfail_status(g, s, what);
        return NULL;
    }
    b->d[b->n++] = d;
    return d;
}
#define GNEW(g, type, owner) gnew(g, type, #type, owner)

static bool gset(graph_b *g, cdesc d, const char *owner, const char *attr_name, cudnnBackendAttributeName_t attr,
                 cudnnBackendAttributeType_t type, const char *type_name, int64_t count, const void *value) {
    if (g->failed || !d) return false;
    cudnnStatus_t s = cudnnBackendSetAttribute(d, attr, type, count, value);
    if (s != CUDNN_STATUS_SUCCESS) {
        char what[256];
        snprintf(what, sizeof what, "'%s': setting %s (%s x %lld)", owner, attr_name, type_name, (long long)count);
        gfail_status(g, s, what);
        return false;
    }
    return true;
}
#define GSET(g, d, owner, attr, type, count, value) gset(g, d, owner, #attr, attr, type, #type, count, value)

static bool gfinalize(graph_b *g, cdesc d, const char *owner, const char *kind) {
    if (g->failed || !d) return false;
    cudnnStatus_t s = cudnnBackendFinalize(d);
    if (s != CUDNN_STATUS_SUCCESS) {
        char what[200];
        snprintf(what, sizeof what, "'%s': finalizing the %s descriptor", owner, kind);
        gfail_status(g, s, what);
        return false;
    }
    return true;
}

static const int64_t ALIGNMENT = 16; // bytes; the data pointers are checked against it

// A tensor descriptor. dims/strides are 4-D ([B, H, rows, cols] order).
static cdesc gtensor(graph_b *g, const char *name, int64_t uid, cudnnDataType_t dt, const int64_t dims[4],
                     const int64_t strides[4], bool is_virtual, bool by_value) {
    cdesc t = GNEW(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR, name);
    GSET(g, t, name, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    GSET(g, t, name, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
    GSET(g, t, name, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
    GSET(g, t, name, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    GSET(g, t, name, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &ALIGNMENT);
    GSET(g, t, name, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    if (by_value) GSET(g, t, name, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    return gfinalize(g, t, name, "tensor") ? t : NULL;
}

// A virtual (intermediate) tensor: uids from 1000 up.
static cdesc gvirtual(graph_b *g, const char *name, cudnnDataType_t dt, const int64_t dims[4],
                      const int64_t strides[4]) {
    return gtensor(g, name, g->next_virtual_uid++, dt, dims, strides, true, false);
}

// A by-value scalar: its host value is passed in the variant pack at execution.
static cdesc gscalar(graph_b *g, const char *name, int64_t uid, cudnnDataType_t dt) {
    static const int64_t one[4] = {1, 1, 1, 1};
    return gtensor(g, name, uid, dt, one, one, false, true);
}

static bool gpush(graph_b *g, cdesc op, const char *name) {
    if (g->failed || !op) return false;
    if (g->n_ops == MAX_GRAPH_OPS) {
        gfail(g, "'%s': more than %d operations", name, MAX_GRAPH_OPS);
        return false;
    }
    g->ops[g->n_ops++] = op;
    return true;
}

// y = mode(x[, b][, t]). prec is the pointwise math precision; axis (GEN_INDEX) when >= 0.
static bool gpointwise(graph_b *g, const char *name, cudnnPointwiseMode_t mode, cudnnDataType_t prec, cdesc x,
                       cdesc b, cdesc t, cdesc y, int64_t axis) {
    if (g->failed) return false;
    if (!x || !y) {
        gfail(g, "'%s': missing tensor", name);
        return false;
    }
    char owner[96];
    snprintf(owner, sizeof owner, "%s (pointwise descriptor)", name);
    cdesc pw = GNEW(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, owner);
    GSET(g, pw, owner, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    GSET(g, pw, owner, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    if (axis >= 0) GSET(g, pw, owner, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    gfinalize(g, pw, owner, "pointwise");
    snprintf(owner, sizeof owner, "%s (pointwise operation)", name);
    cdesc op = GNEW(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, owner);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (b) GSET(g, op, owner, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    if (t) GSET(g, op, owner, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    gfinalize(g, op, owner, "pointwise operation");
    return gpush(g, op, name);
}

// c = a @ b over the last two dims, batched (and broadcast, for GQA) over the first two. m, n, k:
// optional per-batch [B,1,1,1] i32 overrides of the gemm sizes (the padding-mask workaround's).
static bool gmatmul_ovr(graph_b *g, const char *name, cdesc a, cdesc b, cdesc c, cdesc m, cdesc n, cdesc k) {
    if (g->failed) return false;
    if (!a || !b || !c) {
        gfail(g, "'%s': missing tensor", name);
        return false;
    }
    char owner[96];
    snprintf(owner, sizeof owner, "%s (matmul descriptor)", name);
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cdesc mm = GNEW(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR, owner);
    GSET(g, mm, owner, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    gfinalize(g, mm, owner, "matmul");
    snprintf(owner, sizeof owner, "%s (matmul operation)", name);
    cdesc op = GNEW(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, owner);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm);
    if (m) GSET(g, op, owner, CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &m);
    if (n) GSET(g, op, owner, CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n);
    if (k) GSET(g, op, owner, CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &k);
    gfinalize(g, op, owner, "matmul operation");
    return gpush(g, op, name);
}

static bool gmatmul(graph_b *g, const char *name, cdesc a, cdesc b, cdesc c) {
    return gmatmul_ovr(g, name, a, b, c, NULL, NULL, NULL);
}

// y = reduce(x) over the dims where y has extent 1 (or, for the GQA head sum, x's heads onto y's).
static bool greduce(graph_b *g, const char *name, cudnnReduceTensorOp_t mode, cdesc x, cdesc y) {
    if (g->failed) return false;
    if (!x || !y) {
        gfail(g, "'%s': missing tensor", name);
        return false;
    }
    char owner[96];
    snprintf(owner, sizeof owner, "%s (reduction descriptor)", name);
    cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cdesc rd = GNEW(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, owner);
    GSET(g, rd, owner, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
    GSET(g, rd, owner, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    gfinalize(g, rd, owner, "reduction");
    snprintf(owner, sizeof owner, "%s (reduction operation)", name);
    cdesc op = GNEW(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, owner);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd);
    gfinalize(g, op, owner, "reduction operation");
    return gpush(g, op, name);
}

// y = x seen with y's dims and strides (a transpose, here).
static bool greshape(graph_b *g, const char *name, cdesc x, cdesc y) {
    if (g->failed) return false;
    if (!x || !y) {
        gfail(g, "'%s': missing tensor", name);
        return false;
    }
    char owner[96];
    snprintf(owner, sizeof owner, "%s (reshape operation)", name);
    cdesc op = GNEW(g, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, owner);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    GSET(g, op, owner, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    gfinalize(g, op, owner, "reshape operation");
    return gpush(g, op, name);
}

// ---------------------------------------------------------------------------------------------
// The two graphs. Tensor uids (the variant pack refers to them):

enum {
    UID_Q = 1,
    UID_K = 2, // forward: K^T view; backward: K^T view too
    UID_V = 3, // forward: V; backward: V^T view
    UID_O = 4,
    UID_STATS = 5,
    UID_SCALE = 6,   // by value, f32
    UID_NEG_INF = 7, // by value, f32: what masked scores become
    UID_SEQ_Q = 8,   // by value, i32 (bottom-right causal only)
    UID_SEQ_KV = 9,  // by value, i32 (bottom-right causal only)
    UID_DO = 10,
    UID_DQ = 11,
    UID_DK = 12,
    UID_DV = 13,
    UID_SOFTMAX_SUM = 14, // f32 [B, Hq, T, 1] scratch: rowsum(dO * O)
    UID_DQ_ACCUM = 15,    // f32 [B, Hq, T, D] scratch: dQ accumulated by the engine
    UID_ONE = 16,         // by value, f32 1.0
    // the backward's padding-mask workaround (cuDNN <= 9.15, S % 128 != 0): see pad_workaround()
    UID_PAD_SEQ_Q = 17,  // i32 [B, 1, 1, 1] on the GPU, every entry T
    UID_PAD_SEQ_KV = 18, // i32 [B, 1, 1, 1] on the GPU, every entry S
    UID_PAD_VALUE = 19,  // by value, f32: the lowest float (what padded scores become)
    UID_FIRST_VIRTUAL = 1000,
};

static cudnnDataType_t cudnn_dtype(int dtype) { return dtype == LN_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT; }

// Strides of our [B, rows, H, D] tensors seen as [B, H, rows, D].
static void bhsd(int64_t B, int64_t H, int64_t rows, int64_t D, int64_t dims[4], int64_t strides[4]) {
    dims[0] = B, dims[1] = H, dims[2] = rows, dims[3] = D;
    strides[0] = rows * H * D, strides[1] = D, strides[2] = H * D, strides[3] = 1;
}

// The same tensor with its last two dims swapped ([B, H, D, rows]).
static void transposed(const int64_t dims[4], const int64_t strides[4], int64_t tdims[4], int64_t tstrides[4]) {
    tdims[0] = dims[0], tdims[1] = dims[1], tdims[2] = dims[3], tdims[3] = dims[2];
    tstrides[0] = strides[0], tstrides[1] = strides[1], tstrides[2] = strides[3], tstrides[3] = strides[2];
}

// cuDNN up to 9.15 needs the backward graph to carry a padding mask when S is not a multiple of
// 128: cudnn-frontend (SDPA backward, "workaround padding mask", s_kv % 128 != 0 && backend <= 9.15)
// adds one whose per-batch lengths are the full T and S. It masks nothing, but puts the engine on
// its padded path for the partial last key tile. We do the same; 9.16 and newer need nothing.
static bool pad_workaround(const attn_key *k) { return k->S % 128 != 0 && lib.version < 91600; }

static const float LOWEST_FLOAT = -3.402823466e+38f;

static float neg_inf_value(void) {
    // cudnn-frontend masks with -inf from cuDNN 9.10 on, with the lowest float before
    return lib.version >= 91000 ? -INFINITY : LOWEST_FLOAT;
}

// The causal mask on a [B, Hq, T, S] f32 score tensor: keep where row (+ S - T) >= col, else -inf.
static cdesc causal_mask(graph_b *g, cdesc scores, const int64_t sdims[4], const int64_t sstrides[4],
                         cdesc neg_inf, cdesc seq_q, cdesc seq_kv) {
    const attn_key *k = g->key;
    cdesc row = gvirtual(g, "causal row index", CUDNN_DATA_INT32, sdims, sstrides);
    gpointwise(g, "gen_row_idx_causal", CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, scores, NULL, NULL, row, 2);
    if (bottom_right(k)) {
        cdesc row_skv = gvirtual(g, "causal row + S", CUDNN_DATA_INT32, sdims, sstrides);
        gpointwise(g, "row_idx_add_skv", CUDNN_POINTWISE_ADD, CUDNN_DATA_INT32, row, seq_kv, NULL, row_skv, -1);
        cdesc row_shift = gvirtual(g, "causal row + S - T", CUDNN_DATA_INT32, sdims, sstrides);
        gpointwise(g, "row_idx_sub_sq", CUDNN_POINTWISE_SUB, CUDNN_DATA_INT32, row_skv, seq_q, NULL, row_shift, -1);
        row = row_shift;
    }
    cdesc col = gvirtual(g, "causal col index", CUDNN_DATA_INT32, sdims, sstrides);
    gpointwise(g, "gen_col_idx_causal", CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, scores, NULL, NULL, col, 3);
    cdesc keep = gvirtual(g, "causal keep mask", CUDNN_DATA_BOOLEAN, sdims, sstrides);
    gpointwise(g, "row_greater_equal_col", CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, col, NULL, keep, -1);
    cdesc masked = gvirtual(g, "masked scores", CUDNN_DATA_FLOAT, sdims, sstrides);
    // y = keep ? x : b
    gpointwise(g, "causal_select", CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, scores, neg_inf, keep, masked, -1);
    return masked;
}

// The padding mask (cudnn-frontend's, on the scaled scores): keep where row < seq_len_q[b] and
// col < seq_len_kv[b], else the lowest float.
static cdesc padding_mask(graph_b *g, cdesc scores, const int64_t sdims[4], const int64_t sstrides[4],
                          cdesc pad_value, cdesc seq_q, cdesc seq_kv) {
    cdesc row = gvirtual(g, "padding row index", CUDNN_DATA_INT32, sdims, sstrides);
    gpointwise(g, "gen_row_idx_padding", CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, scores, NULL, NULL, row, 2);
    cdesc col = gvirtual(g, "padding col index", CUDNN_DATA_INT32, sdims, sstrides);
    gpointwise(g, "gen_col_idx_padding", CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, scores, NULL, NULL, col, 3);
    cdesc row_ok = gvirtual(g, "padding row mask", CUDNN_DATA_BOOLEAN, sdims, sstrides);
    gpointwise(g, "lt_row_sq_padding", CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, row, seq_q, NULL, row_ok, -1);
    cdesc col_ok = gvirtual(g, "padding col mask", CUDNN_DATA_BOOLEAN, sdims, sstrides);
    gpointwise(g, "lt_col_skv_padding", CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, col, seq_kv, NULL, col_ok, -1);
    cdesc keep = gvirtual(g, "padding mask", CUDNN_DATA_BOOLEAN, sdims, sstrides);
    gpointwise(g, "and_row_col_padding", CUDNN_POINTWISE_LOGICAL_AND, CUDNN_DATA_BOOLEAN, row_ok, col_ok, NULL, keep,
               -1);
    cdesc masked = gvirtual(g, "padded scores", CUDNN_DATA_FLOAT, sdims, sstrides);
    gpointwise(g, "select_padding", CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, scores, pad_value, keep, masked,
               -1);
    return masked;
}

static void build_forward_graph(graph_b *g) {
    const attn_key *k = g->key;
    cudnnDataType_t io = cudnn_dtype(k->dtype);
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    int64_t qd[4], qs[4], kd[4], ks[4], ktd[4], kts[4];
    bhsd(k->B, k->Hq, k->T, k->D, qd, qs);
    bhsd(k->B, k->Hkv, k->S, k->D, kd, ks);
    transposed(kd, ks, ktd, kts);
    const int64_t sd[4] = {k->B, k->Hq, k->T, k->S}, ss[4] = {k->Hq * k->T * k->S, k->T * k->S, k->S, 1};
    const int64_t rd[4] = {k->B, k->Hq, k->T, 1}, rs[4] = {k->Hq * k->T, k->T, 1, 1};

    cdesc Q = gtensor(g, "Q", UID_Q, io, qd, qs, false, false);
    cdesc KT = gtensor(g, "K^T", UID_K, io, ktd, kts, false, false);
    cdesc V = gtensor(g, "V", UID_V, io, kd, ks, false, false);
    cdesc O = gtensor(g, "O", UID_O, io, qd, qs, false, false);
    cdesc stats = gtensor(g, "Stats (lse)", UID_STATS, f32, rd, rs, false, false);
    cdesc scale = gscalar(g, "attn_scale", UID_SCALE, f32);

    cdesc s1 = gvirtual(g, "Q.K^T", f32, sd, ss);
    gmatmul(g, "bmm1 Q.K^T", Q, KT, s1);
    cdesc s = gvirtual(g, "scaled scores", f32, sd, ss);
    gpointwise(g, "attn_scale", CUDNN_POINTWISE_MUL, f32, s1, scale, NULL, s, -1);
    if (k->causal) {
        cdesc neg_inf = gscalar(g, "mask value (-inf)", UID_NEG_INF, f32);
        cdesc seq_q = NULL, seq_kv = NULL;
        if (bottom_right(k)) {
            seq_q = gscalar(g, "seq_len_q", UID_SEQ_Q, CUDNN_DATA_INT32);
            seq_kv = gscalar(g, "seq_len_kv", UID_SEQ_KV, CUDNN_DATA_INT32);
        }
        s = causal_mask(g, s, sd, ss, neg_inf, seq_q, seq_kv);
    }
    // softmax with stats: max, sub, exp, sum, log, add (= Stats), div
    cdesc mx = gvirtual(g, "row max", f32, rd, rs);
    greduce(g, "softmax max", CUDNN_REDUCE_TENSOR_MAX, s, mx);
    cdesc sub = gvirtual(g, "scores - max", f32, sd, ss);
    gpointwise(g, "softmax sub", CUDNN_POINTWISE_SUB, f32, s, mx, NULL, sub, -1);
    cdesc e = gvirtual(g, "exp(scores - max)", f32, sd, ss);
    gpointwise(g, "softmax exp", CUDNN_POINTWISE_EXP, f32, sub, NULL, NULL, e, -1);
    cdesc z = gvirtual(g, "row sum of exp", f32, rd, rs);
    greduce(g, "softmax sum", CUDNN_REDUCE_TENSOR_ADD, e, z);
    cdesc lz = gvirtual(g, "log row sum", f32, rd, rs);
    gpointwise(g, "softmax log", CUDNN_POINTWISE_LOG, f32, z, NULL, NULL, lz, -1);
    gpointwise(g, "softmax stats", CUDNN_POINTWISE_ADD, f32, mx, lz, NULL, stats, -1);
    cdesc p = gvirtual(g, "probabilities", io, sd, ss); // bmm2's A is in the io type
    gpointwise(g, "softmax div", CUDNN_POINTWISE_DIV, f32, e, z, NULL, p, -1);
    gmatmul(g, "bmm2 P.V", p, V, O);
}

static void build_backward_graph(graph_b *g) {
    const attn_key *k = g->key;
    cudnnDataType_t io = cudnn_dtype(k->dtype);
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    int64_t qd[4], qs[4], kd[4], ks[4], ktd[4], kts[4];
    bhsd(k->B, k->Hq, k->T, k->D, qd, qs);
    bhsd(k->B, k->Hkv, k->S, k->D, kd, ks);
    transposed(kd, ks, ktd, kts);
    const int64_t sd[4] = {k->B, k->Hq, k->T, k->S}, ss[4] = {k->Hq * k->T * k->S, k->T * k->S, k->S, 1};
    // P^T and dS^T: [B, Hq, S, T], the scores' memory read transposed
    const int64_t td[4] = {k->B, k->Hq, k->S, k->T}, ts[4] = {k->Hq * k->T * k->S, k->T * k->S, 1, k->S};
    const int64_t rd[4] = {k->B, k->Hq, k->T, 1}, rs[4] = {k->Hq * k->T, k->T, 1, 1};
    const int64_t ad[4] = {k->B, k->Hq, k->T, k->D}, as[4] = {k->Hq * k->T * k->D, k->T * k->D, k->D, 1};

    cdesc Q = gtensor(g, "Q", UID_Q, io, qd, qs, false, false);
    cdesc KT = gtensor(g, "K^T", UID_K, io, ktd, kts, false, false);
    cdesc VT = gtensor(g, "V^T", UID_V, io, ktd, kts, false, false);
    cdesc O = gtensor(g, "O", UID_O, io, qd, qs, false, false);
    cdesc dO = gtensor(g, "dO", UID_DO, io, qd, qs, false, false);
    cdesc stats = gtensor(g, "Stats (lse)", UID_STATS, f32, rd, rs, false, false);
    cdesc dQ = gtensor(g, "dQ", UID_DQ, io, qd, qs, false, false);
    cdesc dK = gtensor(g, "dK", UID_DK, io, kd, ks, false, false);
    cdesc dV = gtensor(g, "dV", UID_DV, io, kd, ks, false, false);
    cdesc softmax_sum = gtensor(g, "softmax_sum", UID_SOFTMAX_SUM, f32, rd, rs, false, false);
    cdesc dq_accum = gtensor(g, "dQ_accum", UID_DQ_ACCUM, f32, ad, as, false, false);
    cdesc scale = gscalar(g, "attn_scale", UID_SCALE, f32);
    cdesc one = gscalar(g, "one", UID_ONE, f32);
    // the padding-mask workaround: the lengths also override the gemm sizes, as cudnn-frontend does
    const bool pad = pad_workaround(k);
    cdesc len_q = NULL, len_kv = NULL, pad_value = NULL;
    if (pad) {
        const int64_t ld[4] = {k->B, 1, 1, 1}, ls[4] = {1, 1, 1, 1};
        len_q = gtensor(g, "seq_len_q (padding workaround)", UID_PAD_SEQ_Q, CUDNN_DATA_INT32, ld, ls, false, false);
        len_kv = gtensor(g, "seq_len_kv (padding workaround)", UID_PAD_SEQ_KV, CUDNN_DATA_INT32, ld, ls, false, false);
        pad_value = gscalar(g, "padding mask value (lowest float)", UID_PAD_VALUE, f32);
    }

    // softmax_sum = rowsum(dO * O) * 1
    const int64_t dod[4] = {k->B, k->Hq, k->T, k->D}, dos[4] = {k->Hq * k->T * k->D, k->T * k->D, k->Hq * k->D, 1};
    cdesc do_o = gvirtual(g, "dO * O", f32, dod, dos);
    gpointwise(g, "mul_dO_O", CUDNN_POINTWISE_MUL, f32, dO, O, NULL, do_o, -1);
    cdesc do_o_sum = gvirtual(g, "rowsum(dO * O)", f32, rd, rs);
    greduce(g, "reduce_dO_O", CUDNN_REDUCE_TENSOR_ADD, do_o, do_o_sum);
    gpointwise(g, "scale_dropout_inv", CUDNN_POINTWISE_MUL, f32, do_o_sum, one, NULL, softmax_sum, -1);

    // P = exp(scale * Q.K^T - Stats), masked
    cdesc s1 = gvirtual(g, "Q.K^T", f32, sd, ss);
    gmatmul_ovr(g, "matmul_Q_KT", Q, KT, s1, len_q, len_kv, NULL);
    cdesc s2 = gvirtual(g, "scaled scores", f32, sd, ss);
    gpointwise(g, "mul_s_attn_scale", CUDNN_POINTWISE_MUL, f32, s1, scale, NULL, s2, -1);
    if (pad) s2 = padding_mask(g, s2, sd, ss, pad_value, len_q, len_kv);
    cdesc s = gvirtual(g, "scores - Stats", f32, sd, ss);
    gpointwise(g, "sub_s_m", CUDNN_POINTWISE_SUB, f32, s2, stats, NULL, s, -1);
    if (k->causal) {
        cdesc neg_inf = gscalar(g, "mask value (-inf)", UID_NEG_INF, f32);
        cdesc seq_q = NULL, seq_kv = NULL;
        if (bottom_right(k) && pad) { // with the padding lengths, the causal shift uses them (as cudnn-frontend)
            seq_q = len_q;
            seq_kv = len_kv;
        } else if (bottom_right(k)) {
            seq_q = gscalar(g, "seq_len_q", UID_SEQ_Q, CUDNN_DATA_INT32);
            seq_kv = gscalar(g, "seq_len_kv", UID_SEQ_KV, CUDNN_DATA_INT32);
        }
        s = causal_mask(g, s, sd, ss, neg_inf, seq_q, seq_kv);
    }
    cdesc p = gvirtual(g, "P", f32, sd, ss);
    gpointwise(g, "exp_s", CUDNN_POINTWISE_EXP, f32, s, NULL, NULL, p, -1);

    // dV = P^T dO (summed over the query heads of each kv head under GQA)
    cdesc pt = gvirtual(g, "P^T", io, td, ts);
    greshape(g, "reshape_p", p, pt);
    if (k->Hq == k->Hkv) {
        gmatmul_ovr(g, "matmul_pT_dO", pt, dO, dV, len_kv, NULL, len_q);
    } else {
        const int64_t fd[4] = {k->B, k->Hq, k->S, k->D}, fs[4] = {k->Hq * k->S * k->D, k->S * k->D, k->D, 1};
        cdesc dv_full = gvirtual(g, "dV per query head", io, fd, fs);
        gmatmul_ovr(g, "matmul_pT_dO", pt, dO, dv_full, len_kv, NULL, len_q);
        greduce(g, "red_dV_head", CUDNN_REDUCE_TENSOR_ADD, dv_full, dV);
    }

    // dS = P * (dO.V^T - softmax_sum) * scale
    cdesc dp = gvirtual(g, "dO.V^T", f32, sd, ss);
    gmatmul_ovr(g, "matmul_dO_VT", dO, VT, dp, len_q, len_kv, NULL);
    cdesc dp_sub = gvirtual(g, "dP - softmax_sum", f32, sd, ss);
    gpointwise(g, "sub_dP_softmax_sum", CUDNN_POINTWISE_SUB, f32, dp, softmax_sum, NULL, dp_sub, -1);
    cdesc ds_unscaled = gvirtual(g, "P * (dP - softmax_sum)", f32, sd, ss);
    gpointwise(g, "mul_dP_exp_s", CUDNN_POINTWISE_MUL, f32, dp_sub, p, NULL, ds_unscaled, -1);
    cdesc ds = gvirtual(g, "dS", f32, sd, ss);
    gpointwise(g, "mul_dS_attn_scale", CUDNN_POINTWISE_MUL, f32, ds_unscaled, scale, NULL, ds, -1);

    // dK = dS^T Q (summed over the query heads of each kv head under GQA)
    cdesc dst = gvirtual(g, "dS^T", io, td, ts);
    greshape(g, "reshape_dS", ds, dst);
    if (k->Hq == k->Hkv) {
        gmatmul_ovr(g, "matmul_dST_Q", dst, Q, dK, len_kv, NULL, len_q);
    } else {
        const int64_t fd[4] = {k->B, k->Hq, k->S, k->D}, fs[4] = {k->Hq * k->S * k->D, k->S * k->D, k->D, 1};
        cdesc dk_full = gvirtual(g, "dK per query head", io, fd, fs);
        gmatmul_ovr(g, "matmul_dST_Q", dst, Q, dk_full, len_kv, NULL, len_q);
        greduce(g, "red_dK_head", CUDNN_REDUCE_TENSOR_ADD, dk_full, dK);
    }

    // dQ = dS K, accumulated in f32 (dQ_accum), then converted
    cdesc kr = gvirtual(g, "K (reshaped back from K^T)", f32, kd, ks);
    greshape(g, "reshape_k", KT, kr);
    gmatmul_ovr(g, "matmul_dS_K", ds, kr, dq_accum, len_q, NULL, len_kv);
    gpointwise(g, "identity_dQ", CUDNN_POINTWISE_IDENTITY, f32, dq_accum, NULL, NULL, dQ, -1);
}

// ---------------------------------------------------------------------------------------------
// Operation graph -> heuristics -> the first engine config that finalizes into a plan.

#define MAX_ENGINE_CONFIGS 64

// The operation graph of the ops built so far; with the handle when there is one (none is needed
// to finalize it, only to plan it).
static cdesc make_operation_graph(graph_b *g, cudnnHandle_t handle) {
    if (g->failed) return NULL;
    const char *owner = "operation graph";
    cdesc graph = GNEW(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, owner);
    if (handle) GSET(g, graph, owner, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    GSET(g, graph, owner, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->n_ops, g->ops);
    return gfinalize(g, graph, owner, "operation graph (cuDNN rejected the graph as a whole)") ? graph : NULL;
}

// With a handle the plan is for its GPU; without one (ahead of time, no GPU needed) it is for the
// device that `devprop` describes.
static int make_plan(graph_b *g, cudnnHandle_t handle, cdesc devprop, cdesc *plan_out, int64_t *workspace_out) {
    cdesc graph = make_operation_graph(g, handle);
    if (!graph) return LN_ERR;

    char tried[1024] = "";
    size_t used = 0;
    const cudnnBackendHeurMode_t modes[] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    const char *mode_names[] = {"HEUR_MODE_A", "HEUR_MODE_FALLBACK"};
    for (int m = 0; m < 2; m++) {
        char heur_owner[64];
        snprintf(heur_owner, sizeof heur_owner, "engine heuristics (%s)", mode_names[m]);
        cdesc heur = GNEW(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, heur_owner);
        GSET(g, heur, heur_owner, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
        GSET(g, heur, heur_owner, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &modes[m]);
        if (!handle) GSET(g, heur, heur_owner, CUDNN_ATTR_ENGINEHEUR_DEVICEPROP, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &devprop);
        if (g->failed) return LN_ERR;
        cudnnStatus_t s = cudnnBackendFinalize(heur);
        int64_t count = 0;
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                         NULL);
        if (s != CUDNN_STATUS_SUCCESS) {
            char detail[256] = "";
            cudnnGetLastErrorString(detail, sizeof detail);
            used += (size_t)snprintf(tried + used, used < sizeof tried ? sizeof tried - used : 0,
                                     "%s%s: %s %s", used ? "; " : "", mode_names[m], cudnnGetErrorString(s), detail);
            if (used >= sizeof tried) used = sizeof tried - 1;
            continue;
        }
        if (count > MAX_ENGINE_CONFIGS) count = MAX_ENGINE_CONFIGS;
        cdesc cfgs[MAX_ENGINE_CONFIGS];
        for (int64_t i = 0; i < count; i++) cfgs[i] = GNEW(g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config");
        if (g->failed) return LN_ERR;
        int64_t got = 0;
        if (count > 0) {
            s = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                         &got, cfgs);
            if (s != CUDNN_STATUS_SUCCESS) {
                gfail_status(g, s, "reading CUDNN_ATTR_ENGINEHEUR_RESULTS");
                return LN_ERR;
            }
        }
        used += (size_t)snprintf(tried + used, used < sizeof tried ? sizeof tried - used : 0, "%s%s: %lld configs",
                                 used ? "; " : "", mode_names[m], (long long)got);
        if (used >= sizeof tried) used = sizeof tried - 1;
        for (int64_t i = 0; i < got; i++) {
            cdesc plan = NULL;
            s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan);
            if (s == CUDNN_STATUS_SUCCESS)
                s = handle ? cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)
                           : cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_DEVICEPROP,
                                                      CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &devprop);
            if (s == CUDNN_STATUS_SUCCESS)
                s = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                             CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]);
            if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(plan);
            int64_t ws = 0, n_ws = 0;
            if (s == CUDNN_STATUS_SUCCESS)
                s = cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n_ws,
                                             &ws);
            if (s == CUDNN_STATUS_SUCCESS) {
                desc_bag *b = g->bag; // keep the plan with the graph it runs
                if (b->n == b->cap) {
                    int cap = b->cap ? 2 * b->cap : 64;
                    cdesc *d = (cdesc *)realloc(b->d, (size_t)cap * sizeof *d);
                    if (!d) {
                        cudnnBackendDestroyDescriptor(plan);
                        gfail(g, "out of host memory");
                        return LN_ERR;
                    }
                    b->d = d;
                    b->cap = cap;
                }
                b->d[b->n++] = plan;
                *plan_out = plan;
                *workspace_out = ws;
                return LN_OK;
            }
            char detail[256] = "";
            cudnnGetLastErrorString(detail, sizeof detail);
            used += (size_t)snprintf(tried + used, used < sizeof tried ? sizeof tried - used : 0, ", #%lld %s%s%s",
                                     (long long)i, cudnnGetErrorString(s), detail[0] ? " " : "", detail);
            if (used >= sizeof tried) used = sizeof tried - 1;
            if (plan) cudnnBackendDestroyDescriptor(plan);
        }
    }
    gfail(g, "no engine config of the graph (%d ops) finalized into an execution plan (cuDNN %zu, sm_%d): %s. "
             "Set CUDNN_LOGERR_DBG=1 CUDNN_LOGDEST_DBG=stderr for cuDNN's own reasons",
          g->n_ops, lib.version, lib.sm, tried);
    return LN_ERR;
}

extern "C" int ln_attention_cudnn_check_graph(int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D,
                                              int causal, int backward, const char *device_json,
                                              int64_t *engine_index) {
    attn_key key;
    memset(&key, 0, sizeof key);
    key.B = B, key.T = T, key.S = S, key.Hq = Hq, key.Hkv = Hkv, key.D = D, key.causal = causal != 0;
    key.dtype = LN_BF16;
    if (!lib.version) lib.version = cudnnGetVersion(); // for the mask value; no GPU needed
    desc_bag bag;
    memset(&bag, 0, sizeof bag);
    graph_b g;
    memset(&g, 0, sizeof g);
    g.bag = &bag;
    g.graph = backward ? "backward" : "forward";
    g.key = &key;
    g.next_virtual_uid = UID_FIRST_VIRTUAL;
    if (backward)
        build_backward_graph(&g);
    else
        build_forward_graph(&g);
    if (engine_index) *engine_index = -1;
    if (!device_json) {
        make_operation_graph(&g, NULL);
    } else {
        const char *owner = "device properties (JSON)";
        cdesc devprop = GNEW(&g, CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, owner);
        GSET(&g, devprop, owner, CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
             (int64_t)strlen(device_json), device_json);
        gfinalize(&g, devprop, owner, "device properties");
        cdesc plan;
        int64_t workspace;
        if (make_plan(&g, NULL, devprop, &plan, &workspace) == LN_OK) {
            // name the engine the heuristics chose, for the test log
            cdesc cfg = NULL, engine = NULL;
            int64_t n = 0, index = -1;
            if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfg) == CUDNN_STATUS_SUCCESS &&
                cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                         1, &n, &cfg) == CUDNN_STATUS_SUCCESS &&
                cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine) == CUDNN_STATUS_SUCCESS &&
                cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n,
                                         &engine) == CUDNN_STATUS_SUCCESS)
                cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &index);
            if (engine) cudnnBackendDestroyDescriptor(engine);
            if (cfg) cudnnBackendDestroyDescriptor(cfg);
            if (engine_index) *engine_index = index;
        }
    }
    bag_destroy(&bag);
    return g.failed ? LN_ERR : LN_OK;
}

// ---------------------------------------------------------------------------------------------
// The plan cache: one entry per shape, a forward and a backward plan each (built on demand; a
// failure is remembered too, so an unsupported shape costs one attempt).

#define CACHE_SLOTS 32

typedef struct {
    int state; // 0 not built, 1 built, -1 failed
    cdesc plan;
    int64_t workspace;
    desc_bag bag;
    char error[1536];
} plan_slot;

typedef struct {
    bool used;
    attn_key key;
    unsigned long long last_use;
    plan_slot fwd, bwd;
} cache_entry;

static cache_entry cache[CACHE_SLOTS];
static unsigned long long cache_clock;

static void slot_clear(plan_slot *p) {
    bag_destroy(&p->bag);
    memset(p, 0, sizeof *p);
}

extern "C" void ln_attention_cudnn_clear_cache(void) {
    bool any = false;
    for (int i = 0; i < CACHE_SLOTS; i++) any |= cache[i].used;
    if (!any) return;
    if (ln_stream()) cudaStreamSynchronize(ln_stream()); // no queued work may still use a plan
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].used) {
            slot_clear(&cache[i].fwd);
            slot_clear(&cache[i].bwd);
            cache[i].used = false;
        }
}

static cache_entry *cache_lookup(const attn_key *key) {
    cache_entry *victim = NULL;
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].used && key_equal(&cache[i].key, key)) {
            cache[i].last_use = ++cache_clock;
            return &cache[i];
        }
    for (int i = 0; i < CACHE_SLOTS && !victim; i++)
        if (!cache[i].used) victim = &cache[i];
    if (!victim) { // evict the least recently used shape
        victim = &cache[0];
        for (int i = 1; i < CACHE_SLOTS; i++)
            if (cache[i].last_use < victim->last_use) victim = &cache[i];
        cudaStreamSynchronize(ln_stream()); // no queued work may still use its plans
        slot_clear(&victim->fwd);
        slot_clear(&victim->bwd);
    }
    memset(victim, 0, sizeof *victim);
    victim->used = true;
    victim->key = *key;
    victim->last_use = ++cache_clock;
    return victim;
}

// The plan for `backward` (0/1) of this entry, built on first use. On failure: LN_ERR with the
// (remembered) reason as the error message.
static int get_plan(cache_entry *e, bool backward, cdesc *plan, int64_t *workspace) {
    plan_slot *p = backward ? &e->bwd : &e->fwd;
    if (p->state == 0) {
        graph_b g;
        memset(&g, 0, sizeof g);
        g.bag = &p->bag;
        g.graph = backward ? "backward" : "forward";
        g.key = &e->key;
        g.next_virtual_uid = UID_FIRST_VIRTUAL;
        if (backward)
            build_backward_graph(&g);
        else
            build_forward_graph(&g);
        if (make_plan(&g, lib.handle, NULL, &p->plan, &p->workspace) == LN_OK) {
            p->state = 1;
        } else {
            p->state = -1;
            snprintf(p->error, sizeof p->error, "%s", ln_error_message());
            bag_destroy(&p->bag);
        }
    }
    if (p->state < 0) return ln_fail("%s", p->error);
    *plan = p->plan;
    *workspace = p->workspace;
    return LN_OK;
}

// ---------------------------------------------------------------------------------------------
// Support checks.

static bool aligned(const void *p) { return ((uintptr_t)p % (uintptr_t)ALIGNMENT) == 0; }

// The static part: everything decidable without building a graph. NULL when fine, else why not.
static const char *static_unsupported(const ln_node *n, char *buf, size_t len) {
    if (!n || n->n_in != 3 || !n->in[0] || !n->in[1] || !n->in[2]) return "not an attention node";
    const ln_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) return "q, k and v must be 4-D";
    if (q->device != LN_CUDA) return "the inputs are not on the GPU";
    if (q->dtype != LN_BF16 || k->dtype != LN_BF16 || v->dtype != LN_BF16) {
        snprintf(buf, len, "q, k, v must be bf16 (got %s, %s, %s)", ln_dtype_name(q->dtype), ln_dtype_name(k->dtype),
                 ln_dtype_name(v->dtype));
        return buf;
    }
    attn_key key;
    key_of(n, &key);
    if (key.D % 8 != 0 || key.D < 8 || key.D > 128) {
        snprintf(buf, len, "head dim D=%lld is not a multiple of 8 in [8, 128]", (long long)key.D);
        return buf;
    }
    if (key.Hkv < 1 || key.Hq % key.Hkv != 0) return "Hq is not a multiple of Hkv";
    if (key.causal && key.S < key.T) return "causal attention needs S >= T";
    if (key.S < 1 && key.T > 0) return "no keys";
    if (!aligned(q->data) || !aligned(k->data) || !aligned(v->data)) return "q, k or v is not 16-byte aligned";
    if (cudnn_ready()) {
        snprintf(buf, len, "cuDNN unavailable: %s", ln_error_message());
        return buf;
    }
    if (lib.sm < 80) {
        snprintf(buf, len, "fused attention needs sm_80 or newer (this GPU is sm_%d)", lib.sm);
        return buf;
    }
    if (lib.version >= 91000 && lib.version < 91002) {
        snprintf(buf, len, "cuDNN %zu has known SDPA bugs (use 9.10.2 or newer)", lib.version);
        return buf;
    }
    if (bottom_right(&key) && lib.version < 90600) {
        snprintf(buf, len, "causal with S != T needs cuDNN 9.6 (loaded: %zu)", lib.version);
        return buf;
    }
    // S % 128 != 0: native from 9.16, through the backward's padding-mask workaround (pad_workaround)
    // from 9.10.2; before 9.10 cudnn-frontend also re-masks after the Stats subtraction, not built here
    if (key.S % 128 != 0 && lib.version < 91000) {
        snprintf(buf, len, "S=%lld not a multiple of 128 needs cuDNN 9.10.2 (loaded: %zu)", (long long)key.S,
                 lib.version);
        return buf;
    }
    return NULL;
}

extern "C" int ln_attention_cudnn_supported(const ln_node *n) {
    char buf[256];
    // whatever happens here, the caller's error message is left as it was
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", ln_error_message());
    if (strcmp(saved, "unknown error") == 0) saved[0] = 0; // what ln_error_message() says when there is none
    const char *why = static_unsupported(n, buf, sizeof buf);
    int ok = 0;
    if (why) {
        snprintf(unsupported_reason, sizeof unsupported_reason, "%s", why);
    } else {
        attn_key key;
        key_of(n, &key);
        cdesc plan;
        int64_t ws;
        cache_entry *e = empty_shape(&key) ? NULL : cache_lookup(&key);
        if (e && (get_plan(e, false, &plan, &ws) || get_plan(e, true, &plan, &ws))) {
            snprintf(unsupported_reason, sizeof unsupported_reason, "%s", ln_error_message());
        } else {
            unsupported_reason[0] = 0;
            ok = 1;
        }
    }
    if (saved[0])
        ln_fail("%s", saved);
    else
        ln_error_clear();
    return ok;
}

// ---------------------------------------------------------------------------------------------
// Execution.

static int execute(cdesc plan, const char *what, int n, const int64_t *uids, void *const *ptrs, void *workspace) {
    cdesc pack = NULL;
    LN_CUDNN_TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack));
    cudnnStatus_t s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    const char *step = "setting CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS";
    if (s == CUDNN_STATUS_SUCCESS) {
        s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
        step = "setting CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS";
    }
    if (s == CUDNN_STATUS_SUCCESS) {
        s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
        step = "setting CUDNN_ATTR_VARIANT_PACK_WORKSPACE";
    }
    if (s == CUDNN_STATUS_SUCCESS) {
        s = cudnnBackendFinalize(pack);
        step = "finalizing the variant pack";
    }
    if (s == CUDNN_STATUS_SUCCESS) {
        s = cudnnBackendExecute(lib.handle, plan, pack);
        step = "cudnnBackendExecute";
    }
    char detail[512] = "";
    if (s != CUDNN_STATUS_SUCCESS) cudnnGetLastErrorString(detail, sizeof detail);
    cudnnBackendDestroyDescriptor(pack);
    if (s != CUDNN_STATUS_SUCCESS)
        return ln_fail("cuDNN attention %s: %s failed: %s (%d)%s%s", what, step, cudnnGetErrorString(s), (int)s,
                       detail[0] ? "; cuDNN says: " : "", detail);
    return LN_OK;
}

static size_t round_up(size_t x) { return (x + 255) / 256 * 256; }

// The padding workaround's lengths: len_q[b] = T, len_kv[b] = S.
static __global__ void fill_lengths(int32_t *len_q, int32_t *len_kv, int64_t B, int32_t T, int32_t S) {
    int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b < B) {
        len_q[b] = T;
        len_kv[b] = S;
    }
}

static int check_aligned(const char *what, const char *name, const void *p) {
    if (!aligned(p)) return ln_fail("cuDNN attention %s: %s at %p is not 16-byte aligned", what, name, p);
    return LN_OK;
}

extern "C" int ln_attention_cudnn_forward(ln_node *n) {
    char buf[256];
    const char *why = static_unsupported(n, buf, sizeof buf);
    if (why) return ln_fail("attention (cuDNN forward): %s", why);
    attn_key key;
    key_of(n, &key);
    ln_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *o = n->out[0];
    const int64_t lse_shape[3] = {key.B, key.Hq, key.T};
    ln_tensor *lse = ln_arena_tensor(LN_F32, q->device, 3, lse_shape);
    if (!lse) return LN_ERR;
    if (!empty_shape(&key)) {
        if (o->dtype != q->dtype) return ln_fail("attention (cuDNN forward): output is %s, q is %s",
                                                 ln_dtype_name(o->dtype), ln_dtype_name(q->dtype));
        if (check_aligned("forward", "o", o->data) || check_aligned("forward", "lse", lse->data)) return LN_ERR;
        cdesc plan;
        int64_t ws_bytes;
        if (get_plan(cache_lookup(&key), false, &plan, &ws_bytes)) return LN_ERR;
        // by-value inputs: host memory, read by cudnnBackendExecute (aligned like device tensors)
        alignas(16) float scale = (float)n->farg[0];
        alignas(16) float neg_inf = neg_inf_value();
        alignas(16) int32_t seq_q = (int32_t)key.T;
        alignas(16) int32_t seq_kv = (int32_t)key.S;
        int64_t uids[9] = {UID_Q, UID_K, UID_V, UID_O, UID_STATS, UID_SCALE};
        void *ptrs[9] = {q->data, k->data, v->data, o->data, lse->data, &scale};
        int count = 6;
        if (key.causal) {
            uids[count] = UID_NEG_INF, ptrs[count++] = &neg_inf;
            if (bottom_right(&key)) {
                uids[count] = UID_SEQ_Q, ptrs[count++] = &seq_q;
                uids[count] = UID_SEQ_KV, ptrs[count++] = &seq_kv;
            }
        }
        void *workspace = NULL;
        if (ws_bytes > 0) LN_CUDA_TRY(cudaMallocAsync(&workspace, (size_t)ws_bytes, ln_stream()));
        int status = execute(plan, "forward", count, uids, ptrs, workspace);
        if (workspace) LN_CUDA_TRY(cudaFreeAsync(workspace, ln_stream())); // stream-ordered: after the kernels
        if (status) return status;
    }
    ln_node_save(n, o);   // slot 3, as the CPU forward
    ln_node_save(n, lse); // slot 4
    return LN_OK;
}

extern "C" int ln_attention_cudnn_backward(ln_node *n) {
    ln_tensor *out = n->out[0];
    if (!out->grad) return LN_OK;
    bool need[3];
    bool any = false;
    for (int i = 0; i < 3; i++) any |= (need[i] = n->in[i]->requires_grad);
    if (!any) return LN_OK;
    if (n->n_saved < 5) return ln_fail("attention (cuDNN backward): the forward saved %d tensors, not 5", n->n_saved);
    ln_tensor *q = ln_node_saved(n, 0), *k = ln_node_saved(n, 1), *v = ln_node_saved(n, 2);
    ln_tensor *o = ln_node_saved(n, 3), *lse = ln_node_saved(n, 4), *dout = out->grad;
    if (!q || !k || !v || !o || !lse) return LN_ERR;
    char buf[256];
    const char *why = static_unsupported(n, buf, sizeof buf);
    if (why) return ln_fail("attention (cuDNN backward): %s", why);
    if (o->dtype != LN_BF16 || dout->dtype != LN_BF16 || lse->dtype != LN_F32)
        return ln_fail("attention (cuDNN backward): o (%s) and its gradient (%s) must be bf16, lse (%s) f32",
                       ln_dtype_name(o->dtype), ln_dtype_name(dout->dtype), ln_dtype_name(lse->dtype));
    attn_key key;
    key_of(n, &key);
    if (empty_shape(&key)) return LN_OK;
    const char *names[6] = {"q", "k", "v", "o", "lse", "d(out)"};
    const void *datas[6] = {q->data, k->data, v->data, o->data, lse->data, dout->data};
    for (int i = 0; i < 6; i++)
        if (check_aligned("backward", names[i], datas[i])) return LN_ERR;

    cdesc plan;
    int64_t ws_bytes;
    if (get_plan(cache_lookup(&key), true, &plan, &ws_bytes)) return LN_ERR;

    // Where cuDNN writes dQ, dK, dV: straight into a gradient that does not exist yet (it would
    // start at zero), else into scratch that is then added. An input given twice (q = k = v, self
    // attention on one tensor) gets its first gradient direct and the others added.
    ln_tensor *in[3] = {n->in[0], n->in[1], n->in[2]};
    bool direct[3];
    for (int i = 0; i < 3; i++) {
        direct[i] = need[i] && !in[i]->grad;
        for (int j = 0; j < i; j++)
            if (in[j] == in[i] && need[j]) direct[i] = false;
    }
    ln_tensor *grads[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++)
        if (need[i] && !(grads[i] = ln_grad_of(in[i]))) return LN_ERR;
    for (int i = 0; i < 3; i++)
        if (direct[i] && (grads[i]->dtype != LN_BF16 || grads[i]->numel != in[i]->numel || !aligned(grads[i]->data)))
            direct[i] = false;

    size_t qn = (size_t)(key.B * key.T * key.Hq * key.D), kvn = (size_t)(key.B * key.S * key.Hkv * key.D);
    size_t elems[3] = {qn, kvn, kvn};
    size_t sum_bytes = round_up((size_t)(key.B * key.Hq * key.T) * sizeof(float));
    size_t accum_bytes = round_up(qn * sizeof(float));
    const bool pad = pad_workaround(&key);
    size_t len_bytes = pad ? round_up((size_t)key.B * sizeof(int32_t)) : 0;
    size_t total = sum_bytes + accum_bytes + 2 * len_bytes + (size_t)ws_bytes;
    size_t scratch_off[3];
    for (int i = 0; i < 3; i++) {
        scratch_off[i] = total;
        if (!direct[i]) total += round_up(elems[i] * sizeof(uint16_t));
    }
    char *base = NULL;
    LN_CUDA_TRY(cudaMallocAsync((void **)&base, total, ln_stream()));
    void *softmax_sum = base, *dq_accum = base + sum_bytes;
    int32_t *len_q = pad ? (int32_t *)(base + sum_bytes + accum_bytes) : NULL;
    int32_t *len_kv = pad ? (int32_t *)(base + sum_bytes + accum_bytes + len_bytes) : NULL;
    void *workspace = ws_bytes > 0 ? base + sum_bytes + accum_bytes + 2 * len_bytes : NULL;
    void *dst[3];
    for (int i = 0; i < 3; i++) dst[i] = direct[i] ? grads[i]->data : base + scratch_off[i];

    // the engine accumulates dQ into dQ_accum (cudnn-frontend zeroes it before cuDNN 9.6; we always do)
    cudaError_t cst = cudaMemsetAsync(dq_accum, 0, accum_bytes, ln_stream());
    int status = LN_OK;
    if (cst != cudaSuccess) status = ln_fail("attention (cuDNN backward): zeroing dQ_accum: %s", cudaGetErrorString(cst));
    if (status == LN_OK && pad) {
        fill_lengths<<<(unsigned)((key.B + 255) / 256), 256, 0, ln_stream()>>>(len_q, len_kv, key.B, (int32_t)key.T,
                                                                            (int32_t)key.S);
        cst = cudaGetLastError();
        if (cst != cudaSuccess)
            status = ln_fail("attention (cuDNN backward): filling the padding lengths: %s", cudaGetErrorString(cst));
    }
    if (status == LN_OK) {
        alignas(16) float scale = (float)n->farg[0];
        alignas(16) float neg_inf = neg_inf_value();
        alignas(16) float one = 1.0f;
        alignas(16) int32_t seq_q = (int32_t)key.T;
        alignas(16) int32_t seq_kv = (int32_t)key.S;
        alignas(16) float pad_value = LOWEST_FLOAT;
        int64_t uids[24] = {UID_Q,  UID_K,  UID_V,  UID_O,           UID_STATS,    UID_DO,    UID_DQ,
                            UID_DK, UID_DV, UID_SOFTMAX_SUM, UID_DQ_ACCUM, UID_SCALE, UID_ONE};
        void *ptrs[24] = {q->data, k->data, v->data, o->data,  lse->data, dout->data, dst[0],
                          dst[1],  dst[2],  softmax_sum, dq_accum, &scale,  &one};
        int count = 13;
        if (pad) {
            uids[count] = UID_PAD_SEQ_Q, ptrs[count++] = len_q;
            uids[count] = UID_PAD_SEQ_KV, ptrs[count++] = len_kv;
            uids[count] = UID_PAD_VALUE, ptrs[count++] = &pad_value;
        }
        if (key.causal) {
            uids[count] = UID_NEG_INF, ptrs[count++] = &neg_inf;
            if (bottom_right(&key) && !pad) {
                uids[count] = UID_SEQ_Q, ptrs[count++] = &seq_q;
                uids[count] = UID_SEQ_KV, ptrs[count++] = &seq_kv;
            }
        }
        status = execute(plan, "backward", count, uids, ptrs, workspace);
    }
    for (int i = 0; i < 3 && status == LN_OK; i++) {
        if (!need[i] || direct[i]) continue;
        ln_tensor part;
        memset(&part, 0, sizeof part);
        part.dtype = LN_BF16;
        part.device = LN_CUDA;
        part.ndim = 1;
        part.shape[0] = part.numel = (int64_t)elems[i];
        part.data = dst[i];
        status = ln_cuda_add_into(grads[i], &part);
    }
    cst = cudaFreeAsync(base, ln_stream()); // stream-ordered: after the kernels
    if (status == LN_OK && cst != cudaSuccess)
        status = ln_fail("attention (cuDNN backward): cudaFreeAsync: %s", cudaGetErrorString(cst));
    return status;
}

#endif // LINNET_CUDNN
