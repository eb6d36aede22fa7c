#include "mlp.h"

#include "autograd/autocast.h"
#include "autograd/error.h"

int ln_mlp_create(ln_mlp *mlp, ln_params *params, const char *prefix, int d_model, int hidden) {
    mlp->w_gate = ln_params_add(params, prefix, "w_gate", 2, (int64_t[]){hidden, d_model}, LN_INIT_NORMAL, true);
    mlp->w_up = ln_params_add(params, prefix, "w_up", 2, (int64_t[]){hidden, d_model}, LN_INIT_NORMAL, true);
    mlp->w_down = ln_params_add(params, prefix, "w_down", 2, (int64_t[]){d_model, hidden}, LN_INIT_RESIDUAL, true);
    return mlp->w_gate && mlp->w_up && mlp->w_down ? LN_OK : LN_ERR;
}

ln_tensor *ln_mlp_forward(const ln_mlp *mlp, ln_tensor *x) {
    ln_tensor *gate = ln_matmul(x, ln_weight(mlp->w_gate), false, true);
    ln_tensor *up = ln_matmul(x, ln_weight(mlp->w_up), false, true);
    return ln_matmul(ln_swiglu(gate, up), ln_weight(mlp->w_down), false, true);
}
