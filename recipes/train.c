/* The training loop: global batches split over ranks and micro-steps, all-reduced gradients,
 * clipping, AdamW on a warmup + cosine schedule, metrics, evaluation and checkpoints. */
#include "recipes/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "autograd/autocast.h"
#include "autograd/error.h"
#include "autograd/ops.h"
#include "autograd/profile.h"
#include "autograd/memory.h"
#include "checkpoints/checkpoint.h"
#include "distributed/grad_sync.h"
#include "optim/adamw.h"
#include "recipes/batch.h"
#ifdef LINNET_CUDA
#include "autograd/cuda/cuda_context.h"
#endif
#ifdef LINNET_NCCL
#include "distributed/nccl.h"
#endif

typedef struct run {
    const ln_config *cfg;
    const ln_train_options *opts;
    ln_comm *comm;
    ln_transformer model;
    ln_params trainable; /* the model's parameters less the frozen ones (train.freeze), borrowed */
    ln_adamw opt;
    ln_grad_sync sync; /* bucketed all-reduce overlapping the backward (GPUs through NCCL) */
    bool bucketed;     /* sync is in use; else ln_comm_allreduce_grads after the backward */
    ln_loader *train, *val;
    ln_rng rng; /* the run's RNG (checkpointed; no op draws from it yet) */
    int64_t step; /* optimizer steps done */
    ln_device device;
    ln_tensor *losses; /* [grad_accum]: each micro-step's loss, left on the device until the step's sync */
    ln_named_tensor *entries; /* checkpoint entries: every param, then AdamW m and v of the trainable ones
                                 (host copies when on a GPU) */
    char **entry_names;
    int n_entries;
    FILE *metrics;
} run;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int make_dir(const char *path) {
    char buf[LN_PATH_LEN];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) && errno != EEXIST) return ln_fail("%s: cannot create directory: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0755) && errno != EEXIST) return ln_fail("%s: cannot create directory: %s", buf, strerror(errno));
    return LN_OK;
}

/* The live tensor behind checkpoint entry e: params first, then m and v of the trainable ones. */
static ln_tensor *entry_source(run *r, int e) {
    int P = r->model.params.n, T = r->trainable.n;
    if (e < P) return r->model.params.items[e].tensor;
    return e < P + T ? r->opt.m[e - P] : r->opt.v[e - P - T];
}

static int build_entries(run *r) {
    int P = r->model.params.n, T = r->trainable.n;
    r->n_entries = P + 2 * T;
    r->entries = calloc((size_t)r->n_entries, sizeof *r->entries);
    r->entry_names = calloc((size_t)r->n_entries, sizeof *r->entry_names);
    if (!r->entries || !r->entry_names) return ln_fail("out of host memory");
    for (int e = 0; e < r->n_entries; e++) {
        const char *group = e < P ? "params" : e < P + T ? "optim/m" : "optim/v";
        const char *name = e < P ? r->model.params.items[e].name : r->trainable.items[(e - P) % T].name;
        size_t len = strlen(group) + strlen(name) + 2;
        r->entry_names[e] = malloc(len);
        if (!r->entry_names[e]) return ln_fail("out of host memory");
        snprintf(r->entry_names[e], len, "%s/%s", group, name);
        r->entries[e].name = r->entry_names[e];
        ln_tensor *t = entry_source(r, e);
        /* HDF5 reads and writes host memory: GPU tensors go through a host copy */
        r->entries[e].tensor = t->device == LN_CPU ? t : ln_tensor_new(t->dtype, LN_CPU, t->ndim, t->shape);
        if (!r->entries[e].tensor) return LN_ERR;
    }
    return LN_OK;
}

/* Copies between the live tensors and their host copies (to_host: for saving). */
static int sync_entries(run *r, bool to_host) {
    for (int e = 0; e < r->n_entries; e++) {
        ln_tensor *live = entry_source(r, e), *host = r->entries[e].tensor;
        if (live != host && (to_host ? ln_tensor_copy(host, live) : ln_tensor_copy(live, host))) return LN_ERR;
    }
    return LN_OK;
}

