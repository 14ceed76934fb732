// ProcessGroupNCCL, the c10d backend for CUDA tensors. Compiled only with SSL_NCCL=1 (build.rs),
// with -DUSE_C10D_NCCL -DUSE_CUDA and the CUDA and NCCL headers of the PyPI wheels next to torch;
// it is the one file of the C++ layer that sees CUDA headers.
#include "nccl_backend.h"

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

namespace ssl {

c10::intrusive_ptr<c10d::Backend> nccl_backend(const c10::intrusive_ptr<c10d::Store> &store, int rank, int world,
                                               std::chrono::milliseconds timeout, int device) {
  TORCH_CHECK(device >= 0 && device < static_cast<int>(c10::cuda::device_count()), "CUDA device ", device,
              " does not exist (", static_cast<int>(c10::cuda::device_count()), " visible)");
  // NCCL picks the device of the tensors it is given; barriers and communicator set-up use the
  // current one, so make it this rank's (torchrun's LOCAL_RANK).
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
}

}  // namespace ssl
