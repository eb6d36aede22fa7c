/* End to end through the linnet binary, on a slice of the bundled corpus: training lowers the
 * validation loss, resume is bitwise exact, mpirun -np 2 matches one process, frozen parameters
 * stay put, sample and eval work, and every kind of bad input gets a one-line error and a non-zero
 * exit with checkpoints left untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"

static char root[512]; /* a temporary directory holding data/ and the runs */
static char small_model[] =
    "--set model.d_model=64 --set model.n_layers=2 --set model.n_heads=4 --set model.n_kv_heads=2 "
    "--set model.mlp_hidden=128 --set train.seq_len=64 --set train.batch_size=8 --set eval.batches=2 "
    "--set train.log_every=5 --set train.device=cpu --no-sample";

/* Runs `linnet ARGS` with output in root/NAME.log; returns the exit status (-1 for a signal). */
static int linnet(const char *name, const char *args) {
    char cmd[4096], log[1024];
    snprintf(cmd, sizeof cmd, "cd %s && OPENBLAS_NUM_THREADS=1 %s %s", root, test_linnet_bin(), args);
    snprintf(log, sizeof log, "%s/%s.log", root, name);
    return test_system(cmd, log);
}

static char *log_of(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.log", root, name);
    return test_read_file(path);
}

/* loss (or val_loss) per step from run/metrics.jsonl; the last line for a step wins. */
static int read_metric(const char *run, const char *key, double *values, int max_step) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", root, run);
    char *text = test_read_file(path);
    if (!text) return -1;
    int lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        if (!j) fail_msg("%s: not JSON: %s", path, line);
        int step = cJSON_GetObjectItem(j, "step")->valueint;
        cJSON *v = cJSON_GetObjectItem(j, key);
        if (v && step >= 0 && step <= max_step) values[step] = v->valuedouble;
        lines++;
        cJSON_Delete(j);
    }
    free(text);
    return lines;
}

/* Where the corpus slice comes from: data/corpus/kjv.txt when scripts/fetch-corpus.sh has run,
 * else straight from the bible-kjv package's `bible` (as fetch-corpus.sh makes it), so a plain
 * ctest needs no step before it. NULL when neither is here. */
static const char *corpus_command(char *buf, size_t len) {
    snprintf(buf, len, "%s/data/corpus/kjv.txt", test_source_dir());
    FILE *f = fopen(buf, "rb");
    if (f) {
        fclose(f);
        snprintf(buf, len, "cat '%s/data/corpus/kjv.txt'", test_source_dir());
        return buf;
    }
    if (test_system("command -v bible", NULL) != 0) return NULL;
    snprintf(buf, len, "bible -f 'Gen1:1-Rev22:21' | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //'");
    return buf;
}

static char corpus[1024];

