// runtime.cpp: the simulator's fiber scheduler and the CUDA runtime calls it needs, on host memory
// (cudaMalloc fills with 0xFF, a NaN in fp16 and fp32, unless SIM_POISON=0; copies and memsets are
// checked to lie inside one allocation). -DSIM_UCONTEXT: glibc ucontext instead of the x86-64 switch.
#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <string>

#ifndef SIM_UCONTEXT
// a minimal x86-64 context switch: callee-saved registers, mxcsr and the x87 control word
extern "C" void sim_switch(void** save, void* to);
asm(R"(
.text
.globl sim_switch
.type sim_switch,@function
sim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size sim_switch, .-sim_switch
)");
#endif
namespace sim {
Fiber* cur = nullptr;
Grid grid;
long long launches = 0, phases = 0, exitedAtBarrier = 0;
float shflF[1024];
double shflD[1024];
int shflI[1024];
namespace {
#ifdef SIM_UCONTEXT
ucontext_t sched;
#else
void* schedSp;
#endif
std::vector<Fiber> fibers;
const std::function<void()>* body = nullptr;
constexpr std::size_t kStack = 256 * 1024;
int order() {
  static int o = [] {
    const char* e = std::getenv("SIM_ORDER");
    if (e == nullptr || std::strcmp(e, "fwd") == 0) return 0;
    if (std::strcmp(e, "rev") == 0) return 1;
    if (std::strcmp(e, "shuffle") == 0) return 2;
    if (std::strcmp(e, "greedy") == 0) return 3;     // each warp runs alone up to its next block barrier, warps in order
    if (std::strcmp(e, "greedyrev") == 0) return 4;  // the same, warps in reverse order
    fail("SIM_ORDER: fwd, rev, shuffle, greedy or greedyrev");
  }();
  return o;
}
void entry() {
  (*body)();
  cur->state = DONE;
#ifndef SIM_UCONTEXT
  sim_switch(&cur->sp, schedSp);  // never resumed
  std::abort();
#endif
  // (ucontext) returns to sched through uc_link
}
void start(Fiber& f) {
#ifdef SIM_UCONTEXT
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = f.stack;
  f.uc.uc_stack.ss_size = kStack;
  f.uc.uc_link = &sched;
  makecontext(&f.uc, entry, 0);
#else
  auto top = reinterpret_cast<std::uintptr_t>(f.stack) + kStack;
  top &= ~std::uintptr_t{15};
  auto* w = reinterpret_cast<std::uint64_t*>(top - 16);
  w[0] = reinterpret_cast<std::uint64_t>(&entry);  // the return address of the first switch
  w[1] = 0;
  std::uint64_t* sp = w - 7;  // control words, r15 r14 r13 r12 rbx rbp
  std::memset(sp, 0, 7 * 8);
  const std::uint32_t mxcsr = 0x1F80;
  const std::uint16_t fpcw = 0x037F;
  std::memcpy(reinterpret_cast<char*>(sp), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpcw, 2);
  f.sp = sp;
#endif
}
void resume(Fiber& f) {
#ifdef SIM_UCONTEXT
  swapcontext(&sched, &f.uc);
#else
  sim_switch(&schedSp, f.sp);
#endif
}
}  // namespace

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "SIM FAILURE: %s (block %u,%u,%u thread %u)\n", what, grid.bid.x, grid.bid.y, grid.bid.z, cur ? cur->tid.x : 9999u);
  std::fflush(stderr);
  std::abort();
}

void yieldAs(State s) {
  if (cur == nullptr) fail("barrier outside a kernel");
  Fiber* f = cur;
  f->state = s;
#ifdef SIM_UCONTEXT
  swapcontext(&f->uc, &sched);
#else
  sim_switch(&f->sp, schedSp);
#endif
}

