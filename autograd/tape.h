/* The tape: ops record nodes while gradients are enabled; ln_backward replays them in reverse.
 *
 * An op is one record (ln_op): its name and a forward and backward kernel per device. A kernel
 * sees only its node: inputs, outputs, scalar arguments, and what the forward saved. Whatever
 * backward needs is saved through ln_node_save, the one saved-tensor hook, so recompute or
 * offload policies plug in there without touching ops. */
#ifndef LN_TAPE_H
#define LN_TAPE_H

#include "tensor.h"

#define LN_MAX_OP_IO 8
#define LN_MAX_OP_SAVED 8
#define LN_MAX_OP_ARGS 8

typedef struct ln_node ln_node;
typedef int (*ln_kernel_fn)(ln_node *node);

/* The CUDA slot of an op record exists only in builds with the CUDA backend:
 *   .forward = {[LN_CPU] = silu_forward_cpu LN_ON_CUDA(ln_silu_forward_cuda)} */
#ifdef LINNET_CUDA
#define LN_ON_CUDA(fn) , [LN_CUDA] = fn
#else
#define LN_ON_CUDA(fn)
#endif

typedef struct ln_op {
    const char *name;
    ln_kernel_fn forward[LN_DEVICE_COUNT];
    ln_kernel_fn backward[LN_DEVICE_COUNT];
} ln_op;

struct ln_node {
    const ln_op *op;
    ln_device device;
    int n_in, n_out, n_saved;
    ln_tensor *in[LN_MAX_OP_IO];
    ln_tensor *out[LN_MAX_OP_IO];
    void *saved[LN_MAX_OP_SAVED]; /* opaque: whatever the saved-tensor hook packed */
    int64_t iarg[LN_MAX_OP_ARGS];
    double farg[LN_MAX_OP_ARGS];
    bool recorded;
};

/* ---- writing an op ----
 *   ln_node *n = ln_node_begin(&silu_op, 1, (ln_tensor *[]){x});   NULL input => NULL
 *   ln_tensor *y = ln_node_output(n, x->dtype, x->ndim, x->shape);
 *   ln_node_save(n, x);
 *   return ln_node_run(n) == LN_OK ? y : NULL;
 * Inputs must share a device. ln_node_run runs the forward for that device and records the node
 * on the tape when gradients are enabled and some input requires one. */
ln_node *ln_node_begin(const ln_op *op, int n_in, ln_tensor *const *inputs);
ln_tensor *ln_node_output(ln_node *n, ln_dtype dtype, int ndim, const int64_t *shape);
/* An output that aliases in[input_index]'s storage with another shape (views). */
ln_tensor *ln_node_view_output(ln_node *n, int input_index, int ndim, const int64_t *shape);
void ln_node_save(ln_node *n, ln_tensor *t);
/* In node n's backward: when n alone saved its input i (saved is what ln_node_saved gave back),
 * no view shares its storage and it has no gradient yet, its gradient becomes a view of its own
 * storage, so the kernel writes the gradient over values nobody needs after it (cross_entropy's
 * logits: llm.c's trick, a [tokens, vocab] buffer less at the peak). Off unless
 * ln_set_grad_over_inputs(true) (the trainer turns it on): the input then no longer holds its
 * values after the backward. NULL when it does not apply: use ln_grad_for_write. */
ln_tensor *ln_grad_over_input(ln_node *n, int i, const ln_tensor *saved);
bool ln_set_grad_over_inputs(bool enabled); /* returns the previous setting */
ln_tensor *ln_node_saved(ln_node *n, int i); /* in backward: unpacks saved[i] */
int ln_node_run(ln_node *n);

/* An arena tensor (released by ln_tape_clear), zero-filled. For scratch results of ops. */
ln_tensor *ln_arena_tensor(ln_dtype dtype, ln_device device, int ndim, const int64_t *shape);
/* The same, not zero-filled: for kernels that write every element. */
ln_tensor *ln_arena_tensor_uninit(ln_dtype dtype, ln_device device, int ndim, const int64_t *shape);

/* ---- the saved-tensor hook ---- pack runs when an op saves a tensor, unpack when backward needs
 * it back. The default keeps a reference (the arena keeps the tensor alive). */
typedef struct ln_saved_hooks {
    void *(*pack)(ln_tensor *t, void *ctx);
    ln_tensor *(*unpack)(void *packed, void *ctx);
    void *ctx;
} ln_saved_hooks;
void ln_set_saved_hooks(const ln_saved_hooks *hooks); /* NULL restores the default */

/* ---- gradient mode ---- */
bool ln_grad_enabled(void);
bool ln_set_grad_enabled(bool enabled); /* returns the previous mode */

/* ---- running it backward ----
 * Seeds d(root)=1 (root must have one element) and accumulates into every tensor that requires
 * a gradient. Gradients of caller-owned tensors accumulate across calls until zeroed. Those of
 * op results (besides root's) are not kept: each is released once its producer's backward has
 * read it, so after the backward an intermediate tensor has no gradient (as in PyTorch). */
int ln_backward(ln_tensor *root);
/* Same, seeding d(root) with the given tensor (same shape as root). */
int ln_backward_from(ln_tensor *root, const ln_tensor *seed);

/* ---- the gradient-ready hook ----
 * While a hook is set, ln_backward calls ready(t) for every caller-owned tensor t that requires a
 * gradient (a parameter) right after the backward of the last recorded node reading t has run
 * (been launched, on a GPU): t's gradient from this backward is then complete. begin runs first,
 * once readers are counted: ln_backward_readers(t) == 0 then means this backward gives t nothing
 * (and no ready call follows for it). Data parallel training starts the all-reduce of finished
 * gradients this way while the rest of the backward still runs. A nonzero return stops the
 * backward with that status. */
typedef struct ln_grad_ready_hook {
    int (*begin)(void *ctx);
    int (*ready)(ln_tensor *t, void *ctx);
    void *ctx;
} ln_grad_ready_hook;
void ln_set_grad_ready_hook(const ln_grad_ready_hook *hook); /* NULL removes it */
int ln_backward_readers(const ln_tensor *t);

/* Releases every node and arena tensor. Call after each optimizer micro-step. */
void ln_tape_clear(void);
size_t ln_tape_size(void);
size_t ln_arena_bytes(void);
/* The most arena bytes held at once since the last ln_tape_clear. */
size_t ln_arena_peak_bytes(void);

#endif