static int save_checkpoint(run *r) {
    int status = LN_OK;
    if (r->comm->rank == 0) {
        char path[LN_PATH_LEN];
        ln_checkpoint_path(r->opts->out_dir, r->step, path, sizeof path);
        ln_loader_cursor c = ln_loader_get_cursor(r->train);
        ln_checkpoint ck = {.n_tensors = r->n_entries, .tensors = r->entries, .step = r->step, .n_cursor = 4,
                            .loader_cursor = {c.epoch, c.shard, c.window, c.sequences}};
        memcpy(ck.rng_state, r->rng.s, sizeof ck.rng_state);
        ck.recipe_yaml = ln_config_to_yaml(r->cfg);
        status = !ck.recipe_yaml ? ln_fail("out of host memory") : sync_entries(r, true) ? LN_ERR : ln_checkpoint_save(path, &ck);
        free(ck.recipe_yaml);
        if (status == LN_OK) status = ln_checkpoint_prune(r->opts->out_dir, r->cfg->ckpt.keep);
        if (status == LN_OK) printf("checkpoint %s\n", path);
    }
    /* every rank learns whether rank 0's write worked, so none waits on a dead peer */
    if (ln_comm_agree(r->comm, status) != LN_OK && r->comm->rank != 0) return ln_fail("rank 0 failed to write a checkpoint");
    return status;
}

static int resume(run *r) {
    char path[LN_PATH_LEN];
    const char *want = r->opts->resume;
    if (strcmp(want, "auto") == 0) {
        if (ln_checkpoint_find_latest(r->opts->out_dir, path, sizeof path) != LN_OK) {
            if (r->comm->rank == 0) printf("no checkpoint in %s: starting fresh\n", r->opts->out_dir);
            return LN_OK;
        }
    } else {
        snprintf(path, sizeof path, "%s", want);
    }
    ln_checkpoint ck = {.n_tensors = r->n_entries, .tensors = r->entries};
    if (ln_checkpoint_load(path, &ck)) return LN_ERR;
    free(ck.recipe_yaml);
    if (sync_entries(r, false)) return LN_ERR;
    if (ck.n_cursor != 4) return ln_fail("%s: state/loader_cursor has %d entries, expected 4", path, ck.n_cursor);
    r->step = ck.step;
    r->opt.step = ck.step;
    memcpy(r->rng.s, ck.rng_state, sizeof r->rng.s);
    ln_loader_cursor c = {ck.loader_cursor[0], ck.loader_cursor[1], ck.loader_cursor[2], ck.loader_cursor[3]};
    if (ln_loader_set_cursor(r->train, c)) return ln_fail_context("%s", path);
    if (r->comm->rank == 0) printf("resumed from %s at step %lld\n", path, (long long)r->step);
    return LN_OK;
}

static void format_duration(double s, char *buf, size_t len) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, len, "%lds", t);
}

/* Copies micro-step m's loss into r->losses, on its device (no sync). */
static int keep_loss(run *r, const ln_tensor *loss, int m) {
    if (!r->losses && !(r->losses = ln_tensor_new(loss->dtype, loss->device, 1, (int64_t[]){r->cfg->train.grad_accum})))
        return LN_ERR;
    size_t size = ln_dtype_size(loss->dtype);
    return ln_device_copy(r->losses->device, (char *)r->losses->data + (size_t)m * size, loss->device, loss->data,
                          size);
}

/* One optimizer step: every micro-step of this rank, then the all-reduce and the update. On a GPU
 * nothing waits for the host until the update is queued (ln_adamw_clip_step's one sync). */
static int train_step(run *r, ln_batch *batch, double *loss_out, double *norm_out, double *lr_out) {
    const ln_train_config *t = &r->cfg->train;
    int W = r->comm->size, A = t->grad_accum, b = (int)batch->ids->shape[0];
    ln_params_zero_grad(&r->model.params);
    double loss_sum = 0;
    for (int m = 0; m < A; m++) {
        /* micro-step m of rank k takes sequences [(m*W + k) * b, +b) of the global batch */
        if (ln_batch_load(batch, r->train, r->comm->rank * b, (W - 1 - r->comm->rank) * b)) return LN_ERR;
        ln_tensor *loss = ln_transformer_loss(&r->model, batch->ids, batch->targets);
        ln_tensor *scaled = ln_scale(loss, 1.0 / (A * W));
        /* the last micro-step's backward reduces each bucket as soon as its gradients are final */
        bool overlap = r->bucketed && m == A - 1;
        if (overlap) ln_grad_sync_arm(&r->sync);
        int status = scaled ? ln_backward(scaled) : LN_ERR;
        if (overlap && status) ln_grad_sync_disarm(&r->sync);
        else if (overlap) status = ln_grad_sync_finish(&r->sync);
        if (status || keep_loss(r, loss, m)) return ln_fail_context("step %lld", (long long)r->step + 1);
        ln_tape_clear();
    }
    if (!r->bucketed && ln_comm_allreduce_grads(r->comm, &r->trainable)) return LN_ERR;
    *lr_out = ln_lr_at(&r->cfg->optim, r->step, t->steps);
    if (ln_adamw_clip_step(&r->opt, *lr_out, r->cfg->optim.grad_clip, norm_out))
        return ln_fail_context("step %lld: update", (long long)r->step + 1);
    if (!isfinite(*norm_out))
        return ln_fail("step %lld: gradient norm is %g; the parameters were left as they were (diverged; lower "
                       "optim.lr?)", (long long)r->step + 1, *norm_out);
    for (int m = 0; m < A; m++) loss_sum += ln_item(r->losses, m) / (A * W);
    if (ln_comm_allreduce_f64(r->comm, &loss_sum, 1)) return LN_ERR;
    *loss_out = loss_sum;
    if (!isfinite(loss_sum)) return ln_fail("step %lld: loss is %g (diverged; lower optim.lr?)", (long long)r->step + 1, loss_sum);
    return LN_OK;
}

