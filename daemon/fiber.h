// Fibers: workflow code on its own stack, switched in user space, so that
// a run waiting for its step's group commit costs no thread.
//
// With `executor = "fibers"`, each run of a worker executes on a Fiber, and
// a few carrier threads (FiberCarrier) run the fibers that are ready. A
// run's thread-per-run executor sleeps in the kernel until its step's group
// commits and is woken by the committer: two thread switches per step, and
// the committer spends most of its time waking threads. On a fiber, the run
// suspends to its carrier (a user-space switch), and the committer only
// queues it as ready (FiberCarrier::MakeReady); a carrier that was busy is
// not woken at all.
//
// What a fiber does not change: a step is acknowledged only once its result
// is durable, exactly as on a thread (WakeFlag::Wait suspends the fiber
// instead of its thread). What it costs: a step function that blocks (a
// network call, a sleep) holds its carrier, and the other runs of that
// carrier wait. See docs/ARCHITECTURE.md, "Executors".
//
// A fiber never moves to another carrier: code may keep the address of a
// thread-local across a suspension (compilers cache it). What is per run
// and kept in thread-locals is swapped at each switch: the log context,
// the crash slot and step (worker_shared.h), and the C++ runtime's
// caught-exception stack (a run may commit a step inside a catch block).
// Under AddressSanitizer and ThreadSanitizer, each switch is announced to
// them.
//
// The switch itself, on x86-64, saves the callee-saved registers and the
// floating-point control words on the stack it leaves and restores them
// from the one it enters (fiber.cc): the compiler saves the rest around the
// call. No system call (glibc's swapcontext sets the signal mask each
// time, and AddressSanitizer warns about it). Other architectures use
// swapcontext; CI builds only x86-64.
#pragma once

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>

#include "kagzi/core/log.h"

namespace kagzi::daemon {

class FiberCarrier;

class Fiber {
 public:
  // A fiber with a stack of `stack_bytes` (and a guard page below it) whose
  // code reports crashes in crash slot `crash_slot` (-1: none). Throws
  // std::system_error if the stack cannot be mapped.
  Fiber(FiberCarrier& carrier, std::size_t stack_bytes, int crash_slot);
  ~Fiber();  // only while it has no work (Idle())
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // The carrier's side. Gives the fiber its next work, which runs from the
  // next Resume().
  void Assign(std::function<void()> work);
  // Runs the fiber until its work is done or it suspends.
  void Resume();
  // No work assigned, or the work is done.
  bool Idle() const { return !work_; }
  FiberCarrier& carrier() const { return carrier_; }
  int crash_slot() const { return crash_slot_; }

  // The fiber the calling code runs on, or nullptr on a plain thread.
  static Fiber* Current();
  // On the fiber: switches back to its carrier. Whoever the fiber waits
  // for calls carrier().MakeReady(this) to have it resumed (before or
  // after the switch: the carrier resumes it only once it has switched).
  void Suspend();

 private:
  [[noreturn]] void Main();
  // Switches from the running side (`from`: carrier or fiber) to `to`.
  void SwitchTo(bool to_fiber);
#if defined(__x86_64__)
  static void Entry(Fiber* self);
#else
  static void Entry(unsigned hi, unsigned lo);
#endif
  // Swaps the calling thread's per-run state with the fiber's saved one.
  void SwapThreadState();

  FiberCarrier& carrier_;
  void* stack_ = nullptr;  // the mapping, guard page first
  std::size_t mapped_ = 0;
  std::size_t stack_bytes_ = 0;
  char* stack_bottom_ = nullptr;  // lowest usable address
#if defined(__x86_64__)
  void* sp_ = nullptr;          // the fiber's stack pointer while switched out
  void* carrier_sp_ = nullptr;  // the carrier's while the fiber runs
#else
  ucontext_t context_{};
  ucontext_t carrier_context_{};
#endif
  std::function<void()> work_;
  bool exiting_ = false;
  // Per-run thread state while the fiber is switched out; the carrier's
  // while it runs.
  const int crash_slot_;
  LogContext log_context_;
  int slot_ = -1;  // the crash slot, saved
  const char* crash_step_ = nullptr;
  unsigned char eh_globals_[16] = {};
  // Sanitizer bookkeeping (unused without sanitizers).
  void* fake_stack_ = nullptr;
  void* carrier_fake_stack_ = nullptr;
  const void* carrier_stack_bottom_ = nullptr;
  std::size_t carrier_stack_size_ = 0;
  void* tsan_fiber_ = nullptr;
  void* tsan_carrier_ = nullptr;
};

// A carrier thread's queue of fibers ready to resume, and its sleep.
class FiberCarrier {
 public:
  // Any thread: `fiber` (suspended, or about to be) may resume.
  void MakeReady(Fiber* fiber);
  // Any thread: the carrier should look for new work (Wait returns).
  void Poke();
  // The carrier: the next ready fiber, or nullptr (and a Poke() before
  // this call is consumed: look for work now).
  Fiber* PopReady();
  // The carrier: sleeps until a fiber is ready or Poke() was called since
  // the last PopReady() that found none.
  void Wait();
  // Before the carrier starts: what else it may have to do (for Busy).
  void SetOtherWork(std::function<bool()> other_work) { other_work_ = std::move(other_work); }
  // A fiber is ready to resume, or there is other work (SetOtherWork).
  bool Busy() const;

 private:
  std::function<bool()> other_work_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Fiber*> ready_;
  bool poked_ = false;
};

// On a fiber whose carrier is Busy(): committing a write on this thread,
// rather than handing it to the committer, would hold the other fibers or
// the queued runs.
bool FiberCarrierBusy();

}  // namespace kagzi::daemon