static int setup(void **state) {
    const char *tmp = test_tmpdir();
    snprintf(root, sizeof root, "%s", tmp);
    /* a 400 kB slice of the corpus keeps each run to seconds */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s | head -c 400000 > %s/corpus.txt", corpus, root);
    if (test_system(cmd, NULL) != 0) return -1;
    if (linnet("prep", "prep --tokenizer bytes --out data corpus.txt") != 0) {
        char *log = log_of("prep");
        fprintf(stderr, "prep failed: %s\n", log ? log : "(no log)");
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    if (getenv("LINNET_KEEP_TMP")) return 0; /* keep the runs for a look */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return test_system(cmd, NULL) == 0 ? 0 : -1;
}

static void help_works(void **state) {
    assert_int_equal(linnet("help", "--help"), 0);
    assert_int_equal(linnet("help-train", "train --help"), 0);
    assert_int_equal(linnet("help-prep", "help prep"), 0);
    char *log = log_of("help-train");
    assert_non_null(strstr(log, "--resume"));
    free(log);
    assert_int_equal(linnet("unknown-cmd", "frobnicate"), 2);
}

static void training_lowers_validation_loss(void **state) {
    char args[2048];
    snprintf(args, sizeof args,
             "train --out corpus-run --set data.path=data --set train.steps=80 --set eval.every=40 --set ckpt.every=40 "
             "--set optim.warmup=10 %s",
             small_model);
    int rc = linnet("corpus-run", args);
    char *log = log_of("corpus-run");
    if (rc != 0) fail_msg("train exited %d: %s", rc, log);
    assert_non_null(strstr(log, "step 80/80"));
    assert_non_null(strstr(log, "tok/s"));
    free(log);
    double val[81];
    for (int i = 0; i <= 80; i++) val[i] = NAN;
    assert_true(read_metric("corpus-run", "val_loss", val, 80) >= 80);
    assert_false(isnan(val[0]) || isnan(val[40]) || isnan(val[80]));
    if (!(val[80] < 0.75 * val[0])) fail_msg("validation loss %g -> %g: not lowered by 25%%", val[0], val[80]);

    /* eval of the final checkpoint reproduces the training-time validation loss */
    assert_int_equal(linnet("eval", "eval corpus-run/step-00000080.h5 --data data"), 0);
    log = log_of("eval");
    double eval_loss = NAN;
    const char *at = strstr(log, "loss ");
    assert_non_null(at);
    sscanf(at, "loss %lf", &eval_loss);
    if (!(fabs(eval_loss - val[80]) < 1e-3)) fail_msg("eval %g vs training-time val loss %g", eval_loss, val[80]);
    free(log);

    /* sample: greedy decoding is deterministic and continues the prompt */
    assert_int_equal(linnet("sample1", "sample corpus-run/step-00000080.h5 --prompt 'And the LORD' --tokens 40 --temperature 0"), 0);
    assert_int_equal(linnet("sample2", "sample corpus-run/step-00000080.h5 --prompt 'And the LORD' --tokens 40 --temperature 0"), 0);
    char *s1 = log_of("sample1"), *s2 = log_of("sample2");
    assert_string_equal(s1, s2);
    assert_true(strncmp(s1, "And the LORD", 12) == 0);
    assert_true(strlen(s1) >= 12 + 40);
    free(s1);
    free(s2);
    /* ckpt.keep (3) prunes older checkpoints; the run wrote 40 and 80 */
    char path[1024];
    snprintf(path, sizeof path, "%s/corpus-run/step-00000040.h5", root);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fclose(f);
}

/* Trains `train ARGS` (STEPS steps, checkpoints at STOP) straight through into run NAME, then
 * again into NAME-halves stopped at STOP and resumed; fails unless every step's loss is the same
 * bit for bit. loss[0..steps] gets the uninterrupted run's losses. */
static void expect_exact_resume(const char *name, const char *train_args, int stop, int steps, double *loss) {
    char args[4096], run[128], halves[128];
    snprintf(halves, sizeof halves, "%s-halves", name);
    snprintf(args, sizeof args, "train --out %s %s", name, train_args);
    assert_int_equal(linnet(name, args), 0);
    snprintf(args, sizeof args, "train --out %s --stop-at %d %s", halves, stop, train_args);
    snprintf(run, sizeof run, "%s-half1", name);
    assert_int_equal(linnet(run, args), 0);
    snprintf(args, sizeof args, "train --out %s --resume auto %s", halves, train_args);
    snprintf(run, sizeof run, "%s-half2", name);
    assert_int_equal(linnet(run, args), 0);
    char *log = log_of(run);
    assert_non_null(strstr(log, "resumed from"));
    free(log);
    double *b = calloc((size_t)steps + 1, sizeof *b);
    for (int i = 0; i <= steps; i++) loss[i] = b[i] = NAN;
    read_metric(name, "loss", loss, steps);
    read_metric(halves, "loss", b, steps);
    for (int i = 1; i <= steps; i++)
        if (!(loss[i] == b[i])) fail_msg("%s, step %d: uninterrupted loss %.17g, resumed %.17g", name, i, loss[i], b[i]);
    free(b);
}

static void resume_is_bitwise_exact(void **state) {
    char args[2048];
    double loss[21];
    snprintf(args, sizeof args, "--set data.path=data --set train.steps=20 --set eval.every=0 --set ckpt.every=10 %s",
             small_model);
    expect_exact_resume("whole", args, 10, 20, loss);
}

/* recipes/gla-tiny.yaml and hybrid-tiny.yaml (made small): training lowers the loss, GLA
 * parameters resume bitwise exactly, and sampling works from a hybrid checkpoint. */
static void linear_recipes_train_resume_and_sample(void **state) {
    char args[3072];
    const char *common = "--set data.path=data --set train.steps=30 --set eval.every=0 --set ckpt.every=10 "
                         "--set model.gla.use_short_conv=true";
    double a[31];
    snprintf(args, sizeof args, "%s/recipes/gla-tiny.yaml %s %s", test_source_dir(), common, small_model);
    expect_exact_resume("gla", args, 10, 30, a);
    if (!(a[30] < 0.75 * a[1])) fail_msg("gla loss %g -> %g: not lowered by 25%%", a[1], a[30]);

    snprintf(args, sizeof args, "train %s/recipes/hybrid-tiny.yaml --out hybrid %s %s --set model.attention=[gla,softmax]",
             test_source_dir(), common, small_model);
    int rc = linnet("hybrid", args);
    char *log = log_of("hybrid");
    if (rc != 0) fail_msg("hybrid train exited %d: %s", rc, log);
    free(log);
    assert_int_equal(linnet("hybrid-sample", "sample hybrid/step-00000030.h5 --prompt 'And God' --tokens 20 --temperature 0"), 0);
    log = log_of("hybrid-sample");
    assert_true(strncmp(log, "And God", 7) == 0);
    free(log);
}

/* `mpirun -np 2 linnet train --out OUT ARGS` in root (log root/OUT.log); fails the test unless it
 * exits 0. */
static void train_on_two_ranks(const char *out, const char *args) {
    if (test_system("command -v mpirun", NULL) != 0) fail_msg("mpirun not found (scripts/install-deps.sh installs it)");
    char cmd[4096], log[1024];
    snprintf(cmd, sizeof cmd, "cd %s && OPENBLAS_NUM_THREADS=1 mpirun -np 2 --oversubscribe %s train --out %s %s", root,
             test_linnet_bin(), out, args);
    snprintf(log, sizeof log, "%s/%s.log", root, out);
    int rc = test_system(cmd, log);
    if (rc != 0) fail_msg("mpirun exited %d: %s", rc, test_read_file(log));
}

/* Reads dataset `name` of the checkpoint run/file as floats (malloc'd; NULL when it is absent). */
static float *read_dataset(const char *run, const char *file, const char *name, hsize_t *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", root, run, file);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) fail_msg("cannot open %s", path);
    float *data = NULL;
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) {
        hid_t d = H5Dopen2(f, name, H5P_DEFAULT), space = H5Dget_space(d);
        *n = (hsize_t)H5Sget_simple_extent_npoints(space);
        data = malloc(*n * sizeof *data);
        assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
        H5Sclose(space);
        H5Dclose(d);
    }
    H5Fclose(f);
    return data;
}

