#include "tape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "memory.h"
#include "profile.h"

/* One arena per process: growable arrays of nodes and tensors made since the last clear. */
static struct {
    ln_node **nodes;
    size_t n_nodes, cap_nodes;
    ln_tensor **tensors;
    size_t n_tensors, cap_tensors;
    size_t bytes, peak_bytes;
} arena;

static bool grad_enabled = true;

static void *keep_pack(ln_tensor *t, void *ctx) {
    (void)ctx;
    return t;
}
static ln_tensor *keep_unpack(void *packed, void *ctx) {
    (void)ctx;
    return packed;
}
static const ln_saved_hooks default_hooks = {keep_pack, keep_unpack, NULL};
static ln_saved_hooks hooks = {keep_pack, keep_unpack, NULL};

void ln_set_saved_hooks(const ln_saved_hooks *h) { hooks = h ? *h : default_hooks; }

static ln_grad_ready_hook ready_hook;
static bool have_ready_hook;

/* the gradient of the running backward's root: kept (the caller seeded it), never handed on */
static const ln_tensor *root_grad;

void ln_set_grad_ready_hook(const ln_grad_ready_hook *hook) {
    have_ready_hook = hook != NULL;
    if (hook) ready_hook = *hook;
}

int ln_backward_readers(const ln_tensor *t) { return t->pending_readers; }

bool ln_grad_enabled(void) { return grad_enabled; }

bool ln_set_grad_enabled(bool enabled) {
    bool previous = grad_enabled;
    grad_enabled = enabled;
    return previous;
}

static int grow(void *array_ptr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return LN_OK;
    size_t cap2 = *cap ? *cap * 2 : 256;
    while (cap2 < need) cap2 *= 2;
    void *p = realloc(*(void **)array_ptr, cap2 * elem);
    if (!p) return ln_fail("tape: out of host memory");
    *(void **)array_ptr = p;
    *cap = cap2;
    return LN_OK;
}

static int arena_adopt(ln_tensor *t) {
    if (grow(&arena.tensors, &arena.cap_tensors, arena.n_tensors + 1, sizeof *arena.tensors)) return LN_ERR;
    t->in_arena = true;
    arena.tensors[arena.n_tensors++] = t;
    if (t->owns_data) arena.bytes += (size_t)t->numel * ln_dtype_size(t->dtype);
    if (arena.bytes > arena.peak_bytes) arena.peak_bytes = arena.bytes;
    return LN_OK;
}

/* An arena tensor, zero-filled or (unfilled: for kernels that write every element) not. */
static ln_tensor *arena_tensor(ln_dtype dtype, ln_device device, int ndim, const int64_t *shape, bool zero) {
    ln_tensor *t = zero ? ln_tensor_new(dtype, device, ndim, shape) : ln_tensor_new_uninit(dtype, device, ndim, shape);
    if (t && arena_adopt(t)) {
        ln_tensor_free(t);
        return NULL;
    }
    return t;
}

ln_tensor *ln_arena_tensor(ln_dtype dtype, ln_device device, int ndim, const int64_t *shape) {
    return arena_tensor(dtype, device, ndim, shape, true);
}

ln_tensor *ln_arena_tensor_uninit(ln_dtype dtype, ln_device device, int ndim, const int64_t *shape) {
    return arena_tensor(dtype, device, ndim, shape, false);
}

ln_tensor *ln_grad_of(ln_tensor *t) {
    if (t->grad) return t->grad;
    /* the gradient of an arena tensor lives in the arena; a caller-owned tensor owns its own */
    t->grad = t->in_arena ? ln_arena_tensor(t->dtype, t->device, t->ndim, t->shape) : ln_tensor_new_like(t);
    if (t->grad && t->in_arena) t->grad->in_arena = true;
    return t->grad;
}

