// LibTorch's profiler (Kineto) for the C++ layer of ssl-core: start recording the operators this
// thread runs (and CUDA kernels), stop and write the Chrome/Perfetto trace. The trace is read
// back by `ssl_core::profile`, which also reads the traces `torch.profiler` writes.
#include <torch/csrc/autograd/profiler_kineto.h>

#include "guarded.h"
#include <set>
#include <string>

extern "C" {

char *ssl_profiler_start(int record_shapes, int cuda) {
  return ssl::guarded([&] {
    using torch::profiler::impl::ActivityType;
    using torch::profiler::impl::ProfilerConfig;
    using torch::profiler::impl::ProfilerState;
    ProfilerConfig config(ProfilerState::KINETO, record_shapes != 0, /*profile_memory=*/false,
                          /*with_stack=*/false, /*with_flops=*/false, /*with_modules=*/false);
    std::set<ActivityType> activities{ActivityType::CPU};
    if (cuda) activities.insert(ActivityType::CUDA);
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
  });
}

char *ssl_profiler_stop(const char *trace_path) {
  return ssl::guarded([&] {
    auto result = torch::autograd::profiler::disableProfiler();
    result->save(std::string(trace_path));
  });
}

}  // extern "C"