/* train.freeze: frozen parameters keep their initial values, have no optimizer state in the
 * checkpoint, resume bitwise, and two ranks (all-reducing only the trainable) match one. */
static void frozen_parameters_stay_put(void **state) {
    char args[2048];
    const char *common = "--set data.path=data --set train.steps=6 --set eval.every=0 --set ckpt.every=3 "
                         "--set 'train.freeze=[embedding, \"layers.*.mlp.*\"]'";
    snprintf(args, sizeof args, "train --out frz-whole %s %s", common, small_model);
    assert_int_equal(linnet("frz-whole", args), 0);
    char *log = log_of("frz-whole");
    assert_non_null(strstr(log, "frozen)"));
    free(log);
    /* frozen: the same at steps 3 and 6, and no moments; trainable: moved, with moments */
    const char *groups[][2] = {{"params/layers.0.mlp.w_up", "frozen"}, {"params/embedding", "frozen"},
                               {"params/layers.1.attn.wq", "trainable"}};
    for (int i = 0; i < 3; i++) {
        hsize_t n3 = 0, n6 = 0;
        float *at3 = read_dataset("frz-whole", "step-00000003.h5", groups[i][0], &n3);
        float *at6 = read_dataset("frz-whole", "step-00000006.h5", groups[i][0], &n6);
        assert_non_null(at3);
        assert_non_null(at6);
        assert_int_equal(n3, n6);
        bool same = memcmp(at3, at6, n3 * sizeof *at3) == 0, frozen = strcmp(groups[i][1], "frozen") == 0;
        if (same != frozen) fail_msg("%s (%s): %s between steps 3 and 6", groups[i][0], groups[i][1], same ? "unchanged" : "changed");
        char m[128];
        snprintf(m, sizeof m, "optim/m/%s", groups[i][0] + strlen("params/"));
        hsize_t nm = 0;
        float *moment = read_dataset("frz-whole", "step-00000006.h5", m, &nm);
        if ((moment != NULL) == frozen) fail_msg("%s: %s", m, frozen ? "present for a frozen parameter" : "missing");
        free(moment);
        free(at3);
        free(at6);
    }
    /* resume */
    double a[7], b[7];
    snprintf(args, sizeof args, "%s %s", common, small_model);
    expect_exact_resume("frz-resume", args, 3, 6, a);
    /* two ranks */
    snprintf(args, sizeof args, "%s %s", common, small_model);
    train_on_two_ranks("frz-ranks2", args);
    for (int i = 0; i <= 6; i++) b[i] = NAN;
    read_metric("frz-ranks2", "loss", b, 6);
    for (int s = 1; s <= 6; s++)
        if (!(fabs(a[s] - b[s]) <= 1e-5 * fabs(a[s]))) fail_msg("frozen run, step %d: 1 rank %.9g, 2 ranks %.9g", s, a[s], b[s]);
}