ln_tensor *ln_grad_for_write(ln_tensor *t, bool *accumulate) {
    *accumulate = t->grad != NULL || !t->in_arena;
    if (*accumulate) return ln_grad_of(t); /* leaves keep zeroed, persistent grads */
    ln_tensor *g = arena_tensor(t->dtype, t->device, t->ndim, t->shape, false);
    /* poisoned GPU tests (poison kept on through backward) prove the kernel wrote every element */
    if (g && ln_poison_outputs() && ln_device_poison(g->device, g->data, (size_t)g->numel * ln_dtype_size(g->dtype)))
        return NULL;
    t->grad = g;
    return g;
}

/* t's gradient: an arena view of t's shape over data whose storage belongs to another tensor */
static ln_tensor *grad_view(ln_tensor *t, void *data) {
    ln_tensor *view = calloc(1, sizeof *view);
    if (!view) return NULL;
    *view = (ln_tensor){.dtype = t->dtype, .device = t->device, .ndim = t->ndim, .numel = t->numel, .data = data};
    memcpy(view->shape, t->shape, sizeof view->shape);
    if (arena_adopt(view)) {
        free(view);
        return NULL;
    }
    t->grad = view;
    return view;
}

bool ln_grad_adopt(ln_tensor *t, ln_tensor *g) {
    if (t->grad || !t->in_arena || !g || g == root_grad || g->dtype != t->dtype || g->device != t->device ||
        g->numel != t->numel)
        return false;
    ln_tensor *view = grad_view(t, g->data);
    if (!view) return false; /* the caller accumulates instead */
    /* the storage passes to t's gradient: g dies when this backward ends (release_dead_grad), t's
     * gradient lives on until t's own producer has run backward */
    if (g->in_arena && g->owns_data) {
        g->owns_data = false;
        view->owns_data = true;
    }
    return true;
}

/* After the backward of t's producer nothing reads t's gradient again: unless t is the root (or
 * a caller-owned tensor), its storage goes back to the allocator now rather than at
 * ln_tape_clear, so a backward holds a few layers of activation gradients, not all of them. */
static void release_dead_grad(ln_tensor *t, const ln_tensor *root) {
    ln_tensor *g = t->grad;
    if (!g || !t->in_arena || t == root || !g->in_arena) return;
    if (g->owns_data) {
        arena.bytes -= (size_t)g->numel * ln_dtype_size(g->dtype);
        ln_device_free(g->device, g->data);
        g->owns_data = false;
    }
    g->data = NULL;
    t->grad = NULL; /* the struct itself stays in the arena until ln_tape_clear */
}

ln_node *ln_node_begin(const ln_op *op, int n_in, ln_tensor *const *inputs) {
    for (int i = 0; i < n_in; i++)
        if (!inputs[i]) return NULL; /* an earlier op failed: its message stands */
    for (int i = 1; i < n_in; i++)
        if (inputs[i]->device != inputs[0]->device) {
            ln_fail("%s: input %d is on %s but input 0 is on %s", op->name, i, ln_device_name(inputs[i]->device),
                    ln_device_name(inputs[0]->device));
            return NULL;
        }
    ln_node *n = calloc(1, sizeof *n);
    if (!n) {
        ln_fail("%s: out of host memory", op->name);
        return NULL;
    }
    if (grow(&arena.nodes, &arena.cap_nodes, arena.n_nodes + 1, sizeof *arena.nodes)) {
        free(n);
        return NULL;
    }
    arena.nodes[arena.n_nodes++] = n; /* owned by the arena from here, recorded or not */
    n->op = op;
    n->device = n_in ? inputs[0]->device : LN_CPU;
    n->n_in = n_in;
    memcpy(n->in, inputs, (size_t)n_in * sizeof *inputs);
    return n;
}

ln_tensor *ln_node_output(ln_node *n, ln_dtype dtype, int ndim, const int64_t *shape) {
    if (!n) return NULL;
    if (n->n_out == LN_MAX_OP_IO) {
        ln_fail("%s: too many outputs", n->op->name);
        return NULL;
    }
    /* not zero-filled on the GPU: the forward writes every element (poisoned GPU tests prove it) */
    ln_tensor *t = arena_tensor(dtype, n->device, ndim, shape, false);
    if (t && ln_poison_outputs() && ln_device_poison(t->device, t->data, (size_t)t->numel * ln_dtype_size(dtype)))
        return NULL;
    if (t) n->out[n->n_out++] = t;
    return t;
}

