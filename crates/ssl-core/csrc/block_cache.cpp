// LibTorch's CPU allocator with a cache for large blocks (see src/memory.rs for why).
//
// Blocks under `min_bytes` are served exactly as LibTorch's default CPU allocator serves them
// (c10::alloc_cpu / c10::free_cpu, reported to the profiler's memory reporter). Blocks of
// `min_bytes` or more are rounded up to whole 2 MiB, and when freed they go to a free list
// instead of back to the system, up to `limit_bytes` in all; the next request of the same size
// (or up to an eighth smaller) takes one from the list; when a fresh block cannot be had, the
// list is emptied first. Every entry point is thread-safe (the data loader's threads allocate
// too).
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>

namespace {

constexpr size_t kGranule = size_t(2) << 20;

class BlockCache final : public c10::Allocator {
 public:
  BlockCache(size_t min_bytes, size_t limit_bytes) : min_bytes_(min_bytes), limit_bytes_(limit_bytes) {}

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

  void stats(uint64_t out[5]) {
    std::lock_guard<std::mutex> g(mutex_);
    out[0] = hits_;
    out[1] = misses_;
    out[2] = cached_bytes_;
    out[3] = free_.size();
    out[4] = released_;
  }

  // Every cached block back to the system.
  void trim() {
    std::multimap<size_t, void *> blocks;
    {
      std::lock_guard<std::mutex> g(mutex_);
      blocks.swap(free_);
      cached_bytes_ = 0;
    }
    for (auto &b : blocks) c10::free_cpu(b.second);
  }

 private:
  void *take(size_t n) {
    size_t size = (n + kGranule - 1) / kGranule * kGranule;
    {
      std::lock_guard<std::mutex> g(mutex_);
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first <= size + size / 8) {
        void *data = it->second;
        size = it->first;
        cached_bytes_ -= size;
        free_.erase(it);
        live_[data] = size;
        live_count_.fetch_add(1, std::memory_order_release);
        ++hits_;
        return data;
      }
      ++misses_;
    }
    // Outside the lock: a fresh mapping. c10::alloc_cpu throws c10::Error when out of memory;
    // the cached blocks then go back to the system and the mapping is tried once more, so the
    // cache never turns a request that would fit into an out-of-memory error.
    void *data = nullptr;
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
    free_.emplace(size, data);
    cached_bytes_ += size;
    return true;
  }

  const size_t min_bytes_;
  const size_t limit_bytes_;
  std::mutex mutex_;
  std::unordered_map<void *, size_t> live_;
  std::atomic<size_t> live_count_{0};  // live_.size(), readable without the lock
  std::multimap<size_t, void *> free_;
  size_t cached_bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0, released_ = 0;
};

}  // namespace

extern "C" {

// Installs the cache as LibTorch's CPU allocator (once per process; later calls change nothing).
// Returns 1 when it is the allocator LibTorch now uses.
int ssl_block_cache_install(uint64_t min_bytes, uint64_t limit_bytes) {
  static std::once_flag once;
  std::call_once(once, [&] {
    // Never destroyed: tensors freed during exit still reach it.
    BlockCache::instance() = new BlockCache(min_bytes, limit_bytes);
    c10::SetCPUAllocator(BlockCache::instance(), /*priority=*/1);
  });
  return BlockCache::instance() != nullptr && c10::GetCPUAllocator() == BlockCache::instance();
}

// hits, misses, bytes cached, blocks cached, blocks given back because the cache was full.
// Returns 0 (out untouched) when the cache is not installed.
int ssl_block_cache_stats(uint64_t out[5]) {
  if (BlockCache::instance() == nullptr) return 0;
  BlockCache::instance()->stats(out);
  return 1;
}

void ssl_block_cache_trim() {
  if (BlockCache::instance() != nullptr) BlockCache::instance()->trim();
}

}  // extern "C"
