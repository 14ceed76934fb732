// LibTorch's CPU allocator with a cache for large blocks (see src/memory.rs for why).
//
// Blocks under `min_bytes` are served exactly as LibTorch's default CPU allocator serves them
// (c10::alloc_cpu / c10::free_cpu, reported to the profiler's memory reporter). Blocks of
// `min_bytes` or more are rounded up to whole 2 MiB, and when freed they go to a free list
// instead of back to the system, up to `limit_bytes` in all; the next request of the same size
// (or up to an eighth smaller) takes one from the list; when a fresh block cannot be had, the
// list is emptied first. Every entry point is thread-safe (the data loader's threads allocate
// too).
//
// Three rules keep the cache from holding memory the system needs:
// - ageing: a cached block that `max_age` large allocations have passed by without taking it
//   goes back to the system (a size that never recurs does not stay);
// - pressure: with a memory budget (the container's limit, or the memory available at start),
//   a fresh block that would bring the process's resident memory above 90% of it first gives
//   every cached block back, before the OOM killer (which never throws) would act;
// - fork: the cache's lock is taken around fork() (pthread_atfork), so a child forked while
//   another thread allocates does not inherit a held lock.
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "guarded.h"

namespace {

constexpr size_t kGranule = size_t(2) << 20;

// Resident bytes of this process (/proc/self/statm), 0 where unknown.
size_t resident_bytes() {
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  int read = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return read == 2 ? resident * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

class BlockCache final : public c10::Allocator {
 public:
  BlockCache(size_t min_bytes, size_t limit_bytes, size_t budget_bytes, uint64_t max_age)
      : min_bytes_(min_bytes), limit_bytes_(limit_bytes), budget_bytes_(budget_bytes), max_age_(max_age) {}

  c10::DataPtr allocate(size_t n) override {
    void *data = n >= min_bytes_ ? take(n) : c10::alloc_cpu(n);
    c10::profiledCPUMemoryReporter().New(data, n);
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void *dest, const void *src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  static void release(void *data) {
    if (data == nullptr) return;
    c10::profiledCPUMemoryReporter().Delete(data);
    if (!instance()->keep(data)) c10::free_cpu(data);
  }

  static BlockCache *&instance() {
    static BlockCache *cache = nullptr;
    return cache;
  }

  void stats(uint64_t out[8]) {
    std::lock_guard<std::mutex> g(mutex_);
    out[0] = hits_;
    out[1] = misses_;
    out[2] = cached_bytes_;
    out[3] = free_.size();
    out[4] = released_;
    out[5] = aged_;
    out[6] = pressure_trims_;
    out[7] = limit_bytes_;
  }

  // Every cached block back to the system.
  void trim() {
    std::multimap<size_t, Cached> blocks;
    {
      std::lock_guard<std::mutex> g(mutex_);
      blocks.swap(free_);
      cached_bytes_ = 0;
    }
    for (auto &b : blocks) c10::free_cpu(b.second.data);
  }

  // Around fork(): the child must not inherit the lock held by another thread.
  static void before_fork() {
    if (instance() != nullptr) instance()->mutex_.lock();
  }
  static void after_fork() {
    if (instance() != nullptr) instance()->mutex_.unlock();
  }

 private:
  struct Cached {
    void *data;
    uint64_t freed_at;  // tick_ when it entered the list
  };

  void *take(size_t n) {
    size_t size = (n + kGranule - 1) / kGranule * kGranule;
    std::vector<void *> expired;
    bool fresh = false;
    void *data = nullptr;
    {
      std::lock_guard<std::mutex> g(mutex_);
      ++tick_;
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first <= size + size / 8) {
        data = it->second.data;
        size = it->first;
        cached_bytes_ -= size;
        free_.erase(it);
        live_[data] = size;
        live_count_.fetch_add(1, std::memory_order_release);
        ++hits_;
      } else {
        ++misses_;
        fresh = true;
      }
      for (auto e = free_.begin(); e != free_.end();) {
        if (tick_ - e->second.freed_at > max_age_) {
          expired.push_back(e->second.data);
          cached_bytes_ -= e->first;
          ++aged_;
          e = free_.erase(e);
        } else {
          ++e;
        }
      }
    }
    for (void *p : expired) c10::free_cpu(p);
    if (!fresh) return data;
    // Near the budget, the cached blocks go back before a fresh one is mapped.
    if (budget_bytes_ > 0 && resident_bytes() + size > budget_bytes_ / 10 * 9) {
      bool any = false;
      {
        std::lock_guard<std::mutex> g(mutex_);
        any = !free_.empty();
        if (any) ++pressure_trims_;
      }
      if (any) trim();
    }
    // Outside the lock: a fresh mapping. c10::alloc_cpu throws c10::Error when out of memory;
    // the cached blocks then go back to the system and the mapping is tried once more, so the
    // cache never turns a request that would fit into an out-of-memory error.
    try {
      data = c10::alloc_cpu(size);
    } catch (const c10::Error &) {
      trim();
      data = c10::alloc_cpu(size);
    }
    std::lock_guard<std::mutex> g(mutex_);
    live_[data] = size;
    live_count_.fetch_add(1, std::memory_order_release);
    return data;
  }

  // Whether `data` is a large block now in the free list (false: the caller frees it).
  bool keep(void *data) {
    // Most frees are of small blocks, and while no large block is live (always, on vision and
    // speech) they skip the lock. A large block being freed is counted, and the count seen,
    // since the thread freeing it got the pointer after its allocation.
    if (live_count_.load(std::memory_order_acquire) == 0) return false;
    std::lock_guard<std::mutex> g(mutex_);
    auto it = live_.find(data);
    if (it == live_.end()) return false;
    size_t size = it->second;
    live_.erase(it);
    live_count_.fetch_sub(1, std::memory_order_relaxed);
    if (cached_bytes_ + size > limit_bytes_) {
      ++released_;
      return false;
    }
    free_.emplace(size, Cached{data, tick_});
    cached_bytes_ += size;
    return true;
  }

  const size_t min_bytes_;
  const size_t limit_bytes_;
  const size_t budget_bytes_;  // 0: unknown
  const uint64_t max_age_;     // in large allocations
  std::mutex mutex_;
  std::unordered_map<void *, size_t> live_;
  std::atomic<size_t> live_count_{0};  // live_.size(), readable without the lock
  std::multimap<size_t, Cached> free_;
  size_t cached_bytes_ = 0;
  uint64_t tick_ = 0;  // large allocations so far
  uint64_t hits_ = 0, misses_ = 0, released_ = 0, aged_ = 0, pressure_trims_ = 0;
};

}  // namespace

extern "C" {

// Installs the cache as LibTorch's CPU allocator (once per process; later calls change nothing).
// `*installed` is 1 when it is the allocator LibTorch now uses. `budget_bytes` 0: no budget.
char *ssl_block_cache_install(uint64_t min_bytes, uint64_t limit_bytes, uint64_t budget_bytes, uint64_t max_age,
                              int *installed) {
  return ssl::guarded([&] {
    static std::once_flag once;
    std::call_once(once, [&] {
      // Never destroyed: tensors freed during exit still reach it.
      BlockCache::instance() = new BlockCache(min_bytes, limit_bytes, budget_bytes, max_age);
      c10::SetCPUAllocator(BlockCache::instance(), /*priority=*/1);
      pthread_atfork(&BlockCache::before_fork, &BlockCache::after_fork, &BlockCache::after_fork);
    });
    *installed = BlockCache::instance() != nullptr && c10::GetCPUAllocator() == BlockCache::instance();
  });
}

// hits, misses, bytes cached, blocks cached, blocks given back because the cache was full,
// blocks aged out, trims under memory pressure, the cache's limit. `*installed` is 0 (out
// untouched) when the cache is not installed.
char *ssl_block_cache_stats(uint64_t out[8], int *installed) {
  return ssl::guarded([&] {
    *installed = BlockCache::instance() != nullptr;
    if (*installed) BlockCache::instance()->stats(out);
  });
}

char *ssl_block_cache_trim() {
  return ssl::guarded([&] {
    if (BlockCache::instance() != nullptr) BlockCache::instance()->trim();
  });
}

}  // extern "C"