ln_tensor *ln_node_view_output(ln_node *n, int input_index, int ndim, const int64_t *shape) {
    if (!n) return NULL;
    ln_tensor *src = n->in[input_index];
    if (ln_shape_numel(ndim, shape) != src->numel) {
        char buf[64];
        ln_fail("%s: cannot view %s %s with %lld elements", n->op->name, src->name, ln_shape_str(src, buf, sizeof buf),
                (long long)ln_shape_numel(ndim, shape));
        return NULL;
    }
    ln_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        ln_fail("%s: out of host memory", n->op->name);
        return NULL;
    }
    *t = (ln_tensor){.dtype = src->dtype, .device = src->device, .ndim = ndim, .numel = src->numel, .data = src->data,
                     .aliased = true};
    src->aliased = true;
    if (ndim > 0) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    if (arena_adopt(t)) {
        free(t);
        return NULL;
    }
    n->out[n->n_out++] = t;
    return t;
}

void ln_node_save(ln_node *n, ln_tensor *t) {
    if (!n || n->n_saved >= LN_MAX_OP_SAVED) return;
    if (t->in_arena) t->saved_count++;
    n->saved[n->n_saved++] = hooks.pack(t, hooks.ctx);
}

static bool reuse_inputs;

bool ln_set_grad_over_inputs(bool enabled) {
    bool previous = reuse_inputs;
    reuse_inputs = enabled;
    return previous;
}

ln_tensor *ln_grad_over_input(ln_node *n, int i, const ln_tensor *saved) {
    ln_tensor *t = n->in[i];
    /* only n saved t (and kept it as it was), no view shares its storage, nothing has given it a
     * gradient yet and the caller (the trainer) allowed it: t's values die with n's backward */
    if (!reuse_inputs || saved != t || !t->in_arena || !t->owns_data || t->aliased || t->saved_count != 1 ||
        t->grad || !t->requires_grad)
        return NULL;
    return grad_view(t, t->data);
}

ln_tensor *ln_node_saved(ln_node *n, int i) { return hooks.unpack(n->saved[i], hooks.ctx); }

int ln_node_run(ln_node *n) {
    if (!n) return LN_ERR;
    for (int i = 0; i < n->n_out; i++)
        if (!n->out[i]) return LN_ERR;
    ln_kernel_fn forward = n->op->forward[n->device];
    if (!forward)
        return ln_fail("%s: no %s forward kernel yet", n->op->name, ln_device_name(n->device));
    bool timed = ln_profile_enabled();
    if (timed) ln_profile_begin(n, false);
    int failed = forward(n);
    if (timed) ln_profile_end(n, false);
    if (failed) return ln_fail_context("%s forward", n->op->name);
    bool needs_grad = false;
    for (int i = 0; i < n->n_in; i++) needs_grad |= n->in[i]->requires_grad;
    if (grad_enabled && needs_grad) {
        n->recorded = true;
        for (int i = 0; i < n->n_out; i++) n->out[i]->requires_grad = ln_dtype_is_float(n->out[i]->dtype);
    }
    return LN_OK;
}

/* Leaves the ready hook hears about: caller-owned tensors that take a gradient. */
static bool is_hooked_leaf(const ln_tensor *t) { return !t->in_arena && t->requires_grad; }

/* delta +1: counts, per leaf, the recorded nodes (one per input slot) whose backward reads it.
 * delta 0: resets every count. */
static void count_readers(int delta) {
    for (size_t i = 0; i < arena.n_nodes; i++) {
        ln_node *n = arena.nodes[i];
        if (!n->recorded) continue;
        for (int k = 0; k < n->n_in; k++)
            if (is_hooked_leaf(n->in[k])) n->in[k]->pending_readers = delta ? n->in[k]->pending_readers + delta : 0;
    }
}

