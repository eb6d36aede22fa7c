/* cuDNN's fused (flash) scaled-dot-product attention, forward and backward, for the attention op
 * (attention.c) on the GPU. Built through the cuDNN 9 backend graph API in plain C calls (no
 * cudnn-frontend); see docs/attention-cudnn.md for the operation graphs.
 *
 * Same contract as the CPU kernels of the attention op: q [B, T, Hq, D], k and v [B, S, Hkv, D]
 * (contiguous, bf16), iarg[0] = causal (keys s > t + (S - T) masked), farg[0] = scale. The forward
 * writes n->out[0] and saves, in this order, o (slot 3) and lse f32 [B, Hq, T] (slot 4), the
 * natural-log logsumexp of scale * q.k over the visible keys. The backward reads slots 0..4 and
 * the gradient of out[0], and accumulates into the gradients of q, k and v (those that require one).
 *
 * Plans are built once per shape (B, T, S, Hq, Hkv, D, causal, dtype) and kept in a small table;
 * the scale is a by-value input of the plan, so one plan serves every scale. Workspace comes from
 * the stream-ordered pool on ln_stream(). Every function here is defined in every CUDA build; in a
 * build without cuDNN (LINNET_CUDNN undefined) supported() is 0 and the kernels fail. */
#ifndef LN_ATTENTION_CUDNN_H
#define LN_ATTENTION_CUDNN_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when cuDNN runs this node's forward and backward: bf16 q/k/v on the GPU, D a multiple of 8 up
 * to 128, Hq a multiple of Hkv, sm80 or newer, and cuDNN accepts both graphs for the shape (they
 * are built and cached here, so the first call per shape costs the plan build). 0 otherwise, with
 * the reason in ln_attention_cudnn_unsupported_reason(). Never sets the error message. */
int ln_attention_cudnn_supported(const ln_node *n);
/* Why the last ln_attention_cudnn_supported() call answered 0 ("" after a 1). */
const char *ln_attention_cudnn_unsupported_reason(void);

int ln_attention_cudnn_forward(ln_node *n);
int ln_attention_cudnn_backward(ln_node *n);

/* cudnnGetVersion() of the loaded library (e.g. 91900), 0 when built without cuDNN. */
size_t ln_attention_cudnn_version(void);
/* For tests, and for machines without a GPU: builds every descriptor of one graph (bf16, the
 * backward when `backward`) and finalizes its operation graph, without running it. With
 * device_json (a CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION document) it also plans the graph ahead
 * of time for that device: heuristics and an execution plan, so cuDNN's fused engine must accept
 * the graph; *engine_index (when given) is then the chosen engine's global index. LN_OK, or LN_ERR naming the descriptor, attribute and cuDNN's status. */
int ln_attention_cudnn_check_graph(int64_t B, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, int causal,
                                   int backward, const char *device_json, int64_t *engine_index);
/* Destroys every cached plan (waits for the stream first). Plans are rebuilt on demand. */
void ln_attention_cudnn_clear_cache(void);

#ifdef __cplusplus
}
#endif

#endif
