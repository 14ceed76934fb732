// Data-parallel collectives through PyTorch's own distributed engine (c10d): a TCPStore for the
// rendezvous and ProcessGroupGloo for the collectives, both compiled into the LibTorch we link.
//
// Conventions as in kernels.cpp: tensors cross as `at::Tensor*`, and every entry point reports
// failure through `ssl::guarded` (guarded.h).
//
// The gloo headers that ProcessGroupGloo.hpp includes are not in the PyTorch wheel; the few names
// it needs are declared in `gloo_api/` (see its README for why that, and not Debian's libgloo-dev).
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include "guarded.h"

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace {

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

}  // namespace

// One process group and its in-flight asynchronous collectives.
struct SslGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::vector<c10::intrusive_ptr<c10d::Work>> pending;
  std::chrono::milliseconds timeout;
};

extern "C" {

// Rendezvous at host:port and create a Gloo group. `serve` makes this process host the TCPStore
// (rank 0 of a self-launched or Slurm run); under torchrun's agent store every rank is a client.
// `prefix` namespaces the keys (torchrun's `/worker/attempt_<n>`); empty for none.
char *ssl_dist_gloo_new(const char *host, int port, int rank, int world, int serve,
                        const char *prefix, double timeout_s, SslGroup **out) {
  return ssl::guarded([&] {
    auto timeout = millis(timeout_s);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = serve != 0;
    opts.numWorkers = static_cast<std::size_t>(world);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    if (prefix != nullptr && std::strlen(prefix) > 0) {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    }
    // A prefix of our own inside the store, as torch.distributed puts its default group under one.
    auto group_store = c10::make_intrusive<c10d::PrefixStore>("ssl_default_pg/", store);
    auto options = c10d::ProcessGroupGloo::Options::create_default(timeout);
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(group_store, rank, world, options);
    *out = new SslGroup{store, backend, {}, timeout};
  });
}

void ssl_dist_free(SslGroup *g) { delete g; }

// Broadcast one tensor from `root` to every rank, in place; waits for it.
char *ssl_dist_broadcast(SslGroup *g, at::Tensor *t, int root) {
  return ssl::guarded([&] {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = g->timeout;
    g->backend->broadcast(ts, opts)->wait(g->timeout);
  });
}

// Start a sum all-reduce of one tensor, in place; `ssl_dist_wait` completes it.
char *ssl_dist_allreduce_sum_async(SslGroup *g, at::Tensor *t) {
  return ssl::guarded([&] {
    std::vector<at::Tensor> ts{*t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    g->pending.push_back(g->backend->allreduce(ts, opts));
  });
}

// Wait for every collective started since the last wait. Every pending work is waited for (or
// dropped) even when one fails, so no tensor stays borrowed by a collective.
char *ssl_dist_wait(SslGroup *g) {
  return ssl::guarded([&] {
    auto pending = std::move(g->pending);
    g->pending.clear();
    std::string first_error;
    for (auto &w : pending) {
      try {
        w->wait(g->timeout);
      } catch (const c10::Error &e) {
        if (first_error.empty()) first_error = e.what_without_backtrace();
      } catch (const std::exception &e) {
        if (first_error.empty()) first_error = e.what();
      }
    }
    if (!first_error.empty()) throw std::runtime_error(first_error);
  });
}

char *ssl_dist_barrier(SslGroup *g) {
  return ssl::guarded([&] {
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
    g->backend->barrier(opts)->wait(g->timeout);
  });
}

// Make `grad` the `.grad` of `param` (a view into a flat buffer), so backward accumulates into it.
char *ssl_set_grad(at::Tensor *param, at::Tensor *grad) {
  return ssl::guarded([&] { param->mutable_grad() = *grad; });
}

}  // extern "C"
