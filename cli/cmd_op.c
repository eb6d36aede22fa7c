/* linnet op NAME: runs one registered op on datasets from an HDF5 file and writes its outputs
 * (and, given output gradients, its input gradients) to another, to compare linnet's ops with
 * other implementations (flash-linear-attention, PyTorch) through h5py. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/error.h"
#include "autograd/tape.h"
#include "checkpoints/h5_tensors.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/op_registry.h"

static const char help[] =
    "usage: linnet op NAME --in IN.h5 --out OUT.h5 [--grad-out DY.h5] [--device cpu|cuda]\n"
    "       linnet op --list\n"
    "\n"
    "Runs op NAME on the datasets of IN.h5 named after its inputs (scalar arguments from root\n"
    "attributes or one-element datasets) and writes its outputs to OUT.h5. With --grad-out, DY.h5\n"
    "holds gradients of the outputs (\"d\" + output name, e.g. do, dht); the input gradients (dq, dk,\n"
    "...) are written to OUT.h5 as well. Float datasets keep their precision (f64 stays f64); bf16\n"
    "outputs are written as float32. docs/ops.md lists every op's datasets.\n";

static int list_ops(void) {
    for (int i = 0; i < cli_op_count(); i++) {
        const cli_op *op = cli_op_at(i);
        printf("%-17s %s\n  inputs:", op->name, op->summary);
        for (int j = 0; j < CLI_OP_MAX_IO && op->inputs[j].name; j++)
            printf(" %s%s", op->inputs[j].name, op->inputs[j].optional ? "?" : "");
        printf("\n  outputs:");
        for (int j = 0; j < CLI_OP_MAX_IO && op->outputs[j]; j++) printf(" %s", op->outputs[j]);
        if (op->scalars[0].name) printf("\n  scalars:");
        for (int j = 0; j < CLI_OP_MAX_SCALARS && op->scalars[j].name; j++) printf(" %s", op->scalars[j].name);
        printf("\n");
    }
    return 0;
}

typedef struct {
    const cli_op *op;
    const char *in_path, *out_path, *dy_path;
    ln_device device;
    ln_tensor *in[CLI_OP_MAX_IO], *out[CLI_OP_MAX_IO];
    double s[CLI_OP_MAX_SCALARS];
} op_run;

static int read_inputs(op_run *r) {
    ln_h5_file f;
    if (ln_h5_open(r->in_path, &f)) return LN_ERR;
    int status = LN_OK;
    for (int i = 0; i < CLI_OP_MAX_IO && r->op->inputs[i].name && status == LN_OK; i++) {
        const cli_op_input *spec = &r->op->inputs[i];
        if (spec->optional && !ln_h5_has_dataset(f, spec->name)) continue;
        if (!ln_h5_has_dataset(f, spec->name)) {
            status = ln_fail("%s: no dataset %s (op %s needs it)", r->in_path, spec->name, r->op->name);
            break;
        }
        status = ln_h5_read_tensor(f, r->in_path, spec->name, &r->in[i]);
        if (status == LN_OK && r->dy_path && spec->differentiable)
            r->in[i]->requires_grad = ln_dtype_is_float(r->in[i]->dtype);
        if (status == LN_OK && r->device != LN_CPU) status = ln_tensor_move(r->in[i], r->device);
    }
    for (int i = 0; i < CLI_OP_MAX_SCALARS && r->op->scalars[i].name && status == LN_OK; i++) {
        const cli_op_scalar *spec = &r->op->scalars[i];
        bool found;
        r->s[i] = spec->fallback;
        status = ln_h5_read_scalar(f, r->in_path, spec->name, &r->s[i], &found);
        if (status == LN_OK && !found && spec->required)
            status = ln_fail("%s: no attribute or dataset %s (op %s needs it)", r->in_path, spec->name, r->op->name);
    }
    ln_h5_close(f, r->in_path);
    return status;
}

/* Seeds every output that has a gradient in DY.h5 (the first one must) and runs backward. */
static int run_backward(op_run *r) {
    ln_h5_file f;
    if (ln_h5_open(r->dy_path, &f)) return LN_ERR;
    int status = LN_OK;
    ln_tensor *first_seed = NULL;
    for (int i = 0; i < CLI_OP_MAX_IO && r->op->outputs[i] && r->out[i] && status == LN_OK; i++) {
        char name[64];
        snprintf(name, sizeof name, "d%s", r->op->outputs[i]);
        if (i > 0 && !ln_h5_has_dataset(f, name)) continue;
        ln_tensor *dy = NULL, *seed = NULL;
        ln_tensor *y = r->out[i];
        char ys[96], ds[96];
        status = ln_h5_read_tensor(f, r->dy_path, name, &dy);
        if (status == LN_OK && dy->numel != y->numel)
            status = ln_fail("%s: %s %s does not match output %s %s", r->dy_path, name, ln_shape_str(dy, ds, sizeof ds),
                             r->op->outputs[i], ln_shape_str(y, ys, sizeof ys));
        if (status == LN_OK && !y->requires_grad)
            status = ln_fail("%s: output %s has no gradient path (no differentiable input in %s)", r->dy_path,
                             r->op->outputs[i], r->in_path);
        /* in the output's dtype on the host, then on its device */
        if (status == LN_OK && (!(seed = ln_tensor_new(y->dtype, LN_CPU, y->ndim, y->shape)) ||
                                ln_tensor_copy(seed, dy) || ln_tensor_move(seed, y->device)))
            status = LN_ERR;
        if (status == LN_OK && i > 0) {
            ln_tensor *g = ln_grad_of(y);
            status = g ? ln_tensor_copy(g, seed) : LN_ERR;
        }
        if (i == 0) first_seed = seed;
        else ln_tensor_free(seed);
        ln_tensor_free(dy);
    }
    ln_h5_close(f, r->dy_path);
    if (status == LN_OK) status = ln_backward_from(r->out[0], first_seed);
    ln_tensor_free(first_seed);
    return status;
}

