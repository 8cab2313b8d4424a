/*
 * broken_non_utf8_workflow_name.so -- a workflow name in Latin-1 ("caf\xe9")
 * rather than UTF-8. Expected refusal: "workflow #0 name is not valid UTF-8
 * (at byte 3)".
 */
#include "abi_plugin.h"

static const kagzi_workflow workflows[] = {ABI_WORKFLOW("caf\xe9", 1, abi_trivial_run)};
static const kagzi_plugin plugin = ABI_PLUGIN("broken_non_utf8_workflow_name", workflows, NULL);

KAGZI_EXPORT const kagzi_plugin *kagzi_plugin_entry(uint16_t host_abi_major,
                                                    uint16_t host_abi_minor) {
  (void)host_abi_major;
  (void)host_abi_minor;
  return &plugin;
}
