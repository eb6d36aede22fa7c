#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"
#include "autograd/memory.h"
#include "autograd/rng.h"
#include "recipes/train.h"

/* Picks a token from one row of logits: greedy, or softmax(logits / temperature) over the top k. */
static int32_t pick(const float *logits, int vocab, double temperature, int top_k, ln_rng *rng, double *probs) {
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0) return best;
    /* the k-th largest logit is the cut-off (ties at the cut-off stay in) */
    double cutoff = -INFINITY;
    if (top_k > 0 && top_k < vocab) {
        for (int i = 0; i < vocab; i++) probs[i] = logits[i];
        for (int k = 0; k < top_k; k++) {
            int arg = 0;
            for (int i = 1; i < vocab; i++)
                if (probs[i] > probs[arg]) arg = i;
            cutoff = probs[arg];
            probs[arg] = -INFINITY;
        }
    }
    double total = 0;
    for (int i = 0; i < vocab; i++) {
        probs[i] = logits[i] >= cutoff ? exp((logits[i] - logits[best]) / temperature) : 0.0;
        total += probs[i];
    }
    double u = ln_rng_uniform(rng) * total;
    for (int i = 0; i < vocab; i++) {
        u -= probs[i];
        if (u <= 0 && probs[i] > 0) return i;
    }
    return best;
}

int ln_sample(ln_transformer *model, const ln_tokenizer *tok, const char *prompt, int n_tokens, double temperature,
              int top_k, uint64_t seed, int context, FILE *out) {
    int32_t *prompt_ids = NULL;
    size_t n_prompt = 0;
    if (ln_tokenizer_encode(tok, prompt, strlen(prompt), &prompt_ids, &n_prompt)) return LN_ERR;
    int vocab = model->cfg.vocab_size;
    size_t cap = n_prompt + (size_t)n_tokens + 1;
    int32_t *ids = malloc(cap * sizeof *ids);
    double *probs = malloc((size_t)vocab * sizeof *probs);
    float *row = malloc((size_t)vocab * sizeof *row);
    ln_device device = model->embedding->device;
    if (!ids || !probs || !row) {
        free(prompt_ids);
        free(ids);
        free(probs);
        free(row);
        return ln_fail("sample: out of host memory");
    }
    memcpy(ids, prompt_ids, n_prompt * sizeof *ids);
    free(prompt_ids);
    size_t n = n_prompt;
    if (n == 0) ids[n++] = '\n' < vocab ? '\n' : 0; /* an empty prompt starts from a newline */
    fputs(prompt, out);
    fflush(out);
    ln_rng rng;
    ln_rng_seed(&rng, seed);
    bool was = ln_set_grad_enabled(false);
    int status = LN_OK;
    for (int step = 0; step < n_tokens && status == LN_OK; step++) {
        /* the model sees at most `context` tokens: the most recent ones */
        int64_t T = (int64_t)n < context ? (int64_t)n : context;
        ln_tensor *host_ids = ln_tensor_new(LN_I32, LN_CPU, 2, (int64_t[]){1, T});
        ln_tensor *x = device == LN_CPU ? host_ids : ln_tensor_new(LN_I32, device, 2, (int64_t[]){1, T});
        if (!host_ids || !x) {
            status = LN_ERR;
            break;
        }
        memcpy(host_ids->data, ids + n - T, (size_t)T * sizeof *ids);
        ln_tensor *logits = x == host_ids || ln_tensor_copy(x, host_ids) == LN_OK ? ln_transformer_logits(model, x) : NULL;
        /* the last position's logits, on the host */
        ln_tensor *last = logits ? ln_tensor_new(logits->dtype, LN_CPU, 1, (int64_t[]){vocab}) : NULL;
        if (!last || ln_device_copy(LN_CPU, last->data, logits->device,
                                    (const char *)logits->data + (size_t)(T - 1) * vocab * ln_dtype_size(logits->dtype),
                                    (size_t)vocab * ln_dtype_size(logits->dtype)))
            status = LN_ERR;
        else {
            for (int i = 0; i < vocab; i++) row[i] = (float)ln_get(last, i);
            int32_t next = pick(row, vocab, temperature, top_k, &rng, probs);
            ids[n++] = next;
            char *text = NULL;
            size_t len = 0;
            if (ln_tokenizer_decode(tok, &next, 1, &text, &len) == LN_OK) fwrite(text, 1, len, out);
            free(text);
            fflush(out);
        }
        ln_tensor_free(last);
        if (x != host_ids) ln_tensor_free(host_ids);
        ln_tape_clear();
        ln_tensor_free(x);
    }
    ln_set_grad_enabled(was);
    fputc('\n', out);
    free(ids);
    free(probs);
    free(row);
    return status;
}
