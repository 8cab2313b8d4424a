// broken_entry_throws.so -- kagzi_plugin_entry itself throws a C++ exception
// across the C ABI. The host catches it at the boundary and refuses the
// plugin. Expected refusal: "kagzi_plugin_entry threw a C++ exception".
#include <stdexcept>

#include <kagzi/plugin.h>

extern "C" KAGZI_EXPORT const kagzi_plugin* kagzi_plugin_entry(uint16_t /*host_abi_major*/,
                                                               uint16_t /*host_abi_minor*/) {
  throw std::logic_error("broken_entry_throws: refusing by exception");
}