/* tests/data/pre-linear/: a run of the code before the linear module (464e82d: a hedgehog linear
 * layer and a gla layer, untied head, the recipe's old model.linear mapping), 3 steps. Today's
 * binary samples from its checkpoint exactly as that code did, and resumes it to the same losses
 * and gradient norms, bit for bit (both recorded by that code). */
static void checkpoints_from_before_the_linear_module_load(void **state) {
    char args[4096], path[1024];
    snprintf(args, sizeof args, "sample %s/tests/data/pre-linear/step-00000003.h5 --prompt 'And God' --tokens 24 --temperature 0",
             test_source_dir());
    assert_int_equal(linnet("pre-linear-sample", args), 0);
    char *got = log_of("pre-linear-sample");
    snprintf(path, sizeof path, "%s/tests/data/pre-linear/sample.txt", test_source_dir());
    char *want = test_read_file(path);
    assert_non_null(want);
    assert_string_equal(got, want);
    free(got);
    free(want);
    snprintf(args, sizeof args, "mkdir -p %s/pre-linear && cp %s/tests/data/pre-linear/step-00000003.h5 %s/pre-linear/", root,
             test_source_dir(), root);
    assert_int_equal(test_system(args, NULL), 0);
    snprintf(args, sizeof args, "train %s/tests/data/pre-linear/recipe.yaml --out pre-linear --resume auto --no-sample "
             "--set train.steps=5 --set data.path=%s/data/kjv", test_source_dir(), test_source_dir());
    int rc = linnet("pre-linear-resume", args);
    if (rc != 0) fail_msg("resuming the old checkpoint exited %d: %s", rc, log_of("pre-linear-resume"));
    snprintf(args, sizeof args, "sed 's/,\"tokens_per_s[^,}]*//' %s/pre-linear/metrics.jsonl | cmp - %s/tests/data/pre-linear/resumed-losses.jsonl",
             root, test_source_dir());
    snprintf(path, sizeof path, "%s/pre-linear/metrics.jsonl", root);
    if (test_system(args, NULL) != 0) fail_msg("steps 4 and 5 after resuming differ from the old code's: %s", test_read_file(path));
}