static int write_results(op_run *r) {
    ln_h5_file f;
    if (ln_h5_create(r->out_path, &f)) return LN_ERR;
    int status = LN_OK;
    for (int i = 0; i < CLI_OP_MAX_IO && r->op->outputs[i] && r->out[i] && status == LN_OK; i++) {
        status = ln_tensor_move(r->out[i], LN_CPU);
        if (status == LN_OK) status = ln_h5_write_tensor(f, r->out_path, r->op->outputs[i], r->out[i]);
    }
    for (int i = 0; i < CLI_OP_MAX_IO && r->dy_path && status == LN_OK; i++) {
        ln_tensor *x = r->in[i];
        if (!x || !x->requires_grad) continue;
        char name[64];
        snprintf(name, sizeof name, "d%s", r->op->inputs[i].name);
        ln_tensor *g = ln_grad_of(x); /* zeros when no gradient reached it */
        status = g ? ln_tensor_move(g, LN_CPU) : LN_ERR;
        if (status == LN_OK) status = ln_h5_write_tensor(f, r->out_path, name, g);
    }
    if (ln_h5_close(f, r->out_path) && status == LN_OK) status = LN_ERR;
    return status;
}

int cmd_op(int argc, char **argv) {
    op_run r = {.device = LN_CPU};
    const char *name = NULL, *device = "cpu";
    int status = 0;
    for (int i = 1; i < argc && !status; i++) {
        if (cli_is_help(argv[i])) {
            fputs(help, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--list")) {
            return list_ops();
        } else if (argv[i][0] != '-') {
            if (name) return cli_error("op", "give one op NAME (see linnet op --list)");
            name = argv[i];
        } else if (cli_flag(argc, argv, &i, "--in", &r.in_path, &status, "op")) {
        } else if (cli_flag(argc, argv, &i, "--out", &r.out_path, &status, "op")) {
        } else if (cli_flag(argc, argv, &i, "--grad-out", &r.dy_path, &status, "op")) {
        } else if (cli_flag(argc, argv, &i, "--device", &device, &status, "op")) {
        } else {
            status = cli_unknown_option("op", argv[i]);
        }
    }
    if (status) return status;
    if (!name) return cli_error("op", "no op NAME given (see linnet op --list)");
    if (!(r.op = cli_op_find(name))) {
        char msg[160];
        snprintf(msg, sizeof msg, "unknown op '%s' (see linnet op --list)", name);
        return cli_error("op", msg);
    }
    if (!r.in_path || !r.out_path) return cli_error("op", "--in and --out are required (see linnet op --help)");
    if (!strcmp(device, "cuda")) {
#ifdef LINNET_CUDA
        r.device = LN_CUDA;
#else
        return cli_error("op", "--device cuda: this linnet was built without CUDA");
#endif
    } else if (strcmp(device, "cpu") != 0) {
        return cli_error("op", "--device must be cpu or cuda");
    }
    /* op messages name the tensor (named after its dataset) and shape; add the file */
    if (read_inputs(&r) || (r.op->run(r.in, r.s, r.out) && ln_fail_context("%s", r.in_path)) ||
        (r.dy_path && run_backward(&r)) || write_results(&r))
        status = cli_error("op", NULL);
    ln_tape_clear();
    for (int i = 0; i < CLI_OP_MAX_IO; i++) ln_tensor_free(r.in[i]);
    return status;
}
