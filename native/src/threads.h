// threads.h: a small persistent thread pool for the Qwen3 forward/backward (no OpenMP).
//
// Workers are std::threads created on first use and kept for the life of the process. The
// pool size is FT_THREADS when that environment variable is a positive integer (read once),
// else std::thread::hardware_concurrency(); setThreads() changes it (tests, benchmarks).
//
// Work is split statically: parallelFor(n, fn) gives thread t of P the contiguous range
// splitRange(n, t, P). Callers parallelise only over independent outputs, so results never
// depend on P (see simd.h and qwen3.cpp for the reduction orders).
#pragma once
#include <functional>

namespace ft {

int threads();              // the pool size in use (>= 1)
int setThreads(int n);      // n >= 1: use n threads; n <= 0: the default; returns the size now in use

// [begin, end) of thread t's share of [0, n) among P threads, in `grain`-sized units (the last
// share takes the remainder).
void splitRange(long n, int t, int P, long grain, long* begin, long* end);

// Runs fn(t, P) for t = 0..P-1, P = min(threads(), maxTasks), on the pool (the caller is
// thread 0) and returns when all are done; the first exception thrown is rethrown here.
// Nested calls (from inside fn) run serially with P = 1.
void parallel(const std::function<void(int t, int P)>& fn, int maxTasks = 1 << 30);

// fn(begin, end) over thread shares of [0, n) in units of `grain`.
void parallelFor(long n, long grain, const std::function<void(long begin, long end)>& fn);

}  // namespace ft