static void ranks_and_micro_steps_match_one(void **state) {
    char args[2048];
    const char *common = "--set data.path=data --set train.steps=10 --set eval.every=5 --set ckpt.every=0";
    snprintf(args, sizeof args, "train --out single %s %s", common, small_model);
    assert_int_equal(linnet("single", args), 0);
    snprintf(args, sizeof args, "%s %s", common, small_model);
    train_on_two_ranks("ranks2", args);
    double a[11], b[11];
    for (int i = 0; i <= 10; i++) a[i] = b[i] = NAN;
    assert_int_equal(read_metric("single", "loss", a, 10), 11); /* step 0 (val) + 10 steps */
    assert_int_equal(read_metric("ranks2", "loss", b, 10), 11); /* rank 0 alone writes */
    for (int s = 1; s <= 10; s++)
        if (!(fabs(a[s] - b[s]) <= 1e-5 * fabs(a[s]))) fail_msg("step %d: 1 rank %.9g, 2 ranks %.9g", s, a[s], b[s]);
    /* one process, two micro-steps of half the batch: the same global batch again */
    snprintf(args, sizeof args, "train --out accum %s %s --set train.grad_accum=2", common, small_model);
    assert_int_equal(linnet("accum", args), 0);
    for (int i = 0; i <= 10; i++) b[i] = NAN;
    read_metric("accum", "loss", b, 10);
    for (int s = 1; s <= 10; s++)
        if (!(fabs(a[s] - b[s]) <= 1e-5 * fabs(a[s]))) fail_msg("step %d: 1 micro-step %.9g, 2 micro-steps %.9g", s, a[s], b[s]);
    read_metric("single", "val_loss", a, 10);
    read_metric("ranks2", "val_loss", b, 10);
    assert_true(fabs(a[10] - b[10]) <= 1e-5 * fabs(a[10]));
}

/* Runs a command that must fail: exit 1 (not a signal), exactly one line on stderr naming `expect`. */
static void expect_error(const char *name, const char *args, const char *expect) {
    char cmd[4096], errpath[1024];
    snprintf(errpath, sizeof errpath, "%s/%s.err", root, name);
    snprintf(cmd, sizeof cmd, "cd %s && %s %s >/dev/null 2>%s", root, test_linnet_bin(), args, errpath);
    int rc = test_system(cmd, NULL);
    char *err = test_read_file(errpath);
    if (rc != 1) fail_msg("%s: exit %d (want 1): %s", name, rc, err ? err : "");
    int lines = 0;
    for (char *p = err; *p; p++) lines += *p == '\n';
    if (lines != 1) fail_msg("%s: %d lines on stderr (want 1): %s", name, lines, err);
    if (!strstr(err, expect)) fail_msg("%s: error does not name '%s': %s", name, expect, err);
    free(err);
}

static char *checkpoint_bytes(const char *run, size_t *len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/step-00000004.h5", root, run);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*len);
    if (fread(buf, 1, *len, f) != *len) *len = 0;
    fclose(f);
    return buf;
}

