// Data-parallel collectives through PyTorch's own distributed engine (c10d): a TCPStore for the
// rendezvous and ProcessGroupGloo (CPU) or ProcessGroupNCCL (CUDA, nccl.cpp, in builds made with
// SSL_NCCL=1) for the collectives, all compiled into the LibTorch we link.
//
// The all-reduce of the gradient buckets starts from post-accumulate-grad hooks while backward is
// still running (the end of this file).
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
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "guarded.h"
#include "nccl_backend.h"

#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

}  // namespace

// One process group and its in-flight asynchronous collectives. `pending` is shared by the
// training thread and backward's hooks (which autograd may run on other threads): it is only
// touched under `pending_mu`, which is also held while a collective is issued, so the order of
// `pending` is the order the collectives were issued in.
struct SslGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::vector<c10::intrusive_ptr<c10d::Work>> pending;
  std::chrono::milliseconds timeout;
  std::mutex pending_mu;

  // Issue a sum all-reduce of `t` and remember its work.
  void allreduce_sum(const at::Tensor &t) {
    std::vector<at::Tensor> ts{t};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = timeout;
    std::lock_guard<std::mutex> lock(pending_mu);
    pending.push_back(backend->allreduce(ts, opts));
  }

  // Take every work issued so far.
  std::vector<c10::intrusive_ptr<c10d::Work>> take_pending() {
    std::lock_guard<std::mutex> lock(pending_mu);
    auto taken = std::move(pending);
    pending.clear();
    return taken;
  }
};

