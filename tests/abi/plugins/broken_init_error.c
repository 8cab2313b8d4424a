/*
 * broken_init_error.so -- a well-formed plugin whose init() fails (say, its
 * configuration is missing). Expected refusal: "init() returned status 3",
 * and its workflow is not registered.
 */
#include "abi_plugin.h"

static kagzi_status failing_init(void) { return KAGZI_ERR_PERMANENT; }

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("abi_init_error", 1, abi_trivial_run)};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_init_error", workflows, failing_init);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
