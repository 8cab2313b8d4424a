// abi_runtime_cxx.so -- C++ workflows, written against the raw C ABI (not
// kagzi.hpp, which would catch these exceptions), that break its rules at run
// time. The host must fail each run with a message naming the problem and
// keep running:
//
//   abi_run_throws      run() throws std::runtime_error through the C ABI
//   abi_run_throws_int  run() throws an int (no std::exception at all)
//   abi_step_throws     a step function throws through the C ABI
//   abi_foreign_thread  run() calls the context from a thread of its own
//
// None of these functions is noexcept, and g++ emits unwind tables for them,
// so the exception reaches the host's catch at the ABI boundary.
#include <stdexcept>
#include <string>
#include <thread>

#include "abi_plugin.h"

namespace {

kagzi_status RunThrows(const kagzi_host* /*host*/, kagzi_context* /*ctx*/, void* /*user*/) {
  throw std::runtime_error("abi_run_throws: thrown through the C ABI");
}

kagzi_status RunThrowsInt(const kagzi_host* /*host*/, kagzi_context* /*ctx*/, void* /*user*/) {
  throw 42;
}

kagzi_status ThrowingStep(void* /*user*/, const kagzi_writer* /*result*/) {
  throw std::runtime_error("abi_step_throws: thrown from a step function");
}

kagzi_status StepThrows(const kagzi_host* host, kagzi_context* ctx, void* /*user*/) {
  const char* out = nullptr;
  std::size_t out_len = 0;
  kagzi_status status = host->step(ctx, "throws", ThrowingStep, nullptr, &out, &out_len);
  if (status == KAGZI_ERR_RETRYABLE || status == KAGZI_ERR_PERMANENT) {
    host->set_error(ctx, out, out_len);
    return status;
  }
  if (status != KAGZI_OK) return status;
  const std::string output = "\"step exception swallowed\"";
  return host->set_output(ctx, output.data(), output.size());
}

kagzi_status NullStep(void* /*user*/, const kagzi_writer* /*result*/) { return KAGZI_OK; }

kagzi_status ForeignThread(const kagzi_host* host, kagzi_context* ctx, void* /*user*/) {
  kagzi_status input_status = KAGZI_OK;
  kagzi_status step_status = KAGZI_OK;
  std::thread intruder([&] {
    const char* input = nullptr;
    std::size_t len = 0;
    input_status = host->get_input(ctx, &input, &len);
    step_status = host->step(ctx, "from-another-thread", NullStep, nullptr, nullptr, nullptr);
  });
  intruder.join();
  const std::string note = "abi_foreign_thread: get_input returned " +
                           std::to_string(input_status) + ", step returned " +
                           std::to_string(step_status);
  host->log(ctx, KAGZI_LOG_WARN, note.data(), note.size());
  const std::string output = "\"foreign thread accepted\"";
  host->set_output(ctx, output.data(), output.size());
  return KAGZI_OK;  // claims success; the host fails the run anyway
}

const kagzi_workflow kWorkflows[] = {
    ABI_WORKFLOW("abi_run_throws", 1, RunThrows),
    ABI_WORKFLOW("abi_run_throws_int", 1, RunThrowsInt),
    ABI_WORKFLOW("abi_step_throws", 1, StepThrows),
    ABI_WORKFLOW("abi_foreign_thread", 1, ForeignThread),
};
const kagzi_plugin kPlugin = ABI_PLUGIN("abi_runtime_cxx", kWorkflows, nullptr);

}  // namespace

extern "C" KAGZI_EXPORT const kagzi_plugin* kagzi_plugin_entry(uint16_t host_abi_major,
                                                               uint16_t /*host_abi_minor*/) {
  return host_abi_major == KAGZI_ABI_MAJOR ? &kPlugin : nullptr;
}
