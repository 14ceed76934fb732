// The small C++ layer of ssl-core: LibTorch kernels that tch does not bind.
//
// Every entry point takes tensors as `at::Tensor*` (what tch's `Tensor::as_ptr` points to),
// catches every C++ exception and returns it as a heap string the Rust side frees with
// `ssl_free_error`. A null return means success.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#include "guarded.h"
#include <dlfcn.h>
#include <cstring>
#include <string>
#include <vector>

namespace {

using ssl::guarded;

std::vector<at::Tensor> gather(at::Tensor **ts, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) out.push_back(*ts[i]);
  return out;
}

}  // namespace

extern "C" {

void ssl_free_error(char *err) { std::free(err); }

// One fused AdamW step over all parameters (`at::_fused_adamw_`). `steps` are float scalar
// tensors that the caller has already incremented: the kernel divides by 1 - beta^step.
char *ssl_fused_adamw(at::Tensor **params, at::Tensor **grads, at::Tensor **exp_avgs,
                      at::Tensor **exp_avg_sqs, at::Tensor **steps, int n, double lr,
                      double beta1, double beta2, double weight_decay, double eps) {
  return guarded([&] {
    auto p = gather(params, n), g = gather(grads, n), m = gather(exp_avgs, n),
         v = gather(exp_avg_sqs, n), s = gather(steps, n);
    std::vector<at::Tensor> max_v;
    at::_fused_adamw_(p, g, m, v, max_v, s, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false, std::nullopt, std::nullopt);
  });
}

// SGD with (optionally Nesterov) momentum and coupled weight decay through the multi-tensor
// `_foreach_*` ops, as torch.optim.SGD(foreach=True) computes it. `first` marks the first step,
// where the momentum buffer is initialised with the gradient.
char *ssl_foreach_sgd(at::Tensor **params, at::Tensor **grads, at::Tensor **bufs, int n,
                      double lr, double momentum, double weight_decay, int nesterov, int first) {
  return guarded([&] {
    auto p = gather(params, n), g = gather(grads, n), b = gather(bufs, n);
    std::vector<at::Tensor> d = g;
    if (weight_decay != 0.0) d = at::_foreach_add(g, p, weight_decay);
    if (momentum != 0.0) {
      if (first) {
        for (int i = 0; i < n; ++i) b[i].copy_(d[i]);
      } else {
        at::_foreach_mul_(b, momentum);
        at::_foreach_add_(b, d);
      }
      d = nesterov ? at::_foreach_add(d, b, momentum) : b;
    }
    at::_foreach_add_(p, d, -lr);
  });
}

// Total L2 norm of all gradients, then scale them in place by min(1, max_norm / (norm + 1e-6)),
// all on the device: no host synchronisation. The norm is written to `*norm_out`.
char *ssl_clip_grad_norm(at::Tensor **grads, int n, double max_norm, at::Tensor *norm_out) {
  return guarded([&] {
    auto g = gather(grads, n);
    auto norms = at::_foreach_norm(g, 2);
    auto total = at::stack(norms).norm(2);
    if (max_norm > 0.0) {
      auto coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
      at::_foreach_mul_(g, coef);
    }
    norm_out->copy_(total);
  });
}

// Turn bf16 autocast on or off for CUDA (tch's own autocast only knows fp16).
char *ssl_set_bf16_autocast(int enabled) {
  return guarded([&] {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, enabled != 0);
    if (!enabled) at::autocast::clear_cache();
  });
}

int ssl_bf16_autocast_enabled() { return at::autocast::is_autocast_enabled(at::kCUDA) ? 1 : 0; }

// Make every ATen operator called from this thread run serially, and return the intra-op thread
// count the thread now sees (1 on success). ATen's CPU kernels parallelise with OpenMP, whose
// thread count is per calling thread: a second thread that runs a large enough operator (a
// data loader's collate) gets an OpenMP team of its own. libgomp then manages more threads than
// there are cores and cuts every thread's spin-wait short, so the training thread's team sleeps
// between operators and each operator pays a futex wake-up. `at::get_num_threads()` first applies
// ATen's own count to this thread (its lazy per-thread set-up); only then is this thread's count
// set to 1, in the OpenMP runtime LibTorch loaded (looked up in the process, not linked here).
int ssl_serial_thread() {
  try {
    at::get_num_threads();
    using SetThreads = void (*)(int);
    static auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    if (set != nullptr) set(1);
    return at::get_num_threads();
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
