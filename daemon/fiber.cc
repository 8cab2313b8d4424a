#include "fiber.h"

#include <cxxabi.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <system_error>

#include <fmt/format.h>

#include "worker_shared.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define KAGZI_FIBER_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define KAGZI_FIBER_TSAN 1
#endif

#if defined(__x86_64__)
// kagzi_fiber_switch(save, load): pushes the callee-saved registers and the
// SSE and x87 control words on the current stack, stores the stack pointer
// in *save, loads `load` (a stack left the same way, or a new one laid out
// by the Fiber constructor) and pops what it finds there, returning into
// that stack's code. kagzi_fiber_start is where a new stack "returns" to:
// it calls the entry function in r13 with the argument in r12.
extern "C" void kagzi_fiber_switch(void** save, void* load);
extern "C" void kagzi_fiber_start();
__asm__(R"(
  .text
  .globl kagzi_fiber_switch
  .type kagzi_fiber_switch, @function
  .p2align 4
kagzi_fiber_switch:
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
  .size kagzi_fiber_switch, .-kagzi_fiber_switch

  .globl kagzi_fiber_start
  .type kagzi_fiber_start, @function
  .p2align 4
kagzi_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size kagzi_fiber_start, .-kagzi_fiber_start
)");
#endif

namespace kagzi::daemon {
namespace {

thread_local Fiber* t_current = nullptr;

// The C++ runtime's per-thread exception state (the Itanium C++ ABI's
// __cxa_eh_globals: the caught-exception stack and the count of uncaught
// ones), swapped as bytes.
constexpr std::size_t kEhGlobalsBytes = sizeof(void*) + sizeof(unsigned int);

void* EhGlobals() { return abi::__cxa_get_globals(); }

}  // namespace

Fiber::Fiber(FiberCarrier& carrier, std::size_t stack_bytes, int crash_slot)
    : carrier_(carrier), crash_slot_(crash_slot), slot_(crash_slot) {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  stack_bytes_ = (stack_bytes + page - 1) / page * page;
  mapped_ = stack_bytes_ + page;
  stack_ = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (stack_ == MAP_FAILED) {
    throw std::system_error(errno, std::generic_category(),
                            fmt::format("mapping a fiber stack of {} bytes", mapped_));
  }
  // A stack that overflows faults on the guard page instead of writing
  // over whatever is mapped below it.
  mprotect(stack_, page, PROT_NONE);
  stack_bottom_ = static_cast<char*>(stack_) + page;
  static_assert(kEhGlobalsBytes <= sizeof(eh_globals_));
#if defined(__x86_64__)
  // The frame kagzi_fiber_switch pops, at a 16-byte boundary so that the
  // stack is aligned as the ABI wants at kagzi_fiber_start's call: the
  // control words (the calling thread's), r15, r14, r13 (the entry),
  // r12 (this), rbx, rbp, and the return address.
  auto* frame = reinterpret_cast<std::uint64_t*>(stack_bottom_ + stack_bytes_ - 16 - 64);
  std::uint32_t mxcsr = 0;
  std::uint16_t x87 = 0;
  __asm__ volatile("stmxcsr %0; fnstcw %1" : "=m"(mxcsr), "=m"(x87));
  frame[0] = mxcsr | (static_cast<std::uint64_t>(x87) << 32);
  frame[1] = 0;
  frame[2] = 0;
  frame[3] = reinterpret_cast<std::uint64_t>(&Fiber::Entry);
  frame[4] = reinterpret_cast<std::uint64_t>(this);
  frame[5] = 0;
  frame[6] = 0;
  frame[7] = reinterpret_cast<std::uint64_t>(&kagzi_fiber_start);
  sp_ = frame;
#else
  getcontext(&context_);
  context_.uc_stack.ss_sp = stack_bottom_;
  context_.uc_stack.ss_size = stack_bytes_;
  context_.uc_link = nullptr;
  const auto self = reinterpret_cast<std::uintptr_t>(this);
  makecontext(&context_, reinterpret_cast<void (*)()>(&Fiber::Entry), 2,
              static_cast<unsigned>(self >> 32), static_cast<unsigned>(self & 0xffffffffu));
#endif
#ifdef KAGZI_FIBER_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
}

Fiber::~Fiber() {
  // Resumed once more, the fiber leaves its loop for good (and tells the
  // sanitizers so), then its stack goes.
  exiting_ = true;
  Resume();
#ifdef KAGZI_FIBER_TSAN
  __tsan_destroy_fiber(tsan_fiber_);
#endif
  munmap(stack_, mapped_);
}

Fiber* Fiber::Current() { return t_current; }

void Fiber::Assign(std::function<void()> work) { work_ = std::move(work); }

void Fiber::SwapThreadState() {
  SwapLogContext(log_context_);
  SwapSlotState(slot_, crash_step_);
  unsigned char here[kEhGlobalsBytes];
  void* globals = EhGlobals();
  std::memcpy(here, globals, kEhGlobalsBytes);
  std::memcpy(globals, eh_globals_, kEhGlobalsBytes);
  std::memcpy(eh_globals_, here, kEhGlobalsBytes);
}

void Fiber::SwitchTo(bool to_fiber) {
#if defined(__x86_64__)
  if (to_fiber) {
    kagzi_fiber_switch(&carrier_sp_, sp_);
  } else {
    kagzi_fiber_switch(&sp_, carrier_sp_);
  }
#else
  if (to_fiber) {
    swapcontext(&carrier_context_, &context_);
  } else {
    swapcontext(&context_, &carrier_context_);
  }
#endif
}

void Fiber::Resume() {
  SwapThreadState();
  t_current = this;
#ifdef KAGZI_FIBER_TSAN
  tsan_carrier_ = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(tsan_fiber_, 0);
#endif
#ifdef KAGZI_FIBER_ASAN
  __sanitizer_start_switch_fiber(&carrier_fake_stack_, stack_bottom_, stack_bytes_);
#endif
  SwitchTo(true);
#ifdef KAGZI_FIBER_ASAN
  __sanitizer_finish_switch_fiber(carrier_fake_stack_, nullptr, nullptr);
#endif
  t_current = nullptr;
  SwapThreadState();
}

void Fiber::Suspend() {
#ifdef KAGZI_FIBER_TSAN
  __tsan_switch_to_fiber(tsan_carrier_, 0);
#endif
#ifdef KAGZI_FIBER_ASAN
  __sanitizer_start_switch_fiber(&fake_stack_, carrier_stack_bottom_, carrier_stack_size_);
#endif
  SwitchTo(false);
#ifdef KAGZI_FIBER_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_, &carrier_stack_bottom_, &carrier_stack_size_);
#endif
}

#if defined(__x86_64__)
void Fiber::Entry(Fiber* self) { self->Main(); }
#else
void Fiber::Entry(unsigned hi, unsigned lo) {
  reinterpret_cast<Fiber*>((static_cast<std::uintptr_t>(hi) << 32) | lo)->Main();
}
#endif

void Fiber::Main() {
#ifdef KAGZI_FIBER_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &carrier_stack_bottom_, &carrier_stack_size_);
#endif
  while (!exiting_) {
    if (work_) {
      work_();
      work_ = nullptr;
    }
    if (exiting_) break;
    Suspend();
  }
  // Leaving for good: never resumed again.
#ifdef KAGZI_FIBER_TSAN
  __tsan_switch_to_fiber(tsan_carrier_, 0);
#endif
#ifdef KAGZI_FIBER_ASAN
  __sanitizer_start_switch_fiber(nullptr, carrier_stack_bottom_, carrier_stack_size_);
#endif
  SwitchTo(false);
  std::abort();  // never resumed
}

void FiberCarrier::MakeReady(Fiber* fiber) {
  {
    std::lock_guard lock(mu_);
    ready_.push_back(fiber);
  }
  cv_.notify_one();  // no system call unless the carrier sleeps
}

void FiberCarrier::Poke() {
  {
    std::lock_guard lock(mu_);
    poked_ = true;
  }
  cv_.notify_one();
}

Fiber* FiberCarrier::PopReady() {
  std::lock_guard lock(mu_);
  if (ready_.empty()) {
    poked_ = false;
    return nullptr;
  }
  Fiber* f = ready_.front();
  ready_.pop_front();
  return f;
}

void FiberCarrier::Wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !ready_.empty() || poked_; });
}

bool FiberCarrier::Busy() const {
  {
    std::lock_guard lock(mu_);
    if (!ready_.empty()) return true;
  }
  return other_work_ && other_work_();
}

bool FiberCarrierBusy() {
  Fiber* f = Fiber::Current();
  return f != nullptr && f->carrier().Busy();
}

}  // namespace kagzi::daemon