extern "C" {

// Rendezvous at host:port and create a group: `backend` 0 is Gloo, 1 NCCL on CUDA device
// `device`. `serve` makes this process host the TCPStore (rank 0 of a self-launched or Slurm
// run); under torchrun's agent store every rank is a client. `prefix` namespaces the keys
// (torchrun's `/worker/attempt_<n>`); empty for none.
char *ssl_dist_new(int backend, const char *host, int port, int rank, int world, int serve, const char *prefix,
                   double timeout_s, int device, SslGroup **out) {
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
    c10::intrusive_ptr<c10d::Store> group_store = c10::make_intrusive<c10d::PrefixStore>("ssl_default_pg/", store);
    c10::intrusive_ptr<c10d::Backend> made;
    if (backend == 0) {
      auto options = c10d::ProcessGroupGloo::Options::create_default(timeout);
      made = c10::make_intrusive<c10d::ProcessGroupGloo>(group_store, rank, world, options);
    } else {
#ifdef SSL_WITH_NCCL
      made = ssl::nccl_backend(group_store, rank, world, timeout, device);
#else
      (void)device;
      TORCH_CHECK(false, "this build has no NCCL backend: rebuild with SSL_NCCL=1 (docs/src/scaling-out.md)");
#endif
    }
    *out = new SslGroup{store, made, {}, timeout, {}};
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
  return ssl::guarded([&] { g->allreduce_sum(*t); });
}

// Wait for every collective started since the last wait. Every pending work is waited for (or
// dropped) even when one fails, so no tensor stays borrowed by a collective.
char *ssl_dist_wait(SslGroup *g) {
  return ssl::guarded([&] {
    auto pending = g->take_pending();
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

// ---- Overlapping the all-reduce with the backward pass ----------------------------------------
//
// The gradient buffer is cut into buckets at parameter boundaries (on the Rust side). A
// post-accumulate-grad hook on every parameter counts its bucket down; when the next bucket to
// send is complete, it and every complete bucket after it are all-reduced, asynchronously, while
// backward goes on. Buckets are sent in index order only, so every rank issues the same
// collectives in the same order whatever order its gradients arrive in (as DDP's reducer does).
// Buckets a step leaves incomplete (parameters without a gradient) are sent by
// `ssl_overlap_finish`, still in order. Hooks do nothing until `ssl_overlap_arm`, so the
// micro-batches before the last one only accumulate.

namespace {

struct OverlapState {
  SslGroup *group;  // not owned: the Rust side keeps the group alive longer
  at::Tensor flat;  // the buffer the buckets are ranges of
  std::vector<int64_t> starts, lens;
  std::vector<int> counts;     // parameters per bucket
  std::vector<int> remaining;  // of those, not yet accumulated in this step
  std::vector<int> bucket_of;  // each parameter's bucket
  size_t next = 0;             // the next bucket to send
  size_t sent_by_hooks = 0;    // buckets sent while backward ran, in this step
  bool armed = false;
  std::string error;
  std::mutex mu;

  void send_locked(size_t b) {
    try {
      group->allreduce_sum(flat.narrow(0, starts[b], lens[b]));
    } catch (const c10::Error &e) {
      if (error.empty()) error = e.what_without_backtrace();
    } catch (const std::exception &e) {
      if (error.empty()) error = e.what();
    }
  }

  void ready(int param) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed) return;
    auto b = static_cast<size_t>(bucket_of[param]);
    if (b < next || remaining[b] == 0) {
      if (error.empty()) error = "a gradient arrived after its bucket was sent (two backward passes in one micro-batch?)";
      return;
    }
    if (--remaining[b] > 0) return;
    while (next < remaining.size() && remaining[next] == 0) {
      send_locked(next++);
      ++sent_by_hooks;
    }
  }
};

struct BucketHook : torch::autograd::PostAccumulateGradHook {
  std::shared_ptr<OverlapState> state;
  int param;
  BucketHook(std::shared_ptr<OverlapState> s, int p) : state(std::move(s)), param(p) {}
  void operator()(const torch::autograd::Variable & /*tensor*/) override { state->ready(param); }
};

}  // namespace

struct SslOverlap {
  std::shared_ptr<OverlapState> state;
  std::vector<at::Tensor> params;
};

extern "C" {

// Hook `n` parameters; parameter i's gradient lies in bucket `bucket_of[i]`, bucket b being
// `flat[starts[b] .. starts[b] + lens[b]]`.
char *ssl_overlap_new(SslGroup *g, at::Tensor *flat, at::Tensor **params, const int *bucket_of, int n,
                      const int64_t *starts, const int64_t *lens, int buckets, SslOverlap **out) {
  return ssl::guarded([&] {
    auto s = std::make_shared<OverlapState>();
    s->group = g;
    s->flat = *flat;
    s->starts.assign(starts, starts + buckets);
    s->lens.assign(lens, lens + buckets);
    s->counts.assign(static_cast<size_t>(buckets), 0);
    s->bucket_of.assign(bucket_of, bucket_of + n);
    for (int b : s->bucket_of) {
      TORCH_CHECK(b >= 0 && b < buckets, "bucket index ", b, " out of range");
      ++s->counts[static_cast<size_t>(b)];
    }
    s->remaining = s->counts;
    auto o = std::make_unique<SslOverlap>();
    o->state = s;
    for (int i = 0; i < n; ++i) {
      TORCH_CHECK(torch::autograd::impl::post_acc_grad_hooks(*params[i]) == nullptr,
                  "a parameter already has a post-accumulate-grad hook");
      torch::autograd::impl::set_post_acc_grad_hooks(*params[i], std::make_unique<BucketHook>(s, i));
      o->params.push_back(*params[i]);
    }
    *out = o.release();
  });
}

// The next backward pass sends the buckets it completes.
char *ssl_overlap_arm(SslOverlap *o) {
  return ssl::guarded([&] {
    auto &s = *o->state;
    std::lock_guard<std::mutex> lock(s.mu);
    s.remaining = s.counts;
    s.next = 0;
    s.sent_by_hooks = 0;
    s.error.clear();
    s.armed = true;
  });
}

// Send every bucket backward did not, in order, and disarm. `*by_hooks`: how many backward sent.
char *ssl_overlap_finish(SslOverlap *o, int64_t *by_hooks) {
  return ssl::guarded([&] {
    auto &s = *o->state;
    std::lock_guard<std::mutex> lock(s.mu);
    *by_hooks = static_cast<int64_t>(s.sent_by_hooks);
    while (s.next < s.remaining.size()) s.send_locked(s.next++);
    s.armed = false;
    if (!s.error.empty()) throw std::runtime_error(s.error);
  });
}

// Remove the hooks and free the state.
void ssl_overlap_free(SslOverlap *o) {
  {
    std::lock_guard<std::mutex> lock(o->state->mu);
    o->state->armed = false;
  }
  for (auto &p : o->params) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
  delete o;
}

}  // extern "C"