static void bad_input_fails_cleanly(void **state) {
    char args[2048];
    snprintf(args, sizeof args, "train --out guarded --set data.path=data --set train.steps=4 --set eval.every=0 %s", small_model);
    assert_int_equal(linnet("guarded", args), 0);
    size_t before_len = 0, after_len = 0;
    char *before = checkpoint_bytes("guarded", &before_len);
    assert_non_null(before);

    char path[1024];
    snprintf(path, sizeof path, "%s/malformed.yaml", root);
    FILE *f = fopen(path, "w");
    fputs("model:\n  d_model: [1, 2\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/unknown.yaml", root);
    f = fopen(path, "w");
    fputs("optim:\n  lrr: 0.1\n", f);
    fclose(f);
    expect_error("malformed", "train malformed.yaml --out guarded --resume auto", "malformed.yaml");
    snprintf(path, sizeof path, "%s/empty.yaml", root);
    f = fopen(path, "w");
    fclose(f);
    expect_error("empty-recipe", "train empty.yaml --out guarded --resume auto", "empty.yaml: the recipe is empty");
    expect_error("freeze-nothing", "train --set data.path=data '--set' 'train.freeze=layers.*.mlpp' --out guarded --resume auto",
                 "train.freeze[0]: 'layers.*.mlpp' matches no parameter");
    expect_error("unknown-key", "train unknown.yaml --out guarded --resume auto", "optim.lr");
    expect_error("unknown-set", "train --set train.stepz=3 --out guarded --resume auto", "train.steps");
    expect_error("missing-data", "train --set data.path=nowhere --out guarded --resume auto", "nowhere");
    expect_error("fresh-over-existing", "train --set data.path=data --out guarded", "--resume");

    /* a truncated and a corrupted shard */
    snprintf(args, sizeof args, "cd %s && mkdir -p trunc bad && cp data/* trunc/ && cp data/* bad/ && truncate -s 2000 trunc/train-00000.lnshard", root);
    assert_int_equal(test_system(args, NULL), 0);
    snprintf(path, sizeof path, "%s/bad/train-00000.lnshard", root);
    f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 5000, SEEK_SET);
    int byte = fgetc(f);
    fseek(f, 5000, SEEK_SET);
    fputc(byte ^ 0x5a, f); /* one flipped payload byte */
    fclose(f);
    snprintf(args, sizeof args, "train --set data.path=trunc --out guarded --resume auto %s", small_model);
    expect_error("truncated-shard", args, "trunc/train-00000.lnshard");
    snprintf(args, sizeof args, "train --set data.path=bad --out guarded --resume auto %s", small_model);
    expect_error("corrupt-shard", args, "bad/train-00000.lnshard");

    /* a truncated checkpoint, a foreign HDF5 file, a checkpoint of another shape */
    snprintf(args, sizeof args, "cd %s && head -c 3000 guarded/step-00000004.h5 > cut.h5", root);
    assert_int_equal(test_system(args, NULL), 0);
    snprintf(path, sizeof path, "%s/foreign.h5", root);
    hid_t foreign = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(foreign >= 0);
    H5Fclose(foreign);
    snprintf(args, sizeof args, "train --set data.path=data --out guarded --resume foreign.h5 %s", small_model);
    expect_error("foreign-ckpt", args, "foreign.h5");
    snprintf(args, sizeof args, "train --set data.path=data --out guarded --resume cut.h5 %s", small_model);
    expect_error("truncated-ckpt", args, "cut.h5");
    snprintf(args, sizeof args, "train --set data.path=data --out guarded --resume auto %s --set model.d_model=32", small_model);
    expect_error("shape-mismatch", args, "[256, 64]");
    expect_error("sample-missing", "sample nothing.h5", "nothing.h5");
    expect_error("eval-truncated", "eval cut.h5 --data data", "cut.h5");

    char *after = checkpoint_bytes("guarded", &after_len);
    assert_non_null(after);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    free(before);
    free(after);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_works),
        cmocka_unit_test(training_lowers_validation_loss),
        cmocka_unit_test(resume_is_bitwise_exact),
        cmocka_unit_test(linear_recipes_train_resume_and_sample),
        cmocka_unit_test(ranks_and_micro_steps_match_one),
        cmocka_unit_test(frozen_parameters_stay_put),
        cmocka_unit_test(checkpoints_from_before_the_linear_module_load),
        cmocka_unit_test(bad_input_fails_cleanly),
    };
    if (!corpus_command(corpus, sizeof corpus))
        return test_skip_suite("no corpus: neither data/corpus/kjv.txt nor the bible-kjv package's `bible` "
                               "(scripts/install-deps.sh installs it)");
    return cmocka_run_group_tests(tests, setup, teardown);
}
