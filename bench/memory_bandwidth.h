#pragma once
// The memory bandwidth a read-only kernel can get, measured the same way by
// every benchmark that compares a kernel with it (llm_decode_bench.cpp,
// quant_kernel_bench.cpp): `threads` threads each read their share of a
// buffer far larger than the caches as eight streams, with AVX-512 and
// software prefetch where the CPU has it, so a kernel's share of it is not
// flattered by a weak measurement.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <numeric>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's AVX-512 intrinsics
#endif

namespace memory_bandwidth {

#if defined(__x86_64__)
__attribute__((target("avx512f"))) inline float read_avx512(const float* data, size_t count) {
  const size_t stream = count / 8;
  __m512 sums[8];
  for (auto& s : sums) s = _mm512_setzero_ps();
  for (size_t i = 0; i + 16 <= stream; i += 16)
    for (size_t s = 0; s < 8; ++s) {
      _mm_prefetch(reinterpret_cast<const char*>(data + s * stream + i + 1024), _MM_HINT_T0);
      sums[s] = _mm512_add_ps(sums[s], _mm512_loadu_ps(data + s * stream + i));
    }
  for (int s = 1; s < 8; ++s) sums[0] = _mm512_add_ps(sums[0], sums[s]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sums[0]);
  return std::accumulate(lanes, lanes + 16, 0.0f);
}
#endif

inline float read_portable(const float* data, size_t count) {
  float sums[8] = {};
  for (size_t i = 0; i + 8 <= count; i += 8)
    for (size_t s = 0; s < 8; ++s) sums[s] += data[i + s];
  return std::accumulate(sums, sums + 8, 0.0f);
}

// A buffer of `bytes` for read_gbps: varied values, since pages of one
// repeated value can be deduplicated by a host and read faster than memory.
inline std::vector<float> make_buffer(size_t bytes) {
  std::vector<float> buffer(bytes / sizeof(float));
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = float(i % 1000003) * 1e-6f;
  return buffer;
}

// GB/s of one read of `buffer` by `threads` threads.
inline double read_gbps(const std::vector<float>& buffer, int threads) {
  bool avx512 = false;
#if defined(__x86_64__)
  avx512 = __builtin_cpu_supports("avx512f");
#endif
  std::vector<std::thread> workers;
  std::vector<float> sinks(static_cast<size_t>(threads));
  const size_t share = buffer.size() / size_t(threads);
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      const float* part = buffer.data() + size_t(t) * share;
#if defined(__x86_64__)
      sinks[size_t(t)] = avx512 ? read_avx512(part, share) : read_portable(part, share);
#else
      sinks[size_t(t)] = read_portable(part, share);
#endif
    });
  for (auto& w : workers) w.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  volatile float keep = sinks[0];  // keeps the reads
  (void)keep;
  return double(share * size_t(threads) * sizeof(float)) / seconds / 1e9;
}

}  // namespace memory_bandwidth