int ln_backward_from(ln_tensor *root, const ln_tensor *seed) {
    if (!root) return LN_ERR;
    if (!root->requires_grad)
        return ln_fail("backward: %s does not require a gradient (no parameter reaches it)",
                       root->name[0] ? root->name : "the root");
    if (seed->numel != root->numel) return ln_fail("backward: seed has %lld elements, root %lld",
                                                   (long long)seed->numel, (long long)root->numel);
    ln_tensor *g = ln_grad_of(root);
    if (!g || ln_tensor_copy(g, seed)) return LN_ERR;
    root_grad = g;
    bool was_enabled = ln_set_grad_enabled(false);
    bool hooked = have_ready_hook; /* fixed for the whole pass, even if a hook changes it */
    ln_grad_ready_hook hook = ready_hook;
    if (hooked) count_readers(+1);
    int status = hooked && hook.begin ? hook.begin(hook.ctx) : LN_OK;
    for (size_t i = arena.n_nodes; i-- > 0 && status == LN_OK;) {
        ln_node *n = arena.nodes[i];
        if (!n->recorded) continue;
        bool has_grad = false;
        for (int o = 0; o < n->n_out; o++) has_grad |= n->out[o]->grad != NULL;
        if (has_grad) {
            ln_kernel_fn backward = n->op->backward[n->device];
            if (!backward) {
                status = ln_fail("%s: no %s backward kernel yet", n->op->name, ln_device_name(n->device));
                break;
            }
            bool timed = ln_profile_enabled();
            if (timed) ln_profile_begin(n, true);
            if (backward(n)) status = ln_fail_context("%s backward", n->op->name);
            if (timed) ln_profile_end(n, true);
            for (int o = 0; o < n->n_out && status == LN_OK; o++) release_dead_grad(n->out[o], root);
        }
        /* a reader that got no gradient still counts as done: its leaves wait for it no longer */
        for (int k = 0; hooked && status == LN_OK && k < n->n_in; k++) {
            ln_tensor *t = n->in[k];
            if (is_hooked_leaf(t) && --t->pending_readers == 0 && hook.ready(t, hook.ctx))
                status = ln_fail_context("gradient-ready hook of %s", ln_tensor_label(t, "a leaf"));
        }
    }
    if (hooked && status != LN_OK) count_readers(0); /* a failed pass leaves no stale counts */
    ln_set_grad_enabled(was_enabled);
    root_grad = NULL;
    return status;
}

int ln_backward(ln_tensor *root) {
    if (!root) return LN_ERR;
    if (root->numel != 1) return ln_fail("backward: the root must have one element, it has %lld", (long long)root->numel);
    ln_tensor *one = ln_tensor_new(root->dtype, LN_CPU, 0, NULL);
    if (!one) return LN_ERR;
    ln_set(one, 0, 1.0);
    int status;
    if (root->device == LN_CPU) {
        status = ln_backward_from(root, one);
    } else {
        ln_tensor *dev = ln_tensor_new(root->dtype, root->device, 0, NULL);
        status = dev && ln_tensor_copy(dev, one) == LN_OK ? ln_backward_from(root, dev) : LN_ERR;
        ln_tensor_free(dev);
    }
    ln_tensor_free(one);
    return status;
}

void ln_tape_clear(void) {
    if (ln_profile_enabled()) ln_profile_flush();
    for (size_t i = 0; i < arena.n_nodes; i++) free(arena.nodes[i]);
    arena.n_nodes = 0;
    for (size_t i = 0; i < arena.n_tensors; i++) {
        ln_tensor *t = arena.tensors[i];
        t->grad = NULL; /* arena gradients are arena tensors themselves */
        ln_tensor_free(t);
    }
    arena.n_tensors = 0;
    arena.bytes = 0;
    arena.peak_bytes = 0;
}

size_t ln_tape_size(void) {
    size_t n = 0;
    for (size_t i = 0; i < arena.n_nodes; i++) n += arena.nodes[i]->recorded;
    return n;
}

size_t ln_arena_bytes(void) { return arena.bytes; }
size_t ln_arena_peak_bytes(void) { return arena.peak_bytes; }
