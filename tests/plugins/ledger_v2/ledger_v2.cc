// tests/plugins/ledger_v2/ledger_v2.cc -- fixture for version pinning.
//
// Workflow "ledger", version 2, in a shared object of its own: one step,
// "v2-step", which appends "<run_id> v2-step\n" to the ledger file when the
// input names one ({"ledger": "/abs/path"}, optional), then the output
// {"version": 2}. A run started on version 1 must finish on version 1 even
// after this plugin is loaded: were it replayed here, its journal (step-0...)
// would not match "v2-step" and the run would fail with non-determinism.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

#include <kagzi/kagzi.hpp>

KAGZI_WORKFLOW(ledger, 2, ctx, input) {
  const std::string ledger = input.value("ledger", "");
  ctx.step("v2-step", [&] {
    if (ledger.empty()) return;
    const std::string line = std::string(ctx.run_id()) + " v2-step\n";
    const int fd = ::open(ledger.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      throw kagzi::RetryableError("open " + ledger + ": " + std::generic_category().message(errno));
    }
    const ssize_t written = ::write(fd, line.data(), line.size());
    ::close(fd);
    if (written != static_cast<ssize_t>(line.size())) {
      throw kagzi::RetryableError("write " + ledger + " failed");
    }
  });
  return kagzi::Json{{"version", 2}};
}

KAGZI_PLUGIN("ledger_v2", "2.0.0");