static int evaluate(run *r, double *val_loss) {
    const ln_config *c = r->cfg;
    return ln_evaluate(&r->model, r->val, c->eval.batches, c->train.batch_size, c->train.seq_len, r->comm, val_loss);
}

static int loop(run *r) {
    const ln_config *c = r->cfg;
    int W = r->comm->size;
    int b = c->train.batch_size / (c->train.grad_accum * W);
    ln_batch batch;
    if (ln_batch_init(&batch, b, c->train.seq_len, r->device)) return LN_ERR;
    int64_t last = r->opts->stop_at > 0 && r->opts->stop_at < c->train.steps ? r->opts->stop_at : c->train.steps;
    int64_t first = r->step;
    double start = now_seconds(), tokens_per_step = (double)c->train.batch_size * c->train.seq_len;
    int status = LN_OK;
    if (r->step == 0 && r->val && c->eval.every > 0) {
        /* the untrained model's validation loss: the baseline training must beat */
        double val_loss;
        status = evaluate(r, &val_loss);
        if (status == LN_OK && r->comm->rank == 0) {
            fprintf(r->metrics, "{\"step\":0,\"val_loss\":%.17g}\n", val_loss);
            printf("step 0/%lld | val loss %.4f\n", (long long)c->train.steps, val_loss);
        }
    }
    while (r->step < last && status == LN_OK) {
        double t0 = now_seconds(), loss = 0, norm = 0, lr = 0;
        status = train_step(r, &batch, &loss, &norm, &lr);
        if (status) break;
        r->step++;
        double dt = now_seconds() - t0, tps = tokens_per_step / dt;
        if (ln_profile_enabled() && r->step == first + 2) ln_profile_reset(); /* warm-up steps not counted */
        double val_loss = NAN;
        if (r->val && c->eval.every > 0 && (r->step % c->eval.every == 0 || r->step == c->train.steps))
            status = evaluate(r, &val_loss);
        if (r->comm->rank == 0) {
            fprintf(r->metrics, "{\"step\":%lld,\"loss\":%.17g,\"lr\":%.17g,\"grad_norm\":%.17g,\"tokens_per_s\":%.1f",
                    (long long)r->step, loss, lr, norm, tps);
            if (!isnan(val_loss)) fprintf(r->metrics, ",\"val_loss\":%.17g", val_loss);
            fputs("}\n", r->metrics);
            fflush(r->metrics);
            if (r->step % c->train.log_every == 0 || r->step == last || r->step == first + 1 || !isnan(val_loss)) {
                double elapsed = now_seconds() - start, per_step = elapsed / (double)(r->step - first);
                char eta[32];
                format_duration(per_step * (double)(last - r->step), eta, sizeof eta);
                printf("step %lld/%lld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | eta %s",
                       (long long)r->step, (long long)c->train.steps, loss, lr, norm, tps, eta);
                if (!isnan(val_loss)) printf(" | val loss %.4f", val_loss);
                putchar('\n');
                fflush(stdout);
            }
        }
        if (status == LN_OK && ((c->ckpt.every > 0 && r->step % c->ckpt.every == 0) || r->step == last))
            status = save_checkpoint(r);
    }
    if (ln_profile_enabled() && r->comm->rank == 0 && r->step > first + 2) {
        char title[96];
        snprintf(title, sizeof title, "LINNET_PROFILE: op time over steps %lld..%lld", (long long)first + 3,
                 (long long)r->step);
        ln_profile_print(stdout, title);
    }
#ifdef LINNET_CUDA
    if (r->device == LN_CUDA && r->comm->rank == 0) {
        size_t in_use, peak;
        ln_cuda_memory_stats(&in_use, &peak);
        printf("peak GPU memory (pool): %.2f GiB\n", (double)peak / (1 << 30));
    }
#endif
    ln_batch_free(&batch);
    return status;
}

