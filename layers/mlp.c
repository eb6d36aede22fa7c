#include "mlp.h"

#include "autograd/error.h"

int ln_mlp_create(ln_mlp *mlp, const ln_linear_site *site, int d_model, int hidden) {
    if (ln_linear_create(&mlp->gate, site, &(ln_linear_spec){"mlp.gate", "w_gate", NULL, hidden, d_model, LN_INIT_NORMAL}) ||
        ln_linear_create(&mlp->up, site, &(ln_linear_spec){"mlp.up", "w_up", NULL, hidden, d_model, LN_INIT_NORMAL}) ||
        ln_linear_create(&mlp->down, site, &(ln_linear_spec){"mlp.down", "w_down", NULL, d_model, hidden, LN_INIT_RESIDUAL}))
        return LN_ERR;
    return LN_OK;
}

/* statements of their own: the order of ops on the tape must not rest on argument evaluation */
ln_tensor *ln_mlp_forward(const ln_mlp *mlp, ln_tensor *x) {
    ln_tensor *gate = ln_linear_forward(&mlp->gate, x);
    ln_tensor *up = ln_linear_forward(&mlp->up, x);
    return ln_linear_forward(&mlp->down, ln_swiglu(gate, up));
}

void ln_mlp_free(ln_mlp *mlp) {
    ln_linear_free(&mlp->gate);
    ln_linear_free(&mlp->up);
    ln_linear_free(&mlp->down);
}
