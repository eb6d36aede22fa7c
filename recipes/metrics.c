#include "recipes/metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/error.h"

static bool grow(void **items, int64_t *cap, int64_t n, size_t size) {
    if (n < *cap) return true;
    int64_t next = *cap ? 2 * *cap : 256;
    void *p = realloc(*items, (size_t)next * size);
    if (!p) return false;
    *items = p;
    *cap = next;
    return true;
}

/* The number under key, NAN when absent; false when present but not a finite number. */
static bool number(const cJSON *obj, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NAN;
    if (!v) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return false;
    *out = v->valuedouble;
    return true;
}

static int parse_line(const char *path, int64_t line_no, const cJSON *j, ln_metrics *m) {
    if (!cJSON_IsObject(j)) return ln_fail("%s:%lld: not a JSON object", path, (long long)line_no);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
    if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble != floor(s->valuedouble) || s->valuedouble > 9e15)
        return ln_fail("%s:%lld: no \"step\" (a whole number >= 0)", path, (long long)line_no);
    int64_t step = (int64_t)s->valuedouble;
    ln_train_point p = {.step = step};
    double val;
    static const char *keys[] = {"loss", "lr", "grad_norm", "tokens_per_s", "val_loss"};
    double *dst[] = {&p.loss, &p.lr, &p.grad_norm, &p.tokens_per_s, &val};
    for (int k = 0; k < 5; k++)
        if (!number(j, keys[k], dst[k]))
            return ln_fail("%s:%lld: \"%s\" is not a finite number", path, (long long)line_no, keys[k]);
    /* a resumed run appends from its checkpoint's step: the later lines win */
    while (m->n_train && m->train[m->n_train - 1].step >= step) m->n_train--;
    while (m->n_val && m->val[m->n_val - 1].step >= step) m->n_val--;
    if (!isnan(p.loss)) {
        if (!grow((void **)&m->train, &m->cap_train, m->n_train, sizeof *m->train)) return ln_fail("out of host memory");
        m->train[m->n_train++] = p;
    }
    if (!isnan(val)) {
        if (!grow((void **)&m->val, &m->cap_val, m->n_val, sizeof *m->val)) return ln_fail("out of host memory");
        m->val[m->n_val++] = (ln_val_point){step, val};
    }
    return LN_OK;
}

int ln_metrics_read(const char *path, ln_metrics *m) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "r");
    if (!f) return ln_fail("%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t line_no = 0;
    int status = LN_OK;
    errno = 0;
    while (status == LN_OK && (len = getline(&line, &cap, f)) >= 0) {
        line_no++;
        bool complete = len > 0 && line[len - 1] == '\n';
        if (strspn(line, " \t\r\n") == (size_t)len) continue; /* a blank line */
        /* the NUL getline leaves is part of the buffer: trailing garbage after the object fails */
        cJSON *j = cJSON_ParseWithLengthOpts(line, (size_t)len + 1, NULL, true);
        if (!j) {
            if (!complete) break; /* the last line, still being written */
            status = ln_fail("%s:%lld: not valid JSON", path, (long long)line_no);
        } else {
            status = parse_line(path, line_no, j, m);
        }
        cJSON_Delete(j);
        errno = 0;
    }
    if (status == LN_OK && ferror(f)) status = ln_fail("%s: cannot read: %s", path, strerror(errno ? errno : EIO));
    free(line);
    fclose(f);
    return status;
}

void ln_metrics_free(ln_metrics *m) {
    free(m->train);
    free(m->val);
    memset(m, 0, sizeof *m);
}