/* train.device: auto takes the GPU when there is one (rank k of a node takes GPU k). */
static int choose_device(run *r) {
    const char *want = r->cfg->train.device;
    char gpu[128] = "";
    bool have_gpu = ln_cuda_available(gpu, sizeof gpu);
    if (!strcmp(want, "cuda") && !have_gpu)
        return ln_fail("train.device: cuda, but no GPU is visible (or this build has no CUDA backend)");
    r->device = strcmp(want, "cpu") && have_gpu ? LN_CUDA : LN_CPU;
    if (r->device == LN_CPU) return LN_OK;
#ifdef LINNET_CUDA
    /* Open MPI's name first, then the generic one (torchrun, Slurm wrappers), then MPICH's */
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!local) local = getenv("LOCAL_RANK");
    if (!local) local = getenv("MPI_LOCALRANKID");
    if (ln_cuda_init(local ? atoi(local) : 0) || ln_comm_init_gpu(r->comm)) return LN_ERR;
#endif
    if (r->comm->rank == 0) printf("device: %s\n", gpu);
    return LN_OK;
}

/* GPUs with NCCL: gradients live in flat buckets that all-reduce during the backward. */
static int setup_grad_sync(run *r) {
#ifdef LINNET_NCCL
    if (r->comm->nccl && r->device == LN_CUDA) {
        ln_grad_transport transport = ln_nccl_transport(r->comm->nccl);
        if (ln_grad_sync_create(&r->sync, &r->trainable, r->cfg->train.bucket_mb * (1 << 20), &transport))
            return LN_ERR;
        r->bucketed = true;
        if (r->comm->rank == 0)
            printf("gradients: NCCL all-reduce in %d buckets of ~%g MiB, overlapping the backward\n",
                   r->sync.buckets.n_buckets, r->cfg->train.bucket_mb);
    }
#endif
    return LN_OK;
}

/* train.freeze: each pattern must name some parameter (a typo would silently train everything). */
static int freeze(run *r) {
    const ln_train_config *t = &r->cfg->train;
    for (int i = 0; i < t->n_freeze; i++)
        if (ln_params_freeze(&r->model.params, t->freeze[i]) == 0)
            return ln_fail("train.freeze[%d]: '%s' matches no parameter (names as in the checkpoint: "
                           "embedding, layers.0.attn.wq, layers.0.mlp.w_up, ...)", i, t->freeze[i]);
    return ln_params_trainable(&r->model.params, &r->trainable);
}