void runGrid(dim3 g, dim3 b, const std::function<void()>& fn) {
  const unsigned n = b.x * b.y * b.z;
  if (b.y != 1 || b.z != 1) fail("block shape (only 1-D blocks)");
  if (n == 0 || n > 1024) fail("block size");
  if (g.x == 0 || g.y == 0 || g.z == 0) fail("empty grid");
  if (g.y > 65535 || g.z > 65535) fail("grid y/z > 65535");
  ++launches;
  if (fibers.size() < n) fibers.resize(n);
  for (unsigned t = 0; t < n; ++t)
    if (fibers[t].stack == nullptr) {
      fibers[t].stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (fibers[t].stack == MAP_FAILED) fail("mmap stack");
    }
  body = &fn;
  grid.gdim = g;
  grid.bdim = b;
  std::vector<unsigned> perm(n);
  for (unsigned t = 0; t < n; ++t) perm[t] = t;
  static std::mt19937 rng(12345);
  const bool partialWarp = n % 32 != 0;
  for (unsigned z = 0; z < g.z; ++z)
    for (unsigned y = 0; y < g.y; ++y)
      for (unsigned x = 0; x < g.x; ++x) {
        grid.bid = make_uint3(x, y, z);
        for (unsigned t = 0; t < n; ++t) {
          Fiber& f = fibers[t];
          start(f);
          f.tid = make_uint3(t, 0, 0);
          f.state = RUN;
        }
        for (;;) {
          if (order() == 1) std::reverse(perm.begin(), perm.end());
          else if (order() == 2) std::shuffle(perm.begin(), perm.end(), rng);
          if (order() >= 3) {
            const unsigned warps = (n + 31) / 32;
            for (unsigned k = 0; k < warps; ++k) {
              const unsigned w = order() == 3 ? k : warps - 1 - k, lanes = std::min(32u, n - w * 32);
              for (;;) {
                for (unsigned l = 0; l < lanes; ++l) {
                  Fiber& f = fibers[w * 32 + l];
                  if (f.state != RUN) continue;
                  cur = &f;
                  resume(f);
                }
                unsigned waiting = 0;
                for (unsigned l = 0; l < lanes; ++l) waiting += fibers[w * 32 + l].state == WAIT_WARP;
                if (waiting != lanes || partialWarp) break;
                for (unsigned l = 0; l < lanes; ++l) fibers[w * 32 + l].state = RUN;
              }
            }
          }
          for (unsigned t : perm) {
            Fiber& f = fibers[t];
            if (f.state != RUN) continue;
            cur = &f;
            resume(f);
          }
          cur = nullptr;
          ++phases;
          bool allDone = true, released = false;
          for (unsigned t = 0; t < n; ++t) allDone &= fibers[t].state == DONE;
          if (allDone) break;
          for (unsigned w = 0; w * 32 < n; ++w) {
            unsigned waiting = 0, lanes = std::min(32u, n - w * 32);
            for (unsigned l = 0; l < lanes; ++l) waiting += fibers[w * 32 + l].state == WAIT_WARP;
            if (waiting == 0) continue;
            if (partialWarp) fail("warp op in a block that is not whole warps");
            if (waiting == lanes) {
              for (unsigned l = 0; l < lanes; ++l) fibers[w * 32 + l].state = RUN;
              released = true;
            }
          }
          if (!released) {
            unsigned waiting = 0, done = 0;
            for (unsigned t = 0; t < n; ++t) waiting += fibers[t].state == WAIT_BLOCK, done += fibers[t].state == DONE;
            if (waiting > 0 && waiting + done == n) {
              if (done > 0) ++exitedAtBarrier;
              for (unsigned t = 0; t < n; ++t)
                if (fibers[t].state == WAIT_BLOCK) fibers[t].state = RUN;
              released = true;
            }
          }
          if (!released) {
            std::string s;
            for (unsigned t = 0; t < n; ++t) s += "RBWD"[fibers[t].state];
            std::fprintf(stderr, "states: %s\n", s.c_str());
            fail("deadlock: threads wait at different barriers (divergent __syncthreads/__syncwarp?)");
          }
        }
      }
}
}  // namespace sim

// ---- the runtime API on host memory
namespace {
std::map<std::uintptr_t, std::size_t>& allocs() {
  static std::map<std::uintptr_t, std::size_t> m;
  return m;
}
/** checks that [p, p + n) lies inside one cudaMalloc'ed buffer */
void checkDev(const void* p, std::size_t n, const char* what) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto& m = allocs();
  auto it = m.upper_bound(a);
  if (it == m.begin()) goto bad;
  --it;
  if (a + n > it->first + it->second) goto bad;
  return;
bad:
  std::fprintf(stderr, "SIM FAILURE: %s: %p + %zu bytes is not inside a device allocation\n", what, p, n);
  std::abort();
}
void checkKind(void* dst, const void* src, std::size_t n, cudaMemcpyKind k, const char* what) {
  if (k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice) checkDev(dst, n, what);
  if (k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice) checkDev(src, n, what);
}
}  // namespace
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
};

cudaError_t cudaMalloc(void** p, size_t n) {
  static const bool zero = std::getenv("SIM_POISON") != nullptr && std::strcmp(std::getenv("SIM_POISON"), "0") == 0;
  void* q = nullptr;  // exactly n bytes (ASan's redzone starts right after), 256-byte aligned as cudaMalloc
  if (posix_memalign(&q, 256, n == 0 ? 1 : n) != 0) return cudaErrorMemoryAllocation;
  std::memset(q, zero ? 0 : 0xFF, n);  // 0xFFFF: a NaN in fp16 and fp32
  allocs()[reinterpret_cast<std::uintptr_t>(q)] = n;
  *p = q;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (p == nullptr) return cudaSuccess;
  if (allocs().erase(reinterpret_cast<std::uintptr_t>(p)) != 1) {
    std::fprintf(stderr, "SIM FAILURE: cudaFree of %p, not an allocation\n", p);
    std::abort();
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind k) {
  checkKind(d, s, n, k, "cudaMemcpy");
  std::memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t) {
  checkKind(d, s, n, k, "cudaMemcpyAsync");
  std::memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* d, int v, size_t n) {
  checkDev(d, n, "cudaMemset");
  std::memset(d, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) {
  checkDev(d, n, "cudaMemsetAsync");
  std::memset(d, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyToSymbol(const void* sym, const void* src, size_t n, size_t off, cudaMemcpyKind) {
  std::memcpy(static_cast<char*>(const_cast<void*>(sym)) + off, src, n);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t) { return "sim error"; }
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
// the compute capability the simulation reports: SIM_SM (e.g. 75 for a T4, whose code has no bf16
// tensor cores: the bf16 paths are refused), default 80 (every operand type)
static int simSm() {
  const char* e = std::getenv("SIM_SM");
  const int sm = e != nullptr ? std::atoi(e) : 80;
  return sm >= 50 && sm < 200 ? sm : 80;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  if (a == cudaDevAttrComputeCapabilityMajor) *v = simSm() / 10;
  else if (a == cudaDevAttrComputeCapabilityMinor) *v = simSm() % 10;
  else return cudaErrorInvalidValue;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof *p);
  std::strcpy(p->name, "CPU simulation (fibers)");
  p->major = simSm() / 10;
  p->minor = simSm() % 10;
  p->multiProcessorCount = 1;
  p->totalGlobalMem = 16ull << 30;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaMemGetInfo(size_t* f, size_t* t) {
  *f = *t = 16ull << 30;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
