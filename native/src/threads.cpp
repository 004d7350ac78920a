// threads.cpp: the pool of threads.h. One job at a time: the caller publishes it under the
// mutex with a new generation number, workers 1..P-1 run their share, the caller runs share 0
// and waits until the pending count reaches zero.
#include "threads.h"

#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ft {
namespace {

int defaultThreads() {
  if (const char* e = std::getenv("FT_THREADS")) {
    const int n = std::atoi(e);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

thread_local bool insideJob = false;

class Pool {
 public:
  int size = defaultThreads();

  void run(const std::function<void(int, int)>& fn, int P) {
    std::unique_lock<std::mutex> runLock(runMu_);  // one job at a time, whoever calls
    grow(P - 1);
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = &fn;
      jobP_ = P;
      pending_ = P - 1;
      error_ = nullptr;
      gen_++;
    }
    wake_.notify_all();
    insideJob = true;
    try {
      fn(0, P);
    } catch (...) {
      std::lock_guard<std::mutex> g(mu_);
      if (!error_) error_ = std::current_exception();
    }
    insideJob = false;
    std::unique_lock<std::mutex> l(mu_);
    done_.wait(l, [&] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::mutex runMu_, mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;  // never joined: the pool lives until the process exits
  const std::function<void(int, int)>* job_ = nullptr;
  int jobP_ = 0, pending_ = 0;
  unsigned long gen_ = 0;
  std::exception_ptr error_;

  void grow(int n) {
    while ((int)workers_.size() < n) {
      const int id = (int)workers_.size() + 1;
      unsigned long seen;
      {
        std::lock_guard<std::mutex> g(mu_);
        seen = gen_;  // taken here, not in the new thread, so that it cannot miss the next job
      }
      workers_.emplace_back([this, id, seen] { loop(id, seen); });
      workers_.back().detach();
    }
  }

  void loop(int id, unsigned long seen) {
    insideJob = true;
    for (;;) {
      const std::function<void(int, int)>* fn;
      int P;
      {
        std::unique_lock<std::mutex> l(mu_);
        wake_.wait(l, [&] { return gen_ != seen; });
        seen = gen_;
        fn = job_;
        P = jobP_;
      }
      if (id >= P || !fn) continue;
      std::exception_ptr err;
      try {
        (*fn)(id, P);
      } catch (...) {
        err = std::current_exception();
      }
      std::lock_guard<std::mutex> g(mu_);
      if (err && !error_) error_ = err;
      if (--pending_ == 0) done_.notify_one();
    }
  }
};

Pool& pool() {
  static Pool* p = new Pool();  // leaked on purpose: detached workers may outlive static destructors
  return *p;
}

}  // namespace

int threads() { return pool().size; }

int setThreads(int n) {
  pool().size = n > 0 ? n : defaultThreads();
  return pool().size;
}

void splitRange(long n, int t, int P, long grain, long* begin, long* end) {
  const long units = (n + grain - 1) / grain;
  const long b = units * t / P * grain, e = units * (t + 1) / P * grain;
  *begin = b < n ? b : n;
  *end = e < n ? e : n;
}

void parallel(const std::function<void(int, int)>& fn, int maxTasks) {
  int P = threads() < maxTasks ? threads() : maxTasks;
  if (P <= 1 || insideJob) {
    fn(0, 1);
    return;
  }
  pool().run(fn, P);
}

void parallelFor(long n, long grain, const std::function<void(long, long)>& fn) {
  if (n <= 0) return;
  const long units = (n + grain - 1) / grain;
  parallel(
      [&](int t, int P) {
        long b, e;
        splitRange(n, t, P, grain, &b, &e);
        if (b < e) fn(b, e);
      },
      units < (1L << 30) ? (int)units : (1 << 30));
}

}  // namespace ft