static int setup(run *r) {
    const ln_config *c = r->cfg;
    const ln_train_config *t = &c->train;
    if (t->batch_size % (t->grad_accum * r->comm->size))
        return ln_fail("train.batch_size %d does not split into train.grad_accum %d micro-steps on %d ranks",
                       t->batch_size, t->grad_accum, r->comm->size);
    if (choose_device(r)) return LN_ERR;
    if (ln_loader_open(&r->train, c->data.path, "train", t->seq_len, t->seed, true)) return ln_fail_context("data.path");
    if (strcmp(ln_loader_tokenizer(r->train), c->data.tokenizer) != 0)
        return ln_fail("data.path %s: shards were made by the '%s' tokenizer but data.tokenizer is '%s'", c->data.path,
                       ln_loader_tokenizer(r->train), c->data.tokenizer);
    if (ln_loader_vocab_size(r->train) > c->model.vocab_size)
        return ln_fail("data.path %s: shards use a vocabulary of %d tokens but model.vocab_size is %d", c->data.path,
                       ln_loader_vocab_size(r->train), c->model.vocab_size);
    if (c->eval.every > 0 && ln_loader_open(&r->val, c->data.path, "val", t->seq_len, t->seed, false))
        return ln_fail_context("eval (set eval.every=0 to train without validation)");
    /* initialised on the CPU (the same numbers on every device), then moved */
    if (ln_transformer_create(&r->model, &c->model, t->seed) || freeze(r) || ln_params_to(&r->model.params, r->device) ||
        ln_adamw_create(&r->opt, &r->trainable, &c->optim) || build_entries(r) || setup_grad_sync(r))
        return LN_ERR;
    ln_rng_seed(&r->rng, t->seed ^ 0x5eed);
    char existing[LN_PATH_LEN];
    if (!r->opts->resume && ln_checkpoint_find_latest(r->opts->out_dir, existing, sizeof existing) == LN_OK)
        return ln_fail("%s already holds checkpoints (%s): pass --resume auto to continue, or another --out",
                       r->opts->out_dir, existing);
    ln_error_clear();
    if (r->opts->resume && resume(r)) return LN_ERR;
    if (r->comm->rank == 0) {
        if (make_dir(r->opts->out_dir)) return LN_ERR;
        char path[LN_PATH_LEN];
        snprintf(path, sizeof path, "%s/metrics.jsonl", r->opts->out_dir);
        r->metrics = fopen(path, r->step > 0 ? "a" : "w");
        if (!r->metrics) return ln_fail("%s: cannot open for writing: %s", path, strerror(errno));
        snprintf(path, sizeof path, "%s/recipe.yaml", r->opts->out_dir);
        char *yaml = ln_config_to_yaml(c);
        FILE *f = fopen(path, "w");
        if (!yaml || !f) {
            free(yaml);
            if (f) fclose(f);
            return ln_fail("%s: cannot write the resolved recipe", path);
        }
        fputs(yaml, f);
        fclose(f);
        free(yaml);
        int64_t all = ln_params_count(&r->model.params), frozen = all - ln_params_count(&r->trainable);
        char frozen_note[64] = "";
        if (frozen) snprintf(frozen_note, sizeof frozen_note, " (%lld frozen)", (long long)frozen);
        printf("model: %lld parameters%s, %d layers, d_model %d | data: %lld train sequences of %d tokens | %d rank%s\n",
               (long long)all, frozen_note, c->model.n_layers, c->model.d_model,
               (long long)ln_loader_sequences_per_epoch(r->train), t->seq_len, r->comm->size, r->comm->size > 1 ? "s" : "");
    }
    return LN_OK;
}

static int sample_at_end(run *r) {
    const ln_sample_config *s = &r->cfg->sample;
    ln_tokenizer *tok = NULL;
    if (ln_tokenizer_open(&tok, ln_loader_tokenizer(r->train))) return LN_ERR;
    printf("--- sample (%d tokens, temperature %.2f) ---\n", s->tokens, s->temperature);
    int status = ln_sample(&r->model, tok, s->prompt, s->tokens, s->temperature, s->top_k, r->cfg->train.seed,
                           r->cfg->train.seq_len, stdout);
    ln_tokenizer_free(tok);
    return status;
}

int ln_train(const ln_config *cfg, const ln_train_options *opts, ln_comm *comm) {
    run r = {.cfg = cfg, .opts = opts, .comm = comm};
    /* train.dtype bf16: bf16 working weights and activations; fp32 masters, gradients, optimizer */
    ln_dtype previous = ln_set_autocast(strcmp(cfg->train.dtype, "bf16") ? LN_F32 : LN_BF16);
    ln_attention_impl previous_impl = ln_get_attention_impl(), impl = LN_ATTN_AUTO;
    int status = ln_attention_impl_parse(cfg->train.attention_impl, "train.attention_impl", &impl);
    ln_set_attention_impl(impl);
    /* the step reads no tape tensor after its backward: cross_entropy may write dlogits over the logits */
    bool previous_over = ln_set_grad_over_inputs(true);
    if (status == LN_OK) status = setup(&r);
    if (status == LN_OK) status = loop(&r);
    if (status == LN_OK && opts->sample_at_end && comm->rank == 0) status = sample_at_end(&r);
    if (r.metrics) fclose(r.metrics);
    for (int i = 0; r.entry_names && i < r.n_entries; i++) {
        free(r.entry_names[i]);
        if (r.entries[i].tensor && r.entries[i].tensor != entry_source(&r, i)) ln_tensor_free(r.entries[i].tensor);
    }
    free(r.entry_names);
    free(r.entries);
    ln_adamw_free(&r.opt);
    ln_params_free(&r.trainable);
    ln_tensor_free(r.losses);
    if (r.bucketed) ln_grad_sync_free(&r.sync); /* before the params its views hang on */
    ln_transformer_free(&r.model);
    if (r.train) ln_loader_close(r.train);
    if (r.val) ln_loader_close(r.val);
    ln_tape_clear();
    ln_set_autocast(previous);
    ln_set_attention_impl(previous_impl);
    ln_set_grad_over_inputs(previous_over);
    return status;
}
