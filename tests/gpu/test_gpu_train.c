/* The tiny recipe for 20 steps on the GPU and on the CPU gives the same losses (within 2e-2
 * relative; fp32 on both, so in practice far closer), and a GPU checkpoint resumes. */
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

static void gpu_training_matches_cpu(void **state) {
    NEED_GPU();
    snprintf(root, sizeof root, "%s", test_tmpdir());
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "head -c 300000 %s/data/corpus/kjv.txt > %s/corpus.txt", test_source_dir(), root);
    assert_int_equal(test_system(cmd, NULL), 0);
    assert_int_equal(run("prep", "prep --out data corpus.txt"), 0);
    const char *common = "train --set data.path=data --set train.steps=20 --set eval.every=10 --set ckpt.every=10 --no-sample";
    snprintf(cmd, sizeof cmd, "%s --out cpu --set train.device=cpu", common);
    assert_int_equal(run("cpu", cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --out gpu --set train.device=cuda", common);
    assert_int_equal(run("gpu", cmd), 0);
    double a[21], b[21];
    read_losses("cpu", a, 20);
    read_losses("gpu", b, 20);
    double worst = 0;
    for (int s = 1; s <= 20; s++) {
        double rel = fabs(a[s] - b[s]) / fabs(a[s]);
        if (!(rel <= worst)) worst = rel;
    }
    printf("  20 steps: worst relative loss difference GPU vs CPU %.3g\n", worst);
    if (!(worst <= 2e-2)) fail_msg("GPU losses differ from the CPU by %.3g relative", worst);

    /* resume on the GPU from step 10 continues as the uninterrupted GPU run did */
    snprintf(cmd, sizeof cmd, "%s --out gpu --resume gpu/step-00000010.h5 --set train.device=cuda", common);
    assert_int_equal(run("gpu-resume", cmd), 0);
    double c[21];
    read_losses("gpu", c, 20);
    for (int s = 11; s <= 20; s++)
        if (!(fabs(c[s] - b[s]) <= 1e-6 * fabs(b[s]))) fail_msg("step %d: resumed %.9g vs %.9g", s, c[s], b[s]);
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    test_system(cmd, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gpu_training_matches_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
