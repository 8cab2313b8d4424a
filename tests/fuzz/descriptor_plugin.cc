// descriptor_plugin.so: the plugin file the "plugin_descriptor" fuzz target
// lets PluginRegistry load. Its entry returns whatever descriptor the fuzz
// target made from the current input: kagzi_fuzz_current_descriptor is
// defined by the target executable (exported with ENABLE_EXPORTS) and
// resolved when the registry dlopens this file. It may throw, to play an
// entry that throws across the C ABI.
#include <kagzi/plugin.h>

extern "C" const kagzi_plugin* kagzi_fuzz_current_descriptor();

extern "C" KAGZI_EXPORT const kagzi_plugin* kagzi_plugin_entry(uint16_t /*host_abi_major*/,
                                                               uint16_t /*host_abi_minor*/) {
  return kagzi_fuzz_current_descriptor();
}
