/* 20 training steps on the GPU and on the CPU give the same losses (within 2e-2 relative): the
 * tiny recipe (fp32 on both, so in practice far closer), whose GPU checkpoint resumes exactly, a
 * hybrid gla + softmax stack and a bf16 GLA model on the tensor-core kernels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu_testing.h"
#include "testing.h"

static char root[512];

static int run(const char *name, const char *args) {
    char cmd[4096], log[1024];
    snprintf(cmd, sizeof cmd, "cd %s && %s %s", root, test_linnet_bin(), args);
    snprintf(log, sizeof log, "%s/%s.log", root, name);
    int rc = test_system(cmd, log);
    if (rc != 0) {
        char *text = test_read_file(log);
        fprintf(stderr, "%s exited %d:\n%s\n", name, rc, text ? text : "");
        free(text);
    }
    return rc;
}

static void read_losses(const char *dir, double *loss, int steps) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", root, dir);
    char *text = test_read_file(path);
    if (!text) fail_msg("%s missing", path);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cJSON *s = cJSON_GetObjectItem(j, "step"), *l = cJSON_GetObjectItem(j, "loss");
        if (s && l && s->valueint >= 1 && s->valueint <= steps) loss[s->valueint] = l->valuedouble;
        cJSON_Delete(j);
    }
    free(text);
}

/* 20 steps of `recipe` (with extra settings) on the CPU and on the GPU: worst relative loss
 * difference over the steps, which must stay within tol. Needs the prepared data in root. */
static void same_losses(const char *name, const char *recipe, const char *extra, double tol) {
    char cmd[2048], dir[64];
    const char *common = "--set data.path=data --set train.steps=20 --set eval.every=10 --set ckpt.every=10 --no-sample";
    for (int gpu = 0; gpu < 2; gpu++) {
        snprintf(dir, sizeof dir, "%s-%s", name, gpu ? "gpu" : "cpu");
        snprintf(cmd, sizeof cmd, "train %s %s %s --out %s --set train.device=%s", recipe, common, extra, dir,
                 gpu ? "cuda" : "cpu");
        assert_int_equal(run(dir, cmd), 0);
    }
    double a[21], b[21], worst = 0;
    snprintf(dir, sizeof dir, "%s-cpu", name);
    read_losses(dir, a, 20);
    snprintf(dir, sizeof dir, "%s-gpu", name);
    read_losses(dir, b, 20);
    for (int s = 1; s <= 20; s++) {
        double rel = fabs(a[s] - b[s]) / fabs(a[s]);
        if (!(rel <= worst)) worst = rel;
    }
    printf("  %s, 20 steps: worst relative loss difference GPU vs CPU %.3g\n", name, worst);
    if (!(worst <= tol)) fail_msg("%s: GPU losses differ from the CPU by %.3g relative", name, worst);
}

static void prepare_data(void) {
    snprintf(root, sizeof root, "%s", test_tmpdir());
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "head -c 300000 %s/data/corpus/kjv.txt > %s/corpus.txt", test_source_dir(), root);
    assert_int_equal(test_system(cmd, NULL), 0);
    assert_int_equal(run("prep", "prep --out data corpus.txt"), 0);
}

static void gpu_training_matches_cpu(void **state) {
    NEED_GPU();
    prepare_data();
    same_losses("tiny", "", "", 2e-2);

    /* resume on the GPU from step 10 continues as the uninterrupted GPU run did */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "train --set data.path=data --set train.steps=20 --set eval.every=10 --set ckpt.every=10 --no-sample "
             "--out tiny-gpu --resume tiny-gpu/step-00000010.h5 --set train.device=cuda");
    double b[21], c[21];
    read_losses("tiny-gpu", b, 20);
    assert_int_equal(run("gpu-resume", cmd), 0);
    read_losses("tiny-gpu", c, 20);
    for (int s = 11; s <= 20; s++)
        if (!(fabs(c[s] - b[s]) <= 1e-6 * fabs(b[s]))) fail_msg("step %d: resumed %.9g vs %.9g", s, c[s], b[s]);
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    test_system(cmd, NULL);
}

/* Linear-attention models: a hybrid stack (gla, softmax) in fp32 (the generic GLA kernels), and
 * gla-tiny in bf16 with 2 heads (head_k 32, head_v 64: the tensor-core GLA path) against the CPU
 * in bf16 too. */
static void linear_attention_training_matches_cpu(void **state) {
    NEED_GPU();
    prepare_data();
    char recipe[1024];
    snprintf(recipe, sizeof recipe, "%s/recipes/hybrid-tiny.yaml", test_source_dir());
    same_losses("hybrid", recipe, "", 2e-2);
    snprintf(recipe, sizeof recipe, "%s/recipes/gla-tiny.yaml", test_source_dir());
    same_losses("gla-bf16", recipe, "--set train.dtype=bf16 --set model.n_heads=2", 2e-2);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    test_system(cmd, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gpu_training_matches_cpu),
        cmocka_unit_test(linear_attention_training_matches_cpu),
    };
    return gpu_run_tests(tests);
}
