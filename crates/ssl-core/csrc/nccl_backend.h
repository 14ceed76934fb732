// The NCCL backend, built only when the build asks for it (SSL_NCCL=1, see build.rs): nccl.cpp
// defines it, compiled with c10d's NCCL and CUDA flags; distributed.cpp calls it when built with
// SSL_WITH_NCCL and otherwise refuses the backend.
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

namespace ssl {

// A ProcessGroupNCCL over `store` whose collectives run on CUDA device `device`.
c10::intrusive_ptr<c10d::Backend> nccl_backend(const c10::intrusive_ptr<c10d::Store> &store, int rank, int world,
                                               std::chrono::milliseconds timeout, int device);

}  // namespace ssl
