// broken_init_throws.so -- a C++ plugin whose init() lets an exception escape
// across the C ABI (a rule of plugin.h broken: no exception crosses it). The
// host catches it at the boundary and refuses the plugin. Expected refusal:
// "init() threw a C++ exception across the C ABI".
#include <stdexcept>

#include "abi_plugin.h"

namespace {

kagzi_status ThrowingInit() { throw std::runtime_error("broken_init_throws: init failed"); }

const kagzi_workflow kWorkflows[] = {ABI_WORKFLOW("abi_init_throws", 1, abi_trivial_run)};
const kagzi_plugin kPlugin = ABI_PLUGIN("broken_init_throws", kWorkflows, ThrowingInit);

}  // namespace

extern "C" KAGZI_EXPORT const kagzi_plugin* kagzi_plugin_entry(uint16_t /*host_abi_major*/,
                                                               uint16_t /*host_abi_minor*/) {
  return &kPlugin;
}
